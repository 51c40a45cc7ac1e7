"""The Poisson-sampling idealisation: ``epsilon``, ``privacy_report``, ``noise_for_epsilon``.

What these figures assume: each round, every device joins independently with probability
``q = participants_per_round / population`` and nobody learns who joined or how many; the sum
of clipped deltas carries Gaussian noise of std ``z * C``; zero-out neighbours
(dp-accounting's ``REPLACE_SPECIAL``, whose figures equal add-or-remove's here). That is an
*idealisation* of what edgerec runs: a server picks its cohort, knows it, and the cohort size
is public (the discrete Gaussian's variance reveals it anyway). Conditioned on that size, a
cohort is a fixed-size sample without replacement, where admitting one device displaces
another; ``releases.py`` (``Release``, ``releases_epsilon``, ``device_epsilon``) accounts that
honestly, and its figures are larger. These functions stay for the federated simulation's
comparisons, the CLI and calibration (``noise_for_epsilon``) in the idealised model.

Never hand-rolled (DESIGN.md): every figure comes from ``dp_accounting.rdp.RdpAccountant``
(default; conservative and fast) or ``dp_accounting.pld.PLDAccountant`` (tighter, slower).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .._exceptions import ConfigError
from ._checks import int_at_least, nonnegative_float, positive_float
from ._dp import ACCOUNTANTS, check_accountant, check_delta, dp_accounting

__all__ = ["ACCOUNTANTS", "PrivacyReport", "epsilon", "noise_for_epsilon", "privacy_report"]

# noise_for_epsilon searches no lower than this: below it a round gives no meaningful
# protection, and the RDP computation becomes slow and numerically fragile.
_Z_FLOOR = 0.1


@dataclass(frozen=True)
class PrivacyReport:
    """The privacy cost of a run of rounds, for auditors and the device ledger.

    Attributes:
        epsilon: the epsilon spent (``inf`` with no noise, ``0`` after no rounds).
        delta: the delta it holds at.
        rounds: number of rounds composed.
        q: per-round sampling probability of a device.
        z: noise multiplier of the aggregated sum.
        accountant: ``"rdp"`` or ``"pld"``.
    """

    epsilon: float
    delta: float
    rounds: int
    q: float
    z: float
    accountant: str = "rdp"

    def __str__(self) -> str:
        return (
            f"(epsilon={self.epsilon:.4g}, delta={self.delta:g}) after {self.rounds} rounds"
            f" [q={self.q:.4g}, z={self.z:g}, {self.accountant}]"
        )


def epsilon(
    population: int,
    participants_per_round: float,
    noise_multiplier: float,
    rounds: int,
    delta: float = 1e-5,
    *,
    accountant: str = "rdp",
) -> float:
    """Epsilon at ``delta`` after ``rounds`` Poisson-sampled Gaussian rounds (the idealisation).

    For what edgerec's rounds actually give, use ``releases_epsilon``.

    ``noise_multiplier == 0`` gives ``inf`` (no noise, no differential privacy) and
    ``rounds == 0`` gives ``0.0`` (nothing released); neither needs dp-accounting.

    Raises:
        ConfigError: a parameter is out of range (see ``privacy_report``).
        ImportError: dp-accounting is not installed (``pip install 'edgerec[privacy]'``).
    """
    q = _sampling_rate(population, participants_per_round)
    z = nonnegative_float(noise_multiplier, "noise_multiplier")
    count = int_at_least(rounds, 0, "rounds")
    target_delta = check_delta(delta)
    kind = check_accountant(accountant)
    if count == 0:
        return 0.0
    if z == 0.0:
        return math.inf
    dp = dp_accounting()
    acct = _new_accountant(dp, kind)
    acct.compose(_round_event(dp, q, z, count))
    return float(acct.get_epsilon(target_delta))


def privacy_report(
    population: int,
    participants_per_round: float,
    noise_multiplier: float,
    rounds: int,
    delta: float = 1e-5,
    *,
    accountant: str = "rdp",
) -> PrivacyReport:
    """``epsilon(...)`` wrapped with the parameters it was computed from.

    Args:
        population: number of devices that could be sampled (>= 1).
        participants_per_round: expected devices per round (> 0, <= population).
        noise_multiplier: ``z`` of the aggregated sum (>= 0).
        rounds: rounds composed (>= 0).
        delta: target delta, in (0, 1).
        accountant: ``"rdp"`` or ``"pld"``.
    """
    eps = epsilon(
        population, participants_per_round, noise_multiplier, rounds, delta, accountant=accountant
    )
    q = _sampling_rate(population, participants_per_round)
    return PrivacyReport(eps, float(delta), int(rounds), q, float(noise_multiplier), accountant)


def noise_for_epsilon(
    population: int,
    participants_per_round: float,
    target_epsilon: float,
    rounds: int,
    delta: float = 1e-5,
    *,
    accountant: str = "rdp",
    tol: float = 1e-3,
) -> float:
    """Smallest noise multiplier (within ``tol``) whose epsilon after ``rounds`` is <= target.

    Uses dp-accounting's own calibration (``calibrate_dp_mechanism``), which guarantees the
    returned ``z`` meets the target. The search starts at ``z = 0.1``: if even that meets the
    target, 0.1 is returned. ``rounds == 0`` needs no noise and returns 0.0.

    Raises:
        ConfigError: a parameter is out of range, or no ``z`` up to about 1e9 meets the target.
    """
    q = _sampling_rate(population, participants_per_round)
    target = positive_float(target_epsilon, "target_epsilon")
    count = int_at_least(rounds, 0, "rounds")
    target_delta = check_delta(delta)
    kind = check_accountant(accountant)
    step = positive_float(tol, "tol")
    if count == 0:
        return 0.0
    floor_eps = epsilon(population, participants_per_round, _Z_FLOOR, count, delta, accountant=kind)
    if floor_eps <= target:
        return _Z_FLOOR
    return _calibrate(kind, q, count, target, target_delta, step)


def _calibrate(kind: str, q: float, rounds: int, target: float, delta: float, tol: float) -> float:
    dp = dp_accounting()

    def make_event(z: float) -> Any:
        return _round_event(dp, q, z, rounds)

    def fresh() -> Any:
        return _new_accountant(dp, kind)

    bracket = dp.LowerEndpointAndGuess(_Z_FLOOR, 1.0)
    try:
        z = dp.calibrate_dp_mechanism(fresh, make_event, target, delta, bracket, tol=tol)
    except (dp.mechanism_calibration.NoBracketIntervalFoundError, ValueError) as exc:
        raise ConfigError(f"no noise multiplier reaches epsilon={target} here: {exc}") from exc
    return float(z)


def _sampling_rate(population: object, participants_per_round: object) -> float:
    size = int_at_least(population, 1, "population")
    expected = positive_float(participants_per_round, "participants_per_round")
    if expected > size:
        raise ConfigError(
            f"participants_per_round ({participants_per_round}) exceeds population ({size})"
        )
    return expected / size


def _new_accountant(dp: Any, kind: str) -> Any:
    # Zero-out neighbours (noise.py): REPLACE_SPECIAL, which dp-accounting's Poisson-sampled
    # Gaussian treats exactly like add-or-remove.
    relation = dp.NeighboringRelation.REPLACE_SPECIAL
    if kind == "rdp":
        return dp.rdp.RdpAccountant(neighboring_relation=relation)
    return dp.pld.PLDAccountant(neighboring_relation=relation)


def _round_event(dp: Any, q: float, z: float, rounds: int) -> Any:
    per_round = dp.PoissonSampledDpEvent(
        sampling_probability=q, event=dp.GaussianDpEvent(noise_multiplier=z)
    )
    return dp.SelfComposedDpEvent(event=per_round, count=rounds)
