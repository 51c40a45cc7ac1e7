"""The LOO-full protocol of DESIGN.md: tune on the validation item, refit, test over seeds (pure).

Time is read through an injected ``clock`` (``time.perf_counter`` by default) so the module does
no I/O of its own; progress bars are optional and come from the caller or from tqdm if installed
(``progress.py``). The run holds BLAS to ``threads`` threads (``edgerec._threads``).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from .._exceptions import ConfigError
from .._threads import blas_threads
from ..types import Catalogue, Dataset, Sequences
from ._method import FittedModel, Method
from .metrics import hr_at, ndcg_at, rank_of_target
from .progress import Progress, no_progress, resolve_progress
from ._aside import Aside, aside
from .results import FitRecord, MethodResult, ProtocolResult
from .split import LOOSplit, loo_split

__all__ = ["run_protocol", "rank_users", "DEFAULT_SEEDS", "CHUNK"]

DEFAULT_SEEDS = (0, 1, 2, 3, 4)
CHUNK = 1024  # users scored at once: bounds the score matrix at CHUNK * n_items floats


def run_protocol(
    data: Dataset | LOOSplit,
    methods: Sequence[Method],
    *,
    catalogue: Catalogue | None = None,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    k: int = 10,
    progress: bool | Progress | None = None,
    chunk: int = CHUNK,
    clock: Callable[[], float] = time.perf_counter,
    threads: int | None = 1,
    on_fit: Callable[[FitRecord], None] | None = None,
    jobs: int = 1,
) -> ProtocolResult:
    """Evaluate ``methods`` under LOO-full and return a ``ProtocolResult``.

    For each method, every config in its grid is fitted on ``train`` with ``seeds[0]`` and scored on
    the validation item (its train items excluded); the config with the best mean validation
    NDCG@k wins (the first one on ties); a method that ``follows`` another takes that method's
    choice (and is scored on validation with it alone). The test item is never looked at while tuning. The chosen
    config is then refit on ``train_val`` once per seed (once in all if ``method.seeded`` is False)
    and scored on the test item, excluding the ``train_val`` items. A method with a ``prepare``
    hook is told each stage's fits before they start (to train them side by side); that time is
    counted in the stage's first fit.

    ``data`` is a ``Dataset`` or an ``LOOSplit``; with a split, pass the ``catalogue`` too.
    ``progress`` is a tqdm-like factory ``progress(iterable, total=, desc=)``, or True to use tqdm
    when it is installed (silently none when it is not): one bar per method stage, and one per
    scoring pass over the user batches. ``on_fit`` is called after each fit and its scoring
    (``FitRecord``, also kept in ``MethodResult.fits``). BLAS uses at most ``threads`` threads
    (None: as the process has them).

    With ``jobs`` > 1 the methods that can run elsewhere (``_aside``: the classic peers) are
    evaluated in one spawned side process meanwhile, with no progress bars; ``on_fit`` hears of
    their fits when the others are done. Results are the same as with ``jobs`` = 1.
    """
    split, catalogue = _resolve(data, catalogue)
    seeds = tuple(int(s) for s in seeds)
    if not seeds or k < 1 or chunk < 1:
        raise ConfigError("need at least one seed, k >= 1 and chunk >= 1")
    if len(split.eval_users) == 0:
        raise ConfigError("no user has enough interactions (3) to be evaluated")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ConfigError(f"method names must be unique, got {names}")
    if any(not m.grid for m in methods):
        raise ConfigError("every method needs at least one config in its grid (use ({},) for none)")
    for at, m in enumerate(methods):
        if m.follows is not None and m.follows not in names[:at]:
            raise ConfigError(f"{m.name} follows {m.follows!r}, which must run before it")
    bar = resolve_progress(progress)
    run = _Run(split, catalogue, seeds, k, chunk, bar, clock, on_fit or _ignore)
    elsewhere = {m.name for m in aside(methods, jobs)}
    done: dict[str, MethodResult] = {}
    side = (Aside(split, catalogue, [m for m in methods if m.name in elsewhere], seeds, k, chunk,
                  threads) if elsewhere else None)
    try:
        with blas_threads(threads):
            for m in methods:
                if m.name not in elsewhere:
                    done[m.name] = run.method(m)
        for result in side.result() if side is not None else ():
            for record in result.fits:
                run.on_fit(record)
            done[result.name] = result
    finally:
        if side is not None:
            side.stop()
    return ProtocolResult(tuple(done[name] for name in names), split.eval_users.copy(), k, seeds)


def rank_users(
    model: FittedModel,
    histories: Sequences,
    users: np.ndarray,
    targets: np.ndarray,
    n_items: int,
    *,
    chunk: int = CHUNK,
    progress: Progress = no_progress,
    desc: str = "scoring",
) -> np.ndarray:
    """0-based rank of each user's target under ``model``, excluding the user's history items.

    Users are scored ``chunk`` at a time; ``progress`` shows the batches.
    """
    ranks = np.empty(len(users), dtype=np.int64)
    starts = range(0, len(users), chunk)
    for start in progress(starts, total=len(starts), desc=desc):
        batch = users[start : start + chunk]
        scores = np.asarray(model.score(batch, histories))
        if scores.shape != (len(batch), n_items):
            raise ConfigError(f"model returned scores of shape {scores.shape}, expected {(len(batch), n_items)}")
        exclude = [histories.items[u] for u in batch]
        ranks[start : start + chunk] = rank_of_target(scores, targets[start : start + chunk], exclude)
    return ranks


def _resolve(data: Dataset | LOOSplit, catalogue: Catalogue | None) -> tuple[LOOSplit, Catalogue]:
    if isinstance(data, Dataset):
        return loo_split(data.sequences()), catalogue or data.catalogue
    if catalogue is None:
        raise ConfigError("run_protocol on an LOOSplit needs catalogue=")
    return data, catalogue


def _ignore(record: FitRecord) -> None:
    return None


class _Run:
    """One protocol run: the split and settings every method is evaluated with."""

    def __init__(self, split: LOOSplit, catalogue: Catalogue, seeds: tuple[int, ...], k: int,
                 chunk: int, bar: Progress, clock: Callable[[], float],
                 on_fit: Callable[[FitRecord], None]) -> None:
        self.split, self.catalogue, self.seeds, self.k = split, catalogue, seeds, k
        self.chunk, self.bar, self.clock, self.on_fit = chunk, bar, clock, on_fit
        self._prepared = 0.0  # seconds of a stage's up-front training, owed to its first fit
        self.chosen: dict[str, dict[str, Any]] = {}  # each method's config chosen on validation

    def _prepare(self, method: Method, stage: str, requests: list[tuple[int, dict[str, Any]]]) -> None:
        """A stage's up-front training (``Method.prepare``), timed into the stage's first fit."""
        if method.prepare is None:
            return
        start = self.clock()
        method.prepare(self.split.train if stage == "tune" else self.split.train_val,
                       self.catalogue, requests)
        self._prepared = self.clock() - start

    def _fit_and_rank(self, method: Method, stage: str, hparams: dict[str, Any], seed: int,
                      fits: list[FitRecord]) -> np.ndarray:
        """Fit on ``train`` (tune) or ``train_val`` (test) and rank the held-out item."""
        train = self.split.train if stage == "tune" else self.split.train_val
        targets = self.split.val_item if stage == "tune" else self.split.test_item
        users = self.split.eval_users
        start = self.clock()
        model = method.fit(train, self.catalogue, seed, **hparams)
        fitted = self.clock()
        fit_seconds, self._prepared = fitted - start + self._prepared, 0.0
        ranks = rank_users(model, train, users, targets[users], len(self.catalogue),
                           chunk=self.chunk, progress=self.bar, desc=f"{method.name}: scoring")
        record = FitRecord(method.name, stage, dict(hparams), seed, fit_seconds, self.clock() - fitted)
        fits.append(record)
        self.on_fit(record)
        return ranks

    def method(self, method: Method) -> MethodResult:
        started, k, bar = self.clock(), self.k, self.bar
        fits: list[FitRecord] = []
        val_grid = []
        grid = method.grid if method.follows is None else (self.chosen[method.follows],)
        self._prepare(method, "tune", [(self.seeds[0], hparams) for hparams in grid])
        for hparams in bar(grid, total=len(grid), desc=f"{method.name}: tune"):
            ranks = self._fit_and_rank(method, "tune", hparams, self.seeds[0], fits)
            val_grid.append((dict(hparams), float(ndcg_at(ranks, k).mean())))
        best = int(np.argmax([score for _, score in val_grid]))  # first best on ties
        chosen = self.chosen[method.name] = val_grid[best][0]
        final_seeds = self.seeds if method.seeded else self.seeds[:1]
        hrs, ndcgs = [], []
        self._prepare(method, "test", [(seed, chosen) for seed in final_seeds])
        for seed in bar(final_seeds, total=len(final_seeds), desc=f"{method.name}: test"):
            ranks = self._fit_and_rank(method, "test", chosen, seed, fits)
            hrs.append(hr_at(ranks, k))
            ndcgs.append(ndcg_at(ranks, k))
        return MethodResult(
            name=method.name,
            hparams=chosen,
            val_ndcg=val_grid[best][1],
            val_grid=tuple(val_grid),
            hr=float(np.mean(hrs)),
            ndcg=float(np.mean(ndcgs)),
            hr_per_seed=tuple(float(h.mean()) for h in hrs),
            ndcg_per_seed=tuple(float(n.mean()) for n in ndcgs),
            user_hr=np.mean(hrs, axis=0),
            user_ndcg=np.mean(ndcgs, axis=0),
            fit_seconds=float(np.mean([f.fit_seconds for f in fits if f.stage == "test"])),
            total_seconds=self.clock() - started,
            fits=tuple(fits),
        )
