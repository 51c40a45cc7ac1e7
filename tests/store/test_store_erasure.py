"""forget(): rows invisible at once; bytes gone from app.db and its WAL, or honestly pending.

Physical erasure is checked the way an auditor would: by scanning the raw bytes of the
database file, its WAL and its shared-memory index for the erased id.
"""

from __future__ import annotations

import pickle
import sqlite3
import time
from pathlib import Path

import pytest

from edgerec.store import ErasureResult, InteractionStore

SECRET = "secret-subject-7f3a"


def _disk_bytes(db_path: Path) -> bytes:
    # app.db, app.db-wal, app.db-shm: everything SQLite keeps on disk for this database.
    return b"".join(p.read_bytes() for p in sorted(db_path.parent.iterdir()) if p.name.startswith(db_path.name))


def _traces(db_path: Path) -> int:
    return _disk_bytes(db_path).count(SECRET.encode())


def _fill(store: InteractionStore, n: int = 2_700) -> int:
    # Interleaved users and a DELETE of a third of the rows: B-tree pages are merged during the
    # delete, which is what leaves stale cell copies that secure_delete alone does not clear.
    events = [{"user": SECRET if i % 3 else f"other-{i % 7}", "item": f"item-{i}", "ts": 1_600_000_000 + i}
              for i in range(n)]
    store.log_many(events)
    return sum(1 for e in events if e["user"] == SECRET)


def _open_reader(db_path: Path) -> sqlite3.Connection:
    """Another connection holding a read snapshot open (as another app process might)."""
    reader = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM interactions").fetchall()
    return reader


def test_without_a_reader_the_id_is_gone_from_every_file_on_return(db_path: Path) -> None:
    with InteractionStore(db_path) as store:
        n = _fill(store)
        assert _traces(db_path) > 0
        result = store.forget(SECRET)
        assert result == n and result.deleted == n
        assert result.erased_on_disk and not result.pending and not store.erasure_pending
        assert _traces(db_path) == 0
        assert store.count() == 2_700 - n and SECRET not in store.users()
    assert _traces(db_path) == 0


def test_under_an_open_reader_forget_says_pending_and_does_not_wait(db_path: Path) -> None:
    with InteractionStore(db_path) as store:  # default busy_timeout: 10 s
        n = _fill(store)
        reader = _open_reader(db_path)
        try:
            start = time.monotonic()
            result = store.forget(SECRET)
            elapsed = time.monotonic() - start
            assert elapsed < 1.0, f"forget waited {elapsed:.1f} s for a reader"
            assert result == n and result.pending and not result.erased_on_disk
            assert "snapshot" in result.detail
            assert store.erasure_pending
            # Invisible to every query at once: this store, and a brand-new connection.
            assert store.history(SECRET) == [] and store.count(SECRET) == 0 and store.export(SECRET) == []
            assert SECRET not in store.users() and store.profile(SECRET) == []
            fresh = sqlite3.connect(db_path)
            assert fresh.execute("SELECT count(*) FROM interactions WHERE user = ?", (SECRET,)).fetchone() == (0,)
            fresh.close()
            # The reader's snapshot still holds old pages: the bytes are honestly not gone yet.
            assert _traces(db_path) > 0
            store.log("bob", "while-pending")  # a write retries, and still cannot finish
            assert store.erasure_pending
        finally:
            reader.close()
        store.log("bob", "after-reader")  # the next write completes the erasure
        assert not store.erasure_pending
        assert _traces(db_path) == 0
        assert [e.item for e in store.history("bob")] == ["while-pending", "after-reader"]


def test_a_pending_erasure_survives_closing_and_completes_on_the_next_open(db_path: Path) -> None:
    store = InteractionStore(db_path)
    _fill(store)
    # An idle connection of another process: while it is open, closing the others does not
    # checkpoint the WAL (SQLite does that when the *last* connection closes).
    idle = sqlite3.connect(db_path, isolation_level=None)
    idle.execute("SELECT count(*) FROM sqlite_master").fetchall()
    reader = _open_reader(db_path)
    try:
        assert store.forget(SECRET).pending
        store.close()
    finally:
        reader.close()
    try:
        assert _traces(db_path) > 0  # nobody has written since the reader left
        assert idle.execute("SELECT value FROM edgerec_meta WHERE key = 'erasure_pending'").fetchall() == [("1",)]
        with InteractionStore(db_path) as reopened:
            assert not reopened.erasure_pending
            assert _traces(db_path) == 0
    finally:
        idle.close()


def test_finish_erasure_and_prune_complete_it_without_a_write(db_path: Path) -> None:
    with InteractionStore(db_path) as store:
        _fill(store)
        reader = _open_reader(db_path)
        assert store.forget(SECRET).pending
        assert store.finish_erasure() is False  # the reader is still there
        reader.close()
        assert store.finish_erasure() is True
        assert _traces(db_path) == 0
        assert store.prune() == 0 and store.finish_erasure() is True


def test_forget_inside_a_transaction_completes_after_it(db_path: Path) -> None:
    with InteractionStore(db_path) as store:
        _fill(store, 300)
        with store.transaction():
            result = store.forget(SECRET)
            assert result.deleted == 200 and result.pending
        assert store.count(SECRET) == 0
        store.log("bob", "x")
        assert not store.erasure_pending and _traces(db_path) == 0


def test_forgetting_nobody_reports_a_clean_disk(store: InteractionStore) -> None:
    result = store.forget("nobody")
    assert result == 0 and result.erased_on_disk and result.detail == ""


def test_erasure_keeps_other_users_ids_and_the_high_water_mark(db_path: Path) -> None:
    with InteractionStore(db_path) as store:
        _fill(store, 30)
        mark = store.high_water_mark()
        before = store.export("other-0")
        store.forget(SECRET)
        assert store.export("other-0") == before
        assert store.high_water_mark() == mark == 30  # VACUUM keeps sqlite_sequence
        store.log("new", "i")
        assert store.high_water_mark() == 31 and store.count_since(mark) == 1


def test_erasure_result_is_an_int_with_a_report() -> None:
    r = ErasureResult(4, False, "why")
    assert r == 4 and r + 1 == 5 and max(0, 10 - r) == 6 and int(r) == 4 and bool(r)
    assert (r.deleted, r.erased_on_disk, r.pending, r.detail) == (4, False, True, "why")
    assert repr(r) == "ErasureResult(deleted=4, erased_on_disk=False, detail='why')"
    assert ErasureResult(0, True, "ignored once erased").detail == ""
    copy = pickle.loads(pickle.dumps(r))
    assert (copy, copy.erased_on_disk, copy.detail) == (4, False, "why")
    with pytest.raises(AttributeError):
        r.erased_on_disk = True  # type: ignore[misc]
