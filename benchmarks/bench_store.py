"""Store throughput against raw sqlite3 doing the same work, in the same run.

``log()``: one validated event per call, each its own autocommit transaction, against a bare
``conn.execute(INSERT_SQL, row)`` loop. ``log_many()``: one validated batch in one transaction,
against ``executemany`` between BEGIN IMMEDIATE and COMMIT. Both sides use the same file
layout (the raw file is created by the store's own migrations, then reopened raw), the same
per-connection pragmas (``_connection.connect``) and the same INSERT ... ON CONFLICT statement,
so the ratio is the cost of the store's validation and bookkeeping. ``profile()`` is timed the
same way against the bare query. Each figure is the best of ``REPEATS`` runs on a fresh file.

Run from the repository root: ``python -m benchmarks.bench_store``
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from benchmarks._report import table, write_section
from edgerec.store import InteractionStore
from edgerec.store._connection import connect
from edgerec.store._schema import INSERT_SQL
from edgerec.store._store import _PROFILE_SQL

N = 20_000
REPEATS = 3
USERS = 100  # 200 events per user: a realistic profile() length
PROFILE_CALLS = 2_000
BAR = 0.5  # the store must reach at least half of raw sqlite3's throughput

Row = tuple[str, str, str, float, float, str]


def _rows() -> list[Row]:
    # Every row carries an event_id, as an app that retries uploads would send.
    return [(f"user-{i % USERS}", f"item-{i % 5_000}", "click", 1.0, 1.7e9 + i, f"evt-{i}") for i in range(N)]


def _fresh(tmp: Path, name: str) -> Path:
    path = tmp / f"{name}-{time.perf_counter_ns()}.db"
    InteractionStore(path).close()  # identical schema and WAL mode for both sides
    return path


def _raw_conn(path: Path) -> sqlite3.Connection:
    return connect(path, synchronous="NORMAL", busy_timeout_ms=10_000)


def _timed(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def bench_log(tmp: Path, rows: list[Row]) -> tuple[float, float]:
    """Best-of-REPEATS seconds for N single-row transactions: (raw, store)."""
    raw_best = store_best = float("inf")
    for _ in range(REPEATS):  # interleaved, so a noisy neighbour hits both sides alike
        conn = _raw_conn(_fresh(tmp, "raw-log"))

        def raw() -> None:
            execute = conn.execute
            for row in rows:
                execute(INSERT_SQL, row)

        raw_best = min(raw_best, _timed(raw))
        conn.close()

        store = InteractionStore(_fresh(tmp, "store-log"))

        def ours() -> None:
            log = store.log
            for u, i, e, v, ts, eid in rows:
                log(u, i, e, v, ts, eid)

        store_best = min(store_best, _timed(ours))
        assert store.count() == len(rows)
        store.close()
    return raw_best, store_best


def bench_log_many(tmp: Path, rows: list[Row]) -> tuple[float, float]:
    """Best-of-REPEATS seconds for one N-row transaction: (raw executemany, store log_many of dicts)."""
    dicts = [dict(zip(("user", "item", "event", "value", "ts", "event_id"), row)) for row in rows]
    raw_best = store_best = float("inf")
    for _ in range(REPEATS):
        conn = _raw_conn(_fresh(tmp, "raw-many"))

        def raw() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT_SQL, rows)
            conn.execute("COMMIT")

        raw_best = min(raw_best, _timed(raw))
        conn.close()

        store = InteractionStore(_fresh(tmp, "store-many"))
        store_best = min(store_best, _timed(lambda: store.log_many(dicts)))
        assert store.count() == len(rows)
        store.close()
    return raw_best, store_best


def bench_profile(tmp: Path, rows: list[Row]) -> tuple[float, float]:
    """Best-of-REPEATS seconds for PROFILE_CALLS profile() reads of 200-event users: (raw, store)."""
    path = _fresh(tmp, "profile")
    store = InteractionStore(path)
    store.log_many(dict(zip(("user", "item", "event", "value", "ts", "event_id"), row)) for row in rows)
    conn = _raw_conn(path)
    users = [f"user-{i % USERS}" for i in range(PROFILE_CALLS)]
    raw_best = store_best = float("inf")
    for _ in range(REPEATS):
        raw_best = min(raw_best, _timed(lambda: [conn.execute(_PROFILE_SQL, (u,)).fetchall() for u in users]))
        store_best = min(store_best, _timed(lambda: [store.profile(u) for u in users]))
    conn.close()
    store.close()
    return raw_best, store_best


def main() -> None:
    rows = _rows()
    with tempfile.TemporaryDirectory(prefix="edgerec-bench-store-") as name:
        tmp = Path(name)
        log_raw, log_ours = bench_log(tmp, rows)
        many_raw, many_ours = bench_log_many(tmp, rows)
        prof_raw, prof_ours = bench_profile(tmp, rows)

    def line(what: str, n: int, unit: str, raw: float, ours: float) -> list[object]:
        ratio = raw / ours  # throughput ratio: store rate / raw rate
        verdict = "n/a" if unit == "reads/s" else ("pass" if ratio >= BAR else "FAIL")
        return [what, f"{n / raw:,.0f} {unit}", f"{n / ours:,.0f} {unit}", f"{ratio:.2f}x", verdict]

    body = "\n\n".join([
        f"{N:,} events (every one with an event_id), {USERS} users, WAL, synchronous=NORMAL, "
        f"best of {REPEATS}, fresh file per run. Raw = bare sqlite3 on the same schema, pragmas and "
        f"INSERT ... ON CONFLICT statement. Bar: store >= {BAR}x raw.",
        table(
            ["operation", "raw sqlite3", "InteractionStore", "store / raw", f">= {BAR}x"],
            [
                line("log(): one autocommit transaction per event", N, "rows/s", log_raw, log_ours),
                line("log_many() of dicts vs executemany, one transaction", N, "rows/s", many_raw, many_ours),
                line("profile() of a 200-event user (covering index)", PROFILE_CALLS, "reads/s", prof_raw, prof_ours),
            ],
        ),
        "log() and log_many() validate every event (edgerec.events) before writing; the raw side "
        "writes pre-built tuples.",
    ])
    write_section(name="store", title="Interaction store (SQLite)", command="python -m benchmarks.bench_store", body=body)


if __name__ == "__main__":
    main()
