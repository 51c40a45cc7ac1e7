"""The federated demo from start to end (``edgerec-server demo``).

1. Load the data (MovieLens-100K with ``--data``, the synthetic set otherwise); split LOO-full.
2. Train the first global model centrally on the pilot users (not devices; with no pilot it is
   the random initialisation), and the central comparison on every user's training data (the
   same run, the same split).
3. Start ``edgerec-server`` on 127.0.0.1 with a temporary data dir; ``init`` the pilot model.
4. Create the devices (each its own SQLite file with its user's events, identity, credential)
   in a pool of worker processes, and enrol them over HTTP.
5. For each round: open it (the server draws the cohort by Poisson sampling, each device with
   probability per_round / devices; the strategy, cosine-decayed server lr, clip, noise z (as
   given, or chosen once for ``--epsilon``: rounds of per_round of the devices), the frozen
   weights (``--frozen``: left out of the round, the devices send only the rest), secure
   aggregation), let the drawn devices take part stage by stage (some drop out), then evaluate
   the published model LOO-full and read the sampling and epsilon from the server's audit;
   every ``--evaluate-every`` rounds, an evaluation round of it (``evaluation.py``: the
   devices' federated NDCG@10 with its interval, beside central LOO-full).
   After the last round (``--canary``): a bad candidate on a canary share, measured by an
   evaluation round against the promoted model, rejected by ``rollout decide``, and the canary
   devices back on the promoted model.
6. Print the table; write report.json and report.png to ``--out`` (default: a folder in the
   current folder), and print where.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edgerec import ConfigError, ModelConfig, TrainConfig, load_bundle, write_bundle
from edgerec.data import Dataset
from edgerec.federated.pilot_training import train_pilot
from edgerec.model.params import param_names
from edgerec.sync import install_bundle
from edgerec.sync.client import STEPS
from edgerec.training import fit_params
from edgerec.workflows import DEFAULT_TRAINING, DataSpec, load_data

from . import devices as dev
from . import evaluation
from .config import DP_DELTA, EVERY_DEVICE, DemoConfig
from .operator import DemoServer, server_lr
from .population import Population, device_events, plan_population
from .report import evaluator, format_table, write_report

__all__ = ["run_demo"]


def run_demo(cfg: DemoConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run the demo; returns the report (also written to ``cfg.out``)."""
    started = time.perf_counter()
    timing: dict[str, float] = {}
    assert cfg.pilot_share is not None and cfg.dim is not None  # DemoConfig fills its presets
    dataset = load_data(DataSpec(cfg.data, synthetic_users=cfg.synthetic_users,
                                 synthetic_items=cfg.synthetic_items, seed=cfg.seed))
    pop = plan_population(dataset, pilot_share=cfg.pilot_share, devices=cfg.devices, seed=cfg.seed)
    mcfg = ModelConfig(dim=cfg.dim)
    _say(f"dataset {dataset.name}: {dataset.n_users} users, {dataset.n_items} items, {len(dataset)} "
         f"interactions; {len(pop.pilot)} pilot users, {len(pop.devices)} devices")
    run = cfg.resolved(len(pop.devices))  # z: as given, or chosen for the epsilon target
    if cfg.epsilon is not None:
        _say(_calibration_line(cfg, len(pop.devices), run.noise))
    evaluate = evaluator(pop, dataset, mcfg)
    with tempfile.TemporaryDirectory(prefix="edgerec-demo-") as tmp:
        work = Path(tmp)
        first, central = _train(cfg, dataset, pop, mcfg, work, timing)
        server = DemoServer(work / "server", port=cfg.port)
        server.data_dir.mkdir()
        try:
            rows, extra = _federate(run, dataset, pop, server, first, work, evaluate, timing, progress)
        finally:
            server.stop()
    timing["operator_cli_s"] = server.cli_seconds
    timing["total_s"] = time.perf_counter() - started
    hr, ndcg = evaluate(central)
    # The configuration that ran (z as chosen), with the epsilon target it was chosen for.
    config = {**run.to_dict(), "epsilon": cfg.epsilon}
    names = param_names(mcfg)
    report = {"config": config, "dataset": dataset.name, "eval_users": int(len(pop.eval_users())),
              "pilot_users": int(len(pop.pilot)), "devices": int(len(pop.devices)),
              "model": mcfg.to_dict(), "weights": int(sum(central[n].size for n in names)),
              # What each device sent per round: the weights not frozen (the audit says the same).
              "frozen": list(run.frozen or ()),
              "federated_weights": int(sum(central[n].size for n in names if n not in (run.frozen or ()))),
              "delta": DP_DELTA, "epsilon_target": cfg.epsilon, "noise_multiplier": run.noise,
              "rounds": rows, **extra,
              "central": {"hr": hr, "ndcg": ndcg}, "timing": timing}
    out = Path(cfg.out).resolve()  # relative: under the current folder (config.DEFAULT_OUT)
    written = write_report(out, report)
    _say("\n" + format_table(report))
    if len(written) == 1:
        _say("report.png not drawn: matplotlib is not installed (pip install 'edgerec[all]')")
    _say(f"\nwall time {timing['total_s']:.0f} s; report in {out}: "
         + ", ".join(p.name for p in written))
    return report


