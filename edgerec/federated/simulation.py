"""Federated learning simulated in one process: one device per user, no network (pure).

Each round samples a fixed-size cohort of devices, each fine-tunes the global model on its own
sequence, and sends what a real device sends (``edgerec.privacy.privatize``): its delta clipped
to C, quantized to the fixed-point grid, plus its distributed discrete Gaussian share. The sum
of the encodings is what secure aggregation would reveal (its masks cancel, so they are left
out here); the server decodes the mean and applies its optimizer.

Privacy figures: every round is accounted as what it runs, a cohort of ``m`` devices drawn
without replacement from the devices holding data, with dp-accounting
(``releases_epsilon([Release(holders, m, z)] * rounds)``, zero-out neighbours). The noise comes
from ``SecureRandom.reproducible`` derived from ``seed``, so runs are reproducible and the
noise is *not private* (anyone with the seed can recompute it): the epsilon is what the same
run would give with private noise, which a simulation can only report, not provide.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

import numpy as np

from .._exceptions import ConfigError
from ..types import Sequences
from ..finetune import FineTuneConfig, fine_tune
from ..model.config import ModelConfig
from ..model.params import Params, federated_mask, flatten, param_names, unflatten
from ..privacy import (
    DistributedNoise,
    FixedPoint,
    RandomSource,
    Release,
    SecureRandom,
    aggregate_decode,
    privatize,
    sum_encodings,
)
from .strategies import STRATEGIES, Strategy, StrategyState, make_strategy

__all__ = ["SIMULATED_NOISE", "SimulationConfig", "RoundRecord", "SimulationResult", "simulate"]

#: What to print next to a simulation's epsilon: its noise is seeded, hence known.
SIMULATED_NOISE = "simulated; seeded noise: not private"

Evaluate = Callable[[Params], tuple[float, float]]  # params -> (hr, ndcg)


@dataclass(frozen=True)
class SimulationConfig:
    """One federated run. ``noise_multiplier`` 0 means clipping only (no DP guarantee)."""

    rounds: int = 60
    clients_per_round: int = 100
    # Local SGD (see edgerec.training.SGD for why not Adam), settings chosen on MovieLens-100K
    # validation items, like the server lr and the clip bound below.
    local: FineTuneConfig = field(default_factory=lambda: FineTuneConfig(
        epochs=2, adapter_epochs=0, optimizer="sgd", lr=0.2, batch_size=64))
    clip: float = 1.0
    noise_multiplier: float = 0.0
    strategy: str = "fedadam"
    server_lr: float = 0.08
    # Cosine decay of the server lr to 10% over the run: late rounds refine instead of
    # oscillating between cohorts' views (each round sees a different tenth of the devices).
    decay: bool = True
    delta: float = 1e-5
    eval_every: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.clients_per_round < 1 or self.eval_every < 1:
            raise ConfigError("rounds, clients_per_round and eval_every must be >= 1")
        if not (self.clip > 0 and self.noise_multiplier >= 0 and self.server_lr > 0):
            raise ConfigError("need clip > 0, noise_multiplier >= 0, server_lr > 0")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {sorted(STRATEGIES)}, got {self.strategy!r}")

    def make_strategy(self, round_: int = 1) -> Strategy:
        """The server optimizer for round ``round_`` (1-based), with the decayed lr."""
        lr = self.server_lr
        if self.decay:
            lr *= 0.1 + 0.45 * (1 + np.cos(np.pi * (round_ - 1) / max(1, self.rounds - 1)))
        return make_strategy(self.strategy, lr)


@dataclass(frozen=True)
class RoundRecord:
    """What one round did, and (every ``eval_every`` rounds) how good the model was after it."""

    round: int
    participants: int
    mean_norm: float  # of the devices' deltas before clipping
    clipped: float  # share of devices whose delta was clipped
    # Cumulative after this round (fixed-size cohorts, dp-accounting RDP); None without noise.
    # The simulation's noise is seeded (SIMULATED_NOISE): the figure a private run would have.
    epsilon: float | None
    hr: float | None = None
    ndcg: float | None = None


@dataclass(frozen=True, eq=False)
class SimulationResult:
    params: Params
    records: tuple[RoundRecord, ...]


def _round(global_params: Params, features: np.ndarray, seqs: Sequences, devices: np.ndarray,
           cfg: ModelConfig, sim: SimulationConfig, fp: FixedPoint, noise: DistributedNoise | None,
           rng: np.random.Generator, source: RandomSource,
           mask: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Mean decoded delta of one round (zero where frozen), mean pre-clip norm, share clipped."""
    encodings, norms, clipped = [], [], 0
    for u in devices:
        one = Sequences([seqs.items[u]], [seqs.signals[u]])
        local = replace(sim.local, seed=int(rng.integers(2**31)))
        update = fine_tune(global_params, features, one, cfg, local)
        # Only the federated weights are clipped, noised and summed: frozen ones did not move.
        private = privatize(update.delta[mask], clip=sim.clip, noise=noise, fp=fp, source=source)
        encodings.append(private.encoded)
        norms.append(private.original_norm)
        clipped += private.clipped
    mean = np.zeros(mask.size, np.float64)
    mean[mask] = aggregate_decode(sum_encodings(encodings), fp, len(devices))
    return mean, float(np.mean(norms)), clipped / len(devices)


