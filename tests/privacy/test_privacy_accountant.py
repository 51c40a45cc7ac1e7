"""The accountant wrapper: wired to dp-accounting correctly, monotone, plausible."""

from __future__ import annotations

import dataclasses
import math

import pytest

from edgerec import ConfigError
from edgerec.privacy import PrivacyReport, epsilon, noise_for_epsilon, privacy_report

dp_accounting = pytest.importorskip("dp_accounting", reason="accounting needs dp-accounting")

POP, PER_ROUND = 943, 50  # MovieLens-100K's users, a plausible cohort


def direct_epsilon(accountant, q, z, rounds, delta):
    """dp-accounting called by hand, the way its documentation shows."""
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), rounds
    )
    return accountant.compose(event).get_epsilon(delta)


def test_matches_rdp_called_directly():
    ours = epsilon(POP, PER_ROUND, 1.1, 200, 1e-6)
    theirs = direct_epsilon(dp_accounting.rdp.RdpAccountant(), PER_ROUND / POP, 1.1, 200, 1e-6)
    assert ours == theirs


def test_matches_pld_called_directly_and_is_tighter_than_rdp():
    ours = epsilon(POP, PER_ROUND, 2.0, 50, accountant="pld")
    theirs = direct_epsilon(dp_accounting.pld.PLDAccountant(), PER_ROUND / POP, 2.0, 50, 1e-5)
    assert ours == pytest.approx(theirs, rel=1e-12)
    assert ours <= epsilon(POP, PER_ROUND, 2.0, 50)


def test_epsilon_decreases_as_noise_grows():
    values = [epsilon(POP, PER_ROUND, z, 100) for z in (0.6, 0.8, 1.0, 2.0, 4.0)]
    assert all(b < a for a, b in zip(values, values[1:])), values


def test_epsilon_increases_with_rounds_and_sampling_rate():
    by_rounds = [epsilon(POP, PER_ROUND, 1.0, r) for r in (1, 10, 100, 1000)]
    assert all(b > a for a, b in zip(by_rounds, by_rounds[1:])), by_rounds
    by_q = [epsilon(POP, k, 1.0, 100) for k in (10, 50, 200, POP)]
    assert all(b > a for a, b in zip(by_q, by_q[1:])), by_q


def test_known_regime_is_plausible():
    # DP-SGD's textbook setting: q = 0.01, z = 1.0, 1000 steps, delta = 1e-5. Published RDP
    # figures for it are a little above 2; anything far from that means mis-wiring.
    eps = epsilon(100_000, 1000, 1.0, 1000, 1e-5)
    print(f"q=0.01, z=1.0, 1000 rounds, delta=1e-5: epsilon = {eps:.3f} (rdp)")
    assert 1.0 < eps < 4.0


def test_no_noise_is_infinite_and_no_rounds_is_free():
    assert epsilon(POP, PER_ROUND, 0.0, 10) == math.inf
    assert epsilon(POP, PER_ROUND, 1.0, 0) == 0.0


def test_noise_for_epsilon_meets_the_target_tightly():
    target, rounds = 3.0, 100
    z = noise_for_epsilon(POP, PER_ROUND, target, rounds, tol=1e-3)
    assert epsilon(POP, PER_ROUND, z, rounds) <= target
    assert epsilon(POP, PER_ROUND, z - 2e-3, rounds) > target


def test_noise_for_epsilon_edges():
    assert noise_for_epsilon(POP, PER_ROUND, 1.0, 0) == 0.0
    assert noise_for_epsilon(POP, 1, 1e6, 1) == pytest.approx(0.1)  # the search floor suffices
    with pytest.raises(ConfigError):
        noise_for_epsilon(POP, PER_ROUND, 0.0, 10)


def test_report_carries_its_parameters():
    report = privacy_report(POP, PER_ROUND, 1.0, 20)
    assert report == PrivacyReport(epsilon(POP, PER_ROUND, 1.0, 20), 1e-5, 20, PER_ROUND / POP, 1.0)
    assert report.accountant == "rdp" and "20 rounds" in str(report)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.epsilon = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "args,kwargs",
    [
        ((0, 1, 1.0, 10), {}),  # empty population
        ((10, 0, 1.0, 10), {}),  # nobody per round
        ((10, 11, 1.0, 10), {}),  # more per round than exist
        ((10.5, 1, 1.0, 10), {}),  # population must be a count
        ((10, 1, -1.0, 10), {}),
        ((10, 1, float("nan"), 10), {}),
        ((10, 1, 1.0, -1), {}),
        ((10, 1, 1.0, 2.5), {}),
        ((10, 1, 1.0, 10, 0.0), {}),
        ((10, 1, 1.0, 10, 1.0), {}),
        ((10, 1, 1.0, 10), {"accountant": "moments"}),
    ],
)
def test_bad_inputs_are_config_errors(args, kwargs):
    with pytest.raises(ConfigError):
        epsilon(*args, **kwargs)


def test_example_figures_move_the_right_way():
    """The grid of figures the docs quote: more noise costs less, more rounds cost more, and
    each report says what it was computed for."""
    grid = {(r, z): privacy_report(POP, PER_ROUND, z, r) for r in (20, 100) for z in (0.5, 1.0, 2.0)}
    for (rounds, z), report in grid.items():
        assert (report.rounds, report.z, report.q) == (rounds, z, PER_ROUND / POP)
        assert 0 < report.epsilon < math.inf
        assert f"after {rounds} rounds" in str(report)
    for rounds in (20, 100):
        assert grid[rounds, 0.5].epsilon > grid[rounds, 1.0].epsilon > grid[rounds, 2.0].epsilon
    for z in (0.5, 1.0, 2.0):
        assert grid[100, z].epsilon > grid[20, z].epsilon


def test_unreachable_target_is_a_config_error(monkeypatch):
    def no_bracket(*args, **kwargs):
        raise dp_accounting.mechanism_calibration.NoBracketIntervalFoundError("none")

    monkeypatch.setattr(dp_accounting, "calibrate_dp_mechanism", no_bracket)
    with pytest.raises(ConfigError, match="no noise multiplier"):
        noise_for_epsilon(POP, PER_ROUND, 1e-3, 10)
