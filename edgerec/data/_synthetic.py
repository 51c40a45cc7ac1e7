"""A synthetic dataset with planted sequential structure, for tests and quick experiments (pure).

Items belong to genres and have Zipf-like popularity within their genre. Each user prefers a few
genres, and consecutive interactions drift along a Markov chain over genres: the next item stays
in the current genre with probability ``STAY``, otherwise moves to the genre's fixed successor, or
now and then back to one of the user's preferred genres. A model that reads the order of the
history (what was consumed last) can therefore beat popularity by a clear margin.
"""

from __future__ import annotations

import numpy as np

from .._exceptions import ConfigError
from ..events import signal_code
from ._build import l2_rows, one_hot
from ..types import Catalogue, Dataset

__all__ = ["synthetic", "STAY", "MOVE"]

STAY = 0.7  # probability that the next item keeps the current genre
MOVE = 0.2  # probability of moving to the current genre's successor; the rest returns to a favourite
N_YEARS = 5
N_FAVOURITES = 2
_ZIPF = 1.0
_START = 1_600_000_000.0


def synthetic(
    n_users: int = 500,
    n_items: int = 300,
    *,
    n_genres: int = 8,
    mean_length: int = 30,
    seed: int | np.random.Generator = 0,
) -> Dataset:
    """A deterministic synthetic click dataset (same ``seed``, same data) with planted structure.

    Content features are a noisy genre one-hot plus a year bucket; titles read
    "Item 17 · Genre 3". Sequence lengths are 3 plus a Poisson draw, so every user can be evaluated.
    """
    _check(n_users, n_items, n_genres, mean_length)
    rng = np.random.default_rng(seed)
    genre = rng.permutation(np.arange(n_items) % n_genres)
    popularity = _popularity(genre, n_genres, rng)
    successor = _successor(n_genres, rng)
    lengths = np.minimum(3 + rng.poisson(mean_length - 3, size=n_users), max(3, n_items // 2))
    sequences = [_walk(rng, int(n), genre, popularity, successor, n_genres) for n in lengths]
    user = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    item = np.concatenate(sequences).astype(np.int64)
    ts = np.concatenate([_times(rng, int(n)) for n in lengths])
    return Dataset(
        user_ids=tuple(str(u) for u in range(n_users)),
        catalogue=_catalogue(genre, n_genres, rng),
        user=user,
        item=item,
        ts=ts,
        value=np.ones(len(item), dtype=np.float32),
        signal=np.full(len(item), signal_code("click", 1.0), dtype=np.int64),
        name="synthetic",
    )


def _check(n_users: int, n_items: int, n_genres: int, mean_length: int) -> None:
    if n_users < 1 or n_genres < 1:
        raise ConfigError("n_users and n_genres must be at least 1")
    if n_items < max(2 * n_genres, 6):
        raise ConfigError(f"n_items must be at least max(2 * n_genres, 6), got {n_items}")
    if mean_length < 3:
        raise ConfigError(f"mean_length must be at least 3, got {mean_length}")


def _popularity(genre: np.ndarray, n_genres: int, rng: np.random.Generator) -> np.ndarray:
    """Zipf weights 1/rank within each genre, ranks in random order."""
    weight = np.zeros(len(genre))
    for g in range(n_genres):
        members = np.flatnonzero(genre == g)
        weight[rng.permutation(members)] = 1.0 / np.arange(1, len(members) + 1) ** _ZIPF
    return weight


def _successor(n_genres: int, rng: np.random.Generator) -> np.ndarray:
    """A fixed genre -> genre map: one random cycle through all genres (never a self-loop)."""
    order = rng.permutation(n_genres)
    successor = np.empty(n_genres, dtype=np.int64)
    successor[order] = np.roll(order, -1)
    return successor


def _walk(
    rng: np.random.Generator,
    length: int,
    genre: np.ndarray,
    popularity: np.ndarray,
    successor: np.ndarray,
    n_genres: int,
) -> np.ndarray:
    """One user's items: a Markov walk over genres, popular items first, no repeats."""
    favourites = rng.choice(n_genres, size=min(N_FAVOURITES, n_genres), replace=False)
    current = int(rng.choice(favourites))
    unseen = np.ones(len(genre), dtype=bool)
    out = np.empty(length, dtype=np.int64)
    for step in range(length):
        if step:
            current = _next_genre(rng, current, successor, favourites)
        weight = popularity * unseen * (genre == current)
        if weight.sum() == 0:  # the genre is exhausted for this user: fall back to any unseen item
            weight = popularity * unseen
        out[step] = rng.choice(len(genre), p=weight / weight.sum())
        unseen[out[step]] = False
    return out


def _next_genre(rng: np.random.Generator, current: int, successor: np.ndarray, favourites: np.ndarray) -> int:
    draw = rng.random()
    if draw < STAY:
        return current
    if draw < STAY + MOVE:
        return int(successor[current])
    return int(rng.choice(favourites))


def _times(rng: np.random.Generator, length: int) -> np.ndarray:
    """Strictly increasing timestamps: a random start, then gaps of a minute to three days."""
    start = _START + rng.integers(0, 30 * 86400)
    return start + np.cumsum(rng.integers(60, 3 * 86400, size=length)).astype(np.float64)


def _catalogue(genre: np.ndarray, n_genres: int, rng: np.random.Generator) -> Catalogue:
    n_items = len(genre)
    # Noise: a quarter of the items also carry a weaker flag for a random second genre.
    features = one_hot(genre, n_genres)
    noisy = np.flatnonzero(rng.random(n_items) < 0.25)
    features[noisy, rng.integers(0, n_genres, size=len(noisy))] += 0.5
    years = one_hot(rng.integers(0, N_YEARS, size=n_items), N_YEARS) * 0.5
    names = tuple(f"genre:{g}" for g in range(n_genres)) + tuple(f"year:{y}" for y in range(N_YEARS))
    titles = tuple(f"Item {i} · Genre {g}" for i, g in enumerate(genre))
    return Catalogue(tuple(str(i) for i in range(n_items)), titles, l2_rows(np.hstack([features, years])), names)
