"""InteractionStore's public behaviour: logging, reading, erasure, access, validation, lifecycle."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from edgerec import ConfigError, InvalidEventError, StoreError
from edgerec.events import EventType, Interaction
from edgerec.store import InteractionStore


def test_log_returns_true_and_fills_in_the_clock_time(store: InteractionStore, clock) -> None:
    assert store.log("u1", "i1") is True
    assert store.history("u1") == [Interaction("u1", "i1", "click", 1.0, clock.now, None)]


def test_log_keeps_explicit_fields_and_int_ids_as_text(store: InteractionStore) -> None:
    store.log(7, 42, EventType.RATING, 4, ts=123.5, event_id=9)
    assert store.history("7") == [Interaction("7", "42", "rating", 4.0, 123.5, "9")]
    assert store.history(7) == store.history("7")


def test_profile_is_newest_first_without_impressions(store: InteractionStore) -> None:
    store.log("u", "a", "view", ts=10)
    store.log("u", "b", "impression", ts=20)
    store.log("u", "c", "purchase", 2.0, ts=30)
    store.log("u", "d", "dismiss", ts=30)  # same ts as c: insertion order breaks the tie
    store.log("other", "z", ts=99)
    assert store.profile("u") == [("d", "dismiss", 1.0), ("c", "purchase", 2.0), ("a", "view", 1.0)]
    assert store.profile("nobody") == []


def test_profile_reflects_a_new_event_at_once(store: InteractionStore, clock) -> None:
    store.log("u", "a")
    clock.advance(1)
    store.log("u", "b")
    assert store.profile("u")[0] == ("b", "click", 1.0)


def test_history_is_oldest_first_and_includes_impressions(store: InteractionStore) -> None:
    store.log("u", "late", ts=50)
    store.log("u", "shown", "impression", ts=10)
    store.log("u", "early", ts=5)
    assert [e.item for e in store.history("u")] == ["early", "shown", "late"]


def test_users_and_count(store: InteractionStore) -> None:
    assert store.users() == [] and store.count() == 0
    store.log("b", "x")
    store.log("a", "x")
    store.log("a", "y")
    assert store.users() == ["a", "b"]
    assert (store.count(), store.count("a"), store.count("b"), store.count("c")) == (3, 2, 1, 0)


def test_same_event_id_twice_is_stored_once(store: InteractionStore) -> None:
    assert store.log("u", "i", event_id="e-1") is True
    assert store.log("u", "other", "purchase", event_id="e-1") is False
    assert store.count() == 1
    assert store.history("u")[0].item == "i"


def test_events_without_event_id_never_conflict(store: InteractionStore) -> None:
    assert all(store.log("u", "i", ts=1.0) for _ in range(3))
    assert store.count() == 3


def test_log_many_writes_all_and_counts_rows(store: InteractionStore, clock) -> None:
    batch = [
        {"user": "u", "item": "a"},
        Interaction("u", "b", "view", 1.0, 5.0, "x"),
        {"user": "v", "item": "c", "event": "rating", "value": 3, "ts": 7},
    ]
    assert store.log_many(batch) == 3
    assert store.history("u") == [Interaction("u", "b", "view", 1.0, 5.0, "x"), Interaction("u", "a", "click", 1.0, clock.now)]
    assert store.log_many([]) == 0
    assert store.log_many(iter([{"user": "w", "item": "d"}])) == 1


def test_log_many_skips_duplicates_within_the_batch_and_against_the_store(store: InteractionStore) -> None:
    store.log("u", "old", event_id="e0")
    batch = [
        {"user": "u", "item": "a", "event_id": "e1"},
        {"user": "u", "item": "b", "event_id": "e1"},
        {"user": "u", "item": "c", "event_id": "e0"},
        {"user": "u", "item": "d"},
    ]
    assert store.log_many(batch) == 2
    assert [e.item for e in store.history("u")] == ["old", "a", "d"]
    assert store.log_many(batch) == 1  # only the event without an id is new again


@pytest.mark.parametrize(
    "bad",
    [
        {"user": "u", "item": "i", "event": "like"},
        {"user": "u", "item": "i", "value": float("nan")},
        {"user": "u", "item": "i", "value": "1"},
        {"user": "u", "item": 1.5},
        {"user": "u"},
        {"user": "", "item": "i"},
        {"user": "u", "item": "i", "colour": "red"},
        ("u", "i"),
        Interaction("u", "i", "click", math.inf, 1.0),
    ],
)
def test_log_many_with_one_bad_event_in_the_middle_writes_nothing(store: InteractionStore, bad) -> None:
    store.log("u", "before")
    batch = [{"user": "u", "item": f"ok{i}"} for i in range(5)]
    batch.insert(2, bad)
    with pytest.raises(InvalidEventError, match=r"event 2 of the batch"):
        store.log_many(batch)
    assert store.count() == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"event": "like"},
        {"event": None},
        {"value": float("nan")},
        {"value": True},
        {"ts": -1},
        {"ts": "yesterday"},
        {"event_id": ""},
        {"event": "rating", "value": 11},
    ],
)
def test_log_rejects_bad_events_and_writes_nothing(store: InteractionStore, kwargs) -> None:
    with pytest.raises(InvalidEventError):
        store.log("u", "i", **kwargs)
    assert store.count() == 0


@pytest.mark.parametrize("user,item", [(None, "i"), ("u", None), ("u", b"i"), ("u ", "i"), ("u", "i\x00")])
def test_log_rejects_bad_ids(store: InteractionStore, user, item) -> None:
    with pytest.raises(InvalidEventError):
        store.log(user, item)
    assert store.count() == 0


def test_forget_deletes_only_that_user_and_returns_the_count(store: InteractionStore) -> None:
    store.log_many([{"user": "alice", "item": str(i)} for i in range(4)] + [{"user": "bob", "item": "x"}])
    assert store.forget("alice") == 4
    assert store.history("alice") == [] and store.profile("alice") == []
    assert store.users() == ["bob"]
    assert store.forget("alice") == 0


def _file_bytes(db_path: Path) -> bytes:
    # The database and its -wal / -shm companions: everything SQLite keeps on disk.
    return b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.name.startswith(db_path.name))


def test_forgotten_user_is_not_left_readable_in_the_files(db_path: Path) -> None:
    with InteractionStore(db_path) as s:
        s.log_many([{"user": "secret-subject-7", "item": f"item-{i}"} for i in range(200)])
        s.log("bob", "x")
        assert b"secret-subject-7" in _file_bytes(db_path)
        s.forget("secret-subject-7")
        assert b"secret-subject-7" not in _file_bytes(db_path)  # while open: WAL included
    assert b"secret-subject-7" not in _file_bytes(db_path)
    assert b"bob" in _file_bytes(db_path)


def test_export_is_json_serialisable_and_reimportable(store: InteractionStore, tmp_path: Path) -> None:
    store.log("u", "a", "rating", 4.5, ts=1.0, event_id="r1")
    store.log("u", "b", ts=2.0)
    exported = store.export("u")
    assert exported == [
        {"user": "u", "item": "a", "event": "rating", "value": 4.5, "ts": 1.0, "event_id": "r1"},
        {"user": "u", "item": "b", "event": "click", "value": 1.0, "ts": 2.0, "event_id": None},
    ]
    assert json.loads(json.dumps(exported)) == exported
    with InteractionStore(tmp_path / "copy.db") as copy:
        assert copy.log_many(exported) == 2
        assert copy.export("u") == exported
    assert store.export("nobody") == []


def test_reopening_keeps_everything(db_path: Path) -> None:
    with InteractionStore(db_path) as s:
        s.log_many([{"user": "u", "item": str(i), "ts": i, "event_id": f"e{i}"} for i in range(10)])
        before = s.export("u")
    with InteractionStore(db_path) as s:
        assert s.export("u") == before
        assert s.log("u", "again", event_id="e3") is False  # idempotency survives reopening


@pytest.mark.parametrize(
    "kwargs",
    [
        {"synchronous": "OFF"},
        {"synchronous": "EXTRA"},
        {"synchronous": 1},
        {"busy_timeout_ms": -1},
        {"busy_timeout_ms": 1.5},
        {"retention": {"max_rows": 3}},
        {"clock": 5.0},
    ],
)
def test_bad_options_raise_config_error(db_path: Path, kwargs) -> None:
    with pytest.raises(ConfigError):
        InteractionStore(db_path, **kwargs)


@pytest.mark.parametrize("path", [":memory:", ""])
def test_in_memory_databases_are_refused(path: str) -> None:
    with pytest.raises(ConfigError):
        InteractionStore(path)


@pytest.mark.parametrize("mode,expected", [("NORMAL", 1), ("full", 2)])
def test_synchronous_mode_is_applied(db_path: Path, mode: str, expected: int) -> None:
    with InteractionStore(db_path, synchronous=mode) as s:
        assert s.db.execute("PRAGMA synchronous").fetchone()[0] == expected


def test_busy_timeout_is_applied(db_path: Path) -> None:
    with InteractionStore(db_path, busy_timeout_ms=1234) as s:
        assert s.db.execute("PRAGMA busy_timeout").fetchone()[0] == 1234


def test_closed_store_raises_store_error(db_path: Path) -> None:
    s = InteractionStore(db_path)
    s.log("u", "i")
    s.close()
    s.close()  # idempotent
    for call in (lambda: s.log("u", "i"), lambda: s.profile("u"), lambda: s.count(), lambda: s.db):
        with pytest.raises(StoreError, match="closed"):
            call()


def test_unopenable_path_raises_store_error_with_cause(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        InteractionStore(tmp_path / "no-such-dir" / "x.db")
    assert info.value.__cause__ is not None


def test_transaction_commits_or_rolls_back(store: InteractionStore) -> None:
    with store.transaction():
        store.log("u", "a")
        store.log("u", "b")
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.log("u", "c")
            raise RuntimeError("boom")
    assert [e.item for e in store.history("u")] == ["a", "b"]
