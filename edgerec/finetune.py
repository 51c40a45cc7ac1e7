"""Local fine-tuning on a device: from the bundle's float weights, on this device's events only.

Pure: arrays in, arrays out; randomness from the config's seed. Two things come out:

- the **personal adapter**, a vector added to the user vector, which never leaves the device and
  is used by ``recommend()`` right away (so the device improves before any federated round);
- the **shared delta**, new shared weights minus the bundle's, flattened: the only thing that may
  leave, and only after clipping, noise and secure aggregation (``edgerec.privacy``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ._exceptions import ConfigError
from ._threads import blas_threads, check_threads
from .types import Sequences
from .model.config import ModelConfig
from .model.encoder import is_attention, training_loss
from .model.encoder import mean_loss as attention_loss
from .model.examples import next_item_examples, sequence_examples
from .model.mix import join, split
from .model.network import mean_loss
from .model.params import MIX_PREFIX, Params, flatten, param_names
from .training import SGD, TABLES, Adam, run_epochs

__all__ = ["FineTuneConfig", "LocalUpdate", "fine_tune"]


@dataclass(frozen=True)
class FineTuneConfig:
    """Bounds and settings of one local fine-tuning run (time and memory grow with
    ``epochs * max_examples``)."""

    epochs: int = 2  # shared weights (the delta); 0 = personalise only
    adapter_epochs: int = 3  # the personal adapter, first, with the shared weights frozen
    max_examples: int = 1000  # the most recent events are kept when a device has more
    batch_size: int = 128
    lr: float = 1e-3  # shared weights: small steps away from the global model
    optimizer: str = "adam"  # for the shared weights: "adam" or "sgd" (federated rounds)
    max_grad_norm: float = 2.0  # SGD only: per-step gradient norm cap
    adapter_lr: float = 2e-2
    l2: float = 1e-5
    # The adapter is fitted on one device's few events; a firm pull to zero keeps it from running
    # away from the shared model (chosen on MovieLens-100K validation items).
    adapter_l2: float = 3e-3
    # Shared weights held fixed on the device (e.g. item tables a pilot trained): they do not
    # move, so their delta is exactly zero, and a round that federates only the others leaves
    # them out of the vector it noises (fewer dimensions, less noise per weight that counts).
    frozen: frozenset[str] = frozenset()
    seed: int = 0
    # BLAS threads while fine-tuning (None: as the process has them). A device or kiosk
    # fine-tunes while its app runs: one thread leaves the other cores to the app, and BLAS's
    # spinning threads would slow both down (BENCHMARKS.md, "BLAS threads").
    threads: int | None = 1

    def __post_init__(self) -> None:
        if min(self.epochs, self.adapter_epochs) < 0 or self.max_examples < 1 or self.batch_size < 1:
            raise ConfigError("need epochs >= 0, max_examples >= 1 and batch_size >= 1")
        if not (self.lr > 0 and self.adapter_lr > 0 and self.l2 >= 0 and self.adapter_l2 >= 0):
            raise ConfigError("learning rates must be > 0 and L2 weights >= 0")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if not isinstance(self.frozen, frozenset) or "adapter" in self.frozen:
            raise ConfigError("frozen must be a frozenset of shared parameter names")
        check_threads(self.threads, "FineTuneConfig.threads")


@dataclass(frozen=True, eq=False)
class LocalUpdate:
    """What one fine-tuning run produced."""

    params: Params  # the fine-tuned shared weights (stay on the device)
    adapter: np.ndarray  # the personal user offset [d] (stays on the device)
    delta: np.ndarray  # flattened shared delta, float32: the only candidate to leave
    n_examples: int
    loss_before: float
    loss_after: float


def _recent(seqs: Sequences, max_examples: int) -> Sequences:
    """Keep the most recent events, spread over users in proportion to their share."""
    total = seqs.n_interactions()
    if total <= max_examples:
        return seqs
    keep = [int(np.ceil(len(s) * max_examples / total)) for s in seqs.items]
    return Sequences([s[-k:] if k else s[:0] for s, k in zip(seqs.items, keep)],
                     [s[-k:] if k else s[:0] for s, k in zip(seqs.signals, keep)])


def _mean_loss(params: Params, features: np.ndarray, items: np.ndarray, signals: np.ndarray,
               targets: np.ndarray) -> float:
    if len(targets) == 0:
        return 0.0
    if is_attention(params):  # every event once, from the histories it trains on: one pass each
        return attention_loss(params, features, items, signals, targets, all_positions=True)
    return mean_loss(params, features, items, signals, targets)


def fine_tune(base: Params, features: np.ndarray, seqs: Sequences, cfg: ModelConfig,
              fcfg: FineTuneConfig = FineTuneConfig(),
              adapter: np.ndarray | None = None) -> LocalUpdate:
    """Fine-tune a copy of ``base`` on ``seqs`` (this device's users' sequences, oldest first).

    ``adapter`` continues from a previous personal adapter (zeros when None). BLAS uses at most
    ``fcfg.threads`` threads meanwhile. A mix fine-tunes each tower as it would be alone, on the
    same events (``_fine_tune_mix``).
    """
    with blas_threads(fcfg.threads):
        if cfg.encoder == "mix":
            return _fine_tune_mix(base, features, seqs, cfg, fcfg, adapter)
        return _fine_tune(base, features, seqs, cfg, fcfg, adapter)


def _fine_tune_mix(base: Params, features: np.ndarray, seqs: Sequences, cfg: ModelConfig,
                   fcfg: FineTuneConfig, adapter: np.ndarray | None) -> LocalUpdate:
    """Each tower fine-tuned alone (their losses share no weight), then put together: the
    adapter and the delta are the towers' side by side (``edgerec.model.mix``), the losses
    weighted as the scores are."""
    pooled_cfg, seq_cfg = cfg.towers()
    base_pooled, base_seq = split(base)
    adapters = (None, None) if adapter is None else np.split(np.asarray(adapter, np.float32), 2)
    pooled_frozen = frozenset(n for n in fcfg.frozen if not n.startswith(MIX_PREFIX))
    seq_frozen = frozenset(n.removeprefix(MIX_PREFIX) for n in fcfg.frozen - pooled_frozen)
    pooled = _fine_tune(base_pooled, features, seqs, pooled_cfg, replace(fcfg, frozen=pooled_frozen),
                        adapters[0])
    seq = _fine_tune(base_seq, features, seqs, seq_cfg, replace(fcfg, frozen=seq_frozen), adapters[1])
    weight = cfg.mix
    return LocalUpdate(join(pooled.params, seq.params), np.concatenate([pooled.adapter, seq.adapter]),
                       np.concatenate([pooled.delta, seq.delta]), pooled.n_examples,
                       weight * pooled.loss_before + (1 - weight) * seq.loss_before,
                       weight * pooled.loss_after + (1 - weight) * seq.loss_after)


def _fine_tune(base: Params, features: np.ndarray, seqs: Sequences, cfg: ModelConfig,
               fcfg: FineTuneConfig, adapter: np.ndarray | None) -> LocalUpdate:
    shared = param_names(cfg)
    params: Params = {n: base[n].copy() for n in shared}
    params["adapter"] = (np.zeros(cfg.dim, np.float32) if adapter is None
                         else np.asarray(adapter, np.float32).copy())
    recent = _recent(seqs, fcfg.max_examples)
    examples = next_item_examples(recent, cfg.history)
    # The attention encoder trains every position of a history at once (as centrally): the same
    # events as targets, ~history times less work; as many targets per step as pooled batches.
    train_examples, batch_size = examples, fcfg.batch_size
    if cfg.encoder == "attention":
        train_examples = sequence_examples(recent, cfg.history)
        batch_size = max(1, fcfg.batch_size // cfg.history)
    before = _mean_loss(params, features, *train_examples)
    rng = np.random.default_rng(fcfg.seed)
    loss = training_loss(cfg, rng)
    # First the personal adapter alone, then the shared weights around it: the adapter takes
    # what is particular to this device, so the shared delta carries what generalises.
    adapter_step = Adam(fcfg.adapter_lr)
    run_epochs(params, features, train_examples, epochs=fcfg.adapter_epochs,
               batch_size=batch_size, rng=rng,
               step=lambda grads: adapter_step.step(params, {"adapter": grads["adapter"]}),
               l2={"adapter": fcfg.adapter_l2}, loss=loss)
    shared_step = Adam(fcfg.lr) if fcfg.optimizer == "adam" else SGD(fcfg.lr, fcfg.max_grad_norm)
    run_epochs(params, features, train_examples, epochs=fcfg.epochs, batch_size=batch_size,
               rng=rng, step=lambda grads: shared_step.step(params, grads, fcfg.frozen | {"adapter"}),
               l2={n: fcfg.l2 for n in TABLES}, loss=loss)
    after = _mean_loss(params, features, *train_examples)
    adapter_out = params.pop("adapter")
    delta = flatten(params, shared) - flatten(base, shared)
    return LocalUpdate(params, adapter_out, delta, len(examples[2]), before, after)
