"""Users choose epsilon, not z: the noise multiplier that meets a target epsilon.

``noise_for_releases`` inverts ``releases.releases_epsilon``, the honest accounting of the
rounds edgerec runs (``Release(population, cohort, z)``: everyone taking part is a plain
Gaussian release; a cohort drawn from a larger population is the smaller of the
sampled-without-replacement bound at ``z / 2`` and the plain one). It searches on that very
function, so the ``z`` it returns is audited, round by round, at the epsilon it was chosen for;
never a formula or a separate model of the rounds.

Cost: plain Gaussian evaluations take microseconds; a sampled one takes dp-accounting about
0.3-0.6 s, and the search needs about 3-11 of them (1-4 s): it brackets the root from the plain
calibration (an upper bound for a sampled cohort, whose epsilon never exceeds the plain one),
then closes the bracket with regula falsi in log-log, where epsilon is nearly a straight line.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .._exceptions import ConfigError
from ._checks import int_at_least, positive_float
from ._dp import check_accountant, check_delta
from .releases import Release, releases_epsilon

__all__ = ["noise_for_releases"]

# The search looks for z in [_Z_MIN, _Z_MAX]. At _Z_MIN one round's epsilon is already in the
# hundreds of thousands (no privacy to speak of); at _Z_MAX nothing is left of the sum.
_Z_MIN, _Z_MAX = 1e-3, 1e6


def noise_for_releases(
    target_epsilon: float,
    *,
    population: int,
    cohort: int,
    rounds: int,
    delta: float = 1e-5,
    accountant: str = "rdp",
    tol: float = 1e-3,
) -> float:
    """The smallest noise multiplier ``z`` whose ``rounds`` releases meet ``target_epsilon``.

    That is the smallest ``z`` with ``releases_epsilon([Release(population, cohort, z)] *
    rounds, delta, accountant) <= target_epsilon``, to within a *relative* ``tol``: the true
    minimum lies in ``(z / (1 + tol), z]``. The returned ``z`` always meets the target (it is
    the upper end of the final bracket, and was evaluated); ``z / (1 + tol)`` does not.
    ``cohort >= population`` (everyone takes part) calibrates plain Gaussian releases;
    ``cohort < population`` the smaller of the sampled-without-replacement and the plain bound.

    ``rounds == 0`` releases nothing: 0.0. If even ``z = 1e-3`` meets the target (targets of
    several hundred thousand), 1e-3 is returned.

    Args:
        target_epsilon: the epsilon the rounds may spend in all (> 0).
        population: devices each cohort is drawn from (>= 1).
        cohort: devices drawn per round (>= 1; ``>= population``: everyone, no sampling).
        rounds: identical rounds planned (>= 0).
        delta: the delta the epsilon holds at, in (0, 1).
        accountant: ``"rdp"`` or ``"pld"`` (the latter for unsampled rounds only).
        tol: relative tolerance on ``z``, in (0, 1).

    Raises:
        ConfigError: a bad argument, ``accountant="pld"`` with a sampled cohort, or no ``z`` up
            to 1e6 meets the target.
        ImportError: dp-accounting is not installed (``pip install 'edgerec[privacy]'``).
    """
    target = positive_float(target_epsilon, "target_epsilon")
    size = int_at_least(population, 1, "population")
    drawn = int_at_least(cohort, 1, "cohort")
    count = int_at_least(rounds, 0, "rounds")
    at = check_delta(delta)
    kind = check_accountant(accountant)
    step = positive_float(tol, "tol")
    if step >= 1.0:
        raise ConfigError(f"tol must be < 1 (a relative tolerance), got {tol!r}")
    if count == 0:
        return 0.0
    if kind == "pld" and drawn < size:
        raise ConfigError("the PLD accountant has no event for a sampled cohort; use accountant='rdp'")

    def plain(z: float) -> float:
        return releases_epsilon((Release(1, 1, z),) * count, at, kind)

    try:
        upper = _smallest_noise(plain, target, step, guess=1.0)
    except ConfigError:
        if drawn >= size:
            raise
        upper = _Z_MAX  # sampling may still reach it
    if drawn >= size:
        return upper

    def sampled(z: float) -> float:
        return releases_epsilon((Release(size, drawn, z),) * count, at, kind)

    return _smallest_noise(sampled, target, step, guess=upper)


def _smallest_noise(eps_of: Callable[[float], float], target: float, tol: float,
                    guess: float) -> float:
    """The upper end ``hi`` of a bracket ``lo < hi <= lo * (1 + tol)`` where ``eps_of``
    (decreasing in ``z``) exceeds ``target`` at ``lo`` and meets it at ``hi`` (both evaluated);
    ``_Z_MIN`` if that already meets the target, ConfigError if ``_Z_MAX`` does not."""
    log_target = math.log(target)

    def g(u: float) -> float:  # > 0: misses the target at z = e^u; <= 0: meets it
        eps = eps_of(math.exp(u))
        if eps <= 0.0 or math.isinf(eps):
            return -math.inf if eps <= 0.0 else math.inf
        return math.log(eps) - log_target

    u_min, u_max = math.log(_Z_MIN), math.log(_Z_MAX)
    u = min(max(math.log(guess), u_min), u_max)
    gu = g(u)
    # Bracket by extrapolating with slope -1 in log-log (epsilon falls about as fast as 1/z, or
    # faster, so that lands just past the root), stepping by a factor of 1.1 to 100 in z.
    if gu <= 0:  # meets the target: walk down until it does not
        hi = (u, gu)
        while True:
            if u <= u_min:
                return math.exp(u)  # even the least noise searched meets the target
            u = max(u - _jump(-gu), u_min)
            gu = g(u)
            if gu > 0:
                lo = (u, gu)
                break
            hi = (u, gu)
    else:  # misses it: walk up until it meets it
        lo = (u, gu)
        while True:
            if u >= u_max:
                raise ConfigError(
                    f"no noise multiplier up to {_Z_MAX:g} reaches epsilon {target:g} here: "
                    "choose a larger epsilon, a larger delta or fewer rounds")
            u = min(u + _jump(gu), u_max)
            gu = g(u)
            if gu <= 0:
                hi = (u, gu)
                break
            lo = (u, gu)
    return math.exp(_refine(g, lo, hi, math.log1p(tol)))


def _jump(excess: float) -> float:
    """A bracketing step in ``log z`` for a log-epsilon ``excess`` over or under the target."""
    return min(max(excess, 0.0) + math.log(1.1), math.log(100.0)) if math.isfinite(excess) \
        else math.log(100.0)


def _refine(g: Callable[[float], float], lo: tuple[float, float], hi: tuple[float, float],
            width: float) -> float:
    """Shrink the bracket ``lo < hi`` (``(u, g(u))`` pairs, ``g(lo) > 0 >= g(hi)``) until
    ``hi - lo <= width``; the final ``hi``.

    Each probe is where the chord crosses zero (regula falsi), with the Anderson-Bjorck
    scaling of an end kept twice in a row (else the probes creep up on the root from one side),
    moved 0.4 ``width`` away from the end that moved last: near the root that lands it on the
    other side, so the bracket closes from both ends. When three probes have not halved the
    bracket, the next is a bisection, so the search is never much slower than bisection.
    """
    (u_lo, g_lo), (u_hi, g_hi) = lo, hi
    widths, moved = [u_hi - u_lo], 0  # moved: -1 the lower end moved last, +1 the upper
    while u_hi - u_lo > width:
        span = u_hi - u_lo
        stalled = len(widths) >= 4 and span > widths[-4] / 2
        if stalled or not (math.isfinite(g_lo) and math.isfinite(g_hi)) or g_lo == g_hi:
            u = u_lo + span / 2
        else:
            u = u_hi - g_hi * span / (g_hi - g_lo) - 0.4 * width * moved
            u = min(max(u, u_lo + 0.01 * span), u_hi - 0.01 * span)
        if not u_lo < u < u_hi:  # a tolerance below float resolution: as close as it gets
            break
        gu = g(u)
        if gu > 0:
            if moved == -1:  # the upper end is kept again: weigh it down
                g_hi *= _scale(gu, g_lo)
            u_lo, g_lo, moved = u, gu, -1
        else:
            if moved == 1:
                g_lo *= _scale(gu, g_hi)
            u_hi, g_hi, moved = u, gu, 1
        widths.append(u_hi - u_lo)
    return u_hi


def _scale(new: float, old: float) -> float:
    """Anderson-Bjorck's factor for the kept end: ``1 - new / old``, or 1/2 if that is not in (0, 1)."""
    m = 1.0 - new / old if math.isfinite(old) and old != 0.0 and math.isfinite(new) else 0.5
    return m if 0.0 < m < 1.0 else 0.5
