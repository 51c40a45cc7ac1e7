"""The evaluation half of the demo's loop, as an operator runs it (``edgerec-server demo``).

* **Evaluation rounds** (``--evaluate-every K``): after every K-th training round and after the
  last, ``round open --kind evaluation`` of the published model, its cohort drawn like a
  training round's (the same secure aggregation; noise multiplier ``--evaluation-noise``, by
  default the training rounds' z). Each drawn device ranks its held-out event (``held_out.py``: its user's test item, the
  one central LOO-full ranks, never read by a fine-tune) and sends its ``edgerec.fedeval``
  vector; the demo reads the server's estimate over ``GET /v1/analytics`` (an operator token)
  and puts it beside central LOO-full of the same model, on every device user and on the users
  of the devices whose vector was summed (the same held-out events).
* **Canary and rollback** (``--canary``), once, after the last round: a deliberately bad
  candidate (the final model with the rows of its item embedding tables shuffled: every item
  scored with another item's vectors) is imported with ``rollout canary --bundle``; the
  devices of its canary share sync and install it; an evaluation round of candidate against
  promoted runs on the other devices; ``rollout decide`` applies the server's rule to its
  paired difference (reject, promote, or keep collecting, which the report then says); the
  canary devices sync again and, after a rejection, run the promoted model again.
* **Epsilon, apart** (``epsilon_by_kind``): what the training rounds and the evaluation rounds
  each cost, accounted like the server's audit (which adds them up in one budget).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgerec import ConfigError, load_bundle, write_bundle
from edgerec.data import Dataset
from edgerec.sync import install_bundle
from edgerec.sync.rollout import canary_bucket

from . import devices as dev
from . import held_out
from .config import DP_DELTA, DemoConfig
from .operator import DemoServer
from .population import Population, device_events, held_out_event

__all__ = ["EvalContext", "canary_step", "due", "epsilon_by_kind", "evaluation_round"]

#: Metric names in the server's estimate (``edgerec.fedeval``) the report shows.
_NDCG, _HR = "installed.ndcg@10", "installed.hr@10"
_CANDIDATE, _PAIRED = "candidate.ndcg@10", "candidate-installed.ndcg@10"


def due(cfg: DemoConfig, r: int) -> bool:
    """Whether an evaluation round follows training round ``r``."""
    k = cfg.evaluate_every or 0
    return k > 0 and (r % k == 0 or r == cfg.rounds)


@dataclass
class EvalContext:
    """What the evaluation steps share with the runner: the run, its devices and server."""

    cfg: DemoConfig  # resolved: noise is z
    dataset: Dataset
    pop: Population
    server: DemoServer
    pool: Any
    work: Path
    key: bytes
    index_of: dict[int, int]  # the server's device id -> the device's index
    evaluate: Callable[..., tuple[float, float]]  # (params, users=None) -> (HR@10, NDCG@10)
    token: str = ""  # the operator token of GET /v1/analytics
    _events: dict[int, tuple[Any, tuple[Any, ...]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.token = json.loads(self.server.command("operator-token", "create", "--note", "demo",
                                                    "--json"))["token"]

    def folder(self, i: int) -> str:
        return str(self.work / "devices" / f"d{i:04d}")

    def held_out(self, i: int) -> tuple[Any, tuple[Any, ...]]:
        """Device ``i``'s held-out event (or None) and its other events."""
        if i not in self._events:
            user = int(self.pop.devices[i])
            self._events[i] = (held_out_event(self.dataset, user),
                               tuple(device_events(self.dataset, user)))
        return self._events[i]


def evaluation_round(ctx: EvalContext, after: int, candidate: int | None = None) -> dict[str, Any]:
    """One evaluation round of the published model (and ``candidate``); its figures, the
    server's estimate and central LOO-full of the same model beside it."""
    cfg, started = ctx.cfg, time.perf_counter()
    opened = _open(ctx, candidate)
    chosen = sorted(ctx.index_of[int(d)] for d in opened["members"])
    tasks = [held_out.HeldOutTask(dev.DeviceTask(i, ctx.folder(i)), *ctx.held_out(i)) for i in chosen]
    reports = ctx.pool.starmap(held_out.evaluation_round,
                               [(after, tasks[w::cfg.workers]) for w in range(cfg.workers)])
    wall = time.perf_counter() - started
    statuses = {i: s for x in reports for i, s in x.statuses.items()}
    audit = next(a for a in reversed(ctx.server.audit()) if a["round_id"] == opened["round_id"])
    found = [e for e in ctx.server.analytics(ctx.token)["evaluations"]
             if e["round_id"] == opened["round_id"]]
    row: dict[str, Any] = {
        "after_round": after, "round_id": opened["round_id"], "state": audit["state"],
        "model_version": audit["model_version_in"], "candidate_version": candidate,
        "cohort": audit["cohort"], "population": audit["population"],
        "survivors": audit["survivors"], "noise_multiplier": audit["noise_multiplier"],
        "cumulative_epsilon": audit["cumulative_epsilon"], "wall_s": wall,
        "statuses": {s: list(statuses.values()).count(s) for s in sorted(set(statuses.values()))}}
    if not found:  # aborted: nothing was estimated
        return row
    e = found[0]
    metrics = e["metrics"]
    row.update({"devices": e["devices"], "epsilon_round": e["epsilon"], "layout": e.get("layout"),
                "confidence": e["confidence"], "held_out_devices": _interval(metrics["loo.devices"]),
                "ndcg": _interval(metrics[_NDCG])})
    if _HR in metrics:  # a lean round (the demo's) measures NDCG@10 alone
        row["hr"] = _interval(metrics[_HR])
    if candidate is not None:
        row["candidate_ndcg"] = _interval(metrics[_CANDIDATE])
        row["paired_ndcg"] = _interval(metrics[_PAIRED])
    # Central LOO-full of the same model: on every device user, and on the users of the devices
    # whose vector is in the sum (they ranked the same held-out events).
    params = _bundle(ctx, row["model_version"]).params
    summed = [int(ctx.pop.devices[i]) for i, s in statuses.items()
              if s == "participated" and ctx.held_out(i)[0] is not None]
    hr, ndcg = ctx.evaluate(params)
    row["central"] = {"ndcg": ndcg, "hr": hr}
    if summed:
        hr, ndcg = ctx.evaluate(params, users=np.array(sorted(summed), np.int64))
        row["central_same_events"] = {"ndcg": ndcg, "hr": hr, "users": len(summed)}
        ours = [i for i, s in statuses.items() if s == "participated"]
        row["devices_own"] = _devices_own(ctx, row["model_version"], ours)
    return row


