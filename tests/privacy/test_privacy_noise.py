"""DistributedNoise: each share's std, and the sum's std, match the calibration."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from edgerec import ConfigError
from edgerec.privacy import DistributedNoise, add_noise

stats = pytest.importorskip("scipy.stats")

ALPHA = 1e-6  # chance that a correct implementation fails a statistical check below


def std_within_chi2_interval(samples: np.ndarray, sigma: float) -> bool:
    """Whether samples are consistent with N(0, sigma^2): (n-1) s^2 / sigma^2 ~ chi2(n-1)."""
    n = samples.size
    statistic = (n - 1) * np.var(samples, ddof=1) / sigma**2
    low, high = stats.chi2.ppf([ALPHA / 2, 1 - ALPHA / 2], n - 1)
    return bool(low <= statistic <= high)


def test_per_client_std_formula():
    spec = DistributedNoise(clip=2.0, noise_multiplier=1.5, min_survivors=9)
    assert spec.per_client_std == pytest.approx(1.5 * 2.0 / 3.0)
    assert spec.sum_std(9) == pytest.approx(1.5 * 2.0)
    assert spec.effective_multiplier(9) == pytest.approx(1.5)


def test_more_survivors_only_add_noise():
    spec = DistributedNoise(clip=1.0, noise_multiplier=1.0, min_survivors=10)
    multipliers = [spec.effective_multiplier(k) for k in range(10, 40)]
    assert multipliers[0] == pytest.approx(1.0)
    assert all(b > a for a, b in zip(multipliers, multipliers[1:]))
    assert spec.effective_multiplier(9) < 1.0  # why the round must abort below min_survivors


def test_measured_per_client_std_matches():
    spec = DistributedNoise(clip=0.5, noise_multiplier=1.2, min_survivors=7)
    noise = add_noise(np.zeros(200_000), spec, np.random.default_rng(1))
    assert std_within_chi2_interval(noise, spec.per_client_std)
    # The mean is 0: a z-test at the same confidence.
    z_crit = stats.norm.ppf(1 - ALPHA / 2)
    assert abs(noise.mean()) <= z_crit * spec.per_client_std / math.sqrt(noise.size)


def test_sum_over_min_survivors_carries_z_times_clip():
    spec = DistributedNoise(clip=1.0, noise_multiplier=0.8, min_survivors=10)
    rng = np.random.default_rng(2)
    total = sum(add_noise(np.zeros(20_000), spec, rng) for _ in range(spec.min_survivors))
    assert std_within_chi2_interval(total, spec.noise_multiplier * spec.clip)


def test_noise_is_added_to_the_vector_and_reproducible():
    spec = DistributedNoise(clip=1.0, noise_multiplier=1.0, min_survivors=4)
    vec = np.array([0.3, -0.4])
    a = add_noise(vec, spec, np.random.default_rng(7))
    b = add_noise(vec, spec, np.random.default_rng(7))
    assert np.array_equal(a, b) and not np.array_equal(a, vec)
    alone = add_noise(np.zeros(2), spec, np.random.default_rng(7))
    np.testing.assert_allclose(a - vec, alone, atol=1e-15)


def test_zero_multiplier_adds_nothing_and_draws_nothing():
    spec = DistributedNoise(clip=1.0, noise_multiplier=0.0, min_survivors=3)
    rng = np.random.default_rng(3)
    before = rng.bit_generator.state
    vec = np.array([1.0, 2.0])
    out = add_noise(vec, spec, rng)
    assert np.array_equal(out, vec) and out is not vec
    assert rng.bit_generator.state == before


@pytest.mark.parametrize(
    "kwargs",
    [
        {"clip": 0.0},
        {"clip": float("inf")},
        {"noise_multiplier": -0.1},
        {"noise_multiplier": float("nan")},
        {"min_survivors": 0},
        {"min_survivors": 2.5},
        {"min_survivors": True},
    ],
)
def test_bad_parameters_are_config_errors(kwargs):
    params = {"clip": 1.0, "noise_multiplier": 1.0, "min_survivors": 5, **kwargs}
    with pytest.raises(ConfigError):
        DistributedNoise(**params)


def test_spec_is_frozen():
    spec = DistributedNoise(1.0, 1.0, 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.clip = 2.0  # type: ignore[misc]


def test_nan_vector_and_bad_rng_are_refused():
    spec = DistributedNoise(1.0, 1.0, 5)
    with pytest.raises(ConfigError):
        add_noise(np.array([np.nan]), spec, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="Generator"):
        add_noise(np.zeros(2), spec, np.random.RandomState(0))  # type: ignore[arg-type]
