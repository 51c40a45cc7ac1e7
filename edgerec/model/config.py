"""Hyper-parameters of the edgerec model and of its training."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from .._exceptions import ConfigError
from .._threads import check_threads

__all__ = ["ModelConfig", "TrainConfig"]

_ENCODERS = ("pooled", "attention", "mix")
_ATTENTION_OPTIONS = ("encoder", "blocks", "dropout")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the model. Stored in every bundle's manifest.

    The user is not a parameter: it is computed from the ``history`` most recent events, each
    weighted by a learned per-position weight and a learned per-signal weight (click, purchase,
    1..5 stars, dismiss, ...). That keeps every parameter shareable across devices and makes a new
    event change the very next recommendation.

    ``encoder="attention"`` computes it instead with ``blocks`` self-attention blocks over the
    history (``edgerec.model.encoder``; ``hidden`` does not apply), trained with ``dropout``.

    ``encoder="mix"`` holds both, each with its own item tables, trained each on its own loss,
    and scores ``mix * pooled logits + (1 - mix) * attention logits`` (``edgerec.model.mix``):
    the same ranking as mixing the two models' log-probabilities. Its user vector is the two
    towers' side by side (``2 * dim``).
    """

    dim: int = 64
    history: int = 50
    hidden: bool = True  # a residual ReLU layer on the pooled history
    encoder: str = "pooled"  # "pooled" (weighted sum of the history) or "attention"
    blocks: int = 2  # attention only: transformer blocks
    dropout: float = 0.2  # attention only: dropout rate while training (none when scoring)
    # mix only: the pooled tower's weight in the score (the attention tower has 1 - mix). 0.4 was
    # chosen on MovieLens-100K validation items (BENCHMARKS.md, "Pooled and attention mixed").
    mix: float = 0.4

    def __post_init__(self) -> None:
        if not 1 <= self.dim <= 1024:
            raise ConfigError(f"dim must be within 1..1024, got {self.dim}")
        if not 1 <= self.history <= 4096:
            raise ConfigError(f"history must be within 1..4096, got {self.history}")
        if self.encoder not in _ENCODERS:
            raise ConfigError(f"encoder must be one of {_ENCODERS}, got {self.encoder!r}")
        if isinstance(self.blocks, bool) or not isinstance(self.blocks, int) or not 1 <= self.blocks <= 16:
            raise ConfigError(f"blocks must be an int within 1..16, got {self.blocks!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be within [0, 1), got {self.dropout}")
        if isinstance(self.mix, bool) or not isinstance(self.mix, (int, float)) or not 0.0 < self.mix < 1.0:
            raise ConfigError(f"mix must be a number within (0, 1), got {self.mix!r}")

    @property
    def user_dim(self) -> int:
        """Length of the user vector (and of a device's adapter): ``2 * dim`` for a mix."""
        return 2 * self.dim if self.encoder == "mix" else self.dim
    def towers(self) -> tuple["ModelConfig", "ModelConfig"]:
        """A mix's two models, as they would be alone: (pooled, attention)."""
        if self.encoder != "mix":
            raise ConfigError(f"only a mix has towers, not encoder={self.encoder!r}")
        return (ModelConfig(dim=self.dim, history=self.history, hidden=self.hidden),
                ModelConfig(dim=self.dim, history=self.history, encoder="attention",
                            blocks=self.blocks, dropout=self.dropout))

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        if self.encoder == "pooled":
            # Pooled manifests stay as they were before the attention encoder (readable by
            # devices that predate it); its options mean nothing there.
            for name in _ATTENTION_OPTIONS:
                del raw[name]
        if self.encoder != "mix":
            del raw["mix"]  # likewise: manifests without a mix stay as they were
        return raw

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ConfigError(f"unknown model options: {sorted(unknown)}")
        return cls(**raw)


#: ``TrainConfig.table_updates`` values.
TABLE_UPDATES = ("dense", "lazy")


@dataclass(frozen=True)
class TrainConfig:
    """How the model is trained (centrally, or fine-tuned on a device)."""

    epochs: int = 20
    batch_size: int = 256
    lr: float = 2e-3
    l2: float = 1e-5  # on embedding tables, per example
    history_dropout: float = 0.1  # drop history entries at random while training
    seed: int = 0
    # BLAS threads while training (None: as the process has them). One is within ~15% of BLAS's
    # default on a quiet 2-core machine and several times faster on a busy one (BENCHMARKS.md,
    # "BLAS threads"): the products are too small to share out, and waiting threads spin. The
    # weights depend on the number (float rounding), so one thread everywhere also makes them
    # independent of the machine's core count.
    threads: int | None = 1
    # The loss over the catalogue: "full" softmax over every item, "sampled" softmax with logQ
    # correction over the targets and ~`negatives` shared negatives per batch, drawn from
    # (1 - uniform_mix) * popularity + uniform_mix * uniform (edgerec.model.sampled), or "auto":
    # sampled from SAMPLED_FROM_ITEMS items on (the rule: sampled.use_sampled). Defaults from
    # BENCHMARKS.md "Sampled softmax": on the 10k-item CSV 256 and 1,024 uniform negatives came
    # out at or above full softmax's NDCG@10 (popularity-mixed ones, mix 0.2, 3-5% below it),
    # and 256 make an epoch 0.30x full softmax's time (1,024: 0.47x).
    softmax: str = "auto"
    negatives: int = 256
    uniform_mix: float = 1.0
    # How Adam updates the item tables (emb_in, emb_out, bias): "dense", every row every step, or
    # "lazy", only the rows a batch touched (LazyAdam/SparseAdam, edgerec.model.rows; opt-in).
    # Measured on the 10k-item CSV with sampled softmax (BENCHMARKS.md "Sampled softmax: lazy
    # table updates", 3 seeds): lazy takes 0.67x the training time but reaches 0.90x dense's
    # test NDCG@10. Dense Adam also moves untouched rows, by their L2 gradient at a full Adam
    # step: rarely seen items are pulled to zero fast, which lazy updates do not do.
    table_updates: str = "dense"

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1:
            raise ConfigError("epochs must be >= 0 and batch_size >= 1")
        if not (self.lr > 0 and self.l2 >= 0 and 0 <= self.history_dropout < 1):
            raise ConfigError("need lr > 0, l2 >= 0 and 0 <= history_dropout < 1")
        check_threads(self.threads, "TrainConfig.threads")
        if self.softmax not in ("auto", "full", "sampled"):
            raise ConfigError(f"softmax must be 'auto', 'full' or 'sampled', got {self.softmax!r}")
        if isinstance(self.negatives, bool) or not isinstance(self.negatives, int) or self.negatives < 1:
            raise ConfigError(f"negatives must be an int >= 1, got {self.negatives!r}")
        if not 0.0 <= self.uniform_mix <= 1.0:
            raise ConfigError(f"uniform_mix must be within 0..1, got {self.uniform_mix}")
        if self.table_updates not in TABLE_UPDATES:
            raise ConfigError(f"table_updates must be one of {TABLE_UPDATES}, got {self.table_updates!r}")

    @property
    def lazy_tables(self) -> bool:
        """Whether Adam updates only the touched rows of the item tables."""
        return self.table_updates == "lazy"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