def _devices_own(ctx: EvalContext, version: int, indices: list[int]) -> dict[str, Any]:
    """What the summed devices measured, computed in the clear (a simulation can; the server
    never sees it): ``edgerec.fedeval.device_eval`` of each device's events with the published
    model's int8 scorer, as the device ran it (no personal adapter: one fits only the model it
    was fitted to). The mean over devices with a held-out event is what a round without noise
    estimates."""
    from edgerec.fedeval import EvalConfig, device_eval, scorer_score_fn
    from edgerec.scoring import Scorer

    bundle = _bundle(ctx, version)
    score = scorer_score_fn(Scorer(bundle.model_path, len(bundle.catalogue), bundle.config.history))
    config = EvalConfig(models=("installed",), max_held_out=1)
    hr, ndcg = [], []
    for i in indices:
        event, events = ctx.held_out(i)
        if event is None:
            continue
        own = device_eval([*events, event], config=config, catalogue=bundle.catalogue,
                          scorers={"installed": score}, held_out_after=-1e300,
                          live_since=0.0, until=float(event["ts"]) + 1.0)
        if own.held_out:
            hr.append(own.hr[0])
            ndcg.append(own.ndcg[0])
    return {"ndcg": float(np.mean(ndcg)) if ndcg else None, "hr": float(np.mean(hr)) if hr else None,
            "devices": len(ndcg)}


def _interval(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m.get(k) for k in ("value", "low", "high", "std_error")}


#: Evaluation rounds of up to this many devices run on the complete graph (see ``_params``).
COMPLETE_UP_TO = 1000


def _params(cfg: DemoConfig, devices: int, candidate: int | None) -> dict[str, Any]:
    """``round open`` flags of an evaluation round.

    Of the published model: a cohort drawn like a training round's (about ``per_round``
    devices). Of a candidate: every device the rollout statement keeps on the promoted model,
    so that the decision rests on as many held-out events as there are.

    A lean vector (``--lean``: NDCG@10 alone, and the paired spread with a candidate; L2 bound
    sqrt(2), or 2, against sqrt(17) or sqrt(23) for the full layout) on the complete graph, whose
    threshold sits just below the cohort, so the sum carries about z*C and no more. On SecAgg+
    (Harary) each device adds the noise calibrated to its neighbourhood's threshold t (15 for
    754 devices), and the sum of n carries sqrt(n / t) times z*C: 7x at 754 (a full-layout
    round of 475 synthetic devices at z = 1 stated NDCG@10 to about +-0.1). The complete
    graph's key agreement and shares grow with the square of the cohort, which a training
    delta's masks make too slow beyond about 100 devices; a vector of 2-4 slots does not
    (BENCHMARKS.md, "Cost and precision of an evaluation round"), so SecAgg+ is kept for cohorts beyond
    ``COMPLETE_UP_TO`` only.
    """
    assert cfg.per_round is not None and cfg.noise is not None and cfg.stage_deadline is not None  # resolved
    d = cfg.stage_deadline
    z = cfg.noise if cfg.evaluation_noise is None else cfg.evaluation_noise
    expected = devices if candidate is not None else min(cfg.per_round, devices)
    graph = "harary" if expected > COMPLETE_UP_TO else "complete"
    # One held-out event per device, its newest: the test item (a device that never trained
    # would otherwise also rank up to 4 older events no model read, which central LOO-full
    # does not rank).
    # On the complete graph every device handles every peer in a stage (about 0.9 s of CPU per
    # device over the round at 754: bench_fedeval), and the demo's devices share 2 workers: a
    # stage gets half a second per device, not the training rounds' deadline.
    d = d if graph == "harary" else max(d, 0.5 * expected)
    flags: dict[str, Any] = {"kind": "evaluation", "lean": True, "max_held_out": 1, "min": 3,
                             "noise": z, "graph": graph,
                             "deadlines": f"{max(600.0, 2.0 * expected)},{d},{d},{d}",
                             "quiet_close": cfg.quiet_close}
    if expected < devices:
        flags["expected"] = expected
    if graph == "complete":
        flags["tolerate_dropouts"] = 2  # none of these devices drops: noise for nearly all
    if candidate is not None:
        flags["candidate"] = candidate
    return flags


