"""loo_split: the latest interaction tests, the one before validates, short users are not evaluated."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerec.data import Catalogue, Dataset, Sequences
from edgerec.evaluation import loo_split


def seqs(*items: list[int]) -> Sequences:
    return Sequences([np.array(s, dtype=np.int64) for s in items], [np.array(s, dtype=np.int64) * 0 + 3 for s in items])


def test_latest_item_is_test_previous_is_validation() -> None:
    split = loo_split(seqs([5, 1, 4, 2], [7, 8, 9], [3, 6]))
    assert split.test_item.tolist() == [2, 9, -1]
    assert split.val_item.tolist() == [4, 8, -1]
    assert split.eval_users.tolist() == [0, 1]
    assert [s.tolist() for s in split.train.items] == [[5, 1], [7], [3, 6]]
    assert [s.tolist() for s in split.train_val.items] == [[5, 1, 4], [7, 8], [3, 6]]
    assert len(split.train.signals[0]) == 2 and len(split.train_val.signals[0]) == 3


def test_split_follows_dataset_time_order_with_ties_by_item() -> None:
    # Timestamps out of row order, and a tie at t=9 between items 2 and 1: item 1 comes first.
    ds = Dataset(
        user_ids=("u",),
        catalogue=Catalogue.plain(["a", "b", "c", "d"]),
        user=np.zeros(4, dtype=np.int64),
        item=np.array([2, 0, 3, 1]),
        ts=np.array([9.0, 1.0, 5.0, 9.0]),
        value=np.ones(4, dtype=np.float32),
        signal=np.full(4, 3),
    )
    split = loo_split(ds.sequences())
    assert split.test_item.tolist() == [2] and split.val_item.tolist() == [1]
    assert split.train.items[0].tolist() == [0, 3]


sequence_lists = st.lists(st.lists(st.integers(0, 30), max_size=8), max_size=12)


@settings(max_examples=150, deadline=None)
@given(sequence_lists)
def test_split_partitions_every_sequence(raw: list[list[int]]) -> None:
    original = seqs(*raw)
    split = loo_split(original)
    for u, items in enumerate(raw):
        if len(items) >= 3:
            assert u in split.eval_users
            rebuilt = split.train.items[u].tolist() + [split.val_item[u], split.test_item[u]]
            assert rebuilt == items
            assert split.train_val.items[u].tolist() == items[:-1]
        else:
            assert u not in split.eval_users and split.val_item[u] == split.test_item[u] == -1
            assert split.train.items[u].tolist() == split.train_val.items[u].tolist() == items
    assert sorted(split.eval_users.tolist()) == split.eval_users.tolist()
    assert split.n_users == len(raw)
