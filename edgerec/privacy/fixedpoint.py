"""The fixed-point grid of distributed discrete Gaussian noise, and the modular code on it (pure).

Secure aggregation adds vectors of ``uint32`` modulo 2^32 (its masks cancel only in modular
arithmetic), so each device works on an integer grid of ``scale`` steps per unit:

1. **quantize** its clipped delta ``x`` (``||x||_2 <= C``): multiply by ``scale`` and round
   each coordinate stochastically (up with probability equal to the fractional part, so
   ``E[v] = x * scale``: no bias). Each coordinate moves by less than one step, so
   ``||v||_2 <= C * scale + sqrt(d)`` *always*: that is the grid **sensitivity** ``Delta``.
   Under zero-out (``noise.py``) the neighbour sends ``quantize(0) = 0``, so one device moves
   the integer sum by at most ``Delta``.
2. **add noise** in the integer domain: i.i.d. discrete Gaussian ``N_Z(0, sigma_g^2)`` per
   coordinate with ``sigma_g = z * Delta / sqrt(m)`` (``m = min_survivors``). Any sum over
   ``m`` or more devices then carries noise of std ``>= z * Delta``: a Gaussian mechanism
   with multiplier ``z`` in grid units, with no rounding after the noise (``ddg.py`` for why
   the sum of discrete shares may be accounted as a Gaussian).
3. **clamp** each coordinate to ``[-max_int, max_int]`` with
   ``max_int = (2^(bits-1) - 1) // max_clients``, and store it in two's complement modulo
   ``2^bits``. The true integer sum of up to ``max_clients`` encodings then lies in
   ``[-(2^(bits-1) - 1), 2^(bits-1) - 1]``, so the modular sum never wraps, whatever the
   inputs.

``scale`` is the largest value with ``C * scale + 1 + tail_sigmas * sigma_g <= max_int``: a
quantized coordinate is at most ``C * scale + 1``, so clamping needs noise beyond
``tail_sigmas`` stds, probability at most ``2 * exp(-tail_sigmas^2 / 2)`` per coordinate
(``2 * exp(-72)``, about 1e-31, at the default 12; a discrete Gaussian has the continuous
one's sub-Gaussian tail). Clamping is outside the Gaussian analysis: with probability at
least ``1 - max_clients * d * clamp_probability`` nothing is clamped, so the epsilon holds
with delta larger by at most ``(1 + e^epsilon)`` times that (about 1e-20 for 10^3 clients of
10^6 weights): negligible, and said here rather than hidden.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import cast

import numpy as np

from .._exceptions import ConfigError
from ._checks import finite_array, int_at_least, nonnegative_float, positive_float, random_source
from .clipping import l2_norm
from .ddg import check_ddg
from .noise import DistributedNoise
from .random import RandomSource

__all__ = ["FixedPoint", "decode_sum", "quantize", "rounding_bound", "sum_encodings", "to_residues"]

_MAX_BITS = 32  # secure aggregation works on uint32
# Below this many grid steps per device the discrete Gaussian's correction term (ddg.py) is no
# longer negligible; at 4 it is below 1e-60 per share.
MIN_GRID_SIGMA = 4.0


@dataclass(frozen=True)
class FixedPoint:
    """Parameters of the grid and its modular code; every derived quantity is a property.

    Attributes:
        clip: L2 clip bound ``C`` of a device's delta.
        noise_multiplier: ``z`` of any sum over ``min_survivors`` or more devices (0: none).
        min_survivors: ``m``, the fewest devices whose sum is ever unmasked.
        max_clients: the most encodings that will ever be summed (the round's cohort size).
        dimension: ``d``, the number of coordinates of a delta.
        bits: width of the modular group, 2..32 (secure aggregation uses 32).
        tail_sigmas: headroom for noise, in per-device grid stds, before clamping.

    Raises:
        ConfigError: a parameter is out of range; the grid has less than one step per clip
            (no resolution); or, with noise, the per-device noise is under 4 grid steps or
            too coarse for the Gaussian accounting (``ddg.check_ddg``).
    """

    clip: float
    noise_multiplier: float
    min_survivors: int
    max_clients: int
    dimension: int
    bits: int = 32
    tail_sigmas: float = 12.0

    def __post_init__(self) -> None:
        positive_float(self.clip, "clip")
        nonnegative_float(self.noise_multiplier, "noise_multiplier")
        int_at_least(self.min_survivors, 1, "min_survivors")
        int_at_least(self.max_clients, 1, "max_clients")
        int_at_least(self.dimension, 1, "dimension")
        if int_at_least(self.bits, 2, "bits") > _MAX_BITS:
            raise ConfigError(f"bits must be <= {_MAX_BITS}, got {self.bits}")
        positive_float(self.tail_sigmas, "tail_sigmas")
        if self.min_survivors > self.max_clients:
            raise ConfigError(
                f"min_survivors ({self.min_survivors}) exceeds max_clients ({self.max_clients})"
            )
        if not self.clip * self.scale >= 1.0:
            raise ConfigError(
                f"no resolution left: {self.max_clients} clients of dimension {self.dimension}"
                f" with noise multiplier {self.noise_multiplier:g} in {self.bits} bits leave"
                f" {self.clip * self.scale:.3g} grid steps per clip; use more bits, fewer"
                " clients, or less noise"
            )
        if self.noise_multiplier > 0:
            if self.grid_sigma < MIN_GRID_SIGMA:
                raise ConfigError(
                    f"per-device noise of {self.grid_sigma:.3g} grid steps is under"
                    f" {MIN_GRID_SIGMA:g}: too little resolution for the discrete Gaussian"
                    " accounting; use more bits or a larger noise multiplier"
                )
            check_ddg(self.grid_sigma, self.max_clients, self.dimension)

    @classmethod
    def for_noise(
        cls,
        noise: DistributedNoise,
        max_clients: int,
        dimension: int,
        bits: int = 32,
        tail_sigmas: float = 12.0,
    ) -> FixedPoint:
        """The code matching a noise spec: its clip, multiplier and fewest survivors."""
        return cls(noise.clip, noise.noise_multiplier, noise.min_survivors, max_clients,
                   dimension, bits, tail_sigmas)

    @property
    def max_int(self) -> int:
        """Largest ``|k|`` of one encoding, so that ``max_clients`` of them cannot wrap."""
        return (2 ** (self.bits - 1) - 1) // self.max_clients

    @cached_property
    def scale(self) -> float:
        """Grid steps per unit: the largest with ``C*scale + 1 + tail_sigmas*grid_sigma <= max_int``.

        ``grid_sigma`` grows with ``scale`` (through the sensitivity), so this solves
        ``C s + 1 + k (C s + sqrt(d)) = max_int`` with ``k = tail_sigmas * z / sqrt(m)``,
        then steps down past float rounding. Not positive when there is no room at all.
        """
        k = self._tail_factor
        root_d = math.sqrt(self.dimension)
        s = (self.max_int - 1 - k * root_d) / (self.clip * (1.0 + k))
        if s <= 0:
            return 0.0
        # The closed form is exact in real arithmetic; make the inequality hold in floats.
        while self.clip * s + 1 + k * (self.clip * s + root_d) > self.max_int:
            s *= 1.0 - 2.0**-40
        return s

    @property
    def sensitivity(self) -> float:
        """``Delta = C * scale + sqrt(d)``: the most one device moves the integer sum (L2)."""
        return self.clip * self.scale + math.sqrt(self.dimension)

    @property
    def grid_sigma(self) -> float:
        """Std parameter of each device's discrete Gaussian share, in grid steps (0: no noise)."""
        return self.noise_multiplier * self.sensitivity / math.sqrt(self.min_survivors)

    @property
    def resolution(self) -> float:
        """One grid step, ``1 / scale``: the most stochastic rounding moves one coordinate."""
        return 1.0 / self.scale

    @property
    def clamp_probability(self) -> float:
        """Upper bound on the chance that one coordinate of one encoding is clamped.

        A quantized coordinate is at most ``C * scale + 1``, so clamping needs a noise draw
        beyond ``tail_sigmas * grid_sigma``: at most ``2 exp(-tail_sigmas^2 / 2)``. 0 without noise.
        """
        return 2.0 * math.exp(-self.tail_sigmas**2 / 2.0) if self.noise_multiplier > 0 else 0.0

    @property
    def _tail_factor(self) -> float:
        return self.tail_sigmas * self.noise_multiplier / math.sqrt(self.min_survivors)


def quantize(clipped: np.ndarray, fp: FixedPoint, source: RandomSource) -> np.ndarray:
    """``clipped * fp.scale`` rounded stochastically to ``int64`` (unbiased; any shape kept).

    ``clipped`` should have L2 norm at most ``fp.clip``; then ``||result||_2 <=
    fp.sensitivity``. Zero coordinates stay exactly zero. One uniform per coordinate is drawn
    from ``source``.

    Raises:
        ConfigError: a NaN or infinite entry, an L2 norm above ``fp.clip`` (not clipped: the
            sensitivity would not hold), or ``source`` is not a ``RandomSource``.
    """
    arr = finite_array(clipped, "vector to quantize")
    source = random_source(source)
    if l2_norm(arr) > fp.clip:
        raise ConfigError("quantize needs a delta clipped to fp.clip; clip it first (clip_l2)")
    scaled = arr * fp.scale
    low = np.floor(scaled)
    # Round up with probability equal to the fractional part: unbiased.
    up = source.uniform(arr.size).reshape(arr.shape) < (scaled - low)
    return low.astype(np.int64) + up


def to_residues(ints: np.ndarray, fp: FixedPoint) -> np.ndarray:
    """Clamp integers to ``[-max_int, max_int]`` and store them modulo ``2^bits`` as ``uint32``."""
    arr = np.asarray(ints)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"to_residues needs integers, got dtype {arr.dtype}")
    clamped = np.clip(arr.astype(np.int64), -fp.max_int, fp.max_int)
    return np.mod(clamped, 2**fp.bits).astype(np.uint32)