def _calibration_line(cfg: DemoConfig, population: int, z: float | None) -> str:
    """What ``--epsilon`` chose, in the words of ``edgerec-server round open --epsilon``."""
    assert cfg.per_round is not None and cfg.rounds is not None and z is not None
    every = cfg.per_round == EVERY_DEVICE or cfg.per_round >= population
    cohort = population if every else min(cfg.per_round, population)
    releases, bounded = cfg.planned_releases(cohort, population)
    drawn = f"all {population}" if bounded >= population else f"{cfg.per_round} of {population}"
    kinds = (f" ({cfg.rounds} training, {releases - cfg.rounds} evaluation and canary)"
             if releases > cfg.rounds else "")
    return (f"epsilon {cfg.epsilon:g} over {releases} planned rounds{kinds} of {drawn} devices "
            f"(delta {DP_DELTA:g}): noise multiplier z = {z:.4g}")


def _train(cfg: DemoConfig, dataset: Dataset, pop: Population, mcfg: ModelConfig, work: Path,
           timing: dict[str, float]) -> tuple[Path, Any]:
    """The pilot bundle (the first global model) and the central comparison's weights."""
    training = TrainConfig(**{**DEFAULT_TRAINING, "seed": cfg.seed,
                              **({"epochs": cfg.central_epochs} if cfg.central_epochs else {})})
    features = dataset.catalogue.features
    t0 = time.perf_counter()
    if len(pop.pilot):  # its epochs chosen on the pilot's own held-out events, as simulated
        fit = train_pilot(pop.pilot_sequences(), features, mcfg, training)
        pilot, said = fit.params, f"first model trained on {len(pop.pilot)} pilot users ({fit.epochs} epochs)"
    else:  # no pilot users: the first model is the random initialisation
        pilot = fit_params(pop.pilot_sequences(), features, mcfg, TrainConfig(epochs=0, seed=cfg.seed))
        said = "first model: random initialisation (every user is a device)"
    write_bundle(work / "pilot", pilot, dataset.catalogue, mcfg, model_version=1,
                 hyperparameters={"pilot_users": int(len(pop.pilot))})
    timing["pilot_training_s"] = time.perf_counter() - t0
    _say(f"{said} in {timing['pilot_training_s']:.0f} s")
    t0 = time.perf_counter()
    central = fit_params(pop.split.train_val, features, mcfg, training)
    timing["central_training_s"] = time.perf_counter() - t0
    _say(f"central model trained on all {dataset.n_users} users in {timing['central_training_s']:.0f} s")
    return work / "pilot", central


