"""L2 clipping of a model delta: the first step before anything leaves a device.

Clipping bounds how far one device can move the aggregate, i.e. the *sensitivity* that the
Gaussian noise and the accountant are calibrated to. Pure: no I/O, no randomness.
"""

from __future__ import annotations

import numpy as np

from ._checks import finite_array, positive_float

__all__ = ["clip_l2", "l2_norm"]

# Float rounding in the norm and in the multiplication could leave ||clipped|| a few ulps above
# the bound, and the bound is the sensitivity the privacy guarantee assumes. Aiming about 1e-9
# (relative) below it makes "||clipped|| <= bound" hold despite rounding; the utility cost is nil.
_SHRINK = 1.0 - 2.0**-30


def l2_norm(vec: np.ndarray) -> float:
    """Euclidean norm over all entries of ``vec``, without overflow for huge finite values.

    Dividing by the largest magnitude first keeps the sum of squares in range (a plain
    ``np.linalg.norm`` of a vector of 1e200s is inf).
    """
    arr = np.asarray(vec, dtype=np.float64)
    peak = float(np.max(np.abs(arr))) if arr.size else 0.0
    if peak == 0.0:
        return 0.0
    return peak * float(np.sqrt(np.sum(np.square(arr / peak))))


def clip_l2(vec: np.ndarray, bound: float) -> tuple[np.ndarray, float]:
    """Scale ``vec`` down so its L2 norm is at most ``bound``; return ``(clipped, norm)``.

    ``norm`` is the norm of the input, before clipping (for the ledger and for tuning the
    bound). A vector within the bound comes back unchanged (as a float64 copy); a longer one
    keeps its direction and ends up a hair under the bound. The norm is taken over all entries
    whatever the shape, and the shape is kept. The zero vector and empty arrays are fine.

    Raises:
        ConfigError: ``bound`` is not finite and > 0, or ``vec`` has a NaN or infinite entry.
    """
    limit = positive_float(bound, "clip bound")
    arr = finite_array(vec).copy()
    norm = l2_norm(arr)
    if norm <= limit:
        return arr, norm
    # Work on arr / peak (entries in [-1, 1]) so neither the norm nor the product can overflow.
    unit = arr / float(np.max(np.abs(arr)))
    factor = limit / float(np.sqrt(np.sum(np.square(unit)))) * _SHRINK
    return unit * factor, norm
