"""MovieLens-100K loader: ratings (u.data), movies with genres and dates (u.item), users (u.user).

The data is not redistributable, so edgerec never ships it; this reads a user's own download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from .._exceptions import DatasetError
from ..events import signal_code
from ._build import l2_rows, one_hot, ordered_ids
from ..types import Catalogue, Dataset

__all__ = ["load_movielens", "YEAR_BUCKETS", "AGE_BUCKETS"]

GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip

# Coarse release-year buckets as (label, first year). ML-100K is mostly 1990s films, so the
# recent buckets are narrow and the old ones wide: each bucket holds a useful share of the items.
YEAR_BUCKETS = (
    ("<1960", -(10**9)), ("1960-1979", 1960), ("1980-1989", 1980),
    ("1990-1994", 1990), ("1995-1996", 1995), ("1997+", 1997),
)  # fmt: skip

# Age buckets of the later MovieLens releases (ML-1M), as (label, first age).
AGE_BUCKETS = (
    ("<18", 0), ("18-24", 18), ("25-34", 25), ("35-44", 35), ("45-49", 45), ("50-55", 50), ("56+", 56),
)  # fmt: skip


def load_movielens(path: str | Path) -> Dataset:
    """Read a MovieLens-100K folder (``u.data``, ``u.item``, ``u.user``) into a ``Dataset``.

    Events are ratings: ``value`` is the number of stars and ``signal`` the matching rating code.
    Item features are the 19 genre flags and a one-hot release-year bucket (none when the date is
    missing); each block is scaled to unit length and the row then normalised, so the two blocks
    weigh the same and every row has norm 1 (or 0). User features are one-hot age bucket, gender
    and occupation. Items and users are ordered by numeric id. A missing file or malformed line
    raises ``DatasetError`` naming the file and line.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DatasetError(f"MovieLens folder not found: {folder}")
    catalogue = _read_items(folder / "u.item")
    user_ids, user_features, user_feature_names = _read_users(folder / "u.user")
    user, item, ts, stars = _read_ratings(folder / "u.data", user_ids, catalogue.item_ids)
    signal = np.array([signal_code("rating", s) for s in range(6)], dtype=np.int64)[stars]
    return Dataset(
        user_ids=user_ids,
        catalogue=catalogue,
        user=user,
        item=item,
        ts=ts,
        value=stars.astype(np.float32),
        signal=signal,
        name="movielens-100k",
        user_features=user_features,
        user_feature_names=user_feature_names,
    )


def _lines(path: Path, encoding: str, sep: str, n_fields: int) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for each non-blank line, checking the field count."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found (a MovieLens-100K folder has u.data, u.item, u.user)")
    with path.open(encoding=encoding, newline="") as handle:
        for lineno, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split(sep)
            if len(fields) != n_fields:
                raise DatasetError(f"{path}:{lineno}: expected {n_fields} fields separated by {sep!r}, got {len(fields)}")
            yield lineno, fields


def _int(path: Path, lineno: int, name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DatasetError(f"{path}:{lineno}: {name} must be an integer, got {text!r}") from None


def _bucket(value: int, buckets: tuple[tuple[str, int], ...]) -> int:
    starts = [start for _, start in buckets]
    return int(np.searchsorted(starts, value, side="right")) - 1


def _read_items(path: Path) -> Catalogue:
    rows: dict[str, tuple[str, list[float], int]] = {}
    for lineno, f in _lines(path, "latin-1", "|", 5 + len(GENRES)):
        item_id = str(_int(path, lineno, "movie id", f[0]))
        if item_id in rows:
            raise DatasetError(f"{path}:{lineno}: duplicate movie id {item_id}")
        flags = f[5:]
        if any(flag not in ("0", "1") for flag in flags):
            raise DatasetError(f"{path}:{lineno}: genre flags must be 0 or 1")
        date = f[2].strip()
        # Dates look like 01-Jan-1995; an empty date (one movie has none) gets no year bucket.
        year = -1 if not date else _bucket(_int(path, lineno, "release year", date[-4:]), YEAR_BUCKETS)
        rows[item_id] = (f[1], [float(x) for x in flags], year)
    order = ordered_ids(rows)
    genres = l2_rows(np.array([rows[i][1] for i in order], dtype=np.float32).reshape(len(order), len(GENRES)))
    years = one_hot(np.array([rows[i][2] for i in order]), len(YEAR_BUCKETS))
    names = tuple(f"genre:{g}" for g in GENRES) + tuple(f"year:{label}" for label, _ in YEAR_BUCKETS)
    features = l2_rows(np.hstack([genres, years]))
    return Catalogue(order, tuple(rows[i][0] for i in order), features, names)


def _read_users(path: Path) -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...]]:
    rows: dict[str, tuple[int, str, str]] = {}
    for lineno, f in _lines(path, "latin-1", "|", 5):
        user_id = str(_int(path, lineno, "user id", f[0]))
        if user_id in rows:
            raise DatasetError(f"{path}:{lineno}: duplicate user id {user_id}")
        age = _int(path, lineno, "age", f[1])
        rows[user_id] = (_bucket(age, AGE_BUCKETS), f[2].strip(), f[3].strip())
    order = ordered_ids(rows)
    genders = sorted({r[1] for r in rows.values()})
    jobs = sorted({r[2] for r in rows.values()})
    blocks = [
        one_hot(np.array([rows[u][0] for u in order]), len(AGE_BUCKETS)),
        one_hot(np.array([genders.index(rows[u][1]) for u in order]), len(genders)),
        one_hot(np.array([jobs.index(rows[u][2]) for u in order]), len(jobs)),
    ]
    names = (
        tuple(f"age:{label}" for label, _ in AGE_BUCKETS)
        + tuple(f"gender:{g}" for g in genders)
        + tuple(f"occupation:{j}" for j in jobs)
    )
    return order, np.hstack(blocks).reshape(len(order), len(names)), names


def _read_ratings(
    path: Path, user_ids: tuple[str, ...], item_ids: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    user_pos = {u: i for i, u in enumerate(user_ids)}
    item_pos = {m: i for i, m in enumerate(item_ids)}
    user, item, ts, stars = [], [], [], []
    for lineno, f in _lines(path, "latin-1", "\t", 4):
        u, m = str(_int(path, lineno, "user id", f[0])), str(_int(path, lineno, "item id", f[1]))
        if u not in user_pos:
            raise DatasetError(f"{path}:{lineno}: user {u} is not in u.user")
        if m not in item_pos:
            raise DatasetError(f"{path}:{lineno}: item {m} is not in u.item")
        rating = _int(path, lineno, "rating", f[2])
        if not 1 <= rating <= 5:
            raise DatasetError(f"{path}:{lineno}: rating must be 1..5, got {rating}")
        user.append(user_pos[u])
        item.append(item_pos[m])
        stars.append(rating)
        ts.append(_int(path, lineno, "timestamp", f[3]))
    return (
        np.array(user, dtype=np.int64),
        np.array(item, dtype=np.int64),
        np.array(ts, dtype=np.float64),
        np.array(stars, dtype=np.int64),
    )