def _federate(cfg: DemoConfig, dataset: Dataset, pop: Population, server: DemoServer, first: Path,
              work: Path, evaluate: Callable, timing: dict[str, float],
              progress: bool) -> tuple[list[dict], dict[str, Any]]:
    """The rounds (and evaluation rounds, and the canary): the report's rows, and its
    ``canary`` and ``epsilon_by_kind`` when evaluation ran."""
    assert cfg.rounds is not None  # DemoConfig fills its presets
    server.command("init", "--bundle", str(first))
    server.start()
    key = bytes.fromhex(server.command("public-key"))
    token = json.loads(server.command("token", "create", "--uses", str(len(pop.devices)), "--json"))["token"]
    install_bundle(server.bundle_archive(), work / "first-bundle", key)
    _say(f"server on {server.url} (data dir {server.data_dir}); pinned key {key.hex()[:16]}...")
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding threads and sessions
    with _one_thread_children(), ctx.Pool(cfg.workers, initializer=dev.init_worker,
                  initargs=(server.url, key, token, str(work), str(work / "first-bundle"))) as pool:
        t0 = time.perf_counter()
        index_of = _setup(pool, dataset, pop, work, progress)
        timing["device_setup_s"] = time.perf_counter() - t0
        hr, ndcg = evaluate(load_bundle(work / "first-bundle").params)
        rows = [{"round": 0, "model_version": 1, "hr": hr, "ndcg": ndcg, "epsilon": 0.0}]
        rng = np.random.default_rng(cfg.seed)
        ops = (evaluation.EvalContext(cfg, dataset, pop, server, pool, work, key, index_of, evaluate)
               if cfg.evaluate_every or cfg.canary else None)
        extra: dict[str, Any] = {}
        bar = _bar(progress, cfg.rounds, "rounds")
        for r in range(1, cfg.rounds + 1):
            rows.append(_round(cfg, r, index_of, pool, server, key, work, evaluate, rng, timing))
            if ops is not None and evaluation.due(cfg, r):
                t0 = time.perf_counter()
                rows[-1]["federated"] = evaluation.evaluation_round(ops, r)
                timing["evaluation_rounds_s"] = timing.get("evaluation_rounds_s", 0.0) + time.perf_counter() - t0
            eps = rows[-1]["epsilon"]  # None in the audit: infinite (no noise), or an aborted round
            shown = f"{eps:.2f}" if eps is not None else ("inf" if rows[-1]["state"] == "done" else "-")
            bar.set_postfix(ndcg=f"{rows[-1]['ndcg']:.4f}", eps=shown)
            bar.update(1)
        bar.close()
        if ops is not None and cfg.canary:
            extra["canary"] = evaluation.canary_step(ops, cfg.rounds, cfg.seed)
            timing["canary_s"] = extra["canary"]["wall_s"]
        pool.close()
        pool.join()
    if ops is not None:
        extra["epsilon_by_kind"] = evaluation.epsilon_by_kind(server.audit())
    timing.update({f"server_{k}": v for k, v in server.metrics().items()})
    return rows, extra


@contextlib.contextmanager
def _one_thread_children() -> Iterator[None]:
    """Spawned workers start with BLAS/OpenMP limited to one thread: a spawned interpreter reads
    these variables when it imports numpy (see devices.init_worker for why one thread)."""
    names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {n: os.environ.get(n) for n in names}
    os.environ.update({n: "1" for n in names})
    try:
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def _setup(pool: Any, dataset: Dataset, pop: Population, work: Path, progress: bool) -> dict[int, int]:
    """Create and enrol every device; the server's device id -> the device's index."""
    tasks = [dev.DeviceTask(i, str(work / "devices" / f"d{i:04d}"), tuple(device_events(dataset, int(u))))
             for i, u in enumerate(pop.devices)]
    chunks = [tasks[k:k + 10] for k in range(0, len(tasks), 10)]
    bar = _bar(progress, len(tasks), "devices (database + enrolment)")
    failed, index_of = [], {}
    for done in pool.imap_unordered(dev.setup_devices, chunks):
        failed += [(i, s) for i, s, _ in done if s != "enrolled"]
        index_of.update({int(d): i for i, s, d in done if d is not None})
        bar.update(len(done))
    bar.close()
    if failed:
        raise RuntimeError(f"{len(failed)} devices could not enrol, e.g. {failed[:3]}")
    return index_of


def _open(cfg: DemoConfig, r: int, server: DemoServer) -> dict[str, Any]:
    """Open round ``r``: the server draws its cohort (Poisson, each device with probability
    per_round / devices, from the OS's CSPRNG). A draw too small or too large for a safe
    threshold opens nothing; drawing again is harmless, since the size never depends on data."""
    assert cfg.per_round is not None  # DemoConfig fills its presets
    for attempt in range(20):
        try:
            return server.open_round(**_round_params(cfg, r, round(cfg.dropout * cfg.per_round)))
        except ConfigError as exc:
            if "drew" not in str(exc) or attempt == 19:
                raise
    raise AssertionError("unreachable")