def _epsilon(sim: SimulationConfig, population: int, cohort: int, rounds: int) -> float | None:
    if sim.noise_multiplier == 0:
        return None
    from ..privacy import releases_epsilon

    return releases_epsilon([Release(population, cohort, sim.noise_multiplier)] * rounds, sim.delta)


def _noise_source(seed: int) -> RandomSource:
    # Its own stream, derived from the seed but separate from the numpy generator that picks
    # cohorts and local seeds. reproducible(): private=False, which is the point here.
    return SecureRandom.reproducible(f"edgerec.federated.simulate noise {seed}".encode())


def simulate(init: Params, features: np.ndarray, seqs: Sequences, cfg: ModelConfig,
             sim: SimulationConfig, *, evaluate: Evaluate | None = None,
             progress: Callable[[Iterable[int]], Iterable[int]] | None = None) -> SimulationResult:
    """Run ``sim.rounds`` rounds from ``init`` over devices holding ``seqs`` (one per user)."""
    rng = np.random.default_rng(sim.seed)
    source = _noise_source(sim.seed)
    holders = np.array([u for u in range(len(seqs)) if len(seqs.items[u]) > 0])
    m = min(sim.clients_per_round, len(holders))
    names = param_names(cfg)
    weights, state = flatten(init, names), StrategyState()
    mask = federated_mask(init, names, sim.local.frozen)
    noise = DistributedNoise(sim.clip, sim.noise_multiplier, m) if sim.noise_multiplier > 0 else None
    # Every device survives here, so the noise is calibrated to the whole cohort of m.
    dims = int(mask.sum())
    fp = FixedPoint.for_noise(noise, m, dims) if noise else FixedPoint(sim.clip, 0.0, m, m, dims)
    records = []
    rounds: Iterable[int] = range(1, sim.rounds + 1)
    for r in progress(rounds) if progress else rounds:
        params = unflatten(weights, init, names)
        devices = rng.choice(holders, size=m, replace=False)
        mean, norm, clipped = _round(params, features, seqs, devices, cfg, sim, fp, noise, rng,
                                     source, mask)
        weights, state = sim.make_strategy(r).apply(weights, mean.astype(np.float32), state)
        hr = ndcg = None
        if evaluate is not None and (r % sim.eval_every == 0 or r == sim.rounds):
            hr, ndcg = evaluate(unflatten(weights, init, names))
        eps = _epsilon(sim, len(holders), m, r)
        records.append(RoundRecord(r, m, norm, clipped, eps, hr, ndcg))
    return SimulationResult(unflatten(weights, init, names), tuple(records))
