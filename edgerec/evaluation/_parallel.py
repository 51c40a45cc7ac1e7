"""Independent training runs side by side in worker processes (an evaluation stage's runs).

One evaluation stage trains several runs that share nothing: the tuning grid's settings on the
first seed, then the chosen setting once per seed (a mix: each tower once per seed). Training is
numpy on one BLAS thread by default (multi-threaded BLAS loses on these small products,
``TrainConfig.threads``), so on a machine with several cores one run leaves the others idle.
Here each run is a job for a process pool; the weights come back by pickle.

Processes are spawned, not forked: the parent may hold threads (progress bars, onnxruntime),
and a forked child of a threaded process can deadlock. The price is an interpreter start per
worker (about a second), paid once per stage. A run gives the same weights in a worker as in
the parent (same code, seed and data; one BLAS thread), so a stage's results do not depend on
``jobs`` (tested).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from ..model.config import ModelConfig, TrainConfig
from ..model.params import Params
from ..training import TrainingRun
from ..types import Sequences
from .progress import Progress

__all__ = ["TrainingJob", "default_jobs", "run_jobs", "train_job"]


@dataclass(frozen=True)
class TrainingJob:
    """One training run: ``tcfg.epochs`` epochs of ``cfg``, weights kept after each of ``stops``
    (sorted, the last equal to ``tcfg.epochs``)."""

    cfg: ModelConfig
    tcfg: TrainConfig
    stops: tuple[int, ...]

    @property
    def weight(self) -> float:
        """Relative cost, to start the longest jobs first: epochs (an attention epoch, one pass
        per history, and a pooled one, one step per event, cost about the same: 2.6 and 3.1 s on
        the 10k-item CSV, quiet)."""
        return float(self.tcfg.epochs)


def default_jobs() -> int:
    """The cores this process may use (``os.sched_getaffinity`` where the OS has it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def train_job(train: Sequences, features: np.ndarray, job: TrainingJob) -> dict[int, Params]:
    """Run ``job`` and return copies of the weights at each of its stops (a worker's task)."""
    run = TrainingRun.fresh(train, features, job.cfg, job.tcfg)
    kept: dict[int, Params] = {}
    for stop in job.stops:
        run.advance(stop - run.epochs)
        kept[stop] = {name: value.copy() for name, value in run.params.items()}
    return kept


def run_jobs(train: Sequences, features: np.ndarray, jobs: Sequence[TrainingJob], workers: int,
             progress: Progress) -> Iterator[tuple[TrainingJob, dict[int, Params]]]:
    """Each job with its weights, as they finish, on at most ``workers`` processes (in this
    process when one suffices). The costliest jobs start first, so the last to finish is short.
    """
    ordered = sorted(jobs, key=lambda job: -job.weight)
    workers = min(workers, len(ordered))
    desc = f"training: {len(ordered)} run{'s' if len(ordered) != 1 else ''}"
    if workers <= 1:
        for job in progress(ordered, total=len(ordered), desc=desc):
            yield job, train_job(train, features, job)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(train_job, train, features, job): job for job in ordered}
        try:
            done = as_completed(futures)
            for future in progress(done, total=len(futures), desc=f"{desc} on {workers} processes"):
                yield futures[future], future.result()
        except BaseException:
            # A failed job (or Ctrl-C) ends the stage: the queued runs are not started.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
