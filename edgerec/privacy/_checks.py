"""Parameter checks shared by the privacy modules. Every failure is a ConfigError."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

from .._exceptions import ConfigError
from .random import RandomSource


def positive_float(value: object, name: str) -> float:
    """``value`` as a float, or ConfigError unless it is a finite number > 0."""
    result = finite_float(value, name)
    if result <= 0.0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
    return result


def nonnegative_float(value: object, name: str) -> float:
    """``value`` as a float, or ConfigError unless it is a finite number >= 0."""
    result = finite_float(value, name)
    if result < 0.0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")
    return result


def finite_float(value: object, name: str) -> float:
    """``value`` as a float, or ConfigError unless it is a finite real number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError(f"{name} must be a real number, got {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return result


def int_at_least(value: object, minimum: int, name: str) -> int:
    """``value`` as an int, or ConfigError unless it is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def finite_array(vec: object, what: str = "delta") -> np.ndarray:
    """``vec`` as a float64 array, or ConfigError if an entry is NaN or infinite.

    A NaN or inf delta means local training diverged. It must never be clipped, noised and
    sent: NaN would poison the whole aggregate, and inf has no direction to clip along.
    """
    try:
        arr = np.asarray(vec, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be numeric: {exc}") from exc
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{what} contains NaN or infinite values; refusing to process it")
    return arr


def random_source(source: object) -> RandomSource:
    """``source`` itself, or ConfigError unless it is a ``RandomSource`` (e.g. ``SecureRandom``).

    Pure code takes its randomness from the caller (DESIGN.md). A ``numpy.random.Generator``
    is refused on purpose: privacy noise must come from a cryptographically secure stream.
    """
    if not isinstance(source, RandomSource) or isinstance(source, type):
        raise ConfigError(
            "source must be a RandomSource (edgerec.privacy.SecureRandom), got "
            f"{type(source).__name__}"
        )
    return source
