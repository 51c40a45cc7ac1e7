"""The LOO-full protocol of DESIGN.md: tune on the validation item, refit, test over seeds (pure).

Time is read through an injected ``clock`` (``time.perf_counter`` by default) so the module does
no I/O of its own; progress bars are optional and come from the caller or from tqdm if installed.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .._exceptions import ConfigError
from ..data._types import Catalogue, Dataset, Sequences
from ._method import FittedModel, Method
from .metrics import hr_at, ndcg_at, rank_of_target
from .results import MethodResult, ProtocolResult
from .split import LOOSplit, loo_split

__all__ = ["run_protocol", "rank_users", "DEFAULT_SEEDS", "CHUNK"]

DEFAULT_SEEDS = (0, 1, 2, 3, 4)
CHUNK = 1024  # users scored at once: bounds the score matrix at CHUNK * n_items floats

Progress = Callable[..., Iterable[Any]]


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
) -> ProtocolResult:
    """Evaluate ``methods`` under LOO-full and return a ``ProtocolResult``.

    For each method, every config in its grid is fitted on ``train`` with ``seeds[0]`` and scored on
    the validation item (its train items excluded); the config with the best mean validation
    NDCG@k wins (the first one on ties). The test item is never looked at while tuning. The chosen
    config is then refit on ``train_val`` once per seed (once in all if ``method.seeded`` is False)
    and scored on the test item, excluding the ``train_val`` items.

    ``data`` is a ``Dataset`` or an ``LOOSplit``; with a split, pass the ``catalogue`` too.
    ``progress`` is a tqdm-like factory ``progress(iterable, total=, desc=)``, or True to use tqdm
    when it is installed (silently none when it is not).
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
    bar = _progress_factory(progress)
    results = tuple(_run_method(m, split, catalogue, seeds, k, chunk, bar, clock) for m in methods)
    return ProtocolResult(results, split.eval_users.copy(), k, seeds)


def rank_users(
    model: FittedModel,
    histories: Sequences,
    users: np.ndarray,
    targets: np.ndarray,
    n_items: int,
    *,
    chunk: int = CHUNK,
) -> np.ndarray:
    """0-based rank of each user's target under ``model``, excluding the user's history items."""
    ranks = np.empty(len(users), dtype=np.int64)
    for start in range(0, len(users), chunk):
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


def _progress_factory(progress: bool | Progress | None) -> Progress:
    if progress is None or progress is False:
        return _no_progress
    if progress is True:
        try:
            from tqdm.auto import tqdm  # optional dependency, only when asked for
        except ImportError:
            return _no_progress
        return tqdm
    if not callable(progress):
        raise ConfigError(f"progress must be None, a bool or a tqdm-like callable, got {progress!r}")
    return progress


def _no_progress(iterable: Iterable[Any], **_: Any) -> Iterable[Any]:
    return iterable


def _run_method(
    method: Method,
    split: LOOSplit,
    catalogue: Catalogue,
    seeds: tuple[int, ...],
    k: int,
    chunk: int,
    bar: Progress,
    clock: Callable[[], float],
) -> MethodResult:
    started = clock()
    users = split.eval_users
    val_grid = []
    for hparams in bar(method.grid, total=len(method.grid), desc=f"{method.name}: tune"):
        model = method.fit(split.train, catalogue, seeds[0], **hparams)
        ranks = rank_users(model, split.train, users, split.val_item[users], len(catalogue), chunk=chunk)
        val_grid.append((dict(hparams), float(ndcg_at(ranks, k).mean())))
    best = int(np.argmax([score for _, score in val_grid]))  # first best on ties
    chosen = val_grid[best][0]
    final_seeds = seeds if method.seeded else seeds[:1]
    hrs, ndcgs, fit_times = [], [], []
    for seed in bar(final_seeds, total=len(final_seeds), desc=f"{method.name}: test"):
        fit_start = clock()
        model = method.fit(split.train_val, catalogue, seed, **chosen)
        fit_times.append(clock() - fit_start)
        ranks = rank_users(model, split.train_val, users, split.test_item[users], len(catalogue), chunk=chunk)
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
        fit_seconds=float(np.mean(fit_times)),
        total_seconds=clock() - started,
    )
