"""Leave-one-out split of DESIGN.md: last interaction tests, the one before validates (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..types import Sequences

__all__ = ["LOOSplit", "loo_split", "MIN_INTERACTIONS"]

# A user needs a training interaction besides the validation and the test item to be evaluated.
MIN_INTERACTIONS = 3


@dataclass(frozen=True, eq=False)
class LOOSplit:
    """Per-user leave-one-out split.

    ``train`` holds all but the last two interactions of each evaluated user (everything for the
    others); ``train_val`` is ``train`` with the validation interaction appended, the sequence the
    final model is refit on. ``val_item``/``test_item`` are item rows, -1 for users not evaluated;
    ``eval_users`` are the indices of the evaluated users, ascending.
    """

    train: Sequences
    train_val: Sequences
    val_item: np.ndarray
    test_item: np.ndarray
    eval_users: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.train)


def loo_split(seqs: Sequences) -> LOOSplit:
    """Split time-ordered sequences (as from ``Dataset.sequences``) leave-one-out."""
    n = len(seqs)
    val_item = np.full(n, -1, dtype=np.int64)
    test_item = np.full(n, -1, dtype=np.int64)
    train_items, train_signals, tv_items, tv_signals = [], [], [], []
    for u, (items, signals) in enumerate(zip(seqs.items, seqs.signals)):
        if len(items) < MIN_INTERACTIONS:
            train_items.append(items)
            train_signals.append(signals)
            tv_items.append(items)
            tv_signals.append(signals)
            continue
        val_item[u], test_item[u] = items[-2], items[-1]
        train_items.append(items[:-2])
        train_signals.append(signals[:-2])
        tv_items.append(items[:-1])
        tv_signals.append(signals[:-1])
    return LOOSplit(
        train=Sequences(train_items, train_signals),
        train_val=Sequences(tv_items, tv_signals),
        val_item=val_item,
        test_item=test_item,
        eval_users=np.flatnonzero(test_item >= 0),
    )
