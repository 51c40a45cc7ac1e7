"""synthetic(): deterministic, well-formed, and with the planted genre-drift structure."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from edgerec import ConfigError
from edgerec.data import Catalogue, Dataset, Sequences, synthetic
from edgerec.evaluation import Method, most_popular, run_protocol

SMALL = dict(n_users=200, n_items=120, n_genres=6, mean_length=15)


def genres_of(catalogue: Catalogue) -> np.ndarray:
    cols = [i for i, n in enumerate(catalogue.feature_names) if n.startswith("genre:")]
    return catalogue.features[:, cols].argmax(axis=1)


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = synthetic(**SMALL, seed=3), synthetic(**SMALL, seed=3), synthetic(**SMALL, seed=4)
    for col in ("user", "item", "ts"):
        assert np.array_equal(getattr(a, col), getattr(b, col))
    assert a.catalogue.content_hash == b.catalogue.content_hash
    assert not np.array_equal(a.item[:50], c.item[:50])
    d = synthetic(**SMALL, seed=np.random.default_rng(3))
    assert np.array_equal(a.item, d.item)


def test_shape_titles_and_sequences() -> None:
    ds = synthetic(**SMALL)
    assert isinstance(ds, Dataset) and ds.n_users == 200 and ds.n_items == 120
    assert ds.catalogue.titles[17].startswith("Item 17 · Genre ")
    genres = genres_of(ds.catalogue)
    assert ds.catalogue.titles[17] == f"Item 17 · Genre {genres[17]}"
    assert np.allclose(np.linalg.norm(ds.catalogue.features, axis=1), 1.0, atol=1e-5)
    seqs = ds.sequences()
    assert min(len(s) for s in seqs.items) >= 3
    assert 10 < np.mean([len(s) for s in seqs.items]) < 20
    for u in range(ds.n_users):
        assert len(set(seqs.items[u].tolist())) == len(seqs.items[u])  # no repeats
        assert np.all(np.diff(np.sort(ds.ts[ds.user == u])) > 0)


def test_consecutive_items_mostly_share_a_genre() -> None:
    ds = synthetic(**SMALL)
    genres = genres_of(ds.catalogue)
    pairs = [(genres[s[:-1]], genres[s[1:]]) for s in ds.sequences().items]
    same = np.mean(np.concatenate([a == b for a, b in pairs]))
    assert same > 0.6  # far above 1/6 for independent genres


@dataclass(frozen=True)
class GenreTransitionModel:
    transition: np.ndarray  # [n_genres, n_genres] P(next genre | last genre)
    popularity: np.ndarray  # item share within its genre
    genre: np.ndarray

    def score(self, users: np.ndarray, histories: Sequences) -> np.ndarray:
        last = np.array([self.genre[histories.items[u][-1]] if len(histories.items[u]) else 0 for u in users])
        return self.transition[last][:, self.genre] * self.popularity


def fit_genre_transition(train: Sequences, catalogue: Catalogue, seed: int) -> GenreTransitionModel:
    genre = genres_of(catalogue)
    n = genre.max() + 1
    counts = np.ones((n, n))
    for s in train.items:
        np.add.at(counts, (genre[s[:-1]], genre[s[1:]]), 1.0)
    item_counts = np.bincount(np.concatenate(train.items), minlength=len(catalogue)) + 1.0
    share = item_counts / np.bincount(genre, weights=item_counts)[genre]
    return GenreTransitionModel(counts / counts.sum(1, keepdims=True), share, genre)


def test_a_genre_transition_model_beats_popularity_clearly() -> None:
    ds = synthetic(**SMALL)
    result = run_protocol(ds, [most_popular(), Method("genre-markov", fit_genre_transition, seeded=False)], seeds=(0,))
    markov, popular = result["genre-markov"], result["most-popular"]
    assert markov.ndcg > 2 * popular.ndcg and markov.hr > popular.hr
    _, lo, _ = result.compare("genre-markov", "most-popular")
    assert lo > 0


@pytest.mark.parametrize("bad", [dict(n_items=5), dict(mean_length=2), dict(n_users=0), dict(n_genres=0)])
def test_bad_arguments(bad: dict) -> None:
    with pytest.raises(ConfigError):
        synthetic(**{**SMALL, **bad})
