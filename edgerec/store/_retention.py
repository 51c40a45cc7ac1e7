"""How long the store keeps interactions, and the deletion that enforces it."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass

from .._exceptions import ConfigError
from ._schema import TABLE

__all__ = ["Retention", "apply_retention"]


@dataclass(frozen=True)
class Retention:
    """Limits on what the store keeps; ``None`` means unlimited.

    ``max_age_s``: events whose timestamp is more than this many seconds before the store's
    clock are deleted. ``max_rows``: at most this many events are kept in the whole store; the
    oldest (by timestamp, then by insertion order) go first.
    """

    max_age_s: float | None = None
    max_rows: int | None = None

    def __post_init__(self) -> None:
        age = self.max_age_s
        if age is not None and (
            isinstance(age, bool) or not isinstance(age, (int, float)) or not math.isfinite(age) or age < 0
        ):
            raise ConfigError(f"Retention.max_age_s must be a finite number >= 0 or None, got {age!r}")
        rows = self.max_rows
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 0):
            raise ConfigError(f"Retention.max_rows must be an int >= 0 or None, got {rows!r}")


def apply_retention(conn: sqlite3.Connection, retention: Retention, now: float) -> int:
    """Delete what ``retention`` no longer allows, in one transaction; return the rows deleted.

    Both deletes scan the table (there is deliberately no index on ``ts`` alone, see the schema):
    fine for a job that runs on open and when the app asks, wrong for a hot path.
    """
    if retention.max_age_s is None and retention.max_rows is None:
        return 0
    deleted = 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        if retention.max_age_s is not None:
            cutoff = now - retention.max_age_s
            deleted += conn.execute(f"DELETE FROM {TABLE} WHERE ts < ?", (cutoff,)).rowcount
        if retention.max_rows is not None:
            (total,) = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
            excess = total - retention.max_rows
            if excess > 0:
                deleted += conn.execute(
                    f"DELETE FROM {TABLE} WHERE id IN (SELECT id FROM {TABLE} ORDER BY ts, id LIMIT ?)",
                    (excess,),
                ).rowcount
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return deleted
