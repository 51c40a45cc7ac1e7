"""Training in numpy: central training of the first global model. Pure: no I/O, no clock.

Randomness comes from ``TrainConfig.seed``; the same data and config give the same weights.
The numeric work runs with at most ``TrainConfig.threads`` BLAS threads (``edgerec._threads``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterable, cast

import numpy as np

from ._exceptions import ConfigError
from ._threads import blas_threads
from .types import Sequences
from .events import PAD_SIGNAL
from .model.config import ModelConfig, TrainConfig
from .model.encoder import LossFn, training_loss
from .model.examples import next_item_examples, sequence_examples
from .model.mix import join
from .model.network import add_l2, loss_and_grads
from .model.params import Params, init_params
from .model.rows import Grads, Rows
from .model.sampled import NegativeSampler, use_sampled

__all__ = ["Adam", "SGD", "TABLES", "TrainingRun", "run_epochs", "train_model", "fit_params"]

Progress = Callable[[Iterable[int]], Iterable[int]]

# Adam updates a parameter this many bytes of rows at a time (a block's arrays fit in L2 cache).
_BLOCK_BYTES = 256 * 1024
# The embedding tables: where L2 regularisation applies (the small scalars and layers are free).
TABLES = ("emb_in", "emb_out", "feat_in", "feat_out")


@dataclass
class Adam:
    """Adam (Kingma & Ba 2015) over a dict of parameters.

    A ``Rows`` gradient (``edgerec.model.rows``) updates only its rows and their moments (lazy
    Adam) when ``lazy``; otherwise it is the dense gradient it stands for (zero outside its rows),
    applied without building it. ``l2`` (``step``) adds ``2 * weight * param`` to the named
    gradients inside the update, for every row (with ``lazy``, for a ``Rows``' rows only).
    """

    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    lazy: bool = True
    step_count: int = 0
    m: Params = field(default_factory=dict)
    v: Params = field(default_factory=dict)
    _scratch: Params = field(default_factory=dict, repr=False, compare=False)

    def step(self, params: Params, grads: Grads, frozen: frozenset[str] = frozenset(),
             l2: dict[str, float] | None = None) -> None:
        self.step_count += 1
        t = self.step_count
        # The bias-corrected step size as a float32 factor: a float64 numpy scalar here would
        # make every [N, d] temporary float64 (and the step 2-3x slower on 10k items).
        scale = np.float32(self.lr * np.sqrt(1 - self.beta2**t) / (1 - self.beta1**t))
        for name, grad in grads.items():
            if name in frozen:
                continue
            weight = (l2 or {}).get(name, 0.0)
            if isinstance(grad, Rows) and self.lazy:
                touched = cast(Rows, add_l2(grad, params[name], weight)) if weight else grad
                self._lazy_step(name, params[name], touched, scale)
            else:
                self._dense_step(name, params[name], grad, scale, weight)

    def _dense_step(self, name: str, param: np.ndarray, grad: np.ndarray | Rows,
                    scale: np.float32, weight: float) -> None:
        """Every row of ``param``: block by block of rows, so the dozen passes over a block stay
        in cache instead of streaming [N, d] arrays through memory a dozen times (~1.3x on 10k
        items). A ``Rows`` gradient and the L2 term are added block by block too: the same
        element-wise sums as on a dense gradient, the same bits, without the [N, d] passes."""
        m, v = self._moments(name, param)
        # Scratch buffers per parameter, reused every step: the item tables are [N, d], and
        # fresh temporaries for them cost as much as the arithmetic itself.
        tmp = self._buffer(name, param)
        sparse = grad if isinstance(grad, Rows) else None
        dense = self._buffer(name + "/grad", param) if isinstance(grad, Rows) else grad
        rows = max(1, _BLOCK_BYTES // max(1, param[:1].nbytes)) if param.ndim else 1
        total = max(1, len(param) if param.ndim else 1)
        starts = range(0, total, rows)
        cuts = np.searchsorted(sparse.index, [*starts, total]) if sparse is not None else None
        for k, start in enumerate(starts):
            block = slice(start, start + rows) if param.ndim else ...
            g = dense[block]
            if sparse is not None and cuts is not None:
                # The L2 term first, then the rows added to it (x + y is y + x, bit for bit):
                # one pass fewer than zeros, rows, then the L2 term.
                if weight:
                    np.multiply(param[block], 2 * weight, out=g)
                else:
                    g[...] = 0.0
                lo, hi = cuts[k], cuts[k + 1]
                g[sparse.index[lo:hi] - start] += sparse.values[lo:hi]  # distinct rows
            elif weight:
                np.multiply(param[block], 2 * weight, out=tmp[block])
                g += tmp[block]
            self._update(param[block], g, m[block], v[block], tmp[block], scale)

    def _buffer(self, key: str, like: np.ndarray) -> np.ndarray:
        buffer = self._scratch.get(key)
        if buffer is None or buffer.shape != like.shape or buffer.dtype != like.dtype:
            buffer = self._scratch[key] = np.empty_like(like)
        return buffer

    def _moments(self, name: str, like: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The first and second moments of ``name``, zeros at its first step (allocated once:
        ``dict.setdefault(name, np.zeros_like(...))`` would allocate them on every step)."""
        if name not in self.m:
            self.m[name], self.v[name] = np.zeros_like(like), np.zeros_like(like)
        return self.m[name], self.v[name]

    def _lazy_step(self, name: str, param: np.ndarray, grad: Rows, scale: np.float32) -> None:
        """Adam on the rows ``grad`` touches only (LazyAdam/SparseAdam): the other rows, and
        their moments, stay as they are until a batch touches them."""
        m, v = self._moments(name, param)
        rows = grad.index
        m_rows, v_rows, p_rows = m[rows], v[rows], param[rows]
        self._update(p_rows, grad.values, m_rows, v_rows, np.empty_like(p_rows), scale)
        m[rows], v[rows], param[rows] = m_rows, v_rows, p_rows

    def _update(self, param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray,
                tmp: np.ndarray, scale: np.float32) -> None:
        np.multiply(grad, 1 - self.beta1, out=tmp)
        m *= self.beta1
        m += tmp
        np.multiply(grad, 1 - self.beta2, out=tmp)
        tmp *= grad
        v *= self.beta2
        v += tmp
        np.sqrt(v, out=tmp)
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= scale
        param -= tmp


@dataclass
class SGD:
    """Plain SGD. Federated local training uses it: unlike Adam it does not inflate the tiny
    gradients of items a device never saw, so deltas stay concentrated and survive clipping."""

    lr: float
    max_norm: float | None = None  # clip the step's gradient to this global L2 norm

    def step(self, params: Params, grads: Params, frozen: frozenset[str] = frozenset()) -> None:
        live = {n: g for n, g in grads.items() if n not in frozen}
        scale = 1.0
        if self.max_norm is not None:
            # A sharp global model can hand a device a huge gradient; without a cap a few
            # large steps diverge and the device would have nothing sendable.
            norm = float(np.sqrt(sum(float(np.sum(g * g)) for g in live.values())))
            scale = min(1.0, self.max_norm / max(norm, 1e-12))
        for name, grad in live.items():
            params[name] -= (self.lr * scale * grad).astype(params[name].dtype)


def _drop_history(signals: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Hide a random share of history entries so the model does not lean on any single one."""
    if rate <= 0:
        return signals
    return np.where(rng.random(signals.shape) < rate, PAD_SIGNAL, signals).astype(signals.dtype)


def run_epochs(params: Params, features: np.ndarray, examples: tuple[np.ndarray, ...], *,
               epochs: int, batch_size: int, rng: np.random.Generator,
               step: Callable[[Params], None], l2: dict[str, float] | None = None,
               dropout: float = 0.0, progress: Progress | None = None,
               sampler: NegativeSampler | None = None, loss: LossFn | None = None) -> list[float]:
    """Minibatch passes over ``(items, signals, targets)``; ``step(grads)`` applies the update.

    ``loss`` computes each batch's loss and gradients (``network.loss_and_grads`` when None; the
    attention encoder's is ``encoder.training_loss``).

    ``l2`` adds ``weight * ||param||^2`` to the named parameters' gradients. With ``sampler``
    each batch trains on sampled softmax over negatives it draws (else full softmax). Returns
    the mean loss of each epoch (before the L2 term).
    """
    items, signals, targets = examples
    rounds: Iterable[int] = range(epochs)
    losses = []
    for _ in progress(rounds) if progress else rounds:
        order = rng.permutation(len(targets))
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            sig = _drop_history(signals[batch], dropout, rng)
            negatives = sampler.draw(rng) if sampler is not None else None
            value, grads = (loss or loss_and_grads)(params, features, items[batch], sig,
                                                    targets[batch], negatives=negatives)
            for name, weight in (l2 or {}).items():
                grad = grads[name]
                if isinstance(grad, Rows):  # the touched rows only (L2 is per example)
                    grads[name] = add_l2(grad, params[name], weight)
                else:
                    grad += (2 * weight) * params[name]  # in place: gradients are fresh arrays
            step(grads)
            total += value * len(batch)
        losses.append(total / max(1, len(order)))
    return losses


class TrainingRun:
    """Central training that can be continued, BLAS threads limited to ``tcfg.threads``.

    After ``advance`` calls totalling ``e`` epochs the weights are those a single run of ``e``
    epochs gives (same data, config and seed: the shuffles and the optimizer carry on), so
    candidates that differ only in their epochs share one run: evaluation validates 8 and 16
    epochs of the same setting in 16 epochs of training, not 24.
    """

    def __init__(self, params: Params, features: np.ndarray, seqs: Sequences, cfg: ModelConfig,
                 tcfg: TrainConfig, *, frozen: frozenset[str] = frozenset()) -> None:
        self.params = params
        self.epochs = 0  # run so far
        self.losses: list[float] = []
        self._features = features
        self._tcfg = tcfg
        self._frozen = frozen
        # The attention encoder trains every position of a history at once (edgerec.model.encoder)
        self._examples = (sequence_examples(seqs, cfg.history) if cfg.encoder == "attention"
                          else next_item_examples(seqs, cfg.history))
        self._rng = np.random.default_rng(tcfg.seed)
        n_items = features.shape[0]
        self._sampler = (NegativeSampler.for_targets(self._examples[2], n_items, tcfg.negatives,
                                                     tcfg.uniform_mix)
                         if use_sampled(tcfg.softmax, n_items, tcfg.negatives) else None)
        # The item tables' gradients come as Rows, which Adam applies lazily (table_updates
        # "lazy") or as the dense gradients they stand for, with the L2 term, without building
        # [N, d] arrays.
        self._opt = Adam(tcfg.lr, lazy=tcfg.lazy_tables)
        self._loss = training_loss(cfg, self._rng, sparse=True) or partial(loss_and_grads, sparse=True)

    @classmethod
    def fresh(cls, seqs: Sequences, features: np.ndarray, cfg: ModelConfig,
              tcfg: TrainConfig) -> "TrainingRun":
        """A run from new parameters drawn with ``tcfg.seed``."""
        rng = np.random.default_rng(tcfg.seed)
        return cls(init_params(cfg, features.shape[0], features.shape[1], rng), features, seqs,
                   cfg, tcfg)

    def advance(self, epochs: int, *, progress: Progress | None = None) -> list[float]:
        """Train ``epochs`` more epochs in place; returns their mean losses."""
        opt, params, frozen = self._opt, self.params, self._frozen
        l2 = {n: self._tcfg.l2 for n in TABLES}  # added by the optimizer, inside its update
        with blas_threads(self._tcfg.threads):
            losses = run_epochs(params, self._features, self._examples, epochs=epochs,
                                batch_size=self._tcfg.batch_size, rng=self._rng,
                                step=lambda grads: opt.step(params, grads, frozen, l2),
                                dropout=self._tcfg.history_dropout, progress=progress,
                                sampler=self._sampler, loss=self._loss)
        self.epochs += epochs
        self.losses += losses
        return losses


def train_model(params: Params, features: np.ndarray, seqs: Sequences, cfg: ModelConfig,
                tcfg: TrainConfig, *, progress: Progress | None = None,
                frozen: frozenset[str] = frozenset()) -> list[float]:
    """Train ``params`` in place on next-event prediction over ``seqs``; returns the epoch losses."""
    return TrainingRun(params, features, seqs, cfg, tcfg, frozen=frozen).advance(tcfg.epochs,
                                                                                progress=progress)


def fit_params(seqs: Sequences, features: np.ndarray, cfg: ModelConfig,
               tcfg: TrainConfig | tuple[TrainConfig, TrainConfig], *,
               progress: Progress | None = None) -> Params:
    """Fresh parameters trained on ``seqs`` (the central training that makes a first model).

    A mix trains its towers one after the other, each as alone (``edgerec.model.mix``), with
    ``tcfg``'s two configs (pooled, attention), or with the one given for both.
    """
    if cfg.encoder == "mix":
        towers = tcfg if isinstance(tcfg, tuple) else (tcfg, tcfg)
        pooled, seq = (fit_params(seqs, features, tower, training, progress=progress)
                       for tower, training in zip(cfg.towers(), towers))
        return join(pooled, seq)
    if isinstance(tcfg, tuple):
        raise ConfigError("two training configs are for a mix's towers; this model has one encoder")
    run = TrainingRun.fresh(seqs, features, cfg, tcfg)
    run.advance(tcfg.epochs, progress=progress)
    return run.params
