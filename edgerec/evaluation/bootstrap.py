"""Paired bootstrap over users for the difference of two methods' per-user metrics (pure)."""

from __future__ import annotations

import numpy as np

from .._exceptions import ConfigError

__all__ = ["paired_bootstrap"]

_BATCH = 256  # replicates drawn at once: bounds memory at _BATCH * n_users indices


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    *,
    n_boot: int = 2000,
    seed: int | np.random.Generator = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over users and its percentile bootstrap interval (95% by default).

    ``a[i]`` and ``b[i]`` are the same user's metric under two methods; users are resampled with
    replacement, keeping the pairs together, so the interval reflects per-user variation only.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ConfigError(f"a and b must be equal-length non-empty 1-d arrays, got {np.shape(a)} and {np.shape(b)}")
    if n_boot < 1 or not 0 < level < 1:
        raise ConfigError(f"need n_boot >= 1 and 0 < level < 1, got {n_boot} and {level}")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, _BATCH):
        size = min(_BATCH, n_boot - start)
        picks = rng.integers(0, len(diff), size=(size, len(diff)))
        means[start : start + size] = diff[picks].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return float(diff.mean()), float(lo), float(hi)
