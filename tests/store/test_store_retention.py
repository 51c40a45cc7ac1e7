"""Retention: by age against the injected clock, by row count oldest first, on open, on prune()
and right after the writes that exceed it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edgerec import ConfigError
from edgerec.store import InteractionStore, Retention

DAY = 86_400.0


def test_without_retention_nothing_is_pruned(store: InteractionStore, clock) -> None:
    store.log("u", "i", ts=0.0)
    clock.advance(1000 * DAY)
    assert store.prune() == 0
    assert store.count() == 1


def test_prune_by_age_uses_the_clock(db_path: Path, clock) -> None:
    with InteractionStore(db_path, clock=clock, retention=Retention(max_age_s=30 * DAY)) as s:
        s.log("u", "old")
        clock.advance(10 * DAY)
        s.log("u", "recent")
        clock.advance(25 * DAY)  # "old" is now 35 days old, "recent" 25
        assert s.prune() == 1
        assert [e.item for e in s.history("u")] == ["recent"]
        assert s.prune() == 0


def test_prune_by_rows_deletes_the_oldest_by_timestamp(db_path: Path) -> None:
    with InteractionStore(db_path, retention=Retention(max_rows=3)) as s:
        # Inserted out of time order: retention goes by ts, then by insertion for equal ts.
        s.log_many([{"user": "u", "item": name, "ts": ts} for name, ts in
                    [("t5", 5), ("t1", 1), ("t3a", 3), ("t3b", 3), ("t9", 9)]])
        # Applied right after the batch (max_rows is small, so every write is checked).
        assert [e.item for e in s.history("u")] == ["t3b", "t5", "t9"]
        assert s.prune() == 0


def test_max_rows_counts_the_whole_store_not_each_user(db_path: Path) -> None:
    with InteractionStore(db_path, retention=Retention(max_rows=2)) as s:
        s.log("a", "x", ts=1)
        s.log("b", "y", ts=2)
        s.log("a", "z", ts=3)
        assert s.prune() == 0  # already applied after the third log
        assert s.users() == ["a", "b"] and s.count() == 2 and s.count("a") == 1


def test_both_limits_apply_together(db_path: Path, clock) -> None:
    retention = Retention(max_age_s=100, max_rows=2)
    with InteractionStore(db_path, clock=clock, retention=retention) as s:
        s.log_many([{"user": "u", "item": str(i), "ts": clock.now - 200 + 20 * i} for i in range(10)])
        # ages 200, 180, ..., 20: five are at most 100 s old, and the newest two of those are kept
        assert [e.item for e in s.history("u")] == ["8", "9"]
        assert s.prune() == 0


def test_retention_is_applied_on_open(db_path: Path, clock) -> None:
    with InteractionStore(db_path, clock=clock) as s:
        s.log("u", "old")
        clock.advance(2 * DAY)
        s.log("u", "new")
    with InteractionStore(db_path, clock=clock, retention=Retention(max_age_s=DAY)) as s:
        assert [e.item for e in s.history("u")] == ["new"]


def test_max_rows_zero_empties_the_store(db_path: Path) -> None:
    with InteractionStore(db_path, retention=Retention(max_rows=0)) as s:
        s.log("u", "i")
        assert s.count() == 0 and s.prune() == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_age_s": -1},
        {"max_age_s": math.nan},
        {"max_age_s": math.inf},
        {"max_age_s": "1d"},
        {"max_rows": -1},
        {"max_rows": 1.5},
        {"max_rows": True},
    ],
)
def test_bad_retention_raises_config_error(kwargs) -> None:
    with pytest.raises(ConfigError):
        Retention(**kwargs)
