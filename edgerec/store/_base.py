"""The plumbing under ``InteractionStore``: options, per-thread connections, the write lock,
transactions and error translation for one SQLite file."""

from __future__ import annotations

import math
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlite_utils import Database

from .._exceptions import ConfigError, StoreError
from ._connection import SYNCHRONOUS_MODES, ThreadConnections, connect
from ._schema import read_version

__all__ = ["StoreBase", "check_path"]

_MAX_BUSY_TIMEOUT_MS = 2**31 - 1  # SQLite takes an int


def check_path(path: Any) -> Path:
    """``path`` as a ``Path`` to a database file, or ``ConfigError`` naming ``path``."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"path must be a str or os.PathLike naming a file, got {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise ConfigError(f"path must be a str or os.PathLike naming a file, got a {type(text).__name__} path")
    if text in ("", ":memory:") or text.startswith("file:"):
        # Every thread opens its own connection, so an in-memory database would be a
        # different, empty one per thread.
        raise ConfigError(f"the store needs a file path, got path={text!r}")
    if "\x00" in text:
        raise ConfigError(f"path contains a NUL character: {text!r}")
    return Path(text)


class StoreBase:
    """Connections, the in-process write lock and transactions of one SQLite file.

    Subclasses call ``_setup()`` first in ``__init__``. Every thread gets its own connection
    (``_connection``); every write holds ``_threads.write_lock`` (``_locks``), reads hold nothing.
    """

    path: Path

    def _setup(self, path: Any, *, synchronous: Any, busy_timeout_ms: Any, clock: Any) -> None:
        """Check the options (``ConfigError`` naming the bad one) and prepare the connections."""
        if not isinstance(synchronous, str) or synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ConfigError(f"synchronous must be one of {SYNCHRONOUS_MODES}, got {synchronous!r}")
        if (isinstance(busy_timeout_ms, bool) or not isinstance(busy_timeout_ms, int)
                or not 0 <= busy_timeout_ms <= _MAX_BUSY_TIMEOUT_MS):
            raise ConfigError(f"busy_timeout_ms must be an int in 0..{_MAX_BUSY_TIMEOUT_MS}, got {busy_timeout_ms!r}")
        if not callable(clock):
            raise ConfigError("clock must be a callable returning seconds since the epoch")
        self.path = check_path(path)
        self._synchronous: str = synchronous.upper()
        self._busy_timeout_ms: int = busy_timeout_ms
        self._clock: Callable[[], float] = clock
        self._threads = ThreadConnections(self._new_database)

    def _new_database(self) -> Database:
        try:
            conn = connect(self.path, synchronous=self._synchronous, busy_timeout_ms=self._busy_timeout_ms)
        except (ValueError, UnicodeError) as exc:  # sqlite3 refuses the path before opening it
            raise ConfigError(f"path {str(self.path)!r} cannot be opened by SQLite: {exc}") from exc
        # Plugins could register functions or change the connection behind our back; we need none.
        return Database(conn, execute_plugins=False)

    def _conn(self) -> sqlite3.Connection:
        try:
            return self._threads.local.conn
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

    def _locked(self, what: str) -> StoreError:
        return StoreError(
            f"{what} failed on {self.path}: database is locked (the writes queued before this one, "
            f"in this process, took longer than busy_timeout_ms={self._busy_timeout_ms})"
        )

    @contextmanager
    def _writing(self, what: str) -> Iterator[sqlite3.Connection]:
        """The thread's connection, holding this process's write lock; sqlite3 errors translated."""
        conn = self._conn()
        if not self._threads.write_lock.acquire(self._busy_timeout_ms / 1000.0):
            raise self._locked(what)
        try:
            with self._translating(what):
                yield conn
        finally:
            self._threads.write_lock.release()

    def _now(self) -> float:
        now = self._clock()
        if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
            raise ConfigError(f"the store's clock must return finite seconds since the epoch, got {now!r}")
        return float(now)

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` on this thread's connection; rolled back on any error.

        Yields the thread's ``Database``. Holds this process's write lock throughout (``log()``
        inside it is fine: the lock is reentrant). Not reentrant itself. sqlite3 errors become
        ``StoreError``.
        """
        db = self.db
        conn = db.conn
        with self._writing("transaction"):
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

    def close(self) -> None:
        """Close every thread's connection. Call it when no other thread is using the store."""
        with self._translating("close"):
            self._threads.close_all()
