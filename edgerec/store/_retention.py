"""How long the store keeps interactions, and the chunked deletion that enforces it.

Retention runs in three places: fully on open and on ``prune()``, and a little after writes
while the app runs (``RetentionSchedule``), so ``max_rows`` and ``max_age_s`` hold while the
app runs, not only at the next start. Every deletion is a chunk of at most ``CHUNK_ROWS`` rows
in its own short transaction: a writer queued behind retention waits for one chunk, never for
a purge of the whole backlog.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass

from .._exceptions import ConfigError
from ._schema import TABLE

__all__ = ["CHUNK_ROWS", "Retention", "RetentionSchedule", "delete_chunk"]

#: Most rows one retention transaction deletes (~2 ms with secure_delete on a laptop SSD).
CHUNK_ROWS = 256
#: Most rows written between two in-run checks; also the most ``max_rows`` is exceeded by
#: (single-threaded; see ``RetentionSchedule``).
MAX_CHECK_INTERVAL = 128
_MAX_SQLITE_INT = 2**63 - 1


@dataclass(frozen=True)
class Retention:
    """Limits on what the store keeps; ``None`` means unlimited.

    ``max_age_s``: events whose timestamp is more than this many seconds before the store's
    clock are deleted. ``max_rows``: at most this many events are kept in the whole store; the
    oldest (by timestamp, then by insertion order) go first.

    Both are enforced on open, by ``InteractionStore.prune()`` (exactly), and while the app
    logs (within a small slack, see ``RetentionSchedule``).
    """

    max_age_s: float | None = None
    max_rows: int | None = None

    def __post_init__(self) -> None:
        age = self.max_age_s
        if age is not None and not _finite_nonnegative(age):
            raise ConfigError(f"Retention.max_age_s must be a finite number >= 0 or None, got {age!r}")
        rows = self.max_rows
        if rows is not None and (
            isinstance(rows, bool) or not isinstance(rows, int) or not 0 <= rows <= _MAX_SQLITE_INT
        ):
            raise ConfigError(f"Retention.max_rows must be an int >= 0 (and < 2**63) or None, got {rows!r}")

    @property
    def limits_anything(self) -> bool:
        """False for ``Retention()``, which keeps everything."""
        return self.max_age_s is not None or self.max_rows is not None


def _finite_nonnegative(x: object) -> bool:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    try:
        return math.isfinite(x) and x >= 0
    except OverflowError:  # an int beyond float range
        return False


class RetentionSchedule:
    """When to run a retention check while the app writes, and how much it may delete.

    A check is due once ``interval`` rows were written since the last one (``max_rows // 16``,
    between 1 and 128: the slack above ``max_rows``), or once the clock has moved by
    ``max_age_s / 16`` (so expiry also advances when logging is sparse). A due check may
    delete twice what was written since the previous one (at least ``CHUNK_ROWS``), so the
    store shrinks back under its limits even while logging goes on, and the work a write
    triggers stays proportional to what it wrote. In-process state, reset by each check;
    callers hold the store's write lock.
    """

    def __init__(self, retention: Retention, now: float) -> None:
        self.retention = retention
        rows = retention.max_rows
        self.interval = MAX_CHECK_INTERVAL if rows is None else min(MAX_CHECK_INTERVAL, max(1, rows // 16))
        age = retention.max_age_s
        self.age_step = None if age is None else age / 16
        self._written = 0
        self._last_check = now

    def budget_after_write(self, written: int, now: float) -> int:
        """0 if no check is due, else the most rows the check may delete (and the schedule resets)."""
        self._written += written
        due = self._written >= self.interval or (
            self.age_step is not None and abs(now - self._last_check) >= self.age_step
        )
        if not due:
            return 0
        budget = max(CHUNK_ROWS, 2 * self._written)
        self._written, self._last_check = 0, now
        return budget


_EXPIRED_SQL = f"DELETE FROM {TABLE} WHERE id IN (SELECT id FROM {TABLE} WHERE ts < ? ORDER BY ts LIMIT ?)"
# ORDER BY ts, id walks the time index (ts, rowid) in order: no sort, no scan past the chunk.
_OLDEST_SQL = f"DELETE FROM {TABLE} WHERE id IN (SELECT id FROM {TABLE} ORDER BY ts, id LIMIT ?)"


def delete_chunk(conn: sqlite3.Connection, retention: Retention, now: float, limit: int) -> int:
    """Delete at most ``limit`` rows that ``retention`` no longer allows, in one transaction.

    Expired rows first, then the oldest rows beyond ``max_rows``. Returns the rows deleted;
    fewer than ``limit`` means nothing more is due right now.
    """
    deleted = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        if retention.max_age_s is not None:
            deleted += conn.execute(_EXPIRED_SQL, (now - retention.max_age_s, limit)).rowcount
        if retention.max_rows is not None and deleted < limit:
            ((total,),) = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchall()
            excess = min(total - retention.max_rows, limit - deleted)
            if excess > 0:
                deleted += conn.execute(_OLDEST_SQL, (excess,)).rowcount
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return deleted
