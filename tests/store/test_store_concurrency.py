"""Several threads and processes on one file lose nothing; a killed process keeps what log() returned."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edgerec import StoreError
from edgerec.store import MIGRATIONS, InteractionStore


def _write_from_process(path: str, proc: int, n: int) -> None:
    # Runs in a child process: a store of its own on the shared file.
    with InteractionStore(path) as store:
        for i in range(n):
            store.log(f"p{proc}", f"i{i}", ts=float(i))


def test_four_threads_logging_at_once_lose_no_event(store: InteractionStore) -> None:
    n_threads, per_thread = 4, 500
    errors: list[BaseException] = []
    start = threading.Barrier(n_threads)

    def work(t: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                store.log(f"t{t}", f"i{i}", ts=float(i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert store.count() == n_threads * per_thread
    for t in range(n_threads):
        assert [e.item for e in store.history(f"t{t}")] == [f"i{i}" for i in range(per_thread)]


def test_threads_mixing_log_many_and_log_lose_no_event(store: InteractionStore) -> None:
    def batches(t: int) -> None:
        for b in range(10):
            store.log_many([{"user": f"b{t}", "item": f"{b}-{i}"} for i in range(50)])

    def singles(t: int) -> None:
        for i in range(200):
            store.log(f"s{t}", str(i))

    threads = [threading.Thread(target=f, args=(t,)) for t in range(2) for f in (batches, singles)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert store.count() == 2 * 500 + 2 * 200


def test_three_processes_logging_at_once_lose_no_event(db_path: Path) -> None:
    InteractionStore(db_path).close()  # schema first, so the children race on writes only
    ctx = multiprocessing.get_context("spawn")  # independent processes, as on every OS
    procs = [ctx.Process(target=_write_from_process, args=(str(db_path), p, 300)) for p in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    with InteractionStore(db_path) as store:
        assert store.count() == 900
        assert store.users() == ["p0", "p1", "p2"]
        assert all(store.count(f"p{p}") == 300 for p in range(3))


def test_processes_racing_to_create_a_new_file_all_succeed(db_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_from_process, args=(str(db_path), p, 20)) for p in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    with InteractionStore(db_path) as store:
        assert store.count() == 60 and store.schema_version == len(MIGRATIONS)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_opens_its_own_connection(store: InteractionStore) -> None:
    store.log("parent", "before")  # the parent's connection exists when the fork happens
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=lambda: [store.log("child", str(i)) for i in range(50)])
    child.start()
    for i in range(50):
        store.log("parent", str(i))
    child.join(timeout=60)
    assert child.exitcode == 0
    assert store.count("child") == 50 and store.count("parent") == 51


_LOG_THEN_DIE = """
import os, sys, time
from edgerec.store import InteractionStore
store = InteractionStore(sys.argv[1], synchronous=sys.argv[2])
assert store.log("victim", "last-words", event_id="e-final")
if sys.argv[3] == "exit":
    os._exit(0)  # no close(), no atexit, no checkpoint
print("logged", flush=True)
time.sleep(60)  # killed by the test before this ends
"""


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
@pytest.mark.parametrize("death", ["exit", "kill"])
def test_an_event_survives_the_process_dying_right_after_log(db_path: Path, synchronous: str, death: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _LOG_THEN_DIE, str(db_path), synchronous, death],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if death == "kill":
            assert child.stdout is not None and child.stdout.readline().strip() == "logged"
            child.send_signal(signal.SIGKILL) if hasattr(signal, "SIGKILL") else child.kill()
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
        if child.stdout is not None:
            child.stdout.close()
    with InteractionStore(db_path) as store:
        assert [e.item for e in store.history("victim")] == ["last-words"]


def test_a_writer_holding_the_lock_past_busy_timeout_gives_store_error(db_path: Path) -> None:
    with InteractionStore(db_path, busy_timeout_ms=50) as store:
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match="locked") as info:
                store.log("u", "i")
            assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert store.log("u", "i") is True and store.count() == 1


def test_a_writer_waits_for_a_lock_released_within_busy_timeout(db_path: Path) -> None:
    with InteractionStore(db_path, busy_timeout_ms=10_000) as store:
        other = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.2, lambda: other.execute("COMMIT"))
        release.start()
        try:
            assert store.log("u", "i") is True
        finally:
            release.join()
            other.close()
        assert store.count() == 1


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files through /proc")
def test_connections_of_finished_threads_do_not_accumulate(store: InteractionStore) -> None:
    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    store.log("main", "i")
    before = open_files()
    for t in range(30):  # e.g. a server spawning a thread per request
        th = threading.Thread(target=store.log, args=(f"t{t}", "i"))
        th.start()
        th.join()
    # Each connection holds the database and its WAL open; 30 leaked ones would show plainly.
    assert open_files() - before <= 6
    assert store.count() == 31
