"""Opening SQLite connections the store's way, and keeping one per thread.

A ``sqlite3.Connection`` must not be used by two threads at once, nor carried across
``fork()``. So each thread gets its own connection (``threading.local``), and a child process
created by ``fork()`` drops the connections it inherited and opens its own on first use.
Readers take no Python lock while they use SQLite: a thread's first call opens its connection
outside the registry's lock, which only guards the list of open connections.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from pathlib import Path
from typing import Callable

from sqlite_utils import Database

from ._locks import WriteLock

__all__ = ["SYNCHRONOUS_MODES", "ThreadConnections", "connect"]

# WAL + NORMAL: a commit is durable against an application crash; FULL adds an fsync per commit
# so it also survives power loss. OFF / EXTRA are not offered: OFF can corrupt on power loss and
# EXTRA buys nothing over FULL in WAL mode.
SYNCHRONOUS_MODES = ("NORMAL", "FULL")


def connect(path: Path, *, synchronous: str, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection with the store's per-connection settings (the benchmark uses it too).

    ``isolation_level=None`` puts the driver in autocommit: a lone INSERT is its own implicit
    transaction, and multi-statement work says ``BEGIN IMMEDIATE`` explicitly.
    """
    if synchronous not in SYNCHRONOUS_MODES:  # also guards the f-string below
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}")
    conn = sqlite3.connect(
        str(path),
        timeout=busy_timeout_ms / 1000.0,
        isolation_level=None,
        # close() may run on another thread than the one that opened a connection; each
        # connection is still only ever *used* by its own thread.
        check_same_thread=False,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        # Erasure (forget, retention) must not leave the deleted rows readable in free space.
        conn.execute("PRAGMA secure_delete = ON")
    except BaseException:
        conn.close()
        raise
    return conn


class ThreadConnections:
    """One ``sqlite_utils.Database`` per thread, created on demand by ``factory``.

    ``local`` is read directly by the store's hot path; it holds ``db`` and ``conn`` (the raw
    ``sqlite3.Connection`` of ``db``) once the calling thread has opened its connection.
    ``write_lock`` serialises this process's writers (see ``_locks``); like the connections, a
    forked child gets a fresh one.
    """

    def __init__(self, factory: Callable[[], Database]) -> None:
        self._factory = factory
        self.local = threading.local()
        self._lock = threading.Lock()
        self._open: list[tuple[threading.Thread, Database]] = []
        self.closed = False
        self.write_lock = WriteLock()
        _LIVE.add(self)

    def open_for_this_thread(self) -> Database:
        """Open (or return) the calling thread's connection. Raises ``RuntimeError`` once closed."""
        db = getattr(self.local, "db", None)
        if db is not None:
            return db
        if self.closed:
            raise RuntimeError("closed")
        db = self._factory()  # outside the lock: other threads' first calls do not queue behind it
        with self._lock:
            if self.closed:
                db.conn.close()
                raise RuntimeError("closed")
            # Threads come and go (e.g. a web server's workers): close what dead threads left.
            alive: list[tuple[threading.Thread, Database]] = []
            dead: list[tuple[threading.Thread, Database]] = []
            for thread, old in self._open:
                (alive if thread.is_alive() else dead).append((thread, old))
            self._open = alive
            self._open.append((threading.current_thread(), db))
        for _, old in dead:
            old.conn.close()
        self.local.db = db
        self.local.conn = db.conn
        return db

    def close_all(self) -> None:
        """Close every thread's connection; later use raises. Idempotent."""
        with self._lock:
            self.closed = True
            opened, self._open = self._open, []
            # A fresh local makes every thread miss its cached connection and reach the closed check.
            self.local = threading.local()
        for _, db in opened:
            db.conn.close()

    def _after_fork_in_child(self) -> None:
        # The inherited connections belong to the parent: using or even closing them here could
        # corrupt its locks. Forget them; the child opens its own. The lock may have been held by
        # a thread that does not exist in the child, so it is replaced too.
        self._lock = threading.Lock()
        self._open = []
        self.local = threading.local()
        self.write_lock = WriteLock()


_LIVE: weakref.WeakSet[ThreadConnections] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for pool in list(_LIVE):
        pool._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # absent on Windows, where there is no fork()
    os.register_at_fork(after_in_child=_reset_after_fork)
