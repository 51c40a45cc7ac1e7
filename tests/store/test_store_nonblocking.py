"""Reads never wait for a writer; writes wait only for the writes queued before them.

Timing bounds here are correctness guarantees, not benchmarks: a read that waited for the
writer would take the writer's 5 s (or the 10 s busy timeout), so "< 1 s" is generous.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from edgerec import StoreError
from edgerec.store import InteractionStore
from edgerec.store._locks import WriteLock

HOLD_S = 5.0
BOUND_S = 1.0


def _reads(store: InteractionStore) -> dict[str, Callable[[], object]]:
    return {
        "profile": lambda: store.profile("reader"),
        "history": lambda: store.history("reader"),
        "users": store.users,
        "count": store.count,
        "count(user)": lambda: store.count("reader"),
        "export": lambda: store.export("reader"),
        "high_water_mark": store.high_water_mark,
        "count_since": lambda: store.count_since(0),
    }


def _time_reads(store: InteractionStore) -> dict[str, float]:
    """The slowest of a few rounds of each read, run on a thread of its own."""
    worst: dict[str, float] = {}

    def run() -> None:
        for _ in range(5):
            for name, read in _reads(store).items():
                start = time.monotonic()
                read()
                worst[name] = max(worst.get(name, 0.0), time.monotonic() - start)

    reader = threading.Thread(target=run)
    reader.start()
    reader.join(timeout=HOLD_S * 3)
    assert not reader.is_alive(), "a read was still waiting"
    return worst


def _reads_while(store: InteractionStore, writer: Callable[[], None], held: threading.Event,
                 done: threading.Event) -> dict[str, float]:
    """The reads' worst times while ``writer`` (on its own thread) holds what it holds: it sets
    ``held`` once it holds it and lets go when ``done`` is set."""
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert held.wait(10)
        return _time_reads(store)
    finally:
        done.set()
        thread.join()


@pytest.fixture
def filled(db_path: Path) -> Iterator[InteractionStore]:
    with InteractionStore(db_path) as store:
        store.log_many([{"user": "reader", "item": f"i{i}"} for i in range(200)])
        yield store


@pytest.mark.parametrize("begin", ["BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"])
def test_another_connection_holding_the_write_lock_never_delays_reads(filled: InteractionStore, db_path: Path,
                                                                      begin: str) -> None:
    held, done = threading.Event(), threading.Event()

    def writer() -> None:  # another process's connection, in the middle of a big write
        conn = sqlite3.connect(db_path, isolation_level=None)
        conn.execute(begin)
        conn.executemany("INSERT INTO interactions (user, item, event, value, ts) VALUES ('w', ?, 'click', 1, 5)",
                         [(str(i),) for i in range(20_000)])
        held.set()
        done.wait(HOLD_S)
        conn.execute("ROLLBACK")
        conn.close()

    worst = _reads_while(filled, writer, held, done)
    assert max(worst.values()) < BOUND_S, worst
    assert filled.count("reader") == 200


def test_a_long_transaction_of_this_process_never_delays_reads(filled: InteractionStore) -> None:
    held, done = threading.Event(), threading.Event()

    def writer() -> None:
        with filled.transaction():
            filled.log("w", "pending")
            held.set()
            done.wait(HOLD_S)

    worst = _reads_while(filled, writer, held, done)
    assert max(worst.values()) < BOUND_S, worst


def test_reads_do_not_wait_for_forget_under_a_reader(filled: InteractionStore, db_path: Path) -> None:
    filled.log_many([{"user": "gone", "item": str(i)} for i in range(2_000)])
    snapshot = sqlite3.connect(db_path, isolation_level=None)
    snapshot.execute("BEGIN")
    snapshot.execute("SELECT count(*) FROM interactions").fetchall()
    try:
        start = time.monotonic()
        assert filled.forget("gone").pending
        assert time.monotonic() - start < BOUND_S
        assert max(_time_reads(filled).values()) < BOUND_S
    finally:
        snapshot.close()


def test_eight_threads_logging_at_once_each_wait_briefly(filled: InteractionStore) -> None:
    n_threads, per_thread = 8, 400
    worst_log: list[float] = []
    read_times: list[float] = []
    stop = threading.Event()
    start = threading.Barrier(n_threads + 1)

    def write(t: int) -> None:
        start.wait()
        slowest = 0.0
        for i in range(per_thread):
            t0 = time.monotonic()
            filled.log(f"t{t}", f"i{i}")
            slowest = max(slowest, time.monotonic() - t0)
        worst_log.append(slowest)

    def read() -> None:
        start.wait()
        while not stop.is_set():
            t0 = time.monotonic()
            filled.profile("reader")
            read_times.append(time.monotonic() - t0)

    writers = [threading.Thread(target=write, args=(t,)) for t in range(n_threads)]
    reader = threading.Thread(target=read)
    for th in (*writers, reader):
        th.start()
    for th in writers:
        th.join()
    stop.set()
    reader.join()
    assert filled.count() == 200 + n_threads * per_thread
    # Before the write lock, SQLite's busy handler let one log() wait 15 s among 8 writers.
    assert max(worst_log) < BOUND_S, worst_log
    read_times.sort()
    assert read_times[int(0.99 * (len(read_times) - 1))] < BOUND_S


def test_the_write_lock_is_first_come_first_served_and_reentrant() -> None:
    lock = WriteLock()
    assert lock.acquire(1) and lock.acquire(1) and lock.held_by_me()  # reentrant
    order: list[int] = []
    queued: list[threading.Thread] = []
    for n in range(5):
        th = threading.Thread(target=lambda n=n: (lock.acquire(10), order.append(n), lock.release()))
        th.start()
        queued.append(th)
        while len(lock._queue) < n + 1:  # wait until thread n is queued before starting n + 1
            time.sleep(0.001)
    lock.release()
    assert order == []  # still held once
    lock.release()
    for th in queued:
        th.join()
    assert order == [0, 1, 2, 3, 4]


def test_the_write_lock_times_out_and_rejects_foreign_release() -> None:
    lock = WriteLock()
    lock.acquire(1)
    got: list[bool] = []
    th = threading.Thread(target=lambda: got.append(lock.acquire(0.05)))
    th.start()
    th.join()
    assert got == [False] and not lock._queue
    failed: list[BaseException] = []

    def foreign_release() -> None:
        try:
            lock.release()
        except RuntimeError as exc:
            failed.append(exc)

    th = threading.Thread(target=foreign_release)
    th.start()
    th.join()
    assert len(failed) == 1
    lock.release()
    assert lock.acquire(0) and lock.held_by_me()


def test_a_write_queued_past_busy_timeout_gives_store_error_and_reads_go_on(db_path: Path) -> None:
    with InteractionStore(db_path, busy_timeout_ms=50) as store:
        held, done = threading.Event(), threading.Event()

        def hog() -> None:
            with store.transaction():
                held.set()
                done.wait(5)

        thread = threading.Thread(target=hog)
        thread.start()
        try:
            assert held.wait(5)
            with pytest.raises(StoreError, match="locked"):
                store.log("u", "i")
            assert store.count() == 0 and store.profile("u") == []  # reads are not queued
        finally:
            done.set()
            thread.join()
        assert store.log("u", "i") is True
