"""Privacy accounting for federated rounds: a thin wrapper over Google's dp-accounting.

Never hand-rolled (DESIGN.md): every figure comes from ``dp_accounting.rdp.RdpAccountant``
(default; conservative and fast) or ``dp_accounting.pld.PLDAccountant`` (tighter, slower).

What is accounted: each round, every device joins independently with probability
``q = participants_per_round / population`` (Poisson sampling), and the server sees the sum of
clipped deltas plus Gaussian noise of std ``z * C`` (``noise.py`` guarantees at least that).
The unit of privacy is one device, i.e. all of its user's interactions, under add-or-remove-one
adjacency; ``rounds`` such releases are composed. If devices are chosen another way (a fixed
cohort size, availability windows), Poisson sampling is an idealisation of it.

dp-accounting is imported lazily, on the first figure computed: a device that never makes
privacy reports (it only clips, noises and encodes) does not need it installed. Whoever makes
reports (the server, an auditor, a device showing its own epsilon) needs ``edgerec[privacy]``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from .._exceptions import ConfigError
from ._checks import finite_float, int_at_least, nonnegative_float, positive_float

__all__ = ["ACCOUNTANTS", "PrivacyReport", "epsilon", "noise_for_epsilon", "privacy_report"]

ACCOUNTANTS = ("rdp", "pld")

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
    """Epsilon at ``delta`` after ``rounds`` Poisson-sampled Gaussian rounds.

    ``noise_multiplier == 0`` gives ``inf`` (no noise, no differential privacy) and
    ``rounds == 0`` gives ``0.0`` (nothing released); neither needs dp-accounting.

    Raises:
        ConfigError: a parameter is out of range (see ``privacy_report``).
        ImportError: dp-accounting is not installed (``pip install 'edgerec[privacy]'``).
    """
    q = _sampling_rate(population, participants_per_round)
    z = nonnegative_float(noise_multiplier, "noise_multiplier")
    count = int_at_least(rounds, 0, "rounds")
    target_delta = _check_delta(delta)
    kind = _check_accountant(accountant)
    if count == 0:
        return 0.0
    if z == 0.0:
        return math.inf
    dp = _dp_accounting()
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
    target_delta = _check_delta(delta)
    kind = _check_accountant(accountant)
    step = positive_float(tol, "tol")
    if count == 0:
        return 0.0
    floor_eps = epsilon(population, participants_per_round, _Z_FLOOR, count, delta, accountant=kind)
    if floor_eps <= target:
        return _Z_FLOOR
    return _calibrate(kind, q, count, target, target_delta, step)


def _calibrate(kind: str, q: float, rounds: int, target: float, delta: float, tol: float) -> float:
    dp = _dp_accounting()

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


def _check_delta(delta: object) -> float:
    value = finite_float(delta, "delta")
    if not 0.0 < value < 1.0:
        raise ConfigError(f"delta must be in (0, 1), got {delta!r}")
    return value


def _check_accountant(kind: object) -> str:
    if kind not in ACCOUNTANTS:
        raise ConfigError(f"accountant must be one of {ACCOUNTANTS}, got {kind!r}")
    return str(kind)


class _DropExcludedOrders(logging.Filter):
    """dp-accounting's RDP logs a warning for every Renyi order whose series does not converge
    at small z, then leaves that order out (the epsilon stays valid). Per call that is dozens of
    lines; drop just those, leaving the host app's logging otherwise as it was."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Excluding this order" not in record.getMessage()


def _dp_accounting() -> Any:
    try:
        import dp_accounting
    except ImportError as exc:
        raise ImportError(
            "privacy accounting needs dp-accounting: pip install 'edgerec[privacy]'"
        ) from exc
    absl = logging.getLogger("absl")
    if not any(isinstance(f, _DropExcludedOrders) for f in absl.filters):
        absl.addFilter(_DropExcludedOrders())
    return dp_accounting


def _new_accountant(dp: Any, kind: str) -> Any:
    return dp.rdp.RdpAccountant() if kind == "rdp" else dp.pld.PLDAccountant()


def _round_event(dp: Any, q: float, z: float, rounds: int) -> Any:
    per_round = dp.PoissonSampledDpEvent(
        sampling_probability=q, event=dp.GaussianDpEvent(noise_multiplier=z)
    )
    return dp.SelfComposedDpEvent(event=per_round, count=rounds)
