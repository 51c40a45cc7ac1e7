"""Ranking metrics of the LOO-full protocol: rank of the held-out item, HR@k, NDCG@k (pure)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .._exceptions import ConfigError

__all__ = ["rank_of_target", "hr_at", "ndcg_at", "exclusion_mask"]


def exclusion_mask(exclude: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """``[len(exclude), n_items]`` bool: True where row ``r`` has interacted with the item."""
    mask = np.zeros((len(exclude), n_items), dtype=bool)
    lengths = np.fromiter((len(e) for e in exclude), dtype=np.int64, count=len(exclude))
    if lengths.sum():
        rows = np.repeat(np.arange(len(exclude)), lengths)
        mask[rows, np.concatenate([np.asarray(e, dtype=np.int64) for e in exclude])] = True
    return mask


def rank_of_target(scores: np.ndarray, target: np.ndarray, exclude: Sequence[np.ndarray]) -> np.ndarray:
    """0-based rank of each row's target among the items that row has not interacted with.

    ``scores`` is ``[batch, n_items]``, ``target`` ``[batch]`` item rows, ``exclude[r]`` the items of
    row ``r``'s fitting sequence. Excluded items are not ranked, except the target itself, which
    always is. Ties count against the target: the rank is the number of other candidates scoring
    higher than or equal to it. NaN also counts against it: a NaN candidate outranks the target,
    and a NaN target is outranked by every candidate.
    """
    scores = np.asarray(scores)
    target = np.asarray(target, dtype=np.int64)
    if scores.ndim != 2 or scores.shape[0] != len(target) or len(exclude) != len(target):
        raise ConfigError(f"scores {scores.shape}, {len(target)} targets and {len(exclude)} exclusions disagree")
    rows = np.arange(len(target))
    target_score = scores[rows, target]
    with np.errstate(invalid="ignore"):
        beats = scores >= target_score[:, None]
    beats |= np.isnan(scores) | np.isnan(target_score)[:, None]
    beats &= ~exclusion_mask(exclude, scores.shape[1])
    beats[rows, target] = False
    return beats.sum(axis=1)


def hr_at(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """Per-user hit rate: 1.0 when the target is in the top ``k`` (rank < k), else 0.0."""
    return (np.asarray(ranks) < k).astype(np.float64)


def ndcg_at(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """Per-user NDCG with one relevant item: 1/log2(rank + 2) when rank < k, else 0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
