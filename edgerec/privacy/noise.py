"""The noise *parameters* of distributed differential privacy: who adds how much.

No single party adds all the noise. Each device adds a share to its own clipped delta before
masking; secure aggregation reveals only the sum, and the shares add up so that the sum carries
noise of standard deviation at least ``z * C`` (noise multiplier ``z``, clip ``C``). The shares
are discrete Gaussian on the fixed-point grid (``fixedpoint.py`` turns these parameters into
grid units, ``discrete.py`` draws them, ``pipeline.privatize`` adds them), so the sum is the
distributed discrete Gaussian of Kairouz, Liu and Steinke (2021).

Neighbouring relation (what "one device's data" may change): *zero-out*. A neighbouring
dataset replaces one device's clipped update by the zero vector; the device still takes part
and still adds its noise share, and who took part is public. The sum then moves by at most
``C`` while its noise is unchanged: a Gaussian mechanism with multiplier ``z``. (Under
add-or-remove, removing a device would also remove its noise share, and two sums with
different noise variances are far less private than the Gaussian analysis claims;
``tests/privacy/test_privacy_numerics.py`` measures it.)

Why calibrate to the *fewest* survivors a round accepts (``min_survivors``)?
    A device adds its noise before it knows how many others will still be there at the unmask
    stage. With per-device std ``z * C / sqrt(m)`` and ``k`` survivors, the sum's variance is
    ``(k / m) * (z * C)**2``. At ``k == m`` it is exactly ``(z * C)**2``; every extra survivor
    only adds independent noise, and more noise never weakens the guarantee (the larger sum is
    the smaller one plus independent noise: post-processing).
    Calibrating to the expected or the maximum number instead would fall short of ``z``
    whenever devices drop out. The price is utility: with ``k > m`` survivors the sum is
    ``sqrt(k / m)`` times noisier than needed.

What this requires of the rest of the round:
    * the server must never unmask a sum of fewer than ``min_survivors`` devices, so the
      secure-aggregation threshold must be at least ``min_survivors``;
    * the guarantee holds against whoever sees only the sum (the server, later model users).
      Devices that collude with the server can subtract their own shares: with ``c`` such
      devices among ``k`` survivors the remaining multiplier is ``z * sqrt((k - c) / m)``. To
      tolerate ``c`` colluders, pass ``min_survivors = threshold - c``.
    * a device must never send or persist its noise draw or its pre-noise delta.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._checks import int_at_least, nonnegative_float, positive_float

__all__ = ["DistributedNoise"]


@dataclass(frozen=True)
class DistributedNoise:
    """Each device's share of the noise for a round, in the units of the delta.

    Attributes:
        clip: L2 clip bound ``C`` of each device's delta (the sensitivity of the sum).
        noise_multiplier: ``z``, the noise multiplier the *sum* carries at the least; ``0``
            means no noise at all (and an infinite epsilon).
        min_survivors: ``m``, the fewest devices whose sum the round will ever unmask.
    """

    clip: float
    noise_multiplier: float
    min_survivors: int

    def __post_init__(self) -> None:
        positive_float(self.clip, "clip")
        nonnegative_float(self.noise_multiplier, "noise_multiplier")
        int_at_least(self.min_survivors, 1, "min_survivors")

    @property
    def per_client_std(self) -> float:
        """Std of each device's share per coordinate, ``z * C / sqrt(m)``, before the grid.

        On the fixed-point grid the share is ``FixedPoint.grid_sigma`` grid steps, slightly
        more than ``per_client_std * scale`` (the grid's sensitivity includes rounding).
        """
        return self.noise_multiplier * self.clip / math.sqrt(self.min_survivors)

    def sum_std(self, survivors: int) -> float:
        """Std per coordinate of the noise in a sum over ``survivors`` devices."""
        return self.per_client_std * math.sqrt(int_at_least(survivors, 1, "survivors"))

    def effective_multiplier(self, survivors: int) -> float:
        """Noise multiplier of a sum over ``survivors`` devices: ``z * sqrt(survivors / m)``.

        At least ``z`` whenever ``survivors >= min_survivors``; below that the round must abort.
        """
        return self.sum_std(survivors) / self.clip
