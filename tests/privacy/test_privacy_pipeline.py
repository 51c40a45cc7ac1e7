"""privatize -> sum -> aggregate_decode, and the package surface."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import edgerec.privacy as privacy
from edgerec import ConfigError
from edgerec.privacy import (
    DistributedNoise,
    FixedPoint,
    PrivateDelta,
    aggregate_decode,
    clip_l2,
    privatize,
    rounding_bound,
    sum_encodings,
)


def test_round_trip_without_noise_is_the_mean_of_clipped_deltas():
    fp = FixedPoint(clip=1.0, noise_std=0.0, max_clients=20)
    rng = np.random.default_rng(0)
    deltas = rng.normal(scale=0.6, size=(20, 30))
    sent = [privatize(d, clip=1.0, noise=None, fp=fp, rng=rng) for d in deltas]
    mean = aggregate_decode(sum_encodings([s.encoded for s in sent]), fp, 20)
    expected = np.mean([clip_l2(d, 1.0)[0] for d in deltas], axis=0)
    assert np.all(np.abs(mean - expected) <= rounding_bound(fp, 20) / 20 * (1 + 1e-9))


def test_round_trip_with_noise_has_the_calibrated_noise_scale():
    chi2 = pytest.importorskip("scipy.stats").chi2
    noise = DistributedNoise(clip=1.0, noise_multiplier=1.0, min_survivors=10)
    fp = FixedPoint.for_noise(noise, max_clients=10)
    rng = np.random.default_rng(1)
    sent = [privatize(np.zeros(5_000), clip=1.0, noise=noise, fp=fp, rng=rng) for _ in range(10)]
    total = aggregate_decode(sum_encodings([s.encoded for s in sent]), fp, 10) * 10
    # After encoding, summing and decoding, the sum of 10 shares still carries std z*C = 1:
    # (n-1) s^2 / 1 ~ chi2(n-1), checked at a 1e-6 false-alarm rate.
    statistic = (total.size - 1) * np.var(total, ddof=1)
    low, high = chi2.ppf([0.5e-6, 1 - 0.5e-6], total.size - 1)
    assert low <= statistic <= high


def test_private_delta_records_norm_and_clipping():
    fp = FixedPoint(1.0, 0.0, 5)
    rng = np.random.default_rng(0)
    long = privatize(np.array([3.0, 4.0]), clip=1.0, noise=None, fp=fp, rng=rng)
    short = privatize(np.array([0.3, 0.4]), clip=1.0, noise=None, fp=fp, rng=rng)
    assert isinstance(long, PrivateDelta)
    assert (long.original_norm, long.clipped) == (5.0, True)
    assert short.original_norm == pytest.approx(0.5) and not short.clipped
    assert long.encoded.dtype == np.uint32 and not long.encoded.flags.writeable


def test_same_seed_same_payload():
    noise = DistributedNoise(1.0, 1.0, 3)
    fp = FixedPoint.for_noise(noise, 3)
    first, second = (
        privatize(np.ones(4), clip=1.0, noise=noise, fp=fp, rng=np.random.default_rng(9))
        for _ in range(2)
    )
    assert np.array_equal(first.encoded, second.encoded)


def test_nan_delta_never_leaves():
    fp = FixedPoint(1.0, 0.0, 5)
    with pytest.raises(ConfigError):
        rng = np.random.default_rng(0)
        privatize(np.array([np.nan, 1.0]), clip=1.0, noise=None, fp=fp, rng=rng)


@pytest.mark.parametrize(
    "noise,fp",
    [
        (DistributedNoise(0.5, 1.0, 4), FixedPoint(1.0, 0.5, 4)),  # noise for a smaller clip
        (None, FixedPoint(0.5, 0.0, 4)),  # code covers a smaller clip
        (DistributedNoise(1.0, 1.0, 4), FixedPoint(1.0, 0.1, 4)),  # too little noise headroom
    ],
)
def test_inconsistent_parameters_are_config_errors(noise, fp):
    with pytest.raises(ConfigError):
        privatize(np.ones(2), clip=1.0, noise=noise, fp=fp, rng=np.random.default_rng(0))


def test_public_names():
    for name in privacy.__all__:
        assert hasattr(privacy, name), name
    assert sorted(privacy.__all__) == privacy.__all__


def test_importing_the_package_does_not_load_dp_accounting():
    code = (
        "import sys\n"
        "sys.modules['dp_accounting'] = None  # as if not installed\n"
        "import edgerec.privacy as p\n"
        "assert p.epsilon(10, 1, 0.0, 5) == float('inf')  # needs no library\n"
        "try:\n"
        "    p.epsilon(10, 1, 1.0, 5)\n"
        "except ImportError as exc:\n"
        "    assert 'edgerec[privacy]' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('expected ImportError')\n"
    )
    check = "import sys, edgerec.privacy; assert 'dp_accounting' not in sys.modules"
    for source in (check, code):
        subprocess.run([sys.executable, "-c", source], check=True, timeout=60)
