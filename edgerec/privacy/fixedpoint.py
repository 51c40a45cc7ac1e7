"""Fixed-point encoding of noised deltas into Z_(2^bits), for secure aggregation.

Secure aggregation adds vectors of ``uint32`` modulo 2^32 (its masks cancel only in modular
arithmetic), so each device turns its clipped, noised float delta into integers:

1. **clamp** each coordinate to ``[-R, R]``, where ``R = C + tail_sigmas * sigma``: a clipped
   vector has ``|x_i| <= ||x|| <= C``, and per-device noise of std ``sigma`` exceeds
   ``tail_sigmas * sigma`` in magnitude with probability ``erfc(tail_sigmas / sqrt(2))``
   (about 1.2e-15 per coordinate at the default 8 sigmas, so about 1.2e-9 that *any* of 10^6
   coordinates is clamped; the headroom costs ``log2(R / C)`` bits of resolution);
2. **scale** by ``scale`` and **round stochastically** to an integer ``k`` (up with probability
   equal to the fractional part), so ``E[k] = x * scale`` exactly: rounding adds no bias to the
   average, only variance below ``1 / (4 * scale**2)`` per coordinate and device;
3. store ``k`` in two's complement modulo ``2^bits``.

Every encoding has ``|k| <= max_int = floor((2^(bits-1) - 1) / max_clients)`` and ``scale`` is
``(max_int - 1) / R`` (the ``-1`` leaves room for rounding up), so the true integer sum of up to
``max_clients`` encodings stays within ``[-(2^(bits-1) - 1), 2^(bits-1) - 1]`` and reading the
modular sum as a signed number recovers it exactly: no wrap-around, whatever the inputs.

Privacy note: the accountant's (epsilon, delta) is for the continuous Gaussian sum. Rounding at
resolution ``1 / scale`` (one device's noise sigma typically spans thousands of grid steps or
more) and clamping with the probability above are outside that analysis: their effect is
negligible but not formally accounted. A formal treatment would add integer noise instead (the
distributed discrete Gaussian of Kairouz et al., 2021).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._exceptions import ConfigError
from ._checks import finite_array, generator, int_at_least, nonnegative_float, positive_float
from .noise import DistributedNoise

__all__ = ["FixedPoint", "decode_sum", "encode", "rounding_bound", "sum_encodings"]

_MAX_BITS = 32  # secure aggregation works on uint32


@dataclass(frozen=True)
class FixedPoint:
    """Parameters of the fixed-point code; every derived quantity is a property.

    Attributes:
        clip: L2 clip bound ``C`` of a device's delta.
        noise_std: std of the noise *one device* adds per coordinate (0 for none).
        max_clients: the most encodings that will ever be summed (the round's cohort size).
        bits: width of the modular group, 2..32 (secure aggregation uses 32).
        tail_sigmas: headroom for noise, in per-device noise stds, before clamping.
    """

    clip: float
    noise_std: float
    max_clients: int
    bits: int = 32
    tail_sigmas: float = 8.0

    def __post_init__(self) -> None:
        positive_float(self.clip, "clip")
        nonnegative_float(self.noise_std, "noise_std")
        int_at_least(self.max_clients, 1, "max_clients")
        if int_at_least(self.bits, 2, "bits") > _MAX_BITS:
            raise ConfigError(f"bits must be <= {_MAX_BITS}, got {self.bits}")
        positive_float(self.tail_sigmas, "tail_sigmas")
        if self.scale < 1.0:
            raise ConfigError(
                f"no resolution left: {self.max_clients} clients x clamp range {self.clamp_range:g}"
                f" in {self.bits} bits gives scale {self.scale:g} < 1; use fewer clients, a"
                " smaller clip or less noise"
            )

    @classmethod
    def for_noise(
        cls, noise: DistributedNoise, max_clients: int, bits: int = 32, tail_sigmas: float = 8.0
    ) -> FixedPoint:
        """The code matching a noise spec: same clip, headroom for its per-device noise."""
        return cls(noise.clip, noise.per_client_std, max_clients, bits, tail_sigmas)

    @property
    def clamp_range(self) -> float:
        """``R = clip + tail_sigmas * noise_std``: coordinates are clamped to ``[-R, R]``."""
        return self.clip + self.tail_sigmas * self.noise_std

    @property
    def max_int(self) -> int:
        """Largest ``|k|`` of one encoding, so that ``max_clients`` of them cannot wrap."""
        return (2 ** (self.bits - 1) - 1) // self.max_clients

    @property
    def scale(self) -> float:
        """Grid steps per unit: ``R * scale + 1 <= max_int`` leaves room for rounding up."""
        return (self.max_int - 1) / self.clamp_range

    @property
    def resolution(self) -> float:
        """One grid step, ``1 / scale``: the most stochastic rounding moves one coordinate."""
        return 1.0 / self.scale

    @property
    def clamp_probability(self) -> float:
        """Upper bound on the chance that one coordinate of a clipped, noised vector is clamped.

        ``|x_i| <= C``, so clamping needs ``|noise_i| > tail_sigmas * noise_std``.
        """
        return math.erfc(self.tail_sigmas / math.sqrt(2.0)) if self.noise_std > 0 else 0.0


def encode(vec: np.ndarray, fp: FixedPoint, rng: np.random.Generator) -> np.ndarray:
    """Encode a (clipped, noised) float vector as ``uint32`` residues modulo ``2^fp.bits``.

    Coordinates are clamped to ``[-R, R]``, scaled and stochastically rounded, so that
    ``E[decode(encode(x))] == x`` for ``|x_i| <= R``. Any shape is accepted and kept.

    Raises:
        ConfigError: ``vec`` has a NaN or infinite entry, or ``rng`` is not a Generator.
    """
    arr = finite_array(vec, "vector to encode")
    rng = generator(rng)
    bound = fp.clamp_range
    scaled = np.clip(arr, -bound, bound) * fp.scale
    low = np.floor(scaled)
    # Round up with probability equal to the fractional part: unbiased.
    round_up = rng.random(size=scaled.shape) < (scaled - low)
    ints = low.astype(np.int64) + round_up
    # By construction |ints| <= max_int already; the clip only guards against float surprises.
    ints = np.clip(ints, -fp.max_int, fp.max_int)
    return np.mod(ints, 2**fp.bits).astype(np.uint32)


def sum_encodings(encodings: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Sum ``uint32`` encodings modulo 2^32 (what secure aggregation reveals), stacked on axis 0.

    Raises:
        ConfigError: no encodings, or they are not ``uint32``.
    """
    stacked = np.asarray(encodings)
    if stacked.dtype != np.uint32 or stacked.ndim < 1 or stacked.shape[0] == 0:
        raise ConfigError("sum_encodings needs a non-empty stack of uint32 encodings")
    # dtype=uint32 makes numpy accumulate with wrap-around (its default would widen to uint64).
    return np.sum(stacked, axis=0, dtype=np.uint32)


def decode_sum(summed: np.ndarray, fp: FixedPoint, n_summed: int) -> np.ndarray:
    """Decode the modular sum of ``n_summed`` encodings into the float64 sum of the vectors.

    ``summed`` may be any integer array holding the sum modulo 2^32 (e.g. ``uint32``, or a
    ``uint64`` from a widening ``np.sum``); it is reduced modulo ``2^fp.bits`` and read as a
    signed two's-complement number. The error against the sum of the (clamped) inputs is at
    most ``rounding_bound(fp, n_summed)`` per coordinate.

    Raises:
        ConfigError: ``n_summed`` is not in ``1..fp.max_clients`` (more could have wrapped),
            ``summed`` is not an integer array, or a coordinate lies outside what
            ``n_summed`` honest encodings can reach (a wrong ``n_summed`` or a malformed
            contribution).
    """
    n = _check_count(n_summed, fp)
    signed = _to_signed(summed, fp.bits)
    if np.any(np.abs(signed) > n * fp.max_int):
        raise ConfigError(
            f"decoded sum lies outside the range of {n} encodings: wrong n_summed, or a"
            " contribution was not produced by encode()"
        )
    return signed.astype(np.float64) / fp.scale


def rounding_bound(fp: FixedPoint, n: int) -> float:
    """Largest error per coordinate of a decoded sum of ``n`` encodings: ``n / scale``.

    Each stochastic rounding moves a coordinate by less than one grid step. This bounds the
    error against the sum of the inputs after clamping to ``[-R, R]`` (so against the inputs
    themselves whenever no coordinate exceeded ``R``).
    """
    return _check_count(n, fp) / fp.scale


def _check_count(n: object, fp: FixedPoint) -> int:
    count = int_at_least(n, 1, "number of encodings")
    if count > fp.max_clients:
        raise ConfigError(
            f"{count} encodings exceed max_clients={fp.max_clients}; their sum may have wrapped"
        )
    return count


def _to_signed(summed: object, bits: int) -> np.ndarray:
    arr = np.asarray(summed)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"summed encodings must be an integer array, got dtype {arr.dtype}")
    # Reduce modulo 2^bits in a 64-bit type: for signed input, & keeps the two's-complement
    # low bits, which is the residue modulo 2^bits as well.
    wide = arr.astype(np.uint64 if np.issubdtype(arr.dtype, np.unsignedinteger) else np.int64)
    residue = np.bitwise_and(wide, wide.dtype.type(2**bits - 1)).astype(np.int64)
    return np.where(residue >= 2 ** (bits - 1), residue - 2**bits, residue)
