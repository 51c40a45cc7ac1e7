"""Physical erasure after ``forget()``: rewrite the file, then empty the WAL, never waiting.

A DELETE makes rows unreadable to every later query at once, but not gone from the disk:

- ``secure_delete`` zeroes the deleted cells, yet B-tree rebalancing during the same DELETE
  leaves stale copies of cells in the unused gap of rewritten pages (measured: 13 copies of a
  deleted id among 2,700 rows with SQLite 3.40). Only ``VACUUM``, which rebuilds every page,
  removes them.
- the WAL keeps the old page images until a checkpoint copies the new pages into the database
  file and truncates the log; that cannot complete while another connection reads an older
  snapshot (the reader may still need those pages).

So erasure is a small state machine, persisted in the meta table so that a crash or a reader
that never closes only delays it: ``vacuum`` -> ``checkpoint`` -> done. Each step runs under the
store's write lock (taken by the caller) with a busy timeout of at most ``WAIT_MS``: reads of
the app's own threads last well under a millisecond, so a short wait lets the checkpoint slip
in between them, while a reader that holds its snapshot longer (another process, an open
cursor) makes the step fail after ``WAIT_MS`` and the erasure stays *pending*, instead of
blocking the app for the busy timeout (10 s). The retries after each write do not wait at all.
The VACUUM itself is work, not waiting: about 3 ms per 5,000 stored events.
"""

from __future__ import annotations

import sqlite3

from ._schema import delete_meta, get_meta, set_meta

__all__ = ["ERASURE_KEY", "WAIT_MS", "ErasureResult", "Eraser"]

#: Meta-table key present while an erasure is pending. It holds no user data.
ERASURE_KEY = "erasure_pending"
#: Longest a step of ``forget()`` or ``finish_erasure()`` waits for SQLite (readers, writers).
WAIT_MS = 100


class ErasureResult(int):
    """What ``forget()`` achieved. It *is* the number of events deleted (an ``int``), so code
    written for the old ``forget() -> int`` keeps working; it also says whether the files on
    disk are clean.

    - ``deleted``: events deleted by this call; none of them is visible to any query started
      after ``forget()`` returned.
    - ``erased_on_disk``: no erased event (of this call or an earlier one) remains in the
      database file or its WAL. False while a reader holds an older snapshot, another process
      is writing, or ``forget()`` ran inside ``transaction()``.
    - ``pending`` (= not ``erased_on_disk``): the store retries after each write, on
      ``prune()``, on ``finish_erasure()`` and on the next open, until it completes.
    - ``detail``: why it is pending ("" once erased).
    """

    erased_on_disk: bool
    detail: str

    def __new__(cls, deleted: int, erased_on_disk: bool, detail: str = "") -> ErasureResult:
        self = super().__new__(cls, deleted)
        object.__setattr__(self, "erased_on_disk", bool(erased_on_disk))
        object.__setattr__(self, "detail", "" if erased_on_disk else detail)
        return self

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("ErasureResult is immutable")

    @property
    def deleted(self) -> int:
        """Events deleted by this call."""
        return int(self)

    @property
    def pending(self) -> bool:
        """True while erased events may still be on disk."""
        return not self.erased_on_disk

    def __reduce__(self) -> tuple[type[ErasureResult], tuple[int, bool, str]]:
        return (ErasureResult, (int(self), self.erased_on_disk, self.detail))

    def __repr__(self) -> str:
        detail = f", detail={self.detail!r}" if self.detail else ""
        return f"ErasureResult(deleted={int(self)}, erased_on_disk={self.erased_on_disk}{detail})"


class Eraser:
    """The pending-erasure state of one store in this process. Callers hold the write lock."""

    def __init__(self, busy_timeout_ms: int) -> None:
        self._busy_timeout_ms = busy_timeout_ms
        self.stage: str | None = None  # None (nothing pending), "vacuum" or "checkpoint"
        self.detail = ""

    @property
    def pending(self) -> bool:
        return self.stage is not None

    def load(self, conn: sqlite3.Connection) -> None:
        """Pick up an erasure a previous run (or another process) left pending in the file."""
        if get_meta(conn, ERASURE_KEY) is not None:
            self.stage, self.detail = "vacuum", "left pending by an earlier run"

    def mark(self, conn: sqlite3.Connection) -> None:
        """Record, in the caller's transaction, that deleted rows await physical erasure."""
        set_meta(conn, ERASURE_KEY, "1")
        self.stage = "vacuum"

    def finish(self, conn: sqlite3.Connection, *, wait_ms: int = 0) -> bool:
        """Advance the erasure as far as possible, waiting at most ``wait_ms`` per step for
        SQLite; True once nothing is pending.

        ``conn`` must be outside any transaction. sqlite3 errors other than "busy / locked /
        statements in progress" propagate.
        """
        if self.stage is None:
            return True
        if conn.in_transaction:
            self.detail = "forget() ran inside transaction(): erasure completes after a later write"
            return False
        conn.execute(f"PRAGMA busy_timeout = {int(wait_ms)}")
        try:
            return self._advance(conn)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")

    def _advance(self, conn: sqlite3.Connection) -> bool:
        if self.stage == "vacuum":
            try:
                conn.execute("VACUUM")
            except sqlite3.OperationalError as exc:
                if not _transient(exc):
                    raise
                self.detail = f"VACUUM could not run now ({exc}); retried after the next write"
                return False
            self.stage = "checkpoint"
        ((busy, _, _),) = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        if busy:
            self.detail = ("a reader holds an older snapshot (or another process is writing), so the "
                           "WAL cannot be emptied yet; retried after the next write")
            return False
        self.stage, self.detail = None, ""
        try:
            delete_meta(conn, ERASURE_KEY)
        except sqlite3.OperationalError as exc:
            if not _transient(exc):
                raise
            # The files are clean; the flag left behind only costs one redundant VACUUM on a later open.
        return True


def _transient(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text or "in progress" in text
