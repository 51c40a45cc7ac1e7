"""Retention while the app runs: limits hold after every write, within a stated slack, and each
write does a bounded amount of deletion; prune() then enforces them exactly."""

from __future__ import annotations

from pathlib import Path

from edgerec.store import InteractionStore, Retention
from edgerec.store._retention import _OLDEST_SQL, _EXPIRED_SQL, CHUNK_ROWS, RetentionSchedule

HOUR = 3_600.0


def _oldest_age(store: InteractionStore, now: float) -> float:
    ((oldest,),) = store.db.execute("SELECT min(ts) FROM interactions").fetchall()
    return 0.0 if oldest is None else now - oldest


def test_max_rows_holds_within_the_slack_during_sustained_logging(db_path: Path, clock) -> None:
    retention = Retention(max_rows=1_000)
    slack = RetentionSchedule(retention, 0.0).interval
    assert slack <= 1_000 // 16
    with InteractionStore(db_path, clock=clock, retention=retention) as s:
        peak = 0
        for i in range(5_000):
            clock.advance(1.0)
            s.log(f"u{i % 13}", f"i{i}")
            peak = max(peak, s.count())
        assert 1_000 < peak <= 1_000 + slack
        s.prune()
        assert s.count() == 1_000
        # The newest 1,000 are the ones kept.
        ((low,),) = s.db.execute("SELECT min(CAST(substr(item, 2) AS INTEGER)) FROM interactions").fetchall()
        assert low == 4_000


def test_a_large_batch_is_trimmed_by_the_call_that_wrote_it(db_path: Path, clock) -> None:
    with InteractionStore(db_path, clock=clock, retention=Retention(max_rows=1_000)) as s:
        s.log_many([{"user": "u", "item": str(i), "ts": clock.now - 5_000 + i} for i in range(5_000)])
        assert s.count() == 1_000
        assert [e.item for e in s.history("u")][:1] == ["4000"]


def test_max_age_holds_within_the_slack_with_a_moving_clock(db_path: Path, clock) -> None:
    max_age = 2 * HOUR
    with InteractionStore(db_path, clock=clock, retention=Retention(max_age_s=max_age)) as s:
        worst = 0.0
        for i in range(5_000):
            clock.advance(10.0)  # a log every 10 s: 720 events in the window
            s.log(f"u{i % 5}", f"i{i}")
            worst = max(worst, _oldest_age(s, clock.now))
        # A check runs at least every max_age/16 of clock time, so nothing outlives that slack.
        assert max_age < worst <= max_age * (1 + 1 / 16) + 10.0
        s.prune()
        assert _oldest_age(s, clock.now) <= max_age
        assert s.count() == int(max_age // 10) + 1


def test_expiry_advances_even_when_logging_is_sparse(db_path: Path, clock) -> None:
    with InteractionStore(db_path, clock=clock, retention=Retention(max_age_s=HOUR)) as s:
        s.log("u", "old")
        clock.advance(2 * HOUR)
        s.log("u", "new")  # one write after a long pause: the clock step makes a check due
        assert [e.item for e in s.history("u")] == ["new"]


def test_each_write_deletes_a_bounded_chunk_of_a_large_backlog(db_path: Path, clock) -> None:
    with InteractionStore(db_path, clock=clock, retention=Retention(max_age_s=HOUR)) as s:
        s.log_many([{"user": "u", "item": str(i)} for i in range(3_000)])
        clock.advance(2 * HOUR)  # all 3,000 expire at once
        s.log("u", "fresh")
        # The write that noticed it deleted one budget (a few chunks at most), not the backlog.
        assert 3_001 - s.count() <= 2 * CHUNK_ROWS
        backlog = s.count() - 1
        assert s.prune() == backlog
        assert [e.item for e in s.history("u")] == ["fresh"]


def test_logging_inside_a_transaction_defers_retention(db_path: Path, clock) -> None:
    with InteractionStore(db_path, clock=clock, retention=Retention(max_rows=2)) as s:
        with s.transaction():
            for i in range(5):
                s.log("u", str(i))
        assert s.count() == 5  # nothing may be committed inside the caller's transaction
        s.log("u", "5")
        assert s.count() == 2


def test_retention_deletes_walk_the_time_index(store: InteractionStore) -> None:
    for sql, args in ((_OLDEST_SQL, (10,)), (_EXPIRED_SQL, (0.0, 10))):
        plan = " ".join(r[3] for r in store.db.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall())
        assert "interactions_by_time" in plan and "TEMP B-TREE" not in plan, plan
