"""Training in numpy: central training of the first global model. Pure: no I/O, no clock.

Randomness comes from ``TrainConfig.seed``; the same data and config give the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from .data._types import Sequences
from .events import PAD_SIGNAL
from .model.config import ModelConfig, TrainConfig
from .model.examples import next_item_examples
from .model.network import loss_and_grads
from .model.params import Params, init_params

__all__ = ["Adam", "SGD", "train_model", "fit_params"]

Progress = Callable[[Iterable[int]], Iterable[int]]


@dataclass
class Adam:
    """Adam (Kingma & Ba 2015) over a dict of parameters."""

    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    step_count: int = 0
    m: Params = field(default_factory=dict)
    v: Params = field(default_factory=dict)

    def step(self, params: Params, grads: Params, frozen: frozenset[str] = frozenset()) -> None:
        self.step_count += 1
        t = self.step_count
        correction = np.sqrt(1 - self.beta2**t) / (1 - self.beta1**t)
        for name, grad in grads.items():
            if name in frozen:
                continue
            m = self.m.setdefault(name, np.zeros_like(grad))
            v = self.v.setdefault(name, np.zeros_like(grad))
            m *= self.beta1
            m += (1 - self.beta1) * grad
            v *= self.beta2
            v += (1 - self.beta2) * grad * grad
            params[name] -= (self.lr * correction * m / (np.sqrt(v) + self.eps)).astype(params[name].dtype)


@dataclass
class SGD:
    """Plain SGD. Federated local training uses it: unlike Adam it does not inflate the tiny
    gradients of items a device never saw, so deltas stay concentrated and survive clipping."""

    lr: float

    def step(self, params: Params, grads: Params, frozen: frozenset[str] = frozenset()) -> None:
        for name, grad in grads.items():
            if name not in frozen:
                params[name] -= (self.lr * grad).astype(params[name].dtype)


def _drop_history(signals: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Hide a random share of history entries so the model does not lean on any single one."""
    if rate <= 0:
        return signals
    return np.where(rng.random(signals.shape) < rate, PAD_SIGNAL, signals).astype(signals.dtype)


def train_model(params: Params, features: np.ndarray, seqs: Sequences, cfg: ModelConfig,
                tcfg: TrainConfig, *, progress: Progress | None = None,
                frozen: frozenset[str] = frozenset()) -> list[float]:
    """Train ``params`` in place on next-event prediction over ``seqs``; returns the epoch losses."""
    rng = np.random.default_rng(tcfg.seed)
    items, signals, targets = next_item_examples(seqs, cfg.history)
    opt = Adam(tcfg.lr)
    epochs: Iterable[int] = range(tcfg.epochs)
    losses = []
    for _ in progress(epochs) if progress else epochs:
        order = rng.permutation(len(targets))
        total = 0.0
        for start in range(0, len(order), tcfg.batch_size):
            batch = order[start : start + tcfg.batch_size]
            sig = _drop_history(signals[batch], tcfg.history_dropout, rng)
            loss, grads = loss_and_grads(params, features, items[batch], sig, targets[batch], tcfg.l2)
            opt.step(params, grads, frozen)
            total += loss * len(batch)
        losses.append(total / max(1, len(order)))
    return losses


def fit_params(seqs: Sequences, features: np.ndarray, cfg: ModelConfig, tcfg: TrainConfig,
               *, progress: Progress | None = None) -> Params:
    """Fresh parameters trained on ``seqs`` (the central training that makes a first model)."""
    rng = np.random.default_rng(tcfg.seed)
    params = init_params(cfg, features.shape[0], features.shape[1], rng)
    train_model(params, features, seqs, cfg, tcfg, progress=progress)
    return params
