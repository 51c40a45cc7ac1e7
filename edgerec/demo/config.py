"""The demo's settings, with defaults that finish in a few minutes on 2 cores (synthetic data)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .._exceptions import ConfigError

__all__ = ["DemoConfig"]


@dataclass(frozen=True)
class DemoConfig:
    """One demo run.

    The first global model is trained centrally on ``pilot_share`` of the users (who are not
    devices); the other users become devices (up to ``devices``; None: all of them), and
    ``rounds`` federated rounds of ``per_round`` sampled devices improve the model. A share
    ``dropout`` of each round's devices vanish after fine-tuning, before a random later stage.
    """

    data: str = "synthetic"
    out: str = "reports/demo"
    devices: int | None = None
    rounds: int = 8
    per_round: int = 60
    noise: float = 1.0  # noise multiplier z of the aggregated sum
    clip: float = 1.0
    workers: int = 2
    port: int = 0  # 0: a free port on 127.0.0.1
    # Small on purpose on the synthetic set, where a pilot of 15% is already within 10% of
    # the central model and leaves the rounds little to show; the MovieLens benchmark uses 15%.
    pilot_share: float = 0.05
    dropout: float = 0.05
    # FedAvg at lr 1 beat FedAdam (0.003-0.08) under DP noise on validation runs of the
    # in-process simulation from a pilot model: FedAdam's per-coordinate scaling amplifies
    # the noise. Cosine decay to 10% over the rounds, as in the simulation.
    strategy: str = "fedavg"
    server_lr: float = 1.0
    graph: str = "complete"
    stage_deadline: float = 10.0  # seconds for each stage after the advertisements
    dim: int | None = None  # model width; None: 64 for MovieLens, 32 for synthetic data
    central_epochs: int | None = None  # None: edgerec's default (16)
    synthetic_users: int = 500
    synthetic_items: int = 300
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.per_round < 3 or self.workers < 1:
            raise ConfigError("need rounds >= 1, per_round >= 3 and workers >= 1")
        if self.devices is not None and self.devices < self.per_round:
            raise ConfigError(f"--devices ({self.devices}) must be at least --per-round ({self.per_round})")
        if not (0.0 <= self.pilot_share < 1.0 and 0.0 <= self.dropout < 0.5):
            raise ConfigError("need 0 <= pilot_share < 1 and 0 <= dropout < 0.5")
        if not (self.clip > 0 and self.noise >= 0 and self.server_lr > 0 and self.stage_deadline > 0):
            raise ConfigError("need clip > 0, noise >= 0, server_lr > 0, stage_deadline > 0")
        if self.strategy not in ("fedavg", "fedadam"):
            raise ConfigError("strategy must be 'fedavg' or 'fedadam'")
        if self.graph not in ("complete", "harary"):
            raise ConfigError("graph must be 'complete' or 'harary'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
