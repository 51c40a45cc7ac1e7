"""The audit's epsilon: runs of identical rounds are composed at once, with the same result
as composing round by round (which the audit used to do, quadratically over a server's life)."""

from __future__ import annotations

import dp_accounting as dp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerec_server.audit import cumulative_epsilon

_RELEASES = st.lists(st.sampled_from([(0.1, 1.0), (0.1, 0.7), (0.3, 1.5), (1.0, 4.0)]),
                     min_size=1, max_size=8)


def _round_by_round(releases, delta, accountant):
    acct = dp.rdp.RdpAccountant() if accountant == "rdp" else dp.pld.PLDAccountant()
    for q, z in releases:
        acct.compose(dp.PoissonSampledDpEvent(q, dp.GaussianDpEvent(z)))
    return acct.get_epsilon(delta)


@settings(max_examples=25, deadline=None)
@given(_RELEASES)
def test_grouped_composition_equals_round_by_round_rdp(releases):
    assert cumulative_epsilon(releases, 1e-5) == pytest.approx(_round_by_round(releases, 1e-5, "rdp"), rel=1e-9)


def test_grouped_composition_equals_round_by_round_pld():
    releases = [(0.1, 1.0)] * 3 + [(0.3, 1.5)] + [(0.1, 1.0)] * 2
    assert cumulative_epsilon(releases, 1e-5, "pld") == pytest.approx(
        _round_by_round(releases, 1e-5, "pld"), rel=1e-6)


def test_more_rounds_cost_more_and_no_noise_is_infinite():
    assert cumulative_epsilon([], 1e-5) == 0.0
    assert cumulative_epsilon([(0.1, 1.0)] * 10, 1e-5) < cumulative_epsilon([(0.1, 1.0)] * 11, 1e-5)
    assert cumulative_epsilon([(0.1, 1.0), (0.1, 0.0)], 1e-5) == float("inf")
