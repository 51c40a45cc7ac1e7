"""What an operator asks of a round, checked once when the round is opened.

The secure-aggregation threshold ``t`` is fixed per round (the same for every turnout between
``min_participants`` and ``max_participants``) and devices calibrate their noise to
``min_survivors = t - colluders``: the server cannot unmask a sum of fewer than ``t`` devices
(``edgerec.secagg`` refuses), so the sum always carries at least the stated noise multiplier
against an honest-but-curious server, and against one that colludes with up to ``colluders``
devices (see ``edgerec/privacy/noise.py``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from edgerec._exceptions import ConfigError, RoundAbortedError
from edgerec.federated import FedAdam, FedAvg
from edgerec.secagg import SecAggConfig, Stage, min_threshold

from ._exceptions import BadRequestError

__all__ = ["CLIENT_STAGES", "RoundParams", "STRATEGIES"]

CLIENT_STAGES = (Stage.ADVERTISE, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASK)
STRATEGIES = ("fedavg", "fedadam")
_MAX_COHORT = 100_000


@dataclass(frozen=True)
class RoundParams:
    """A round's settings. ``deadlines`` are seconds allowed for each of the four stages."""

    min_participants: int = 3
    max_participants: int = 100
    clip: float = 1.0
    noise_multiplier: float = 0.0
    threshold: int | None = None  # None: the smallest that is safe for every turnout
    colluders: int = 0
    graph: str = "complete"  # "harary" is SecAgg+ (log-degree neighbourhoods)
    degree: int | None = None
    deadlines: tuple[float, float, float, float] = (300.0, 120.0, 300.0, 120.0)
    strategy: str = "fedavg"
    server_lr: float | None = None  # None: 1.0 for FedAvg, 0.01 for FedAdam
    # Seconds of silence after which a stage closes before its deadline, once it has heard
    # from enough devices to go on (min_participants advertisements, threshold answers later).
    # Devices that have not answered by then count as dropped, as they would at the deadline:
    # without it one vanished device holds every stage until its deadline. None: deadlines only.
    quiet_close: float | None = None

    def resolved(self) -> RoundParams:
        """These parameters with the threshold fixed, or a BadRequestError saying what is wrong."""
        self._check_basic()
        turnouts = range(self.min_participants, self.max_participants + 1)
        probe = self._secagg(0, 1, threshold=None)
        threshold = self.threshold
        if threshold is None:
            threshold = max(min_threshold(probe.degree_for(n)) for n in turnouts)
        fixed = replace(self, threshold=threshold)
        config = fixed._secagg(0, 1, threshold)
        for n in turnouts:
            try:
                config.parameters_for(n)
            except RoundAbortedError as exc:
                raise BadRequestError(
                    f"threshold {threshold} does not fit {n} participants ({exc}); narrow "
                    "min..max participants, set another threshold, or use graph='harary'") from None
        if fixed.min_survivors < 1:
            raise BadRequestError("colluders must be below the threshold")
        fixed.make_strategy()
        return fixed

    @property
    def min_survivors(self) -> int:
        """The fewest devices whose sum can be unmasked, minus the colluders tolerated."""
        if self.threshold is None:
            raise BadRequestError("resolve the parameters first")
        return self.threshold - self.colluders

    def secagg_config(self, round_id: int, vector_length: int) -> SecAggConfig:
        """The secure-aggregation config of this round."""
        return self._secagg(round_id, vector_length, self.threshold)

    def make_strategy(self) -> FedAvg | FedAdam:
        """The server optimizer (pure, from ``edgerec.federated``)."""
        try:
            if self.strategy == "fedavg":
                return FedAvg(lr=self.server_lr if self.server_lr is not None else 1.0)
            return FedAdam(lr=self.server_lr if self.server_lr is not None else 1e-2)
        except ConfigError as exc:
            raise BadRequestError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["deadlines"] = list(self.deadlines)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RoundParams:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise BadRequestError(f"unknown round parameters: {unknown}")
        values = dict(raw)
        if "deadlines" in values:
            values["deadlines"] = _deadlines(values["deadlines"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise BadRequestError(f"bad round parameters: {exc}") from None

    def _check_basic(self) -> None:
        ints = (self.min_participants, self.max_participants, self.colluders)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
            raise BadRequestError("participant counts and colluders must be integers")
        if not 3 <= self.min_participants <= self.max_participants <= _MAX_COHORT:
            raise BadRequestError(f"need 3 <= min_participants <= max_participants <= {_MAX_COHORT}")
        if not (_finite(self.clip) and self.clip > 0):
            raise BadRequestError("clip must be a positive number")
        if not (_finite(self.noise_multiplier) and self.noise_multiplier >= 0):
            raise BadRequestError("noise_multiplier must be >= 0")
        if self.colluders < 0:
            raise BadRequestError("colluders must be >= 0")
        if self.strategy not in STRATEGIES:
            raise BadRequestError(f"strategy must be one of {STRATEGIES}")
        _deadlines(self.deadlines)
        if self.quiet_close is not None and not (_finite(self.quiet_close) and self.quiet_close > 0):
            raise BadRequestError("quiet_close must be a positive number of seconds (or null)")

    def _secagg(self, round_id: int, length: int, threshold: int | None) -> SecAggConfig:
        try:
            return SecAggConfig(round_id, length, self.min_participants, self.graph, self.degree,
                                threshold)
        except ConfigError as exc:
            raise BadRequestError(str(exc)) from None


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _deadlines(raw: object) -> tuple[float, float, float, float]:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        raw = [raw] * 4
    if not isinstance(raw, (list, tuple)) or len(raw) != 4 or not all(_finite(v) and v > 0 for v in raw):
        raise BadRequestError("deadlines must be four positive numbers of seconds (one per stage)")
    return tuple(float(v) for v in raw)  # type: ignore[return-value]
