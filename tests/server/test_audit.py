"""The audit accounts what was drawn: each completed round as k of N sampled without
replacement (zero-out relation), k = N as a plain Gaussian; rows show q, k, N and the epsilon,
and a round with no noise makes everything after it infinite. Figures are checked against
dp-accounting called here directly, not through the code under test."""

from __future__ import annotations

import json
import math

import dp_accounting as dp
import pytest

from edgerec.privacy import Release
from edgerec_server.audit import (
    amplification,
    audit_rows,
    cohort_of,
    cumulative_epsilon,
    release_of,
)
from edgerec_server.state import RoundRecord

DELTA = 1e-5


def _independent(releases: list[tuple[int, int, float]]) -> float:
    """dp-accounting's epsilon for ``(N, k, z)`` rounds, built here from the drawn numbers.

    Two valid bounds, the smaller wins (``edgerec/privacy/releases.py`` says why): sampling
    without replacement for replace-one neighbours, where swapping who is in a fixed-size cohort
    moves the sum by up to 2C (so multiplier z / 2), and the plain Gaussian of every round.
    """
    relation = dp.NeighboringRelation
    amplified = dp.rdp.RdpAccountant(neighboring_relation=relation.REPLACE_ONE)
    plain = dp.rdp.RdpAccountant(neighboring_relation=relation.REPLACE_SPECIAL)
    for n, k, z in releases:
        sampled = dp.SampledWithoutReplacementDpEvent(n, k, dp.GaussianDpEvent(z / 2))
        amplified.compose(dp.GaussianDpEvent(z) if k == n else sampled)
        plain.compose(dp.GaussianDpEvent(z))
    return min(float(amplified.get_epsilon(DELTA)), float(plain.get_epsilon(DELTA)))


def _record(rid: int, *, population: int, cohort: int, z: float = 1.0, state: str = "done",
            epsilon: float | None = None, sampled: bool = True, q: float = 0.5) -> RoundRecord:
    params = {"min_participants": 3, "max_participants": cohort, "clip": 1.0, "noise_multiplier": z,
              "threshold": 3, "colluders": 0, "strategy": "fedavg"}
    if sampled:
        params["sampling_rate"] = q
    return RoundRecord(rid, params, state, 4, 0.0, 100.0 * rid, 100.0 * rid + 50, b"s" * 32, rid,
                       rid + 1 if state == "done" else None, 10, population,
                       cohort if state == "done" else 2, cohort if state == "done" else None,
                       epsilon, "" if state == "done" else "too few")


class _State:
    """Just what ``audit_rows`` reads from a StateBackend."""

    def __init__(self, records: list[RoundRecord]) -> None:
        self.records = records

    def rounds(self, state: str | None = None) -> list[RoundRecord]:
        return [r for r in self.records if state is None or r.state == state]

    def messages(self, round_id: int) -> list:
        return []


@pytest.mark.parametrize("releases", [
    [(20, 4, 8.0), (20, 5, 8.0), (20, 4, 8.0), (20, 20, 8.0)],  # amplification pays
    [(16, 7, 1.0), (16, 9, 1.0), (16, 16, 1.5)],  # it does not: the plain Gaussians are tighter
])
def test_cumulative_epsilon_is_dp_accountings_for_the_drawn_cohorts(releases):
    got = cumulative_epsilon([Release(n, k, z) for n, k, z in releases], DELTA)
    assert got == pytest.approx(_independent(releases), rel=1e-9)
    poisson = dp.rdp.RdpAccountant()  # what the audit used to say: Poisson at q = k / N
    for n, k, z in releases:
        poisson.compose(dp.PoissonSampledDpEvent(k / n, dp.GaussianDpEvent(z)))
    assert got != pytest.approx(poisson.get_epsilon(DELTA), rel=0.05)


def test_a_server_set_to_pld_still_accounts_sampled_rounds():
    releases = [(20, 4, 8.0), (20, 20, 8.0)]
    got = cumulative_epsilon([Release(n, k, z) for n, k, z in releases], DELTA, "pld")
    assert got == pytest.approx(_independent(releases), rel=1e-9)  # with RDP: PLD has no event


def test_no_rounds_cost_nothing_and_no_noise_is_infinite():
    assert cumulative_epsilon([], DELTA) == 0.0
    assert cumulative_epsilon([Release(20, 8, 1.0), Release(20, 8, 0.0)], DELTA) == math.inf


def test_a_round_opened_before_sampling_had_every_active_device_as_member():
    legacy = _record(1, population=12, cohort=4, sampled=False)  # a cap of 4, first come
    assert cohort_of(legacy) == 12 and release_of(legacy) == Release(12, 12, 1.0)
    assert cohort_of(_record(2, population=12, cohort=4)) == 4
    assert amplification(Release(12, 12, 1.0)) == "none"
    assert amplification(Release(12, 4, 1.0)) == "sampling without replacement, 4 of 12"


def test_rows_show_the_sampling_used_and_the_epsilon_of_exactly_those_releases():
    first = _independent([(16, 6, 1.0)])
    second = _independent([(16, 6, 1.0), (16, 16, 1.0)])
    state = _State([
        _record(1, population=16, cohort=6, epsilon=first, q=0.4),
        _record(2, population=16, cohort=5, state="aborted", q=0.4),
        _record(3, population=16, cohort=16, epsilon=second, q=1.0),
    ])
    rows = audit_rows(state, DELTA)
    assert [(r["sampling_rate"], r["cohort"], r["population"]) for r in rows] == [
        (0.4, 6, 16), (0.4, 5, 16), (1.0, 16, 16)]
    assert [r["amplification"] for r in rows] == [
        "sampling without replacement, 6 of 16", "sampling without replacement, 5 of 16", "none"]
    assert {r["neighbouring_relation"] for r in rows} == {"zero-out"}
    assert [r["cumulative_epsilon"] for r in rows] == pytest.approx([first, None, second])
    assert all(r["differentially_private"] for r in rows)
    json.dumps(rows, allow_nan=False)  # what GET /v1/audit sends


def test_a_stored_poisson_figure_from_before_sampling_is_recomputed():
    stale = 0.5  # what the old audit stored for a round that in fact had no sampling at all
    state = _State([_record(1, population=10, cohort=4, epsilon=stale, sampled=False)])
    (row,) = audit_rows(state, DELTA)
    assert row["cohort"] == 10 and row["amplification"] == "none"
    assert row["cumulative_epsilon"] == pytest.approx(_independent([(10, 10, 1.0)]), rel=1e-9)


def test_no_noise_is_shown_as_infinite_from_then_on():
    state = _State([_record(1, population=10, cohort=5, z=0.0, epsilon=math.inf),
                    _record(2, population=10, cohort=5, state="aborted"),
                    _record(3, population=10, cohort=5, z=1.0, epsilon=math.inf)])
    rows = audit_rows(state, DELTA)
    assert [r["cumulative_epsilon"] for r in rows] == [None, None, None]
    assert [r["differentially_private"] for r in rows] == [False, False, False]
    json.dumps(rows, allow_nan=False)
