"""``InteractionStore``: the on-device SQLite log of what the user did."""

from __future__ import annotations

import os
import sqlite3
import time
from types import TracebackType
from typing import Any, Callable, ClassVar, Iterable, Mapping

from .._exceptions import ConfigError, StoreError
from ..events import MAX_FUTURE_S, EventRecord, Interaction, check_lookup_id, validate_interaction
from ._base import StoreBase
from ._batch import rows_for_batch
from ._erasure import WAIT_MS, Eraser, ErasureResult
from ._retention import CHUNK_ROWS, Retention, RetentionSchedule, delete_chunk
from ._schema import HIGH_WATER_SQL, INSERT_SQL, MIGRATIONS, TABLE, Migration, check_migrations, migrate

__all__ = ["InteractionStore"]

_PROFILE_SQL = (
    f"SELECT item, event, value FROM {TABLE} "
    "WHERE user = ? AND event != 'impression' ORDER BY ts DESC, id DESC"
)
_HISTORY_SQL = f"SELECT user, item, event, value, ts, event_id FROM {TABLE} WHERE user = ? ORDER BY ts, id"
_MAX_MARK = 2**63 - 1


def _user_key(user: Any) -> str:
    # Reads and erasure look ids up by the lenient rule: an id stored before the stricter
    # character rules of events.check_id existed must stay readable and erasable.
    return check_lookup_id("user", user)


