"""What the evaluation protocol returns: one frozen record per method, and the whole run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from .._exceptions import ConfigError
from .bootstrap import paired_bootstrap

__all__ = ["FitRecord", "MethodResult", "ProtocolResult"]


@dataclass(frozen=True)
class FitRecord:
    """One fit of a method and its scoring, as the protocol ran it (in order).

    ``stage`` is "tune" (fitted on ``train``, scored on the validation item) or "test" (fitted
    on ``train_val``, scored on the test item). Seconds are wall time from the protocol's clock.
    """

    method: str
    stage: str
    hparams: dict[str, Any]
    seed: int
    fit_seconds: float
    score_seconds: float


@dataclass(frozen=True, eq=False)
class MethodResult:
    """One method's outcome under LOO-full.

    ``hparams`` is the config chosen on validation NDCG@k (``val_ndcg``); ``val_grid`` lists every
    config tried with its validation NDCG@k. ``hr``/``ndcg`` are test HR@k/NDCG@k averaged over
    users and seeds; ``*_per_seed`` give one value per final fit (a single one for unseeded
    methods). ``user_hr``/``user_ndcg`` are per evaluated user, averaged over seeds, aligned with
    ``ProtocolResult.eval_users`` (for the paired bootstrap). ``fit_seconds`` is the mean wall time
    of one final fit; ``total_seconds`` covers tuning, refits and scoring; ``fits`` times each fit
    and its scoring.
    """

    name: str
    hparams: dict[str, Any]
    val_ndcg: float
    val_grid: tuple[tuple[dict[str, Any], float], ...]
    hr: float
    ndcg: float
    hr_per_seed: tuple[float, ...]
    ndcg_per_seed: tuple[float, ...]
    user_hr: np.ndarray
    user_ndcg: np.ndarray
    fit_seconds: float
    total_seconds: float
    fits: tuple[FitRecord, ...] = ()


@dataclass(frozen=True, eq=False)
class ProtocolResult:
    """All methods' results on one split; index by method name."""

    methods: tuple[MethodResult, ...]
    eval_users: np.ndarray
    k: int
    seeds: tuple[int, ...]

    def __getitem__(self, name: str) -> MethodResult:
        for result in self.methods:
            if result.name == name:
                return result
        raise KeyError(f"no method {name!r}; have {self.names}")

    def __iter__(self) -> Iterator[MethodResult]:
        return iter(self.methods)

    def __len__(self) -> int:
        return len(self.methods)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.methods]

    def compare(
        self, a: str, b: str, *, metric: str = "ndcg", n_boot: int = 2000, seed: int | np.random.Generator = 0
    ) -> tuple[float, float, float]:
        """Mean per-user difference ``a - b`` in ``metric`` ("ndcg" or "hr") with its 95% interval."""
        if metric not in ("ndcg", "hr"):
            raise ConfigError(f"metric must be 'ndcg' or 'hr', got {metric!r}")
        field = f"user_{metric}"
        return paired_bootstrap(getattr(self[a], field), getattr(self[b], field), n_boot=n_boot, seed=seed)
