"""Rank of the held-out item (ties and NaN against it), HR@k, NDCG@k, and the paired bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgerec import ConfigError
from edgerec.evaluation import hr_at, ndcg_at, paired_bootstrap, rank_of_target

NONE = np.zeros(0, dtype=np.int64)


def rank(scores: list[float], target: int, exclude: list[int] = []) -> int:
    return int(rank_of_target(np.array([scores]), np.array([target]), [np.array(exclude, dtype=np.int64)])[0])


def test_rank_counts_higher_and_tied_items() -> None:
    assert rank([0.1, 0.9, 0.5, 0.5], target=2) == 2  # 0.9 above, the other 0.5 tied
    assert rank([0.3, 0.3, 0.3], target=0) == 2  # all tied: worst rank
    assert rank([0.9, 0.1, 0.2], target=0) == 0


def test_seen_items_are_not_ranked_but_the_target_always_is() -> None:
    assert rank([0.9, 0.8, 0.1, 0.5], target=3, exclude=[0, 1]) == 0
    assert rank([0.9, 0.8, 0.1, 0.5], target=3, exclude=[0, 1, 3]) == 0  # target seen: still ranked
    assert rank([0.9, 0.8, 0.1, 0.5], target=3, exclude=[0, 0, 0]) == 1  # duplicates are harmless


def test_nan_counts_against_the_target() -> None:
    assert rank([np.nan, 0.1, 0.2], target=0) == 2
    assert rank([0.9, np.nan, 0.2], target=0) == 1
    assert rank([np.nan] * 4, target=1) == 3
    assert rank([np.inf, np.inf, 0.0], target=0) == 1  # an infinite tie is still a tie


def test_vectorised_over_rows_with_their_own_exclusions() -> None:
    scores = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    ranks = rank_of_target(scores, np.array([2, 0]), [np.array([0]), NONE])
    assert ranks.tolist() == [1, 2]


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ConfigError):
        rank_of_target(np.zeros((2, 3)), np.array([0]), [NONE])


def test_hr_and_ndcg_values() -> None:
    ranks = np.array([0, 1, 9, 10, 500])
    assert hr_at(ranks, 10).tolist() == [1, 1, 1, 0, 0]
    np.testing.assert_allclose(ndcg_at(ranks, 10), [1.0, 1 / np.log2(3), 1 / np.log2(11), 0.0, 0.0])


score_rows = st.integers(2, 12).flatmap(
    lambda n: st.tuples(
        arrays(np.float64, n, elements=st.sampled_from([0.0, 0.5, 1.0, 2.0, np.nan, -np.inf])),
        st.integers(0, n - 1),
        st.lists(st.integers(0, n - 1), max_size=n),
    )
)


def brute_force(scores: np.ndarray, target: int, exclude: list[int]) -> int:
    s_t = scores[target]
    out = 0
    for j, s in enumerate(scores):
        if j == target or j in exclude:
            continue
        out += bool(np.isnan(s) or np.isnan(s_t) or s >= s_t)
    return out


@settings(max_examples=300, deadline=None)
@given(score_rows)
def test_rank_matches_the_definition_and_its_bounds(case: tuple[np.ndarray, int, list[int]]) -> None:
    scores, target, exclude = case
    r = rank(scores.tolist(), target, exclude)
    assert r == brute_force(scores, target, exclude)
    candidates = len(set(range(len(scores))) - set(exclude) - {target})
    assert 0 <= r <= candidates


@settings(max_examples=200, deadline=None)
@given(score_rows)
def test_a_tie_never_helps_the_target(case: tuple[np.ndarray, int, list[int]]) -> None:
    scores, target, exclude = case
    others = [j for j in range(len(scores)) if j != target and j not in exclude]
    if not others or np.isnan(scores[target]):
        return
    tied = scores.copy()
    tied[others[0]] = scores[target]
    lowered = scores.copy()
    lowered[others[0]] = -np.inf if scores[target] > -np.inf else scores[target]
    assert rank(tied.tolist(), target, exclude) >= rank(lowered.tolist(), target, exclude)
    assert rank(tied.tolist(), target, exclude) >= 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=50), st.integers(1, 50))
def test_metric_bounds_and_monotonicity(ranks: list[int], k: int) -> None:
    r = np.array(sorted(ranks))
    hr, ndcg = hr_at(r, k), ndcg_at(r, k)
    assert np.all((0 <= ndcg) & (ndcg <= hr) & (hr <= 1))
    assert np.all(np.diff(ndcg) <= 0) and np.all(np.diff(hr) <= 0)
    assert np.all(ndcg[r == 0] == 1.0)


def test_bootstrap_of_identical_methods_is_zero() -> None:
    a = np.random.default_rng(1).random(50)
    assert paired_bootstrap(a, a) == (0.0, 0.0, 0.0)


def test_bootstrap_interval_covers_the_mean_and_is_seeded() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random(300) + 0.1, rng.random(300)
    mean, lo, hi = paired_bootstrap(a, b, n_boot=500, seed=7)
    assert lo < mean < hi and lo > 0
    assert mean == pytest.approx(float(np.mean(a - b)))
    assert paired_bootstrap(a, b, n_boot=500, seed=7) == (mean, lo, hi)
    assert paired_bootstrap(a, b, n_boot=500, seed=np.random.default_rng(7)) == (mean, lo, hi)


def test_bootstrap_rejects_unpaired_input() -> None:
    with pytest.raises(ConfigError):
        paired_bootstrap(np.zeros(3), np.zeros(4))
    with pytest.raises(ConfigError):
        paired_bootstrap(np.zeros(0), np.zeros(0))
