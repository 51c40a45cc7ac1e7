"""Private federated learning as the population grows: synthetic users at a fixed ε (issue 13).

    python -m benchmarks.bench_private_scaling [--sizes 1000 10000 100000] [--max-n 10000]
        [--cohort 1000] [--scaling-rounds 20] [--epsilon 1] [--seeds 1] [--central-budget 600]

With ε fixed, more devices mean less noise per device in the mean (z*C/m for a cohort of m)
and more sampling amplification (cohort m of N), so a private run should come closer to the
central model as N grows. Each N is ``synthetic(N, 300 items)``; the levers are those of
``bench_federated.MOVIELENS`` except the width (32, the synthetic demo preset's), the rounds,
the cohort (min(N, --cohort) a round, drawn without replacement and accounted as such) and the
pilot (min(5%, 500 users): a pilot large enough to start from, not growing with N).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core, as on a device

import argparse  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks._report import table, write_section  # noqa: E402
from benchmarks.bench_federated import (  # noqa: E402
    DELTA,
    MOVIELENS,
    Central,
    Run,
    _mean_sd,
    _ratio,
    _same,
    central_model,
    run_study,
)
from edgerec.data import synthetic  # noqa: E402
from edgerec.evaluation import loo_split  # noqa: E402
from edgerec.federated.simulation import SIMULATED_NOISE  # noqa: E402
from edgerec.workflows import DEFAULT_TRAINING  # noqa: E402

SYNTHETIC = replace(MOVIELENS, dim=32)  # the synthetic demo preset's width (edgerec_server.demo.config)
N_ITEMS = 300
PILOT_SHARE, PILOT_USERS = 0.05, 500
TARGET = 0.95  # of central


def pilot_share(n: int) -> float:
    """5% of the users, but no more than 500 of them."""
    return min(PILOT_SHARE, PILOT_USERS / n)


def _central_epochs(cost: float | None, interactions: int, budget: float) -> tuple[int, float | None]:
    """DEFAULT_TRAINING's epochs, fewer if their estimated time exceeds ``budget`` seconds.

    ``cost``: seconds per interaction per epoch, measured on a smaller N (None: not yet).
    Returns the epochs and the estimate for DEFAULT_TRAINING's epochs (None without ``cost``).
    """
    full = DEFAULT_TRAINING["epochs"]
    if cost is None:
        return full, None
    estimate = cost * interactions * full
    if estimate <= budget:
        return full, estimate
    return max(1, int(budget / (cost * interactions))), estimate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--max-n", type=int, default=None, help="skip sizes above this")
    parser.add_argument("--cohort", type=int, default=1000, help="devices per round (at most N)")
    parser.add_argument("--scaling-rounds", type=int, default=20)
    parser.add_argument("--epsilon", type=float, default=1.0, help=f"for the whole run, at δ = {DELTA:g}")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--central-budget", type=float, default=600.0,
                        help="seconds: train the central model for fewer epochs if the estimate exceeds it")
    args = parser.parse_args()
    sizes = sorted(n for n in args.sizes if args.max_n is None or n <= args.max_n)
    start = time.perf_counter()
    cost: float | None = None  # central training, seconds per interaction per epoch
    device_cost: float | None = None  # federated rounds, seconds per device per round
    rows, notes, ratios_by_n, pilot_by_n = [], [], {}, {}
    for n in sizes:
        share = pilot_share(n)
        setting = replace(SYNTHETIC, pilot_share=share, rounds=args.scaling_rounds,
                          clients_per_round=min(n, args.cohort))
        centrals: list[Central] = []
        runs: list[Run] = []
        for seed in range(args.seeds):
            ds = synthetic(n, N_ITEMS, seed=seed)
            split = loo_split(ds.sequences())
            epochs, estimate = _central_epochs(cost, split.train_val.n_interactions(), args.central_budget)
            if estimate is not None:
                fed = (f", federated rounds ~{device_cost * min(n, args.cohort) * args.scaling_rounds / 60:.1f} min"
                       if device_cost else "")
                print(f"N = {n}, seed {seed}: estimated central training {estimate / 60:.1f} min at "
                      f"{DEFAULT_TRAINING['epochs']} epochs" + (f" -> {epochs} epochs" if
                      epochs != DEFAULT_TRAINING["epochs"] else "") + fed, flush=True)
            cen = central_model(ds, split, setting.model(), pilot_share=share, seed=seed, stage="test",
                                epochs=epochs)
            cost = cen.seconds / (cen.interactions * cen.epochs)
            centrals.append(cen)
            print(f"N = {n}, seed {seed}: central NDCG@10 {cen.ndcg:.4f} ({cen.seconds:.0f} s, "
                  f"{cen.epochs} epochs, {cen.interactions} interactions)", flush=True)
            run = run_study(ds, setting, seed=seed, epsilon=args.epsilon, stage="test",
                            label=f"N = {n}, seed {seed}")
            runs.append(run)
            s = run.study
            cohort = s.result.records[-1].participants
            device_cost = run.per_round / cohort
            print(f"N = {n}, seed {seed}: federated {s.ndcg:.4f} = {s.ndcg / cen.ndcg:.3f}x central "
                  f"(pilot {s.pilot_ndcg:.4f}); {s.devices} devices, {cohort}/round, z = "
                  f"{s.sim.noise_multiplier:.3g}, ε {s.epsilon:.3f}; {run.seconds:.0f} s "
                  f"({run.per_round:.2f} s/round, {device_cost * 1e3:.1f} ms/device)", flush=True)
        studies = [r.study for r in runs]
        cen_ndcg = [c.ndcg for c in centrals]
        ratios_by_n[n] = [s.ndcg / c for s, c in zip(studies, cen_ndcg)]
        pilot_by_n[n] = [(s.pilot_ndcg or 0.0) / c for s, c in zip(studies, cen_ndcg)]
        short = sorted({c.epochs for c in centrals if c.epochs != DEFAULT_TRAINING["epochs"]})
        if short:
            notes.append(f"N = {n}: the central model was trained for {'/'.join(map(str, short))} epochs "
                         f"instead of {DEFAULT_TRAINING['epochs']} (as many were estimated to take more "
                         f"than --central-budget = {args.central_budget:.0f} s), so its figure and the "
                         "ratio are against a less-trained central model.")
        rows.append([
            f"{n:,}", _same([s.devices for s in studies], "{:,}"),
            _same([s.result.records[-1].participants for s in studies], "{:,}"),
            _same([s.pilot_users for s in studies], "{:,}"),
            _same([s.sim.noise_multiplier for s in studies]),
            _same([s.epsilon for s in studies], "{:.2f}"),
            _mean_sd([s.pilot_ndcg for s in studies]),
            _mean_sd([s.ndcg for s in studies]),
            _mean_sd(cen_ndcg) + ("" if not short else f" ({'/'.join(map(str, short))} epochs)"),
            _ratio(ratios_by_n[n]),
            f"{np.mean([r.seconds for r in runs]):.0f} s ({np.mean([r.per_round for r in runs]):.1f} s/round)",
            f"{np.mean([c.seconds for c in centrals]):.0f} s",
        ])
    reached = [n for n in sizes if np.mean(ratios_by_n[n]) >= TARGET]
    if reached:
        n0 = reached[0]
        verdict = (f"The smallest N tried at which federated NDCG@10 reaches ≥ {TARGET:g}x central at "
                   f"ε = {args.epsilon:g} is **N = {n0:,}** ({np.mean(ratios_by_n[n0]):.3f}x); the pilot "
                   f"alone is at {np.mean(pilot_by_n[n0]):.3f}x there"
                   + (", so the private rounds are not what reaches it." if np.mean(pilot_by_n[n0]) >= TARGET
                      else "."))
    else:
        best = max(sizes, key=lambda n: np.mean(ratios_by_n[n]))
        verdict = (f"No N tried reaches {TARGET:g}x central at ε = {args.epsilon:g}; the best is "
                   f"{np.mean(ratios_by_n[best]):.3f}x at N = {best:,}.")
    text = (
        f"Synthetic data (`synthetic(N, {N_ITEMS})`, {args.seeds} seed(s): the seed draws the data, "
        f"the pilot, the training and the rounds), ε = {args.epsilon:g} at δ = {DELTA:g} for the whole "
        f"run. Each N: a pilot of min({PILOT_SHARE:.0%}, {PILOT_USERS} users) trains the first model "
        f"centrally (its epochs chosen on its own users' last events: `train_pilot`); every other user is a device; {args.scaling_rounds} rounds of "
        f"min(devices, {args.cohort}) devices (drawn without replacement when fewer than all, and "
        "accounted as such; everyone takes part in every round otherwise: plain Gaussian "
        f"accounting). Levers as `bench_federated.MOVIELENS` otherwise: {SYNTHETIC.levers()}. z is the "
        f"least noise multiplier that keeps the run within ε (dp-accounting RDP; {SIMULATED_NOISE}). "
        "NDCG@10 on the device users' test items (pilot users excluded); the central model is trained "
        "on every user's data and scored on the same users. Run wall time includes the pilot's "
        "training and the evaluations; s/round is the mean round (cohort fine-tuning, privatising "
        f"and aggregation) before the last. Whole run {(time.perf_counter() - start) / 60:.0f} min.\n\n"
    )
    headers = ["users N", "devices", "cohort / round", "pilot users", "z", f"ε spent (δ = {DELTA:g})",
               "pilot only", "federated", "central", "federated vs central", "wall / run",
               "central training"]
    body = text + table(headers, rows) + "\n\n" + verdict + "".join(f"\n\n- {note}" for note in notes)
    write_section("private-scaling", f"Private federated learning vs population size (synthetic, ε = {args.epsilon:g})",
                  shlex.join(["python", "-m", "benchmarks.bench_private_scaling", *sys.argv[1:]]), body)


if __name__ == "__main__":
    main()
