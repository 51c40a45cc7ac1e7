"""Privacy accounting of the rounds edgerec actually runs, with dp-accounting (never by hand).

The mechanism (``noise.py``, ``fixedpoint.py``): in a round, a cohort of devices each send a
clipped (L2 <= C), quantized update plus a discrete Gaussian share; secure aggregation reveals
only the sum, whose noise std is at least ``z * Delta`` on the grid (``ddg.py`` for why that sum
may be accounted as a Gaussian). Neighbouring relation: *zero-out* -- one device's update is
replaced by zero, the device still takes part and adds its share, and participation, cohort
and survivor counts are public.

A ``Release(population, cohort, z)`` is one round as the accountant sees it:

* ``cohort >= population``: everyone takes part, no sampling. Zero-out moves the sum by at
  most ``C`` under noise ``z * C``: ``GaussianDpEvent(z)`` (no amplification).
* ``cohort < population``: the server drew the cohort at random (Poisson sampling), and its
  size is public, so the round is accounted *conditional on that size*: a uniformly random
  fixed-size cohort, sampling without replacement. dp-accounting's only event for that is
  ``SampledWithoutReplacementDpEvent`` (Wang, Balle, Kasiviswanathan 2019, Theorem 27), whose
  RDP analysis is for *replace-one* neighbours with ``noise_multiplier = std / (replace-one
  L2 sensitivity)``. Zero-out pairs are replace-one pairs, so the theorem applies; but in a
  fixed-size cohort, admitting device ``i`` displaces another device ``j``, and the analysis
  compares cohorts that differ by ``x_i`` against ``x_j``: sensitivity ``2C``, not ``C``. So
  the event's multiplier is ``z / 2``. (Using ``z`` there under-reports: with every other
  device sending ``-x``, the two neighbouring outputs are ``(1-p) N(0) + p N(2C)`` against
  ``(1-p) N(0) + p N(C)``, whose true delta exceeds that claim by orders of magnitude;
  ``tests/privacy/test_privacy_numerics.py`` computes both.)

  Sampling amplification at sensitivity ``2C`` can be worse than none at ``C`` (large
  cohorts, small z), and the round is *also* a plain ``GaussianDpEvent(z)`` release (joint
  convexity over the cohort). Both bounds are valid for the same run of rounds, so the RDP
  accountant computes both and reports the smaller epsilon (or delta).

Consecutive identical releases are composed as one ``SelfComposedDpEvent`` (one RDP
evaluation instead of one per round). The RDP evaluation of a sampled release costs dp-accounting
about 0.3-0.6 s; plain Gaussian releases cost microseconds.

The inverse, a noise multiplier for a target epsilon, is ``calibration.noise_for_releases``.

Exactness for the discrete mechanism: the RDP figures (the default) hold for the distributed
discrete Gaussian as it runs, because Kairouz-Liu-Steinke 2021 bound its Renyi divergences by
the Gaussian's plus ``tau * d / 2``, which every ``FixedPoint`` keeps below 1e-12 (``ddg.py``).
``accountant="pld"`` (dp-accounting's privacy-loss-distribution accountant, tight) computes the
*continuous* Gaussian's privacy loss: on the integer grid the true delta differs from it by a
relative amount of order ``0.1 / sigma_g^2`` (a lattice effect, measured in
``tests/privacy/test_privacy_numerics.py``), i.e. below 1e-9 at the grid sigmas of any 32-bit
code of realistic size, but not zero. It supports the unsampled releases only: it has no
sampling-without-replacement event, and asking for one raises ConfigError (use ``"rdp"``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .._exceptions import ConfigError
from ._checks import int_at_least, nonnegative_float
from ._dp import check_accountant, check_delta, dp_accounting

__all__ = ["Release", "device_epsilon", "releases_delta", "releases_epsilon"]


@dataclass(frozen=True)
class Release:
    """One round as accounted: a cohort of ``cohort`` devices out of ``population``, sum noise ``z``.

    Attributes:
        population: devices the cohort was drawn from (>= 1).
        cohort: devices drawn (>= 1); ``cohort >= population`` means everyone, no sampling.
        noise_multiplier: ``z`` of the revealed sum (>= 0; 0 means no privacy).
    """

    population: int
    cohort: int
    noise_multiplier: float

    def __post_init__(self) -> None:
        int_at_least(self.population, 1, "population")
        int_at_least(self.cohort, 1, "cohort")
        nonnegative_float(self.noise_multiplier, "noise_multiplier")

    @property
    def sampled(self) -> bool:
        """Whether the cohort is a strict random subset of the population."""
        return self.cohort < self.population

    @property
    def sampling_rate(self) -> float:
        """``cohort / population``, at most 1."""
        return min(1.0, self.cohort / self.population)


def releases_epsilon(releases: Sequence[Release], delta: float, accountant: str = "rdp") -> float:
    """Epsilon at ``delta`` of the composition of ``releases`` (zero-out neighbours).

    0.0 for no releases; ``math.inf`` if any release has ``z == 0`` (neither needs
    dp-accounting). See the module docstring for the event each release becomes.

    Raises:
        ConfigError: bad arguments, or ``accountant="pld"`` with a sampled release.
        ImportError: dp-accounting is not installed (``pip install 'edgerec[privacy]'``).
    """
    items = _releases(releases)
    target = check_delta(delta)
    kind = check_accountant(accountant)
    if not items:
        return 0.0
    if any(r.noise_multiplier == 0 for r in items):
        return math.inf
    return min(float(acct.get_epsilon(target)) for acct in _accountants(_groups(items), kind))


def releases_delta(releases: Sequence[Release], epsilon: float, accountant: str = "rdp") -> float:
    """Delta at ``epsilon`` of the composition of ``releases``: the inverse view of the above.

    0.0 for no releases; 1.0 if any release has ``z == 0``.

    Raises:
        ConfigError: bad arguments (``epsilon`` must be finite and >= 0), or ``"pld"`` with a
            sampled release.
    """
    items = _releases(releases)
    eps = nonnegative_float(epsilon, "epsilon")
    kind = check_accountant(accountant)
    if not items:
        return 0.0
    if any(r.noise_multiplier == 0 for r in items):
        return 1.0
    return min(float(acct.get_delta(eps)) for acct in _accountants(_groups(items), kind))


def device_epsilon(noise_multipliers: Sequence[float], delta: float, accountant: str = "rdp") -> float:
    """A device's own epsilon over the rounds it contributed to, each with multiplier ``z``.

    Every such round is a plain Gaussian release with no amplification by sampling (the device
    cannot check how the server drew its cohort, and the server knows the cohort anyway):
    ``Release(1, 1, z)`` each. 0.0 for no rounds; ``math.inf`` if any ``z == 0``.

    Raises:
        ConfigError: a multiplier is negative or not finite, or bad ``delta``/``accountant``.
    """
    zs = [nonnegative_float(z, "noise multiplier") for z in _iterable(noise_multipliers)]
    return releases_epsilon([Release(1, 1, z) for z in zs], delta, accountant)


# -- building the accountants ---------------------------------------------------------------------

# Composing a sampled release costs dp-accounting up to ~0.5 s; the same run of releases is
# often asked for at several epsilons or deltas (reports, tests). The composed accountants are
# only ever read (get_epsilon, get_delta), so sharing them is safe.
@lru_cache(maxsize=16)
def _accountants(groups: tuple[tuple[Release, int], ...], kind: str) -> tuple[Any, ...]:
    """Accountants that each hold a valid bound for ``groups``; the answer is their best figure."""
    dp = dp_accounting()
    relation = dp.NeighboringRelation
    sampled = any(r.sampled for r, _ in groups)
    if kind == "pld":
        if sampled:
            raise ConfigError(
                "the PLD accountant of dp-accounting has no event for a fixed-size cohort"
                " sampled without replacement; use accountant='rdp' for sampled releases"
            )
        pld = dp.pld.PLDAccountant(neighboring_relation=relation.REPLACE_SPECIAL)
        return (pld.compose(_composed(dp, [(_plain(dp, r), n) for r, n in groups])),)
    # The plain Gaussian bound (no amplification) holds for every release.
    plain = dp.rdp.RdpAccountant(neighboring_relation=relation.REPLACE_SPECIAL)
    plain.compose(_composed(dp, [(_plain(dp, r), n) for r, n in groups]))
    if not sampled:
        return (plain,)
    amplified = dp.rdp.RdpAccountant(neighboring_relation=relation.REPLACE_ONE)
    amplified.compose(_composed(dp, [(_amplified(dp, r), n) for r, n in groups]))
    return (amplified, plain)


def _plain(dp: Any, release: Release) -> Any:
    return dp.GaussianDpEvent(noise_multiplier=release.noise_multiplier)


def _amplified(dp: Any, release: Release) -> Any:
    if not release.sampled:
        return _plain(dp, release)
    # z / 2: replace-one sensitivity of a sum of vectors of norm <= C is 2C (module docstring).
    return dp.SampledWithoutReplacementDpEvent(
        source_dataset_size=release.population,
        sample_size=release.cohort,
        event=dp.GaussianDpEvent(noise_multiplier=release.noise_multiplier / 2.0),
    )


def _composed(dp: Any, events: list[tuple[Any, int]]) -> Any:
    parts = [event if n == 1 else dp.SelfComposedDpEvent(event=event, count=n) for event, n in events]
    return parts[0] if len(parts) == 1 else dp.ComposedDpEvent(events=parts)


def _groups(items: list[Release]) -> tuple[tuple[Release, int], ...]:
    """Runs of consecutive equal releases as ``(release, count)``, in order."""
    groups: list[tuple[Release, int]] = []
    for release in items:
        if groups and groups[-1][0] == release:
            groups[-1] = (release, groups[-1][1] + 1)
        else:
            groups.append((release, 1))
    return tuple(groups)


def _releases(releases: object) -> list[Release]:
    items = list(_iterable(releases))
    for r in items:
        if not isinstance(r, Release):
            raise ConfigError(f"releases must be Release objects, got {type(r).__name__}")
    return items


def _iterable(values: object) -> Iterable[Any]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ConfigError(f"expected a sequence, got {type(values).__name__}")
    return values
