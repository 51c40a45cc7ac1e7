"""discrete_gaussian: the exact discrete Gaussian at small sigma, the normal at large, and fast.

Every stream is seeded (SecureRandom.reproducible), so each statistical test is deterministic;
the thresholds are set so that a correct sampler would fail one with probability about 1e-6.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from edgerec import ConfigError
from edgerec.privacy import SecureRandom, discrete_gaussian

stats = pytest.importorskip("scipy.stats")

ALPHA = 1e-6
N = 200_000


def exact_pmf(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Support and probabilities of N_Z(0, sigma^2), truncated where the mass is below 1e-300."""
    top = int(math.ceil(40 * sigma)) + 10
    k = np.arange(-top, top + 1)
    w = np.exp(-(k.astype(np.float64) ** 2) / (2 * sigma**2))
    return k, w / w.sum()


def chi_square_pvalue(sample: np.ndarray, sigma: float) -> float:
    support, pmf = exact_pmf(sigma)
    expected = sample.size * pmf
    # Bins with at least 20 expected draws; the two tails are pooled into one bin each.
    keep = expected >= 20
    lo, hi = support[keep][0], support[keep][-1]
    counts = np.array([np.sum(sample < lo)] + [np.sum(sample == k) for k in support[keep]]
                      + [np.sum(sample > hi)], dtype=np.float64)
    wanted = np.concatenate([[expected[support < lo].sum()], expected[keep], [expected[support > hi].sum()]])
    result = stats.chisquare(counts, wanted)
    print(f"sigma={sigma}: chi2={result.statistic:.1f} over {counts.size} bins, p={result.pvalue:.3g}")
    return float(result.pvalue)


@pytest.mark.parametrize("sigma", [0.8, 3.0, 10.0])
def test_chi_square_against_the_exact_pmf(sigma):
    sample = discrete_gaussian(sigma, N, SecureRandom.reproducible(int(sigma * 10)))
    assert sample.dtype == np.int64
    assert chi_square_pvalue(sample, sigma) > ALPHA


def test_the_chi_square_test_tells_rounded_floats_apart():
    # What the old code did: a float Gaussian rounded to the grid. At sigma 0.8 it puts 0.468 of
    # its mass on 0 instead of 0.498; the test above must see that.
    rounded = np.rint(np.random.default_rng(0).normal(0.0, 0.8, N)).astype(np.int64)
    assert chi_square_pvalue(rounded, 0.8) < 1e-100


@pytest.mark.parametrize("sigma", [1e3, 1e6])
def test_large_sigma_matches_the_normal(sigma):
    sample = discrete_gaussian(sigma, N, SecureRandom.reproducible(int(math.log10(sigma))))
    assert stats.kstest(sample / sigma, "norm").pvalue > ALPHA
    # Variance: (n-1) s^2 / sigma^2 ~ chi2(n-1); mean: a z-test; kurtosis near 3.
    statistic = (N - 1) * np.var(sample, ddof=1) / sigma**2
    low, high = stats.chi2.ppf([ALPHA / 2, 1 - ALPHA / 2], N - 1)
    assert low <= statistic <= high
    assert abs(sample.mean()) <= stats.norm.ppf(1 - ALPHA / 2) * sigma / math.sqrt(N)
    assert abs(stats.kurtosis(sample, fisher=False) - 3.0) < 0.1


def test_streams_repeat_with_the_seed_and_differ_with_the_key():
    a = discrete_gaussian(5.0, 1000, SecureRandom.reproducible(1))
    b = discrete_gaussian(5.0, 1000, SecureRandom.reproducible(1))
    c = discrete_gaussian(5.0, 1000, SecureRandom.reproducible(2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.array_equal(discrete_gaussian(5.0, 1000, SecureRandom.from_os()),
                              discrete_gaussian(5.0, 1000, SecureRandom.from_os()))


def test_huge_sigma_and_tiny_sigma_are_handled():
    huge = discrete_gaussian(1e9, 50_000, SecureRandom.reproducible(3))
    assert 0.98 < huge.std() / 1e9 < 1.02
    tiny = discrete_gaussian(0.2, 50_000, SecureRandom.reproducible(4))
    assert set(np.unique(tiny)) <= {-1, 0, 1}  # P[|X| >= 2] ~ e^-50: never seen
    assert discrete_gaussian(0.0, 5, SecureRandom.reproducible(5)).tolist() == [0] * 5
    assert discrete_gaussian(3.0, 0, SecureRandom.reproducible(5)).shape == (0,)


def test_a_model_sized_vector_is_fast():
    # 228,560 weights: the MovieLens model's shared delta.
    source = SecureRandom.reproducible(6)
    best = math.inf
    for sigma in (5.0, 1e6):
        for _ in range(3):
            start = time.perf_counter()
            discrete_gaussian(sigma, 228_560, source)
            best = min(best, time.perf_counter() - start)
    print(f"discrete_gaussian(d=228,560): {best * 1000:.1f} ms")
    assert best < 0.5


@pytest.mark.parametrize("sigma", [-1.0, float("nan"), float("inf"), 1e13, "2"])
def test_bad_sigma_is_refused(sigma):
    with pytest.raises(ConfigError):
        discrete_gaussian(sigma, 3, SecureRandom.reproducible(0))  # type: ignore[arg-type]


def test_a_numpy_generator_is_refused():
    with pytest.raises(ConfigError, match="RandomSource"):
        discrete_gaussian(1.0, 3, np.random.default_rng(0))  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        discrete_gaussian(1.0, -1, SecureRandom.reproducible(0))
