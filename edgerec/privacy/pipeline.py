"""The whole device-side chain, clip -> noise -> encode, and its server-side inverse.

Pure conveniences over ``clipping``, ``noise`` and ``fixedpoint`` for the federated simulation,
the device round driver and the server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._exceptions import ConfigError
from ._checks import positive_float
from .clipping import clip_l2
from .fixedpoint import FixedPoint, decode_sum, encode
from .noise import DistributedNoise, add_noise

__all__ = ["PrivateDelta", "aggregate_decode", "privatize"]


@dataclass(frozen=True, eq=False)  # eq=False: == on numpy arrays is elementwise, not a bool
class PrivateDelta:
    """What may leave a device (before masking), plus facts for its privacy ledger.

    Attributes:
        encoded: the clipped, noised delta in fixed point, ``uint32`` (read-only).
        original_norm: L2 norm of the delta before clipping.
        clipped: whether clipping shortened it (``original_norm > clip``).
    """

    encoded: np.ndarray
    original_norm: float
    clipped: bool


def privatize(
    delta: np.ndarray,
    *,
    clip: float,
    noise: DistributedNoise | None,
    fp: FixedPoint,
    rng: np.random.Generator,
) -> PrivateDelta:
    """Clip ``delta`` to L2 norm ``clip``, add this device's noise share, encode to fixed point.

    ``noise=None`` adds no noise (secure aggregation only: no differential privacy).

    Raises:
        ConfigError: bad or NaN/inf input, or parameters that disagree: the noise was
            calibrated to a smaller clip than ``clip`` (the sum would carry less than its
            stated multiplier), or ``fp`` has less range than ``clip`` and the noise need.
    """
    bound = positive_float(clip, "clip")
    _check_consistent(bound, noise, fp)
    clipped, norm = clip_l2(delta, bound)
    noised = clipped if noise is None else add_noise(clipped, noise, rng)
    encoded = encode(noised, fp, rng)
    encoded.flags.writeable = False
    return PrivateDelta(encoded=encoded, original_norm=norm, clipped=norm > bound)


def aggregate_decode(sum_u32: np.ndarray, fp: FixedPoint, n: int) -> np.ndarray:
    """Mean float64 delta of ``n`` devices from the modular sum of their encodings.

    Raises:
        ConfigError: as ``decode_sum``.
    """
    return decode_sum(sum_u32, fp, n) / n


def _check_consistent(clip: float, noise: DistributedNoise | None, fp: FixedPoint) -> None:
    # A noise spec calibrated to a larger clip only adds noise (safe side); a smaller one would
    # silently under-noise relative to the z the ledger and the accountant report.
    if noise is not None and noise.clip < clip:
        raise ConfigError(f"noise is calibrated to clip {noise.clip}, below the clip {clip}")
    if fp.clip < clip:
        raise ConfigError(f"fixed point covers clip {fp.clip}, below the clip {clip}")
    needed = 0.0 if noise is None else noise.per_client_std
    # Less headroom than the noise needs would clamp far more often than fp documents.
    if fp.noise_std < needed and not math.isclose(fp.noise_std, needed, rel_tol=1e-12):
        raise ConfigError(
            f"fixed point has headroom for noise std {fp.noise_std}, below the {needed} added"
        )
