"""DistributedNoise: each share's std, and the sum's std, match the calibration."""

from __future__ import annotations

import dataclasses

import pytest

from edgerec import ConfigError
from edgerec.privacy import DistributedNoise


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
