"""Server optimizers: how the mean of the devices' deltas moves the global weights (pure).

The server only ever sees the *sum* of clipped, noised deltas (secure aggregation); it divides
by the number of survivors and treats the mean as a pseudo-gradient (Reddi et al. 2021,
"Adaptive Federated Optimization"). State (FedAdam's moments) is explicit so a server can
persist it between rounds and survive a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .._exceptions import ConfigError

__all__ = ["Strategy", "StrategyState", "FedAvg", "FedAdam", "apply_federated"]


@dataclass(frozen=True, eq=False)
class StrategyState:
    """Optimizer state carried from round to round (empty for FedAvg)."""

    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    step: int = 0


class Strategy(Protocol):
    """Turns (weights, mean delta, state) into (new weights, new state)."""

    # Read-only, so frozen dataclasses (FedAvg, FedAdam) satisfy it.
    @property
    def name(self) -> str: ...

    def apply(self, weights: np.ndarray, mean_delta: np.ndarray,
              state: StrategyState) -> tuple[np.ndarray, StrategyState]: ...


def _check(weights: np.ndarray, mean_delta: np.ndarray) -> None:
    if weights.shape != mean_delta.shape:
        raise ConfigError(f"delta has shape {mean_delta.shape}, weights {weights.shape}")
    if not np.all(np.isfinite(mean_delta)):
        raise ConfigError("the aggregated delta is not finite")


@dataclass(frozen=True)
class FedAvg:
    """FedAvg (McMahan et al. 2017) with a server learning rate: ``w += lr * mean_delta``."""

    lr: float = 1.0
    name: str = "fedavg"

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"server lr must be > 0, got {self.lr}")

    def apply(self, weights: np.ndarray, mean_delta: np.ndarray,
              state: StrategyState) -> tuple[np.ndarray, StrategyState]:
        _check(weights, mean_delta)
        new = (weights + self.lr * mean_delta).astype(weights.dtype)
        return new, StrategyState(state.arrays, state.step + 1)


@dataclass(frozen=True)
class FedAdam:
    """FedAdam (Reddi et al. 2021): Adam on the pseudo-gradient ``mean_delta``.

    ``tau`` is the adaptivity floor (the paper's epsilon); no bias correction, as in the paper.
    """

    lr: float = 1e-2
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3
    name: str = "fedadam"

    def __post_init__(self) -> None:
        if not (self.lr > 0 and 0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and self.tau > 0):
            raise ConfigError("FedAdam needs lr > 0, 0 <= beta1, beta2 < 1 and tau > 0")

    def apply(self, weights: np.ndarray, mean_delta: np.ndarray,
              state: StrategyState) -> tuple[np.ndarray, StrategyState]:
        _check(weights, mean_delta)
        delta = mean_delta.astype(np.float64)
        m = state.arrays.get("m", np.zeros_like(delta))
        v = state.arrays.get("v", np.full_like(delta, self.tau**2))
        m = self.beta1 * m + (1 - self.beta1) * delta
        v = self.beta2 * v + (1 - self.beta2) * delta * delta
        new = (weights + self.lr * m / (np.sqrt(v) + self.tau)).astype(weights.dtype)
        return new, StrategyState({"m": m, "v": v}, state.step + 1)


#: The server optimizers by name: the one place their names are spelled (CLI choices, round
#: parameters, presets and the simulation all read it).
STRATEGIES: dict[str, type[FedAvg] | type[FedAdam]] = {"fedavg": FedAvg, "fedadam": FedAdam}


def make_strategy(name: str, lr: float | None = None) -> FedAvg | FedAdam:
    """The optimizer ``name`` (a key of :data:`STRATEGIES`) with server learning rate ``lr``
    (None: its own default); ConfigError for an unknown name or a bad rate."""
    kind = STRATEGIES.get(name)
    if kind is None:
        raise ConfigError(f"strategy must be one of {sorted(STRATEGIES)}, got {name!r}")
    return kind() if lr is None else kind(lr=lr)


def apply_federated(strategy: Strategy, weights: np.ndarray, mean: np.ndarray, federated: np.ndarray,
           prior: StrategyState) -> tuple[np.ndarray, StrategyState]:
    """The server optimizer's step with the decoded ``mean`` of the federated entries.

    The mean is put back into the full weight vector with zeros at the frozen entries, so the
    optimizer and its stored state keep the model's full shape. The frozen entries sit the round
    out: their weights are copied from ``weights`` (bit for bit; FedAdam would otherwise still
    move a weight whose momentum an earlier round left non-zero), and the optimizer's state
    there is what it was before the round (a fresh state: what a zero pseudo-gradient makes).
    """
    full = np.zeros(weights.shape, np.float64)
    full[federated] = mean
    new_weights, new_state = strategy.apply(weights, full, prior)
    if federated.all():
        return new_weights, new_state
    frozen = ~federated
    new_weights = np.array(new_weights, copy=True)
    new_weights[frozen] = weights[frozen]
    arrays = {}
    for name, array in new_state.arrays.items():
        array = np.array(array, copy=True)
        if name in prior.arrays:
            array[frozen] = prior.arrays[name][frozen]
        arrays[name] = array
    return new_weights, StrategyState(arrays, new_state.step)
