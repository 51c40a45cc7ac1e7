"""``edgerec simulate``: a federated study in this process, printed as a table or JSON lines.

Kept apart from ``edgerec.cli`` (which parses the arguments and calls ``run_simulate``) so that
module stays a thin dispatcher.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable


def run_simulate(args: argparse.Namespace, spec: Any, bar: Callable[..., Any] | None) -> int:
    """Run the study ``args`` describe on the dataset ``spec`` names; ``bar`` (tqdm-like, or
    None) shows the rounds."""
    from dataclasses import replace

    from .federated.simulation import SIMULATED_NOISE, SimulationConfig
    from .model.params import expand_frozen
    from .workflows import federated_study, load_data

    dataset = load_data(spec)
    frozen = frozenset(expand_frozen(n for n in (args.frozen or "").split(",") if n))
    local = replace(SimulationConfig().local, frozen=frozen)
    sim = SimulationConfig(rounds=args.rounds, clients_per_round=args.clients, clip=args.clip, local=local,
                           noise_multiplier=args.noise or 0.0, strategy=args.strategy,
                           eval_every=args.eval_every, seed=args.seed,
                           **({} if args.server_lr is None else {"server_lr": args.server_lr}))
    progress = (lambda it: bar(it, total=sim.rounds, desc="rounds")) if bar else None
    study = federated_study(dataset, sim, pilot_share=args.pilot_share, epsilon=args.epsilon,
                            central=not args.no_central, progress=progress)
    sim = study.sim
    if args.json:  # one object per evaluated round, then the summary: JSON lines
        for r in study.result.records:
            if r.ndcg is not None:
                print(json.dumps({**r.__dict__, **({"epsilon_note": SIMULATED_NOISE} if r.epsilon is not None else {})}))
        print(json.dumps(simulate_summary(study)))
        return 0
    cohort = min(sim.clients_per_round, study.devices)
    print(f"federated on {dataset.name}: {study.devices} devices (one per user), {study.pilot_users} "
          f"pilot users, {'every device' if cohort >= study.devices else cohort} per round, clip "
          f"{sim.clip}, noise multiplier {sim.noise_multiplier:.4g}, {sim.strategy}")
    if args.epsilon is not None:
        print(f"noise multiplier z = {sim.noise_multiplier:.4g} chosen so that {sim.rounds} rounds "
              f"spend at most epsilon {args.epsilon:g} at delta {sim.delta:g}")
    if sim.noise_multiplier > 0:
        print(f"epsilon at delta {sim.delta:g}: {'plain Gaussian releases (everyone takes part)' if cohort >= study.devices else 'fixed-size cohorts drawn without replacement'}, "
              f"zero-out neighbours, dp-accounting RDP ({SIMULATED_NOISE})")
    print(f"{'round':>5} {'devices':>8} {'clipped':>8} {'epsilon':>9} {'HR@10':>8} {'NDCG@10':>8}")
    for r in study.result.records:
        if r.ndcg is None:
            continue
        eps = "-" if r.epsilon is None else f"{r.epsilon:.2f}*"
        print(f"{r.round:>5} {r.participants:>8} {r.clipped:>8.2f} {eps:>9} {r.hr:>8.4f} {r.ndcg:>8.4f}")
    for label, value in (("pilot model alone", study.pilot_ndcg), ("central model", study.central_ndcg)):
        if value is not None:
            print(f"{label}: NDCG@10 {value:.4f}")
    if sim.noise_multiplier > 0:
        print(f"* {SIMULATED_NOISE}")
    return 0


def simulate_summary(study: Any) -> dict[str, Any]:
    """The last line of ``simulate --json``: what a run achieved and spent."""
    eps = study.epsilon
    return {"epsilon": "inf" if eps is None else eps, "delta": study.sim.delta,
            "noise_multiplier": study.sim.noise_multiplier, "rounds": study.sim.rounds,
            "devices": study.devices, "pilot_users": study.pilot_users,
            "ndcg@10": study.ndcg, "central_ndcg@10": study.central_ndcg,
            "pilot_ndcg@10": study.pilot_ndcg,
            "vs_central": None if not study.central_ndcg else study.ndcg / study.central_ndcg}