class InteractionStore(StoreBase):
    """Interactions kept in one SQLite file on the device, safe to share between threads and processes.

    Durability (``synchronous``), with the database always in WAL mode:

    - ``"NORMAL"`` (default): once ``log()`` returns, the event survives the app crashing or
      being killed (it is in the WAL, handed to the OS). A power loss or OS crash may lose the
      last few commits, never corrupt the file. No fsync per event, so logging stays cheap.
    - ``"FULL"``: the WAL is fsync'd at every commit, so a returned ``log()`` also survives power
      loss, at the price of one fsync per event (much slower on flash storage).

    Concurrency: each thread has its own connection. Reads (``profile``, ``history``, ``users``,
    ``count``, ``high_water_mark``, ``count_since``) take no lock: each reads a WAL snapshot and
    never waits for a writer. Writers of this process queue, first come first served, on one
    in-process lock (``_locks``), so a write waits only for the writes queued before it; writers
    in other processes meet in SQLite's busy handler, up to ``busy_timeout_ms``. Retention and
    erasure work is done in short chunks after a write, never as one long transaction.

    ``retention`` is applied on open, by ``prune()``, and while the app logs (see
    ``Retention``); ``clock`` supplies "now" for events without a timestamp, for the future bound
    on timestamps, and for retention.

    Errors: malformed events and arguments raise ``InvalidEventError`` and write nothing; bad
    options raise ``ConfigError``; any SQLite failure raises ``StoreError`` (the sqlite3
    exception is its ``__cause__``); a file written by a newer edgerec raises
    ``SchemaVersionError``.

    Other adapters sharing the file (the privacy ledger) use ``db`` and ``transaction()``, and
    add their tables as a new step in ``edgerec.store._schema.MIGRATIONS``.
    """

    #: The schema steps this class applies on open. Later code appends to ``_schema.MIGRATIONS``.
    migrations: ClassVar[tuple[Migration, ...]] = MIGRATIONS

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 10_000,
        retention: Retention | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retention is not None and not isinstance(retention, Retention):
            raise ConfigError(f"retention must be a Retention or None, got {type(retention).__name__}")
        check_migrations(self.migrations)
        self._setup(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms, clock=clock)
        self._retention = retention if retention is not None and retention.limits_anything else None
        self._eraser = Eraser(busy_timeout_ms)
        self._schedule: RetentionSchedule | None = None
        try:
            with self._translating("opening the store"):
                db = self.db
                db.enable_wal()
                # WAL is what makes concurrent readers and NORMAL durability work; some file
                # systems (network shares) cannot provide it, and then SQLite silently keeps the
                # old mode. Refuse rather than run with weaker guarantees than documented.
                if db.journal_mode != "wal":
                    raise StoreError(f"{self.path} cannot use WAL journal mode (got {db.journal_mode!r})")
                migrate(db, self.migrations)
                self._eraser.load(db.conn)
            if self._retention is not None:
                self._schedule = RetentionSchedule(self._retention, self._now())
            self.prune()
        except BaseException:
            self.close()
            raise

    # -- writing -----------------------------------------------------------------------------

    def log(
        self,
        user: str | int,
        item: str | int,
        event: str = "click",
        value: float = 1.0,
        ts: float | None = None,
        event_id: str | int | None = None,
    ) -> bool:
        """Record one interaction (``ts`` defaults to the clock's now) in its own transaction.

        Returns True if written, False if ``event_id`` was already stored (a retry). Raises
        ``InvalidEventError`` naming the field for a malformed event (see ``edgerec.events``:
        ids, and ``ts`` within [0, now + 1 day] in seconds), and then writes nothing.
        Afterwards it may run one bounded chunk of retention or finish a pending erasure.
        """
        now = self._clock()
        e = validate_interaction(user=user, item=item, event=event, value=value, ts=ts, event_id=event_id,
                                 now=now, max_future_s=MAX_FUTURE_S)
        # Hot path: cached connection, cached prepared statement, no context manager.
        threads = self._threads
        try:
            conn = threads.local.conn
        except AttributeError:
            conn = self._conn()
        lock = threads.write_lock
        if not lock.acquire(self._busy_timeout_ms / 1000.0):
            raise self._locked("log")
        try:
            written = conn.execute(INSERT_SQL, (e.user, e.item, e.event, e.value, e.ts, e.event_id)).rowcount
            budget = self._budget(conn, written, now)
        except sqlite3.Error as exc:
            raise StoreError(f"log failed on {self.path}: {exc}") from exc
        finally:
            lock.release()
        if budget or self._eraser.stage is not None:
            self._after_write(budget, now)
        return written == 1

    def log_many(self, events: Iterable[Mapping[str, object] | Interaction]) -> int:
        """Record a batch all-or-nothing, in one transaction; return the number of rows written.

        Every event is validated before anything is written: one bad event raises
        ``InvalidEventError`` naming its index, and none of the batch is stored (``events``
        that is not an iterable of events raises it too). Events whose ``event_id`` is already
        stored, or repeats one earlier in the batch, are skipped.
        """
        now = self._clock()
        rows = rows_for_batch(events, now)
        if not rows:
            return 0
        with self._writing("log_many") as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                written = int(conn.executemany(INSERT_SQL, rows).rowcount)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            budget = self._budget(conn, written, now)
        if budget or self._eraser.stage is not None:
            self._after_write(budget, now)
        return written

    def _budget(self, conn: sqlite3.Connection, written: int, now: float) -> int:
        # Inside a caller's transaction() nothing more may be committed: skip until a later write.
        if self._schedule is None or conn.in_transaction:
            return 0
        return self._schedule.budget_after_write(written, now)

    def _after_write(self, budget: int, now: float) -> None:
        """Retention and erasure work after a committed write, outside its transaction.

        Best effort: the event is already stored, so a failure here (say, another process holds
        the database) must not make the caller believe the write failed; the work is retried
        at the next check.
        """
        try:
            if self._conn().in_transaction:
                return
            if budget:
                self._enforce_retention(now, budget)
            if self._eraser.stage is not None:
                with self._writing("finishing an erasure") as conn:
                    self._eraser.finish(conn, wait_ms=0)  # a write never waits for a reader
        except StoreError:
            pass

    def _enforce_retention(self, now: float, budget: int | None) -> int:
        """Delete what retention no longer allows, chunk by chunk (``budget`` None: all of it)."""
        assert self._retention is not None
        total = 0
        while budget is None or budget > 0:
            limit = CHUNK_ROWS if budget is None else min(CHUNK_ROWS, budget)
            # One chunk per lock hold: writers queued meanwhile get their turn between chunks.
            with self._writing("retention") as conn:
                deleted = delete_chunk(conn, self._retention, now, limit)
            total += deleted
            if budget is not None:
                budget -= limit
            if deleted < limit:
                break
        return total

    # -- reading -----------------------------------------------------------------------------

    def profile(self, user: str | int) -> list[tuple[str, str, float]]:
        """``(item, event, value)`` of the user's non-impression events, most recent first.

        The scoring hot path: one query answered from the covering index alone, no lock taken.
        Take the first L as the recent history; all of them are the items to exclude (consumed
        or dismissed).
        """
        if type(user) is not str:
            user = _user_key(user)
        try:
            conn = self._threads.local.conn
        except AttributeError:
            conn = self._conn()
        try:
            return conn.execute(_PROFILE_SQL, (user,)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"profile failed on {self.path}: {exc}") from exc
        except UnicodeEncodeError:  # a lone surrogate: checked only when it fails, off the hot path
            _user_key(user)
            raise

    def history(self, user: str | int) -> list[Interaction]:
        """Every event of ``user``, impressions included, oldest first."""
        key = _user_key(user)
        with self._translating("history"):
            rows = self._conn().execute(_HISTORY_SQL, (key,)).fetchall()
        return [Interaction(*row) for row in rows]

    def users(self) -> list[str]:
        """Every user with at least one stored event, sorted."""
        with self._translating("users"):
            return [u for (u,) in self._conn().execute(f"SELECT DISTINCT user FROM {TABLE} ORDER BY user")]

    def count(self, user: str | int | None = None) -> int:
        """Number of stored events, of one user or (``None``) of everyone."""
        key = None if user is None else _user_key(user)
        with self._translating("count"):
            if key is None:
                ((n,),) = self._conn().execute(f"SELECT count(*) FROM {TABLE}").fetchall()
            else:
                ((n,),) = self._conn().execute(f"SELECT count(*) FROM {TABLE} WHERE user = ?", (key,)).fetchall()
        return int(n)

    def high_water_mark(self) -> int:
        """The largest row id ever assigned to an interaction (0 for a new store).

        It never goes down: pruning, ``forget()``, any DELETE and reopening leave it where it
        is, and ids are never handed out twice (schema 5). Pair it with ``count_since()``: rows
        logged later all have larger ids. (A store opened with migrations older than 5 falls
        back to the largest stored id, which can go down.)
        """
        with self._translating("high_water_mark"):
            ((mark,),) = self._conn().execute(HIGH_WATER_SQL).fetchall()
        return int(mark)

    def count_since(self, mark: int) -> int:
        """Interactions still stored whose id is above ``mark`` (a ``high_water_mark()``).

        "New since the last sync": logged after the mark was taken and not pruned or erased
        since. Never negative, whatever was deleted in between.
        """
        if isinstance(mark, bool) or not isinstance(mark, int) or not 0 <= mark <= _MAX_MARK:
            raise ConfigError(f"mark must be an int in 0..2**63-1 (a high_water_mark()), got {mark!r}")
        with self._translating("count_since"):
            ((n,),) = self._conn().execute(f"SELECT count(*) FROM {TABLE} WHERE id > ?", (mark,)).fetchall()
        return int(n)

    # -- data-subject rights and retention ---------------------------------------------------

    def forget(self, user: str | int) -> ErasureResult:
        """Erase every event of ``user`` (right to erasure); return an ``ErasureResult``.

        The result is an ``int``, the number of events deleted: they are invisible to every
        query that starts after this returns. ``result.erased_on_disk`` says whether the bytes
        are gone from the database file and its WAL too (VACUUM, then a truncating
        checkpoint). That cannot finish while another connection reads an older snapshot or
        another process writes: then ``result.pending`` is True and the store completes it
        after a later write, ``prune()`` or ``finish_erasure()``. It waits at most ~0.1 s per
        step for readers or other processes' writers (not the 10 s busy timeout), holding only
        this process's write lock; reads never wait for it.

        Ids are looked up leniently (``events.check_lookup_id``) so ids stored before the
        current character rules can still be erased.
        """
        key = _user_key(user)
        with self._writing("forget") as conn:
            if conn.in_transaction:  # inside transaction(): the DELETE joins it, erasure comes later
                deleted = conn.execute(f"DELETE FROM {TABLE} WHERE user = ?", (key,)).rowcount
                if deleted:
                    self._eraser.mark(conn)
                return ErasureResult(deleted, not self._eraser.pending,
                                     "forget() ran inside transaction(): erasure completes after a later write")
            conn.execute("BEGIN IMMEDIATE")
            try:
                deleted = conn.execute(f"DELETE FROM {TABLE} WHERE user = ?", (key,)).rowcount
                if deleted:
                    self._eraser.mark(conn)  # in the same transaction: a crash cannot lose it
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            done = self._eraser.finish(conn, wait_ms=WAIT_MS)
            return ErasureResult(deleted, done, self._eraser.detail)

    @property
    def erasure_pending(self) -> bool:
        """True while events erased by ``forget()`` may still be on disk (see ``ErasureResult``)."""
        return self._eraser.pending

    def finish_erasure(self) -> bool:
        """Try to complete a pending physical erasure now, waiting at most ~0.1 s per step for
        readers; True once none is pending (e.g. on an app timer, or when it goes idle)."""
        if not self._eraser.pending:
            return True
        with self._writing("finishing an erasure") as conn:
            return self._eraser.finish(conn, wait_ms=WAIT_MS)

    def export(self, user: str | int) -> list[EventRecord]:
        """Every event of ``user`` as JSON-serialisable dicts, oldest first (right of access).

        The keys are the ``log()`` arguments, so ``log_many(export(u))`` re-imports them.
        """
        return [{"user": e.user, "item": e.item, "event": e.event, "value": e.value, "ts": e.ts,
                 "event_id": e.event_id} for e in self.history(user)]

    def prune(self) -> int:
        """Apply the retention policy fully now; return the number of events deleted (0 without one).

        Works in chunks of ``CHUNK_ROWS`` rows, each its own short transaction, so writers on
        other threads interleave with a large purge. Also retries a pending erasure.
        """
        deleted = 0
        if self._retention is not None:
            deleted = self._enforce_retention(self._now(), None)
        self.finish_erasure()
        return deleted

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> InteractionStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"InteractionStore({str(self.path)!r}, synchronous={self._synchronous!r})"