def _open(ctx: EvalContext, candidate: int | None) -> dict[str, Any]:
    """Open the round; a draw too small or too large for a safe threshold opens nothing, and
    drawing again is harmless (as for the training rounds, ``runner._open``)."""
    for attempt in range(20):
        try:
            return ctx.server.open_round(**_params(ctx.cfg, len(ctx.index_of), candidate))
        except ConfigError as exc:
            if "drew" not in str(exc) or attempt == 19:
                raise
    raise AssertionError("unreachable")


def _bundle(ctx: EvalContext, version: int) -> Any:
    """Model ``version`` as the server serves it (verified against the pinned key)."""
    import httpx

    answer = httpx.get(f"{ctx.server.url}/v1/models/{version}", timeout=60)
    answer.raise_for_status()
    return install_bundle(answer.content, ctx.work / "eval-bundles" / f"v{version}", ctx.key)


def canary_step(ctx: EvalContext, after: int, seed: int) -> dict[str, Any]:
    """The bad candidate on a canary, measured against the promoted model, decided, and the
    canary devices synced back (module docstring)."""
    started = time.perf_counter()
    promoted = install_bundle(ctx.server.bundle_archive(), ctx.work / "promoted", ctx.key)
    bad = _shuffled(promoted, ctx.work / "bad-candidate", seed)
    share = ctx.cfg.canary_share
    statement = json.loads(ctx.server.command("rollout", "canary", "--bundle", str(bad),
                                              "--share", repr(share)))
    v, p = statement["candidate"], statement["promoted"]
    canary = sorted(i for d, i in ctx.index_of.items() if canary_bucket(d, v) < share)
    installed = _sync(ctx, canary)
    # One round: another would draw the same devices with the same held-out events (only its
    # noise would differ), and ``rollout decide`` reads the newest round alone.
    rounds = [evaluation_round(ctx, after, candidate=v)]
    decision = json.loads(ctx.server.command("rollout", "decide"))
    back = _sync(ctx, canary)
    hr, ndcg = ctx.evaluate(load_bundle(bad).params)
    return {"candidate": v, "promoted": p, "share": share, "statement_seq": statement["seq"],
            "canary_devices": len(canary),
            "on_candidate": sum(1 for x in installed.values() if x == v),
            "back_on_promoted": sum(1 for x in back.values() if x == p),
            "versions_after": sorted(set(back.values())),
            "evaluation_rounds": rounds, "decision": decision["decision"],
            "reason": decision.get("reason"), "interval": [decision.get("low"), decision.get("high")],
            "central_candidate": {"ndcg": ndcg, "hr": hr}, "wall_s": time.perf_counter() - started}


def _shuffled(source: Any, out: Path, seed: int) -> Path:
    """``source`` with the rows of its item embedding tables permuted (a new bundle folder;
    ``rollout canary --bundle`` signs it as the next version)."""
    perm = np.random.default_rng(seed).permutation(len(source.catalogue))
    params = {k: (v[perm] if k in ("emb_in", "emb_out") else v) for k, v in source.params.items()}
    write_bundle(out, params, source.catalogue, source.config, model_version=source.version)
    return out


def _sync(ctx: EvalContext, indices: list[int]) -> dict[int, int]:
    """Sync ``indices``' devices once; device index -> the model version it runs after."""
    tasks = [dev.DeviceTask(i, ctx.folder(i)) for i in indices]
    chunks = [tasks[w::ctx.cfg.workers] for w in range(ctx.cfg.workers)]
    done = ctx.pool.map(held_out.sync_devices, [c for c in chunks if c])
    return {i: version for part in done for i, _, version in part}


def epsilon_by_kind(audit: list[dict[str, Any]]) -> dict[str, float | None]:
    """Epsilon (at ``DP_DELTA``) of the completed training rounds alone and of the evaluation
    rounds alone, accounted as the server's audit accounts them, and ``together``: the audit's
    own figure after the last completed round (None: infinite)."""
    from edgerec.privacy import Release

    from ..audit import cumulative_epsilon

    out: dict[str, float | None] = {}
    for kind in ("training", "evaluation"):
        releases = [Release(a["population"], a["cohort"], float(a["noise_multiplier"]))
                    for a in audit if a["state"] == "done" and a.get("kind", "training") == kind]
        eps = cumulative_epsilon(releases, DP_DELTA) if releases else 0.0
        out[kind] = None if np.isinf(eps) else float(eps)
    done = [a for a in audit if a["state"] == "done"]
    out["together"] = done[-1]["cumulative_epsilon"] if done else 0.0
    return out
