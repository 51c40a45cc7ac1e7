"""Helpers shared by the loaders: id ordering, index mapping, one-hot and row scaling (pure)."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .._exceptions import DatasetError

__all__ = ["ordered_ids", "indices", "one_hot", "l2_rows"]


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def ordered_ids(ids: Iterable[str]) -> tuple[str, ...]:
    """Distinct ids, in numeric order when every id is an integer, else lexicographic.

    The order matters: ``Dataset.sequences`` breaks timestamp ties by row, so the row must be the
    id's rank. Integer-looking ids that differ as text ("7", "007") are ordered by value then text.
    """
    distinct = set(ids)
    if distinct and all(_is_int(i) for i in distinct):
        return tuple(sorted(distinct, key=lambda i: (int(i), i)))
    return tuple(sorted(distinct))


def indices(values: Sequence[str], order: Sequence[str], *, what: str = "id") -> np.ndarray:
    """Map each value to its position in ``order`` (int64); an unknown value is a DatasetError."""
    position = {v: i for i, v in enumerate(order)}
    try:
        return np.fromiter((position[v] for v in values), dtype=np.int64, count=len(values))
    except KeyError as exc:
        raise DatasetError(f"unknown {what} {exc.args[0]!r}") from None


def one_hot(codes: np.ndarray, n: int) -> np.ndarray:
    """``[len(codes), n]`` float32 one-hot rows; a code of -1 gives an all-zero row."""
    codes = np.asarray(codes, dtype=np.int64)
    out = np.zeros((len(codes), n), dtype=np.float32)
    known = codes >= 0
    out[np.flatnonzero(known), codes[known]] = 1.0
    return out


def l2_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row scaled to unit L2 norm; all-zero rows stay zero."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
