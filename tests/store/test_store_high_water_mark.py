"""high_water_mark() never goes down; count_since(mark) sees exactly the rows logged after it."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgerec.store import MIGRATIONS, InteractionStore, Retention


def test_a_new_store_starts_at_zero_and_counts_each_row(store: InteractionStore) -> None:
    assert store.high_water_mark() == 0 and store.count_since(0) == 0
    store.log("u", "a")
    store.log_many([{"user": "u", "item": "b"}, {"user": "v", "item": "c"}])
    assert store.high_water_mark() == 3 and store.count_since(0) == 3 and store.count_since(3) == 0


def test_deleting_the_newest_rows_never_lowers_the_mark(db_path: Path, clock) -> None:
    with InteractionStore(db_path, clock=clock) as s:
        s.log("keep", "a")
        s.log_many([{"user": "gone", "item": str(i)} for i in range(5)])
        mark = s.high_water_mark()
        assert s.forget("gone") == 5 and s.high_water_mark() == mark == 6
        s.log("new", "x")  # SQLite's own max(id) + 1 would reuse id 2 here
        assert s.high_water_mark() == 7 and s.count_since(mark) == 1
    with InteractionStore(db_path, clock=clock) as s:  # and after a restart
        assert s.high_water_mark() == 7


def test_retention_never_lowers_the_mark_and_sync_never_sees_negative_progress(db_path: Path, clock) -> None:
    with InteractionStore(db_path, clock=clock, retention=Retention(max_rows=10)) as s:
        s.log_many([{"user": "u", "item": str(i)} for i in range(10)])
        mark = s.high_water_mark()
        for i in range(25):
            s.log("u", f"new{i}")
        # 25 logged since the mark; only 10 rows are kept, all of them new.
        assert s.high_water_mark() == mark + 25
        assert s.count_since(mark) == s.count() == 10


def test_upgrading_a_version_4_file_keeps_ids_and_starts_the_mark_at_the_largest(db_path: Path) -> None:
    class StoreV4(InteractionStore):
        migrations = MIGRATIONS[:4]

    with StoreV4(db_path) as old:
        old.log_many([{"user": "u", "item": str(i), "event_id": f"e{i}"} for i in range(5)])
        old.forget("nobody")
        old.db.execute("DELETE FROM interactions WHERE id = 2")
        before = old.db.execute("SELECT id, item FROM interactions ORDER BY id").fetchall()
    with InteractionStore(db_path) as new:
        assert new.db.execute("SELECT id, item FROM interactions ORDER BY id").fetchall() == before
        assert new.high_water_mark() == 5
        new.forget("u")
        new.log("v", "i")
        assert new.high_water_mark() == 6
        assert new.log("v", "again", event_id="e9") and not new.log("v", "dup", event_id="e9")


_op = st.one_of(
    st.tuples(st.just("log"), st.sampled_from("abc")),
    st.tuples(st.just("batch"), st.integers(0, 4)),
    st.tuples(st.just("forget"), st.sampled_from("abc")),
    st.tuples(st.just("age"), st.integers(0, 50)),
    st.tuples(st.just("prune"), st.none()),
    st.tuples(st.just("reopen"), st.none()),
    st.tuples(st.just("mark"), st.none()),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op, max_size=30))
def test_count_since_counts_exactly_the_rows_logged_after_the_mark(ops: list) -> None:
    now = [1_700_000_000.0]
    retention = Retention(max_age_s=100.0, max_rows=6)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.db"
        store = InteractionStore(path, clock=lambda: now[0], retention=retention)
        marks: list[int] = [0]  # marks[k] was taken before ...
        marks_before: dict[str, int] = {}  # ... every item whose value here is > k
        serial = 0
        highest = 0

        def item() -> str:
            nonlocal serial
            serial += 1
            marks_before[f"n{serial}"] = len(marks)
            return f"n{serial}"

        try:
            for op, arg in ops:
                if op == "log":
                    store.log(arg, item())
                elif op == "batch":
                    store.log_many([{"user": "b", "item": item()} for _ in range(arg)])
                elif op == "forget":
                    store.forget(arg)
                elif op == "age":
                    now[0] += arg
                elif op == "prune":
                    store.prune()
                elif op == "reopen":
                    store.close()
                    store = InteractionStore(path, clock=lambda: now[0], retention=retention)
                else:
                    marks.append(store.high_water_mark())
                hwm = store.high_water_mark()
                assert hwm >= highest  # never goes down
                highest = hwm
                stored = [i for (i,) in store.db.execute("SELECT item FROM interactions")]
                for k, mark in enumerate(marks):
                    assert store.count_since(mark) == sum(1 for i in stored if marks_before[i] > k)
        finally:
            store.close()


def test_count_since_is_a_range_read_on_the_primary_key(store: InteractionStore) -> None:
    plan = " ".join(r[3] for r in store.db.execute(
        "EXPLAIN QUERY PLAN SELECT count(*) FROM interactions WHERE id > ?", [5]).fetchall())
    assert "INTEGER PRIMARY KEY" in plan or "rowid>?" in plan, plan


def test_even_a_delete_made_outside_the_store_keeps_the_mark(store: InteractionStore) -> None:
    store.log_many([{"user": "u", "item": str(i)} for i in range(4)])
    store.db.execute("DELETE FROM interactions WHERE id >= 3")  # e.g. another adapter, raw SQL
    assert store.high_water_mark() == 4
    store.log("u", "next")
    assert [r for (r,) in store.db.execute("SELECT id FROM interactions ORDER BY id")] == [1, 2, 5]
    store.db.execute("DELETE FROM interactions")
    assert store.high_water_mark() == 5 and store.count_since(0) == 0
