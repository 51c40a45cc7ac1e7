"""Data and processes for ``bench_train_eval``: the synthetic interactions CSV, the baseline
tree, CLI runs in fresh interpreters, and busy processes that contend for the cores."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import tarfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edgerec.data import Dataset, synthetic

ROOT = Path(__file__).resolve().parents[1]
ML100K = Path(os.environ.get("EDGEREC_ML100K", ROOT.parent / "shared" / "data" / "ml-100k"))
#: The interactions CSV of issue 15: ~100k events over ~10k items. The generator keeps Zipf
#: popularity within genres, so about 9 in 10 of its catalogue items occur in the events.
CSV_USERS, CSV_ITEMS = 3334, 11_000


def write_synthetic_csv(path: Path, users: int, items: int) -> Dataset:
    """``synthetic(users, items)`` written as a plain ``user,item,timestamp`` CSV, the way a
    user's own export looks (no titles, no content features); returns the generated dataset."""
    data = synthetic(users, items, seed=0)
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["user", "item", "timestamp"])
        ids, items_ids = data.user_ids, data.catalogue.item_ids
        out.writerows((ids[u], items_ids[i], int(t)) for u, i, t in zip(data.user, data.item, data.ts))
    return data


def baseline_tree(commit: str, into: Path) -> Path:
    """The ``edgerec`` package as of ``commit`` (``git archive``), unpacked under ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "edgerec"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def timed_cli(tree: Path, argv: list[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds of ``python -m edgerec.cli ARGV`` with ``tree`` first on the path (a fresh
    interpreter: imports and data loading included, as a user runs the command)."""
    environ = {**os.environ, "PYTHONPATH": str(tree), **(env or {})}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "edgerec.cli", *argv], cwd=str(tree), env=environ,
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"edgerec {' '.join(argv)} failed in {tree}:\n{done.stderr[-2000:]}")
    return seconds


@contextmanager
def busy_processes(n: int) -> Iterator[None]:
    """``n`` processes spinning in a Python loop (each wants a whole core) while the block runs;
    the benchmark starts them and stops exactly these."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(1.0)  # let them get going
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
