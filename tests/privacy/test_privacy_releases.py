"""releases_epsilon / releases_delta / device_epsilon: wired to dp-accounting as documented."""

from __future__ import annotations

import dataclasses
import math

import pytest

from edgerec import ConfigError
from edgerec.privacy import Release, device_epsilon, epsilon, releases_delta, releases_epsilon

dp = pytest.importorskip("dp_accounting", reason="accounting needs dp-accounting")

POP, COHORT = 943, 100  # MovieLens-100K's users, a plausible cohort
REPLACE_ONE = dp.NeighboringRelation.REPLACE_ONE
ZERO_OUT = dp.NeighboringRelation.REPLACE_SPECIAL


def independent_epsilon(population, cohort, z, rounds, delta):
    """dp-accounting called by hand: the two valid bounds of releases.py, the smaller one."""
    plain = dp.rdp.RdpAccountant(neighboring_relation=ZERO_OUT)
    plain.compose(dp.SelfComposedDpEvent(dp.GaussianDpEvent(z), rounds))
    amplified = dp.rdp.RdpAccountant(neighboring_relation=REPLACE_ONE)
    amplified.compose(dp.SelfComposedDpEvent(
        dp.SampledWithoutReplacementDpEvent(population, cohort, dp.GaussianDpEvent(z / 2)), rounds))
    return min(plain.get_epsilon(delta), amplified.get_epsilon(delta))


def test_sampled_rounds_match_dp_accounting_called_directly():
    ours = releases_epsilon([Release(POP, COHORT, 1.0)] * 50, 1e-5)
    assert ours == independent_epsilon(POP, COHORT, 1.0, 50, 1e-5)
    print(f"943 devices, cohorts of 100, z=1, 50 rounds: epsilon {ours:.2f} at delta 1e-5; "
          f"the Poisson idealisation says {epsilon(POP, COHORT, 1.0, 50):.2f}")
    # The idealisation (hidden cohorts, Poisson) is optimistic; the honest figure is larger.
    assert epsilon(POP, COHORT, 1.0, 50) < ours


def test_unsampled_rounds_are_plain_gaussian_compositions():
    acct = dp.rdp.RdpAccountant(neighboring_relation=ZERO_OUT)
    acct.compose(dp.SelfComposedDpEvent(dp.GaussianDpEvent(2.0), 10))
    assert releases_epsilon([Release(50, 50, 2.0)] * 10, 1e-6) == acct.get_epsilon(1e-6)
    assert releases_epsilon([Release(50, 80, 2.0)] * 10, 1e-6) == acct.get_epsilon(1e-6)  # cohort > population
    pld = dp.pld.PLDAccountant(neighboring_relation=ZERO_OUT)
    pld.compose(dp.SelfComposedDpEvent(dp.GaussianDpEvent(2.0), 10))
    ours_pld = releases_epsilon([Release(50, 50, 2.0)] * 10, 1e-6, "pld")
    assert ours_pld == pytest.approx(pld.get_epsilon(1e-6), rel=1e-12)
    assert ours_pld < releases_epsilon([Release(50, 50, 2.0)] * 10, 1e-6)  # PLD is tighter


def test_a_mixed_run_composes_every_release_in_order():
    runs = [Release(1, 1, 1.5)] * 3 + [Release(1, 1, 3.0)] + [Release(1, 1, 1.5)] * 2
    acct = dp.rdp.RdpAccountant(neighboring_relation=ZERO_OUT)
    for r in runs:
        acct.compose(dp.GaussianDpEvent(r.noise_multiplier))
    assert releases_epsilon(runs, 1e-5) == pytest.approx(acct.get_epsilon(1e-5), rel=1e-12)


def test_delta_and_epsilon_are_two_views_of_one_bound():
    runs = [Release(200, 20, 1.0)] * 5
    eps = releases_epsilon(runs, 1e-4)
    assert releases_delta(runs, eps) <= 1e-4 * (1 + 1e-6)
    assert releases_delta(runs, eps * 0.9) > 1e-4
    assert releases_delta(runs, 0.0) <= 1.0


def test_device_epsilon_is_the_unamplified_bound():
    acct = dp.rdp.RdpAccountant(neighboring_relation=ZERO_OUT)
    acct.compose(dp.GaussianDpEvent(1.0)).compose(dp.GaussianDpEvent(2.0))
    assert device_epsilon([1.0, 2.0], 1e-5) == pytest.approx(acct.get_epsilon(1e-5), rel=1e-12)
    # The population figure (with sampling) never exceeds the device's own.
    assert releases_epsilon([Release(POP, COHORT, 1.0)] * 3, 1e-5) <= device_epsilon([1.0] * 3, 1e-5)


def test_no_noise_is_infinite_and_nothing_is_free():
    assert device_epsilon([1.0, 0.0, 1.0], 1e-5) == math.inf
    assert device_epsilon([], 1e-5) == 0.0
    assert releases_epsilon([], 1e-5) == 0.0 and releases_delta([], 1.0) == 0.0
    assert releases_epsilon([Release(10, 2, 1.0), Release(10, 2, 0.0)], 1e-5) == math.inf
    assert releases_delta([Release(10, 2, 0.0)], 5.0) == 1.0


def test_pld_refuses_sampled_releases():
    with pytest.raises(ConfigError, match="rdp"):
        releases_epsilon([Release(10, 3, 1.0)], 1e-5, "pld")
    with pytest.raises(ConfigError, match="rdp"):
        releases_delta([Release(10, 3, 1.0)], 1.0, "pld")


def test_release_parameters():
    r = Release(100, 10, 1.0)
    assert r.sampled and r.sampling_rate == 0.1
    assert not Release(10, 10, 1.0).sampled and Release(10, 20, 1.0).sampling_rate == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.cohort = 5  # type: ignore[misc]


@pytest.mark.parametrize("args", [(0, 1, 1.0), (10, 0, 1.0), (10, 1, -1.0), (10, 1, float("inf")),
                                  (10.0, 1, 1.0), (10, True, 1.0)])
def test_bad_releases_are_config_errors(args):
    with pytest.raises(ConfigError):
        Release(*args)


@pytest.mark.parametrize(
    "call",
    [
        lambda: releases_epsilon([(10, 1, 1.0)], 1e-5),  # a tuple, not a Release
        lambda: releases_epsilon(Release(10, 1, 1.0), 1e-5),  # not a sequence
        lambda: releases_epsilon([Release(10, 1, 1.0)], 0.0),
        lambda: releases_epsilon([Release(10, 1, 1.0)], 1.0),
        lambda: releases_epsilon([Release(10, 1, 1.0)], 1e-5, "moments"),
        lambda: releases_delta([Release(10, 1, 1.0)], -1.0),
        lambda: device_epsilon([1.0, -0.5], 1e-5),
        lambda: device_epsilon([float("nan")], 1e-5),
    ],
)
def test_bad_arguments_are_config_errors(call):
    with pytest.raises(ConfigError):
        call()
