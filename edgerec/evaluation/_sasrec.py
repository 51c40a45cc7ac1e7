"""SASRec as an evaluation peer: training runs over users' sequences, and the ``FittedModel``.

The recipe is Kang & McAuley's (2018) with the full softmax cross-entropy of gSASRec (Petrov &
Macdonald 2023): each epoch takes every user's latest ``max_len + 1`` training items once
(the paper's one window per user, shuffled into mini-batches), every position predicts the next
item against all items, Adam (lr 1e-3, beta2 0.98 as in the paper's code). Scoring reads the
user's latest ``max_len`` items and scores every item from the last position.

Candidates that differ only in their epochs share one run (the weights after e epochs are those
of a run of e epochs: the shuffles, dropout and the optimizer carry on), so validating 50, 100
and 200 epochs costs 200 epochs of training, not 350. The network is in ``_sasrec_net``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Iterable

import numpy as np

from .._exceptions import ConfigError
from ..training import Adam
from ..types import Catalogue, Sequences
from ._method import Method
from ._sasrec_net import Params, init_params, last_scores, loss_and_grads
from .ours import training_epochs
from .progress import Progress, no_progress

__all__ = ["SASRecConfig", "SASRecModel", "SASRecRun", "padded_windows", "sasrec_method"]


@dataclass(frozen=True)
class SASRecConfig:
    """The paper's settings for MovieLens-sized data (d = 64, L = 50, 2 blocks, dropout 0.2)."""

    dim: int = 64
    max_len: int = 50
    blocks: int = 2
    dropout: float = 0.2
    lr: float = 1e-3
    beta2: float = 0.98
    batch_size: int = 128
    # Which max_len + 1 items of a longer sequence an epoch trains on: the latest (the paper's),
    # or a window ending at a random item (from the (max_len + 1)-th on), drawn anew each epoch.
    crop: str = "last"

    def __post_init__(self) -> None:
        if min(self.dim, self.max_len, self.blocks, self.batch_size) < 1:
            raise ConfigError("SASRec dim, max_len, blocks and batch_size must be >= 1")
        if not 0.0 <= self.dropout < 1.0 or self.lr <= 0:
            raise ConfigError("SASRec dropout must be in [0, 1) and lr > 0")
        if self.crop not in ("last", "random"):
            raise ConfigError(f"SASRec crop must be 'last' or 'random', got {self.crop!r}")


_CONFIG_KEYS = {f.name for f in fields(SASRecConfig)}


def padded_windows(seqs: Sequences, users: np.ndarray, width: int) -> np.ndarray:
    """``[len(users), width]``: each user's latest ``width`` items as rows + 1, left-padded with 0.

    Leading columns that are padding for every user are dropped (positions count from the right,
    so this changes nothing but the work); at least one column is kept.
    """
    return _left_padded([seqs.items[u][-width:] for u in users], width)


def _left_padded(windows: list[np.ndarray], width: int) -> np.ndarray:
    out = np.zeros((len(windows), width), np.int64)
    for row, items in enumerate(windows):
        out[row, width - len(items):] = items + 1
    longest = max([1, *(len(items) for items in windows)])
    return out[:, width - longest:]


class SASRecRun:
    """A training run that can be continued: ``advance(e)`` trains ``e`` more epochs in place."""

    def __init__(self, train: Sequences, n_items: int, cfg: SASRecConfig, seed: int) -> None:
        self.cfg = cfg
        self.epochs = 0
        self.losses: list[float] = []
        self._rng = np.random.default_rng(seed)
        self.params = init_params(n_items, cfg.dim, cfg.max_len, cfg.blocks, self._rng)
        self._train = [items for items in train.items if len(items) >= 2]
        self._latest = _left_padded([items[-cfg.max_len - 1:] for items in self._train], cfg.max_len + 1)
        self._opt = Adam(cfg.lr, beta2=cfg.beta2)

    def _windows(self) -> np.ndarray:
        """This epoch's ``[users, max_len + 1]`` training windows."""
        if self.cfg.crop == "last":
            return self._latest
        width = self.cfg.max_len + 1
        ends = [int(self._rng.integers(min(len(items), width), len(items) + 1)) for items in self._train]
        return _left_padded([items[max(0, end - width) : end] for items, end in zip(self._train, ends)], width)

    def advance(self, epochs: int, progress: Callable[[Iterable[int]], Iterable[int]] | None = None) -> list[float]:
        """Train ``epochs`` more epochs; returns each epoch's mean loss."""
        losses: list[float] = []
        rounds: Iterable[int] = range(epochs)
        for _ in progress(rounds) if progress else rounds:
            windows = self._windows()
            order, size = self._rng.permutation(len(windows)), self.cfg.batch_size
            total = weight = 0.0
            for start in range(0, len(order), size):
                batch = windows[order[start : start + size]]
                batch = batch[:, _first_used(batch):]
                seq, targets = batch[:, :-1], batch[:, 1:]
                if seq.shape[1] == 0:
                    continue
                loss, grads = loss_and_grads(self.params, seq, targets, dropout=self.cfg.dropout,
                                             rng=self._rng)
                self._opt.step(self.params, grads)
                count = float(np.count_nonzero((seq > 0) & (targets > 0)))
                total, weight = total + loss * count, weight + count
            losses.append(total / max(weight, 1.0))
        self.epochs += epochs
        self.losses += losses
        return losses


