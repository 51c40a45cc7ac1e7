"""Peers: most-popular, item-KNN, implicit's ALS and BPR, end to end on small synthetic data."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from edgerec.data import Catalogue, Sequences, synthetic
from edgerec.evaluation import (
    Method,
    als,
    available_peers,
    bpr,
    item_knn,
    loo_split,
    missing_peers,
    most_popular,
    run_protocol,
)

DATA = synthetic(n_users=150, n_items=80, n_genres=4, mean_length=12, seed=2)
HAVE_IMPLICIT = not missing_peers()
needs_implicit = pytest.mark.skipif(not HAVE_IMPLICIT, reason="implicit is not installed (pip install edgerec[peers])")

TINY_ALS = als(({"factors": 8, "regularization": 0.01, "alpha": 5.0},), iterations=5)
TINY_BPR = bpr(({"factors": 8, "learning_rate": 0.05, "regularization": 0.01},), iterations=20)


class RandomModel:
    def __init__(self, seed: int, n_items: int) -> None:
        self.seed, self.n_items = seed, n_items

    def score(self, users: np.ndarray, histories: Sequences) -> np.ndarray:
        return np.random.default_rng([self.seed, int(users[0])]).random((len(users), self.n_items))


RANDOM = Method("random", lambda train, catalogue, seed: RandomModel(seed, len(catalogue)))


def seqs(*items: list[int]) -> Sequences:
    return Sequences([np.array(s) for s in items], [np.full(len(s), 3) for s in items])


def test_most_popular_counts_training_interactions() -> None:
    model = most_popular().fit(seqs([0, 1], [0, 2], [0]), Catalogue.plain(["a", "b", "c", "d"]), 0)
    assert model.score(np.array([0, 2]), seqs()).tolist() == [[3, 1, 1, 0]] * 2


def test_item_knn_is_cosine_with_shrinkage_and_top_k() -> None:
    train, cat = seqs([0, 1], [0, 1], [0, 2]), Catalogue.plain(["a", "b", "c"])
    knn = item_knn().fit
    plain = knn(train, cat, 0, k=5, shrink=0.0).neighbours.toarray()
    np.testing.assert_allclose(plain[0], [0.0, 2 / np.sqrt(6), 1 / np.sqrt(3)], rtol=1e-6)
    shrunk = knn(train, cat, 0, k=5, shrink=10.0).neighbours.toarray()
    assert shrunk[0, 1] == pytest.approx(2 / (np.sqrt(6) + 10))
    top1 = knn(train, cat, 0, k=1, shrink=0.0).neighbours.toarray()
    assert np.count_nonzero(top1[0]) == 1 and top1[0, 1] > 0
    user = knn(train, cat, 0, k=5, shrink=0.0).score(np.array([2]), train)
    assert user[0, 1] == pytest.approx(2 / np.sqrt(6))  # item 1 via its similarity to item 0


def test_item_knn_and_popularity_beat_random() -> None:
    result = run_protocol(DATA, [RANDOM, most_popular(), item_knn(({"k": 20, "shrink": 0.0}, {"k": 50, "shrink": 10.0}))], seeds=(0,))
    assert result["item-knn"].ndcg > result["random"].ndcg and result["most-popular"].ndcg > result["random"].ndcg
    _, lo, _ = result.compare("item-knn", "random")
    assert lo > 0


@needs_implicit
def test_als_and_bpr_run_end_to_end_without_blas_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = run_protocol(DATA, [RANDOM, TINY_ALS, TINY_BPR], seeds=(0, 1))
    for name in ("als", "bpr"):
        r = result[name]
        assert len(r.ndcg_per_seed) == 2 and np.isfinite(r.ndcg) and r.user_hr.shape == (DATA.n_users,)
    assert result["als"].ndcg > result["random"].ndcg


@needs_implicit
def test_factor_models_are_seeded() -> None:
    split = loo_split(DATA.sequences())
    fit = TINY_BPR.fit
    a, b, c = (fit(split.train, DATA.catalogue, s, **TINY_BPR.grid[0]) for s in (5, 5, 6))
    assert np.array_equal(a.item_factors, b.item_factors) and not np.array_equal(a.item_factors, c.item_factors)
    scores = a.score(np.array([0, 3]), split.train)
    assert scores.shape == (2, DATA.n_items) and scores.dtype == np.float32


def test_available_and_missing_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    names = [m.name for m in available_peers()]
    assert names[:2] == ["most-popular", "item-knn"]
    assert ("als" in names) == HAVE_IMPLICIT == ("bpr" in names)
    assert all(1 <= len(m.grid) <= 12 for m in available_peers())
    monkeypatch.setitem(sys.modules, "implicit", None)  # as if implicit were not installed
    assert [m.name for m in available_peers()] == ["most-popular", "item-knn"]
    missing = missing_peers()
    assert len(missing) == 2 and all("pip install edgerec[peers]" in m for m in missing)
