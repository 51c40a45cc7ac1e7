"""The whole device-side chain, clip -> quantize -> discrete Gaussian noise -> modular code, and
its server-side inverse.

Pure conveniences over ``clipping``, ``fixedpoint`` and ``discrete`` for the federated
simulation, the device round driver and the server. Randomness (stochastic rounding and noise)
comes from the ``RandomSource`` passed in: ``SecureRandom.from_os()`` on a device,
``SecureRandom.reproducible(seed)`` in simulations and tests (not private).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._exceptions import ConfigError
from ._checks import positive_float, random_source
from .clipping import clip_l2
from .discrete import discrete_gaussian
from .fixedpoint import FixedPoint, decode_sum, quantize, to_residues
from .noise import DistributedNoise
from .random import RandomSource

__all__ = ["PrivateDelta", "aggregate_decode", "privatize"]


@dataclass(frozen=True, eq=False)  # eq=False: == on numpy arrays is elementwise, not a bool
class PrivateDelta:
    """What may leave a device (before masking), plus facts for its privacy ledger.

    Attributes:
        encoded: the clipped, quantized, noised delta modulo ``2^bits``, ``uint32`` (read-only).
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
    source: RandomSource,
) -> PrivateDelta:
    """Clip ``delta`` to L2 norm ``clip``, quantize it to ``fp``'s grid, add this device's
    discrete Gaussian share (``fp.grid_sigma`` per coordinate), encode modulo ``2^fp.bits``.

    ``noise=None`` or a zero multiplier adds no noise (secure aggregation only: no
    differential privacy); ``fp`` must then be a code without noise too. ``delta`` has
    ``fp.dimension`` entries (any shape). Noise drawn from a ``source`` whose ``private`` is
    False (``SecureRandom.reproducible``) is known to whoever knows the seed: fine for a
    simulation, no privacy for a real device.

    Raises:
        ConfigError: bad or NaN/inf input, or parameters that disagree: ``clip`` above the
            clip the noise or the code were built for (the sum would carry less than its
            stated multiplier), a noise spec whose multiplier or fewest survivors differ
            from ``fp``'s, or a delta of another dimension.
    """
    bound = positive_float(clip, "clip")
    source = random_source(source)
    noisy = _check_consistent(bound, noise, fp)
    arr = np.asarray(delta)
    if arr.size != fp.dimension:
        raise ConfigError(f"delta has {arr.size} entries, the code was built for {fp.dimension}")
    clipped, norm = clip_l2(arr, bound)
    ints = quantize(clipped, fp, source)
    if noisy:
        ints = ints + discrete_gaussian(fp.grid_sigma, ints.size, source).reshape(ints.shape)
    encoded = to_residues(ints, fp)
    encoded.flags.writeable = False
    return PrivateDelta(encoded=encoded, original_norm=norm, clipped=norm > bound)


def aggregate_decode(sum_u32: np.ndarray, fp: FixedPoint, n: int) -> np.ndarray:
    """Mean float64 delta of ``n`` devices from the modular sum of their encodings.

    Raises:
        ConfigError: as ``decode_sum`` (a sum that ``n`` honest encodings cannot produce).
    """
    return decode_sum(sum_u32, fp, n) / n


def _check_consistent(clip: float, noise: DistributedNoise | None, fp: FixedPoint) -> bool:
    """Whether to add noise; ConfigError if the parameters would under-noise or mislabel it."""
    if not isinstance(fp, FixedPoint):
        raise ConfigError(f"fp must be a FixedPoint, got {type(fp).__name__}")
    # The grid's sensitivity (hence the noise) is computed for fp.clip; a larger clip would
    # silently under-noise relative to the z the ledger and the accountant report.
    if fp.clip < clip:
        raise ConfigError(f"fixed point covers clip {fp.clip}, below the clip {clip}")
    noisy = noise is not None and noise.noise_multiplier > 0
    if not noisy:
        if fp.noise_multiplier > 0:
            raise ConfigError(
                f"fp was built for noise multiplier {fp.noise_multiplier} but no noise was"
                " given: pass the DistributedNoise it was built for, or a code without noise"
            )
        return False
    assert noise is not None
    if noise.clip < clip:
        raise ConfigError(f"noise is calibrated to clip {noise.clip}, below the clip {clip}")
    if (noise.noise_multiplier, noise.min_survivors) != (fp.noise_multiplier, fp.min_survivors):
        raise ConfigError(
            f"noise (z={noise.noise_multiplier}, min_survivors={noise.min_survivors}) does not"
            f" match the code (z={fp.noise_multiplier}, min_survivors={fp.min_survivors})"
        )
    return True
