"""``InteractionStore``: the on-device SQLite log of what the user did."""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping

from sqlite_utils import Database

from .._exceptions import ConfigError, InvalidEventError, StoreError
from ..events import Interaction, validate_interaction
from ._batch import rows_for_batch
from ._connection import SYNCHRONOUS_MODES, ThreadConnections, connect
from ._retention import Retention, apply_retention
from ._schema import INSERT_SQL, MIGRATIONS, TABLE, Migration, check_migrations, migrate, read_version

__all__ = ["InteractionStore"]

_FIELDS = ("user", "item", "event", "value", "ts", "event_id")
_PROFILE_SQL = (
    f"SELECT item, event, value FROM {TABLE} "
    "WHERE user = ? AND event != 'impression' ORDER BY ts DESC, id DESC"
)
_HISTORY_SQL = f"SELECT user, item, event, value, ts, event_id FROM {TABLE} WHERE user = ? ORDER BY ts, id"


def _user_key(user: Any) -> str:
    # Ids are stored as text (events.py accepts str or int), so look them up the same way.
    if isinstance(user, str):
        return user
    if isinstance(user, int) and not isinstance(user, bool):
        return str(user)
    raise InvalidEventError(f"user must be a str or int, got {type(user).__name__}")


class InteractionStore:
    """Interactions kept in one SQLite file on the device, safe to share between threads and processes.

    Durability (``synchronous``), with the database always in WAL mode:

    - ``"NORMAL"`` (default): once ``log()`` returns, the event survives the app crashing or
      being killed (it is in the WAL, handed to the OS). A power loss or OS crash may lose the
      last few commits, never corrupt the file. No fsync per event, so logging stays cheap.
    - ``"FULL"``: the WAL is fsync'd at every commit, so a returned ``log()`` also survives power
      loss, at the price of one fsync per event (much slower on flash storage).

    Each thread gets its own connection, which waits up to ``busy_timeout_ms`` for another
    writer (thread or process) instead of failing. ``retention`` is applied on open and by
    ``prune()``; ``clock`` supplies "now" for events without a timestamp and for retention.

    Errors: malformed events raise ``InvalidEventError`` and write nothing; any SQLite failure
    raises ``StoreError`` (the sqlite3 exception is its ``__cause__``); a file written by a
    newer edgerec raises ``SchemaVersionError``.

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
        if not isinstance(synchronous, str) or synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ConfigError(f"synchronous must be one of {SYNCHRONOUS_MODES}, got {synchronous!r}")
        if isinstance(busy_timeout_ms, bool) or not isinstance(busy_timeout_ms, int) or busy_timeout_ms < 0:
            raise ConfigError(f"busy_timeout_ms must be an int >= 0, got {busy_timeout_ms!r}")
        if retention is not None and not isinstance(retention, Retention):
            raise ConfigError(f"retention must be a Retention or None, got {type(retention).__name__}")
        if not callable(clock):
            raise ConfigError("clock must be a callable returning seconds since the epoch")
        if str(path) in ("", ":memory:") or str(path).startswith("file:"):
            # Every thread opens its own connection, so an in-memory database would be a
            # different, empty one per thread.
            raise ConfigError(f"the store needs a file path, got {str(path)!r}")
        check_migrations(self.migrations)
        self.path: Path = Path(path)
        self._synchronous = synchronous.upper()
        self._busy_timeout_ms = busy_timeout_ms
        self._retention = retention
        self._clock = clock
        self._threads = ThreadConnections(self._new_database)
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
            self.prune()
        except BaseException:
            self.close()
            raise

    # -- connections -------------------------------------------------------------------------

    def _new_database(self) -> Database:
        conn = connect(self.path, synchronous=self._synchronous, busy_timeout_ms=self._busy_timeout_ms)
        # Plugins could register functions or change the connection behind our back; we need none.
        return Database(conn, execute_plugins=False)

    def _conn(self) -> sqlite3.Connection:
        try:
            return self._threads.local.conn  # type: ignore[no-any-return]
        except AttributeError:
            return self.db.conn

    @property
    def db(self) -> Database:
        """The calling thread's ``sqlite_utils.Database``, for other adapters sharing this file.

        Its connection is in autocommit mode: group writes with ``transaction()``. Do not close it.
        """
        try:
            return self._threads.open_for_this_thread()
        except RuntimeError:
            raise StoreError(f"the store at {self.path} is closed") from None
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc

    @contextmanager
    def _translating(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"{what} failed on {self.path}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` on this thread's connection; rolled back on any error.

        Yields the thread's ``Database``. Not reentrant. sqlite3 errors become ``StoreError``.
        """
        db = self.db
        conn = db.conn
        with self._translating("transaction"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield db
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the database file."""
        with self._translating("reading the schema version"):
            return read_version(self._conn())

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
        ``InvalidEventError`` for a malformed event, and then writes nothing.
        """
        e = validate_interaction(
            user=user, item=item, event=event, value=value, ts=ts, event_id=event_id, now=self._clock()
        )
        # Hot path: cached connection, cached prepared statement, no context manager.
        try:
            conn = self._threads.local.conn
        except AttributeError:
            conn = self._conn()
        try:
            return conn.execute(INSERT_SQL, (e.user, e.item, e.event, e.value, e.ts, e.event_id)).rowcount == 1
        except sqlite3.Error as exc:
            raise StoreError(f"log failed on {self.path}: {exc}") from exc

    def log_many(self, events: Iterable[Mapping[str, Any] | Interaction]) -> int:
        """Record a batch all-or-nothing, in one transaction; return the number of rows written.

        Every event is validated before anything is written: one bad event raises
        ``InvalidEventError`` naming its index, and none of the batch is stored. Events whose
        ``event_id`` is already stored, or repeats one earlier in the batch, are skipped.
        """
        rows = rows_for_batch(events, self._clock())
        if not rows:
            return 0
        conn = self._conn()
        with self._translating("log_many"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                written = conn.executemany(INSERT_SQL, rows).rowcount
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return int(written)

    # -- reading -----------------------------------------------------------------------------

    def profile(self, user: str) -> list[tuple[str, str, float]]:
        """``(item, event, value)`` of the user's non-impression events, most recent first.

        The scoring hot path: one query answered from the covering index alone. Take the first
        L as the recent history; all of them are the items to exclude (consumed or dismissed).
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

    def history(self, user: str) -> list[Interaction]:
        """Every event of ``user``, impressions included, oldest first."""
        with self._translating("history"):
            rows = self._conn().execute(_HISTORY_SQL, (_user_key(user),)).fetchall()
        return [Interaction(*row) for row in rows]

    def users(self) -> list[str]:
        """Every user with at least one stored event, sorted."""
        with self._translating("users"):
            return [u for (u,) in self._conn().execute(f"SELECT DISTINCT user FROM {TABLE} ORDER BY user")]

    def count(self, user: str | None = None) -> int:
        """Number of stored events, of one user or (``None``) of everyone."""
        with self._translating("count"):
            if user is None:
                (n,) = self._conn().execute(f"SELECT count(*) FROM {TABLE}").fetchone()
            else:
                query = f"SELECT count(*) FROM {TABLE} WHERE user = ?"
                (n,) = self._conn().execute(query, (_user_key(user),)).fetchone()
        return int(n)

    # -- data-subject rights and retention ---------------------------------------------------

    def forget(self, user: str) -> int:
        """Erase every event of ``user`` (right to erasure) and return how many were deleted.

        ``secure_delete`` zeroes the freed space in the database file, and the WAL, which still
        holds the old pages, is checkpointed and truncated when no other reader is using it.
        """
        key = _user_key(user)
        conn = self._conn()
        with self._translating("forget"):
            deleted = conn.execute(f"DELETE FROM {TABLE} WHERE user = ?", (key,)).rowcount
            if deleted:
                # Best effort: waits up to busy_timeout for readers; if one remains, the frames are
                # overwritten by later writes instead. Not an error either way.
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return int(deleted)

    def export(self, user: str) -> list[dict[str, Any]]:
        """Every event of ``user`` as JSON-serialisable dicts, oldest first (right of access).

        The keys are the ``log()`` arguments, so ``log_many(export(u))`` re-imports them.
        """
        return [dict(zip(_FIELDS, (e.user, e.item, e.event, e.value, e.ts, e.event_id))) for e in self.history(user)]

    def prune(self) -> int:
        """Apply the retention policy now; return the number of events deleted (0 without one)."""
        if self._retention is None:
            return 0
        now = float(self._clock())
        with self._translating("prune"):
            return apply_retention(self._conn(), self._retention, now)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close every thread's connection. Call it when no other thread is using the store."""
        with self._translating("close"):
            self._threads.close_all()

    def __enter__(self) -> InteractionStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"InteractionStore({str(self.path)!r}, synchronous={self._synchronous!r})"
