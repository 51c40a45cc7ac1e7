"""The demo's settings: presets per data set, any of them overridable.

Synthetic data (the default): a quick run that finishes in a few minutes on 2 cores.
MovieLens-100K (``--data`` pointing at it): the private run at epsilon 8, a 20% pilot and every
other user a device, the item tables frozen (``no_dp``: the earlier run without noise).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from edgerec import ConfigError
from edgerec.federated.strategies import STRATEGIES
from edgerec.model.params import ITEM_TABLES, expand_frozen

__all__ = ["DEFAULT_OUT", "DP_DELTA", "EVERY_DEVICE", "PRESETS", "DemoConfig"]

#: The report folder, relative to the current folder: a run writes where its user is, never
#: into the package or a source checkout's own folders.
DEFAULT_OUT = "edgerec-demo-report"

#: The delta the demo's epsilons hold at: the server's default ``dp_delta``.
DP_DELTA = 1e-5
#: ``per_round`` for "every device, every round" (``--per-round all``): the server then draws
#: with q = 1 and the audit accounts each round as a plain Gaussian (no amplification).
EVERY_DEVICE = 0

#: What ``None`` means for the preset fields, by kind of data (see DemoConfig for the fields).
#: ``noise`` and ``epsilon``: one of them is None (the preset's way to set the privacy).
PRESETS: dict[str, dict[str, Any]] = {
    # Small on purpose: a 5% pilot (a 15% pilot is already within 10% of the central model on
    # this set and leaves the rounds little to show). FedAvg at lr 1 beat FedAdam (0.003-0.08)
    # under DP noise on validation runs of the in-process simulation from a pilot model.
    "synthetic": {"rounds": 8, "per_round": 60, "noise": 1.0, "epsilon": None, "pilot_share": 0.05,
                  "dim": 32, "strategy": "fedavg", "server_lr": 1.0, "frozen": (), "graph": "complete",
                  "stage_deadline": 10.0, "evaluate_every": 4, "canary": False},
    # Private (issue 13): epsilon 8 (delta 1e-5) over the whole run. Noise per weight on the
    # mean is z*C/m over every federated weight, so the run federates few weights to many
    # devices: a pilot of 20% of the users trains the first model centrally (alone it scores
    # NDCG@10 0.070 on validation items), its item tables (emb_in, emb_out, feat_in, feat_out:
    # 218k of the 228k weights) are frozen, and only the rest (bias, pos, signal, user0, w1, b1,
    # w2: ~10k) is federated by every device in each of 10 rounds, FedAdam at server lr 0.01
    # (cosine-decayed). Chosen on validation items in the in-process simulation: 0.079 after 10
    # rounds at z = 3 (epsilon ~5 for 10 rounds of everyone); every weight federated instead:
    # 0.063-0.066, below the pilot alone. Every device every round: no amplification by
    # sampling, the audit accounts each round as a plain Gaussian; for 754 devices epsilon 8
    # over 10 rounds is z ~ 2.0. Secure aggregation runs on the Harary graph (SecAgg+): on the
    # complete graph of 754 devices each device shares keys with every other, and stages could
    # not finish within their deadline (both rounds of a trial aborted); SecAgg+ with 30 s
    # stages completed a round in 89 s. At this size the server is near its limits (#12): a
    # trial round still aborted on server errors, and an aborted round releases nothing.
    "movielens": {"rounds": 10, "per_round": EVERY_DEVICE, "noise": None, "epsilon": 8.0,
                  "pilot_share": 0.2, "dim": 64, "strategy": "fedadam", "server_lr": 0.01,
                  "frozen": ITEM_TABLES, "graph": "harary", "stage_deadline": 30.0,
                  "evaluate_every": 5, "canary": True},
    # --no-dp: the earlier setting, without DP noise. Every user a device, the first model
    # random: all learning is federated. FedAdam, 100 rounds of 100, lr 0.16 cosine-decayed,
    # local SGD as in edgerec.federated.SimulationConfig: the best of the in-process simulations
    # tried (95.8% of central at round 100; lr 0.08/0.12 and 120 rounds ended lower). The
    # protection is clipping and secure aggregation only (epsilon infinite); BENCHMARKS.md has
    # the figures.
    "movielens_no_dp": {"rounds": 100, "per_round": 100, "noise": 0.0, "epsilon": None,
                        "pilot_share": 0.0, "dim": 64, "strategy": "fedadam", "server_lr": 0.16,
                        "frozen": (), "graph": "complete", "stage_deadline": 10.0,
                        "evaluate_every": 25, "canary": True},
}
_PRESET_FIELDS = ("rounds", "per_round", "noise", "epsilon", "pilot_share", "dim", "strategy",
                  "server_lr", "frozen", "graph", "stage_deadline", "evaluate_every", "canary")


@dataclass(frozen=True)
class DemoConfig:
    """One demo run.

    The first global model is trained centrally on ``pilot_share`` of the users (who are not
    devices; 0: the first model is random); the other users become devices (up to ``devices``;
    None: all of them), and ``rounds`` federated rounds of ``per_round`` sampled devices improve
    the model (``EVERY_DEVICE``, 0: every device takes part in every round). A share
    ``dropout`` of each round's devices vanish after fine-tuning, before a random later stage.
    Fields left None take the data set's preset (``PRESETS``).

    Privacy: either ``noise`` (the noise multiplier z) or ``epsilon``, a target for the whole
    run at ``DP_DELTA``; then ``noise`` stays None and ``resolved`` chooses z for the device
    population once it is known. ``no_dp``: no noise, with the data set's no-noise preset
    (on MovieLens the earlier setting: every user a device, 100 rounds of 100, nothing frozen).

    ``frozen``: shared weights every round leaves out (``"tables"`` stands for the four item
    tables): devices hold them at the pilot's values and send only the rest.

    Evaluation (``evaluation.py``): ``evaluate_every`` k > 0 runs an evaluation round of the
    published model after every k-th round and after the last one, a cohort of about
    ``per_round`` devices, with noise multiplier ``evaluation_noise`` (None: ``noise``);
    ``canary`` imports a bad candidate (the final model with its item embedding rows shuffled)
    once at the end, on a canary of ``canary_share`` of the devices, measures it on every other
    device, and lets ``rollout decide`` judge it. Synthetic preset: two evaluation rounds
    (after rounds 4 and 8, about 10 s each here) and no canary (its round of every other
    device took about 45 s for the synthetic set's 430 here: ``--canary`` turns it on);
    MovieLens: every 5 rounds (25 without DP) and the canary.
    """

    data: str = "synthetic"
    out: str = DEFAULT_OUT
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
    graph: str | None = None  # secure aggregation graph (preset: complete; harary for MovieLens)
    stage_deadline: float | None = None  # seconds per stage after the advertisements (preset: 10; 30 MovieLens)
    # A stage closes this many seconds after the last message once enough devices answered:
    # a vanished device costs this, not a whole deadline (devices answer within milliseconds
    # of each other here).
    quiet_close: float = 1.5
    dim: int | None = None  # model width
    central_epochs: int | None = None  # None: edgerec's default (16)
    synthetic_users: int = 500
    synthetic_items: int = 300
    seed: int = 0
    frozen: tuple[str, ...] | None = None  # weights left out of every round ("tables": the four)
    no_dp: bool = False  # no noise, with the data set's no-noise preset
    # Federated evaluation (evaluation.py): an evaluation round of the published model after
    # every evaluate_every-th round and after the last (0: none), its noise multiplier
    # evaluation_noise (None: the training rounds' z); canary: once, at the end, a deliberately
    # bad candidate on a canary share canary_share of the devices, measured and rolled back.
    evaluate_every: int | None = None
    evaluation_noise: float | None = None
    canary: bool | None = None
    canary_share: float = 0.1

    def __post_init__(self) -> None:
        if self.epsilon is not None and self.noise is not None:
            raise ConfigError("set noise (z) or epsilon (z chosen to meet it), not both")
        if self.no_dp and (self.epsilon is not None or self.noise is not None):
            raise ConfigError("no_dp runs without noise: set neither noise nor epsilon with it")
        synthetic = self.data == "synthetic"
        preset = PRESETS["synthetic" if synthetic else "movielens_no_dp" if self.no_dp else "movielens"]
        if self.no_dp:
            preset = {**preset, "noise": 0.0, "epsilon": None}
        privacy_set = self.noise is not None or self.epsilon is not None
        for name in _PRESET_FIELDS:
            if name in ("noise", "epsilon") and privacy_set:
                continue  # one of them was given: the preset's way does not apply
            if getattr(self, name) is None:
                object.__setattr__(self, name, preset[name])  # frozen: filled once, here
        if not isinstance(self.frozen, (tuple, list)) or not all(isinstance(n, str) for n in self.frozen):
            raise ConfigError("frozen must be a tuple of weight names (or 'tables')")
        object.__setattr__(self, "frozen", expand_frozen(self.frozen))
        self._check()

    def resolved(self, population: int) -> DemoConfig:
        """This run for ``population`` devices: ``per_round`` ``EVERY_DEVICE`` becomes
        ``population``, and, with ``epsilon``, ``noise`` = the least z whose ``planned_releases``
        (the training rounds, and the evaluation and canary rounds at the same z) of ``per_round`` of ``population``
        devices cost at most ``epsilon`` at ``DP_DELTA`` (``edgerec.privacy.noise_for_releases``,
        the accounting the server's audit uses) and ``epsilon`` None (it has been spent on z).

        The server draws each cohort by Poisson sampling around ``per_round``, and its audit
        accounts every round at the size drawn: its final figure can differ a little from the
        target (the report shows both).

        Raises:
            ConfigError: no z up to 1e6 meets the target (or a bad ``population``).
        """
        assert self.rounds is not None and self.per_round is not None
        every = self.per_round == EVERY_DEVICE
        cfg = self if not every else replace(self, per_round=population)
        if self.epsilon is None:
            return cfg
        from edgerec.privacy import noise_for_releases

        per_round = population if every else self.per_round  # cfg.per_round, as an int
        releases, cohort = self.planned_releases(min(per_round, population), population)
        z = noise_for_releases(self.epsilon, population=population, cohort=cohort,
                               rounds=releases, delta=DP_DELTA)
        return replace(cfg, epsilon=None, noise=z)

    def planned_releases(self, cohort: int, population: int) -> tuple[int, int]:
        """``(rounds, cohort)`` that ``epsilon`` is calibrated for: every round that adds noise at
        ``noise`` (the training rounds, and the evaluation rounds and the canary's round when
        they use the same z: one budget, as the server's audit counts it). The canary's round
        takes every device off the canary, not a sampled cohort, so with it every round is
        bounded as a plain Gaussian release (an upper bound on a sampled one's epsilon)."""
        assert self.rounds is not None
        if self.evaluation_noise is not None:  # evaluation at its own z: not in this budget
            return self.rounds, cohort
        k = self.evaluate_every or 0
        evaluations = sum(1 for r in range(1, self.rounds + 1) if k > 0 and (r % k == 0 or r == self.rounds))
        canary = 1 if self.canary else 0
        return self.rounds + evaluations + canary, (population if canary else cohort)

    def _check(self) -> None:
        assert self.rounds is not None and self.per_round is not None
        assert self.pilot_share is not None and self.server_lr is not None
        assert self.stage_deadline is not None and self.dim is not None and self.frozen is not None
        every = self.per_round == EVERY_DEVICE
        if self.rounds < 1 or (self.per_round < 3 and not every) or self.workers < 1:
            raise ConfigError("need rounds >= 1, per_round >= 3 (or every device) and workers >= 1")
        if self.devices is not None and self.devices < max(self.per_round, 3):
            raise ConfigError(f"--devices ({self.devices}) must be at least --per-round ({self.per_round})"
                              if not every else "need at least 3 devices")
        if not (0.0 <= self.pilot_share < 1.0 and 0.0 <= self.dropout < 0.25):
            raise ConfigError("need 0 <= pilot_share < 1 and 0 <= dropout < 0.25")
        if not (self.clip > 0 and self.server_lr > 0 and self.stage_deadline > 0 and self.quiet_close > 0):
            raise ConfigError("need clip > 0, server_lr > 0, stage_deadline > 0, quiet_close > 0")
        if self.noise is not None and not (math.isfinite(self.noise) and self.noise >= 0):
            raise ConfigError("need noise >= 0")
        if self.epsilon is not None and not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ConfigError("need epsilon > 0 (a finite target)")
        if self.evaluate_every is None or self.evaluate_every < 0:
            raise ConfigError("need evaluate_every >= 0 (0: no evaluation rounds)")
        if self.evaluation_noise is not None and not (math.isfinite(self.evaluation_noise)
                                                      and self.evaluation_noise >= 0):
            raise ConfigError("need evaluation_noise >= 0")
        if not 0.0 < self.canary_share < 1.0:
            raise ConfigError("need 0 < canary_share < 1")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy must be one of {sorted(STRATEGIES)}")
        if self.graph not in ("complete", "harary"):
            raise ConfigError("graph must be 'complete' or 'harary'")
        from edgerec.model.config import ModelConfig
        from edgerec.model.params import param_names

        names = param_names(ModelConfig(dim=self.dim))
        unknown = sorted(set(self.frozen) - set(names))
        if unknown:
            raise ConfigError(f"frozen names no weight of the model: {unknown} (its weights: "
                              f"{', '.join(names)}; 'tables' stands for {', '.join(ITEM_TABLES)})")
        if set(names) <= set(self.frozen):
            raise ConfigError("frozen holds every weight: the rounds would federate nothing")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
