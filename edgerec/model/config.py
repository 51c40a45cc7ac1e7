"""Hyper-parameters of the edgerec model and of its training."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from .._exceptions import ConfigError
from .._threads import check_threads

__all__ = ["ModelConfig", "TrainConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the model. Stored in every bundle's manifest.

    The user is not a parameter: it is computed from the ``history`` most recent events, each
    weighted by a learned per-position weight and a learned per-signal weight (click, purchase,
    1..5 stars, dismiss, ...). That keeps every parameter shareable across devices and makes a new
    event change the very next recommendation.
    """

    dim: int = 64
    history: int = 50
    hidden: bool = True  # a residual ReLU layer on the pooled history

    def __post_init__(self) -> None:
        if not 1 <= self.dim <= 1024:
            raise ConfigError(f"dim must be within 1..1024, got {self.dim}")
        if not 1 <= self.history <= 4096:
            raise ConfigError(f"history must be within 1..4096, got {self.history}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ConfigError(f"unknown model options: {sorted(unknown)}")
        return cls(**raw)


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

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1:
            raise ConfigError("epochs must be >= 0 and batch_size >= 1")
        if not (self.lr > 0 and self.l2 >= 0 and 0 <= self.history_dropout < 1):
            raise ConfigError("need lr > 0, l2 >= 0 and 0 <= history_dropout < 1")
        check_threads(self.threads, "TrainConfig.threads")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
