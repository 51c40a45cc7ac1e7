"""noise_for_releases: users choose epsilon, and z is the least noise that meets it.

Every claim is checked against the accounting it inverts (``releases_epsilon``) and against
dp-accounting called by hand, not through edgerec.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerec import ConfigError
from edgerec.privacy import Release, noise_for_releases, releases_epsilon

dp = pytest.importorskip("dp_accounting", reason="accounting needs dp-accounting")

TOL = 1e-3


def honest(population: int, cohort: int, z: float, rounds: int, delta: float = 1e-5) -> float:
    return releases_epsilon([Release(population, cohort, z)] * rounds, delta)


def by_hand(population: int, cohort: int, z: float, rounds: int, delta: float = 1e-5) -> float:
    """dp-accounting without edgerec: a plain Gaussian release per round (zero-out neighbours)
    and, for a cohort drawn from a larger population, also sampling without replacement at
    z / 2 (replace-one neighbours); the smaller epsilon of the two valid bounds."""
    plain = dp.rdp.RdpAccountant(neighboring_relation=dp.NeighboringRelation.REPLACE_SPECIAL)
    plain.compose(dp.SelfComposedDpEvent(event=dp.GaussianDpEvent(noise_multiplier=z), count=rounds))
    if cohort >= population:
        return plain.get_epsilon(delta)
    amplified = dp.rdp.RdpAccountant(neighboring_relation=dp.NeighboringRelation.REPLACE_ONE)
    amplified.compose(dp.SelfComposedDpEvent(
        event=dp.SampledWithoutReplacementDpEvent(
            source_dataset_size=population, sample_size=cohort,
            event=dp.GaussianDpEvent(noise_multiplier=z / 2)),
        count=rounds))
    return min(plain.get_epsilon(delta), amplified.get_epsilon(delta))


def assert_tight(target: float, population: int, cohort: int, rounds: int, delta: float = 1e-5,
                 tol: float = TOL) -> float:
    z = noise_for_releases(target, population=population, cohort=cohort, rounds=rounds,
                           delta=delta, tol=tol)
    assert honest(population, cohort, z, rounds, delta) <= target  # meets the target
    assert honest(population, cohort, z * (1 - 2 * tol), rounds, delta) > target  # the least that does
    return z


@pytest.mark.parametrize("target, rounds", [(1.0, 1), (8.0, 20), (3.0, 500), (1e4, 100)])
def test_full_participation_gets_the_least_noise_that_meets_the_target(target, rounds):
    z = assert_tight(target, 943, 943, rounds)
    # Everyone takes part: the population does not matter (no amplification).
    assert noise_for_releases(target, population=10, cohort=50, rounds=rounds) == z


@pytest.mark.parametrize("target, population, cohort, rounds",
                         [(8.0, 943, 100, 20), (2.0, 50, 10, 5), (50.0, 10_000, 10, 5)])
def test_sampled_cohorts_get_the_least_noise_that_meets_the_target(target, population, cohort, rounds):
    z = assert_tight(target, population, cohort, rounds)
    # Sampling can only help: never more noise than if everyone took part.
    assert z <= noise_for_releases(target, population=population, cohort=population, rounds=rounds)


@pytest.mark.parametrize("target, population, cohort, rounds",
                         [(8.0, 943, 943, 20), (8.0, 943, 100, 20), (1.0, 500, 60, 3)])
def test_dp_accounting_by_hand_agrees_at_the_calibrated_z(target, population, cohort, rounds):
    z = noise_for_releases(target, population=population, cohort=cohort, rounds=rounds)
    theirs = by_hand(population, cohort, z, rounds)
    assert theirs == pytest.approx(honest(population, cohort, z, rounds), rel=1e-6)
    assert theirs <= target * (1 + 1e-6)


def test_tolerance_delta_and_accountant_are_honoured():
    loose = assert_tight(8.0, 943, 943, 20, tol=0.05)
    tight = assert_tight(8.0, 943, 943, 20, tol=1e-6)
    assert tight <= loose <= tight * 1.05
    assert assert_tight(8.0, 943, 943, 20, delta=1e-9) > tight  # a smaller delta costs noise
    pld = noise_for_releases(2.0, population=5, cohort=5, rounds=2, accountant="pld")
    pld_eps = releases_epsilon([Release(5, 5, pld)] * 2, 1e-5, "pld")
    assert pld_eps <= 2.0 < releases_epsilon([Release(5, 5, pld * (1 - 2 * TOL))] * 2, 1e-5, "pld")
    assert pld < noise_for_releases(2.0, population=5, cohort=5, rounds=2)  # PLD is tighter


def test_edges():
    assert noise_for_releases(1.0, population=943, cohort=100, rounds=0) == 0.0  # nothing released
    # A target no noise worth the name misses: the least noise searched, which meets it.
    z = noise_for_releases(1e7, population=100, cohort=100, rounds=1)
    assert z == pytest.approx(1e-3) and honest(100, 100, z, 1) <= 1e7


@pytest.mark.parametrize("kwargs", [
    {"target_epsilon": 0.0}, {"target_epsilon": -1.0}, {"target_epsilon": math.nan},
    {"target_epsilon": math.inf}, {"target_epsilon": True}, {"target_epsilon": "8"},
    {"population": 0}, {"population": 2.5}, {"cohort": 0}, {"cohort": None}, {"rounds": -1},
    {"rounds": 1.0}, {"delta": 0.0}, {"delta": 1.0}, {"delta": math.nan}, {"accountant": "moments"},
    {"tol": 0.0}, {"tol": 1.0}, {"tol": -1e-3}, {"accountant": "pld", "cohort": 10},
])
def test_bad_arguments_are_config_errors(kwargs):
    args = {"target_epsilon": 8.0, "population": 100, "cohort": 100, "rounds": 10, **kwargs}
    target = args.pop("target_epsilon")
    with pytest.raises(ConfigError):
        noise_for_releases(target, **args)


def test_an_unreachable_target_is_a_config_error():
    with pytest.raises(ConfigError, match="no noise multiplier up to"):
        noise_for_releases(1e-6, population=10, cohort=10, rounds=1000)


@settings(max_examples=60, deadline=None)
@given(target=st.floats(0.05, 1e4), rounds=st.integers(1, 2000),
       delta=st.sampled_from([1e-3, 1e-5, 1e-7]), tol=st.sampled_from([1e-2, 1e-3, 1e-4]))
def test_property_full_participation(target, rounds, delta, tol):
    assert_tight(target, 20, 20, rounds, delta, tol)


@settings(max_examples=15, deadline=None)
@given(target=st.floats(0.5, 50.0), population=st.integers(20, 2000), share=st.floats(0.01, 0.9),
       rounds=st.integers(1, 50))
def test_property_sampled_cohorts(target, population, share, rounds):
    cohort = max(1, min(population - 1, round(share * population)))
    assert_tight(target, population, cohort, rounds)
