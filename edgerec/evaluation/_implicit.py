"""Adapter over the optional ``implicit`` library: ALS and BPR matrix factorisation peers.

``implicit`` is imported inside the fit functions only, so edgerec works without it
(``pip install edgerec[peers]`` brings it in).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ..types import Catalogue, Sequences
from ._matrix import binary_matrix

__all__ = ["FactorModel", "fit_als", "fit_bpr", "implicit_installed"]


def implicit_installed() -> bool:
    """Whether the ``implicit`` library can be imported."""
    import importlib.util

    return importlib.util.find_spec("implicit") is not None


@dataclass(frozen=True, eq=False)
class FactorModel:
    """Scores are dot products of the fitted user and item factors."""

    user_factors: np.ndarray
    item_factors: np.ndarray

    def score(self, users: np.ndarray, histories: Sequences) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T


def fit_als(
    train: Sequences,
    catalogue: Catalogue,
    seed: int,
    *,
    factors: int = 64,
    regularization: float = 0.01,
    alpha: float = 1.0,
    iterations: int = 15,
    num_threads: int = 1,
) -> FactorModel:
    """implicit's ALS on the binary user-item matrix; ``alpha`` scales the confidence of positives."""
    from implicit.cpu.als import AlternatingLeastSquares

    with _quiet_blas():
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            random_state=seed,
            num_threads=num_threads,
        )
        model.fit(binary_matrix(train, len(catalogue)), show_progress=False)
    return _factors(model)


def fit_bpr(
    train: Sequences,
    catalogue: Catalogue,
    seed: int,
    *,
    factors: int = 64,
    learning_rate: float = 0.01,
    regularization: float = 0.01,
    iterations: int = 100,
    num_threads: int = 1,
) -> FactorModel:
    """implicit's BPR (its item factors carry a bias column; the dot product includes it)."""
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    with _quiet_blas():
        model = BayesianPersonalizedRanking(
            factors=factors,
            learning_rate=learning_rate,
            regularization=regularization,
            iterations=iterations,
            random_state=seed,
            num_threads=num_threads,
        )
        model.fit(binary_matrix(train, len(catalogue)), show_progress=False)
    return _factors(model)


@contextmanager
def _quiet_blas() -> Iterator[None]:
    """One BLAS thread while implicit runs: it warns otherwise, and threads oversubscribe the cores."""
    from threadpoolctl import threadpool_limits  # a dependency of implicit

    with threadpool_limits(1, user_api="blas"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(OpenBLAS|MKL).*threads", category=RuntimeWarning)
        yield


def _factors(model: Any) -> FactorModel:
    return FactorModel(_numpy(model.user_factors), _numpy(model.item_factors))


def _numpy(matrix: Any) -> np.ndarray:
    # GPU models hold implicit.gpu.Matrix objects; CPU models plain arrays.
    to_numpy = getattr(matrix, "to_numpy", None)
    return np.asarray(to_numpy() if to_numpy else matrix, dtype=np.float32)