def sum_encodings(encodings: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Sum ``uint32`` encodings modulo 2^32 (what secure aggregation reveals), stacked on axis 0.

    Raises:
        ConfigError: no encodings, or they are not ``uint32``.
    """
    stacked = np.asarray(encodings)
    if stacked.dtype != np.uint32 or stacked.ndim < 1 or stacked.shape[0] == 0:
        raise ConfigError("sum_encodings needs a non-empty stack of uint32 encodings")
    # dtype=uint32 makes numpy accumulate with wrap-around (its default would widen to uint64).
    # cast: encodings are vectors, so their sum is one; numpy's stub also allows the scalar that
    # a stack of scalars would sum to.
    return cast(np.ndarray, np.sum(stacked, axis=0, dtype=np.uint32))


def decode_sum(summed: np.ndarray, fp: FixedPoint, n_summed: int) -> np.ndarray:
    """Decode the modular sum of ``n_summed`` encodings into the float64 sum of the deltas.

    ``summed`` may be any integer array holding the sum modulo 2^32 (e.g. ``uint32``, or a
    ``uint64`` from a widening ``np.sum``); it is reduced modulo ``2^fp.bits``, read as a
    signed two's-complement number and divided by ``fp.scale``. Without noise the error
    against the sum of the clipped deltas is at most ``rounding_bound(fp, n_summed)`` per
    coordinate; with noise it is that plus the noise.

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
            " contribution was not produced by privatize()"
        )
    return signed.astype(np.float64) / fp.scale


def rounding_bound(fp: FixedPoint, n: int) -> float:
    """Largest rounding error per coordinate of a decoded sum of ``n`` encodings: ``n / scale``.

    Each stochastic rounding moves a coordinate by less than one grid step, and without noise
    nothing is ever clamped (a quantized coordinate is at most ``C * scale + 1 <= max_int``).
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