def _round(cfg: DemoConfig, r: int, index_of: dict[int, int], pool: Any, server: DemoServer,
           key: bytes, work: Path, evaluate: Callable, rng: np.random.Generator,
           timing: dict[str, float]) -> dict:
    assert cfg.server_lr is not None and cfg.rounds is not None  # DemoConfig fills its presets
    started = time.perf_counter()
    opened = _open(cfg, r, server)
    chosen = sorted(index_of[int(d)] for d in opened["members"])
    drops = rng.choice(chosen, size=int(round(cfg.dropout * len(chosen))), replace=False)
    # Drops happen after fine-tuning and advertising, before a later stage: the server then
    # waits for that stage's deadline and goes on with the rest (Shamir shares cover them).
    where = {int(i): str(rng.choice(STEPS[1:])) for i in drops}
    tasks = [dev.DeviceTask(int(i), str(work / "devices" / f"d{int(i):04d}"), (), where.get(int(i)))
             for i in chosen]
    reports = pool.starmap(dev.run_round, [(r, tasks[w::cfg.workers]) for w in range(cfg.workers)])
    round_s = time.perf_counter() - started
    audit = server.audit()[-1]
    t0 = time.perf_counter()
    bundle = install_bundle(server.bundle_archive(), work / "eval-bundle", key)
    hr, ndcg = evaluate(bundle.params)
    timing["evaluation_s"] = timing.get("evaluation_s", 0.0) + time.perf_counter() - t0
    for name in ("train_s", "secagg_s", "http_s", "wait_s", "install_s"):
        timing[f"devices_{name}"] = timing.get(f"devices_{name}", 0.0) + sum(getattr(x, name) for x in reports)
    timing["rounds_s"] = timing.get("rounds_s", 0.0) + round_s
    statuses = [s for x in reports for s in x.statuses.values()]
    return {"round": r, "model_version": bundle.version, "hr": hr, "ndcg": ndcg,
            "state": audit["state"], "sampling_rate": audit["sampling_rate"],
            "cohort": audit["cohort"], "population": audit["population"],
            "threshold": audit["threshold"], "federated_weights": audit.get("federated_weights"),
            "participants": audit["participants"],
            "survivors": audit["survivors"], "dropouts": sum(len(x.dropped) for x in reports),
            "dropouts_before_sum": sum(_before_sum(step) for x in reports for step in x.dropped.values()),
            "epsilon": audit["cumulative_epsilon"], "server_lr": server_lr(cfg.server_lr, r, cfg.rounds),
            "bytes_sent": sum(x.bytes_sent for x in reports), "wall_s": round_s,
            "statuses": {s: statuses.count(s) for s in sorted(set(statuses))}}


def _before_sum(step: str) -> bool:
    """A device that vanished before ``step`` never sent its masked update when ``step`` comes
    no later than ``masked_input``; vanishing later, its update is already in the sum."""
    return STEPS.index(step) <= STEPS.index("masked_input")


def _round_params(cfg: DemoConfig, r: int, drops: int) -> dict[str, Any]:
    """``round open`` flags for round ``r`` (whose cohort should see about ``drops`` dropouts).

    The server draws about ``per_round`` devices (``--expected``). On the complete graph the
    secure-aggregation threshold, which devices calibrate their noise to, sits just below the
    drawn cohort (all but twice the expected dropouts, plus two; never below the safe floor of
    2/3): at the floor every device would add sqrt(3/2) times the noise needed when nearly
    everyone survives. The cost: more dropouts than that abort the round. SecAgg+ keeps the
    server's (per-neighbourhood) threshold.
    """
    m, d = cfg.per_round, cfg.stage_deadline
    assert cfg.server_lr is not None and cfg.rounds is not None and m is not None
    assert cfg.noise is not None, "z is chosen first: DemoConfig.resolved(population)"
    assert m != EVERY_DEVICE, "per_round is resolved first: DemoConfig.resolved(population)"
    flags: dict[str, Any] = {
        "min": 4, "expected": m, "clip": cfg.clip, "noise": cfg.noise, "graph": cfg.graph,
        "deadlines": f"{max(600.0, 5.0 * m)},{d},{d},{d}", "strategy": cfg.strategy,
        "server_lr": server_lr(cfg.server_lr, r, cfg.rounds), "quiet_close": cfg.quiet_close}
    if cfg.frozen:
        flags["frozen"] = ",".join(cfg.frozen)
    if cfg.graph == "complete":
        flags["tolerate_dropouts"] = 2 * drops + 2
    return flags


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kw: Any) -> None: ...
    def close(self) -> None: ...


def _bar(enabled: bool, total: int, desc: str) -> Any:
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False)


def _say(text: str) -> None:
    print(text, flush=True)