def _first_used(batch: np.ndarray) -> int:
    """The first column with an item in some row (the columns before are padding for all)."""
    used = np.flatnonzero((batch > 0).any(axis=0))
    return int(used[0]) if used.size else batch.shape[1] - 1


@dataclass(frozen=True, eq=False)
class SASRecModel:
    """A fitted SASRec as a ``FittedModel``: scores every item from the user's latest items."""

    params: Params
    cfg: SASRecConfig

    def score(self, users: np.ndarray, histories: Sequences) -> np.ndarray:
        return last_scores(self.params, padded_windows(histories, users, self.cfg.max_len))


def _split(hparams: dict[str, Any]) -> tuple[SASRecConfig, int]:
    unknown = set(hparams) - _CONFIG_KEYS - {"epochs"}
    if unknown:
        raise ConfigError(f"unknown SASRec hyper-parameters: {sorted(unknown)}")
    epochs = int(hparams.get("epochs", 100))
    if epochs < 1:
        raise ConfigError("SASRec epochs must be >= 1")
    return SASRecConfig(**{k: v for k, v in hparams.items() if k != "epochs"}), epochs


class _SharedRuns:
    """One training run per (training data, seed, setting) for every epoch count of the grid;
    one run is kept open at a time (its weights are copied at each epoch count asked for)."""

    def __init__(self, grid: tuple[dict[str, Any], ...], progress: Progress):
        self._stops: dict[SASRecConfig, set[int]] = {}
        for hparams in grid:
            cfg, epochs = _split(hparams)
            self._stops.setdefault(cfg, set()).add(epochs)
        self._progress = progress
        # Keyed by the training object's identity; each entry keeps that object alive, so an id
        # can never be reused for other data while its entry exists.
        self._weights: dict[tuple[int, int, SASRecConfig, int], tuple[Sequences, Params]] = {}
        self._open: tuple[tuple[int, int, SASRecConfig], Sequences, SASRecRun] | None = None

    def get(self, train: Sequences, n_items: int, seed: int, cfg: SASRecConfig, epochs: int) -> Params:
        run_key = (id(train), seed, cfg)
        if run_key + (epochs,) not in self._weights:
            if self._open is None or self._open[0] != run_key or self._open[2].epochs > epochs:
                self._open = (run_key, train, SASRecRun(train, n_items, cfg, seed))
            run = self._open[2]
            stops = {e for e in self._stops.get(cfg, ()) if run.epochs < e < epochs}
            for stop in [*sorted(stops), epochs]:
                done = run.epochs
                run.advance(stop - done, self._bar(done, stop))
                self._weights[run_key + (stop,)] = (train, {k: v.copy() for k, v in run.params.items()})
        return self._weights[run_key + (epochs,)][1]

    def _bar(self, done: int, stop: int) -> Callable[[Iterable[int]], Iterable[int]]:
        def bar(epochs: Iterable[int]) -> Iterable[int]:
            return self._progress(epochs, total=stop - done, desc=f"sasrec: epochs {done + 1}-{stop}")
        return bar


def sasrec_method(grid: tuple[dict[str, Any], ...], *, progress: Progress | None = None) -> Method:
    """SASRec as a ``Method`` over ``grid`` (keys: ``epochs`` and ``SASRecConfig``'s fields);
    candidates that differ only in epochs share one training run."""
    for hparams in grid:
        _split(hparams)  # unknown keys fail here, not after an hour of other methods
    runs = _SharedRuns(grid, progress or no_progress)

    def fit(train: Sequences, catalogue: Catalogue, seed: int, **hparams: Any) -> SASRecModel:
        cfg, epochs = _split(hparams)
        return SASRecModel(runs.get(train, len(catalogue), seed, cfg, epochs), cfg)

    return Method("sasrec", fit, grid, cost=training_epochs, cost_unit="epochs")
