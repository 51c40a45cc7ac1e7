"""The demo's settings: presets per data set, any of them overridable.

Synthetic data (the default): a quick run that finishes in a few minutes on 2 cores.
MovieLens-100K (``--data`` pointing at it): the benchmark run, every user a device.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from .._exceptions import ConfigError

__all__ = ["DP_DELTA", "PRESETS", "DemoConfig"]

#: The delta the demo's epsilons hold at: the server's default ``dp_delta``.
DP_DELTA = 1e-5

#: What ``None`` means for the preset fields, by kind of data (see DemoConfig for the fields).
PRESETS: dict[str, dict[str, Any]] = {
    # Small on purpose: a 5% pilot (a 15% pilot is already within 10% of the central model on
    # this set and leaves the rounds little to show). FedAvg at lr 1 beat FedAdam (0.003-0.08)
    # under DP noise on validation runs of the in-process simulation from a pilot model.
    "synthetic": {"rounds": 8, "per_round": 60, "noise": 1.0, "pilot_share": 0.05, "dim": 32,
                  "strategy": "fedavg", "server_lr": 1.0},
    # Every user a device, the first model random: all learning is federated. FedAdam, 100
    # rounds of 100, lr 0.16 cosine-decayed, local SGD as in edgerec.federated.SimulationConfig:
    # the best of the in-process simulations tried (95.8% of central at round 100; lr 0.08/0.12
    # and 120 rounds ended lower). No DP noise by default: on 943 devices every noise level
    # tried cost quality (z=0.02, epsilon 1.4e5: 86% of central; z=0.3, C=0.5: 0.037 after 40
    # rounds against 0.067 without noise), so the protection here is clipping and secure
    # aggregation; --noise turns DP on. BENCHMARKS.md has the figures.
    "movielens": {"rounds": 100, "per_round": 100, "noise": 0.0, "pilot_share": 0.0, "dim": 64,
                  "strategy": "fedadam", "server_lr": 0.16},
}
_PRESET_FIELDS = ("rounds", "per_round", "noise", "pilot_share", "dim", "strategy", "server_lr")


@dataclass(frozen=True)
class DemoConfig:
    """One demo run.

    The first global model is trained centrally on ``pilot_share`` of the users (who are not
    devices; 0: the first model is random); the other users become devices (up to ``devices``;
    None: all of them), and ``rounds`` federated rounds of ``per_round`` sampled devices improve
    the model. A share ``dropout`` of each round's devices vanish after fine-tuning, before a
    random later stage. Fields left None take the data set's preset (``PRESETS``).

    Privacy: either ``noise`` (the noise multiplier z) or ``epsilon``, a target for the whole
    run at ``DP_DELTA``; then ``noise`` stays None and ``resolved`` chooses z for the device
    population once it is known.
    """

    data: str = "synthetic"
    out: str = "reports/demo"
    devices: int | None = None
    rounds: int | None = None
    per_round: int | None = None
    noise: float | None = None  # noise multiplier z of the aggregated sum
    epsilon: float | None = None  # instead of noise: the epsilon all the rounds may spend
    clip: float = 1.0
    workers: int = 2
    port: int = 0  # 0: a free port on 127.0.0.1
    pilot_share: float | None = None
    dropout: float = 0.02
    strategy: str | None = None  # server optimizer, its lr cosine-decayed to 10% over the rounds
    server_lr: float | None = None
    graph: str = "complete"
    stage_deadline: float = 10.0  # seconds for each stage after the advertisements
    # A stage closes this many seconds after the last message once enough devices answered:
    # a vanished device costs this, not a whole deadline (devices answer within milliseconds
    # of each other here).
    quiet_close: float = 1.5
    dim: int | None = None  # model width
    central_epochs: int | None = None  # None: edgerec's default (16)
    synthetic_users: int = 500
    synthetic_items: int = 300
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epsilon is not None and self.noise is not None:
            raise ConfigError("set noise (z) or epsilon (z chosen to meet it), not both")
        preset = PRESETS["synthetic" if self.data == "synthetic" else "movielens"]
        for name in _PRESET_FIELDS:
            if getattr(self, name) is None and not (name == "noise" and self.epsilon is not None):
                object.__setattr__(self, name, preset[name])  # frozen: filled once, here
        self._check()

    def resolved(self, population: int) -> DemoConfig:
        """This run with z fixed for ``population`` devices: itself without ``epsilon``, else
        ``noise`` = the least z whose ``rounds`` rounds of ``per_round`` of ``population``
        devices cost at most ``epsilon`` at ``DP_DELTA`` (``edgerec.privacy.noise_for_releases``,
        the accounting the server's audit uses) and ``epsilon`` None (it has been spent on z).

        The server draws each cohort by Poisson sampling around ``per_round``, and its audit
        accounts every round at the size drawn: its final figure can differ a little from the
        target (the report shows both).

        Raises:
            ConfigError: no z up to 1e6 meets the target (or a bad ``population``).
        """
        if self.epsilon is None:
            return self
        from ..privacy import noise_for_releases

        assert self.rounds is not None and self.per_round is not None
        z = noise_for_releases(self.epsilon, population=population,
                               cohort=min(self.per_round, population), rounds=self.rounds,
                               delta=DP_DELTA)
        return replace(self, epsilon=None, noise=z)

    def _check(self) -> None:
        assert self.rounds is not None and self.per_round is not None
        assert self.pilot_share is not None and self.server_lr is not None
        if self.rounds < 1 or self.per_round < 3 or self.workers < 1:
            raise ConfigError("need rounds >= 1, per_round >= 3 and workers >= 1")
        if self.devices is not None and self.devices < self.per_round:
            raise ConfigError(f"--devices ({self.devices}) must be at least --per-round ({self.per_round})")
        if not (0.0 <= self.pilot_share < 1.0 and 0.0 <= self.dropout < 0.25):
            raise ConfigError("need 0 <= pilot_share < 1 and 0 <= dropout < 0.25")
        if not (self.clip > 0 and self.server_lr > 0 and self.stage_deadline > 0 and self.quiet_close > 0):
            raise ConfigError("need clip > 0, server_lr > 0, stage_deadline > 0, quiet_close > 0")
        if self.noise is not None and not (math.isfinite(self.noise) and self.noise >= 0):
            raise ConfigError("need noise >= 0")
        if self.epsilon is not None and not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ConfigError("need epsilon > 0 (a finite target)")
        if self.strategy not in ("fedavg", "fedadam"):
            raise ConfigError("strategy must be 'fedavg' or 'fedadam'")
        if self.graph not in ("complete", "harary"):
            raise ConfigError("graph must be 'complete' or 'harary'")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
