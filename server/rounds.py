"""What an operator asks of a round, checked once when the round is opened.

Each round's cohort is a Poisson sample of the devices active at opening: every device is drawn
independently with probability ``sampling_rate`` (q; 1 draws every active device: no sampling).
``max_participants`` is not the operator's: ``open_round`` sets it to the size of the cohort
actually drawn (every member may take part, nobody else can), because cutting a Poisson sample
down to a cap would make it something the audit cannot account.

The secure-aggregation threshold ``t`` is fixed per round (the same for every turnout between
``min_participants`` and ``max_participants``) and devices calibrate their noise to
``min_survivors = t - colluders``: the server cannot unmask a sum of fewer than ``t`` devices
(``edgerec.secagg`` refuses), so the sum always carries at least the stated noise multiplier
against an honest-but-curious server, and against one that colludes with up to ``colluders``
devices (see ``edgerec/privacy/noise.py``).

``frozen`` names shared weights the round leaves out (e.g. the item tables a pilot trained):
devices hold them fixed and send only the other entries, so the vector that is noised and
summed is shorter (``vector_length`` = the federated entries), and the server puts zeros back
at the frozen entries before its optimizer runs, so they come out of the round unchanged.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping, Sequence

import numpy as np

from edgerec._exceptions import ConfigError, RoundAbortedError
from edgerec.federated import STRATEGIES as FEDERATED_STRATEGIES
from edgerec.federated import FedAdam, FedAvg, make_strategy
from edgerec.model.params import FROZEN_SHORTHANDS, Params, expand_frozen, federated_mask
from edgerec.secagg import SecAggConfig, Stage
from edgerec.sync import ROUND_KINDS, TRAINING

from ._exceptions import BadRequestError, ConflictError

__all__ = ["CLIENT_STAGES", "CohortTooSmallError", "FROZEN_SHORTHANDS", "RoundParams", "STRATEGIES",
           "draw_cohort", "parse_frozen", "rate_for_expected"]

CLIENT_STAGES = (Stage.ADVERTISE, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.CONSISTENCY,
                 Stage.UNMASK)
STRATEGIES = tuple(FEDERATED_STRATEGIES)  # the names edgerec.federated defines
_MAX_COHORT = 100_000


class CohortTooSmallError(BadRequestError):
    """The cohort is smaller than the threshold can work with (``t <= degree``): more devices,
    not fewer, would fit (``open_round`` says so instead of "too many")."""


@dataclass(frozen=True)
class RoundParams:
    """A round's settings. ``deadlines`` are seconds allowed for the stages: advertise, share
    keys, masked input, and the last for each of consistency check and unmask.

    ``max_participants`` is the drawn cohort's size once the round is open (``for_cohort``);
    whatever it holds before is not used to open a round.
    """

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
    # q: the probability with which each active device is drawn into the cohort, independently
    # (Poisson sampling; announced to devices and shown by the audit). 1.0: no sampling.
    sampling_rate: float = 1.0
    # With threshold None: t = neighbourhood size - tolerate_dropouts (the drawn cohort - D on the
    # complete graph; never below the safe floor). Devices calibrate their noise to t survivors,
    # so a t near the turnout adds the least noise beyond what is needed; the price is that
    # more dropouts abort the round.
    tolerate_dropouts: int | None = None
    # Shared weights this round leaves out (held fixed on devices, not sent, unchanged by the
    # round); "tables" stands for the four item tables. Checked against the model at opening.
    frozen: tuple[str, ...] = ()
    # "training" (devices send model deltas; a new model comes out) or "evaluation" (devices
    # send edgerec.fedeval vectors; federated metrics come out, no model: server/evaluation.py).
    kind: str = TRAINING
    # An evaluation round's candidate model version, measured beside the base (None: the base
    # model alone), and its EvalConfig settings other than the model slots (None: defaults;
    # spelled out in full at opening). Left out of to_dict() for training rounds.
    candidate: int | None = None
    evaluation: dict[str, Any] | None = None

    def check(self) -> None:
        """Raise a BadRequestError for anything wrong that does not depend on the cohort drawn.

        Run before the draw, so that a mistake is reported as such and never as a draw that
        happened to be too small or too large.
        """
        self._check_basic()
        self.make_strategy()
        if self.threshold is not None or self.colluders:
            config = self._secagg(0, 1, self.threshold)  # the configuration itself must be valid
            if self.threshold is not None:
                self._check_threshold_fits_some_cohort(config, self.threshold)

    def _check_threshold_fits_some_cohort(self, config: SecAggConfig, t: int) -> None:
        """An explicit threshold must work for some turnout of ``min_participants`` or more,
        else no draw could ever fit it (and a schedule would draw again forever). The floor only
        grows with the neighbourhood, so the smallest turnout with ``t <= degree`` is its best."""
        n = next((n for n in range(self.min_participants, _MAX_COHORT + 1) if config.degree_for(n) >= t),
                 None)
        try:
            if n is None:
                raise RoundAbortedError(f"no neighbourhood of up to {_MAX_COHORT} devices has {t} members")
            config.parameters_for(n)
        except RoundAbortedError as exc:
            raise BadRequestError(
                f"threshold {t} does not fit any cohort of {self.min_participants} or more devices "
                f"({exc}); leave the threshold unset (the safe floor for each draw) or choose another"
            ) from None

    def for_cohort(self, cohort: int) -> RoundParams:
        """These parameters for a drawn cohort of ``cohort`` members, resolved (threshold fixed)."""
        drawn = replace(self, max_participants=cohort)
        if self.threshold is None and self.tolerate_dropouts is not None:
            # D of a neighbourhood's k + 1 devices may drop (the whole cohort on the complete
            # graph: t = drawn - D), never below the floor, never above the degree.
            probe = drawn._secagg(0, 1, threshold=None)
            degree = probe.degree_for(cohort)
            wanted = min(degree, degree + 1 - self.tolerate_dropouts)
            drawn = replace(drawn, threshold=max(probe.floor_for(degree), wanted))
        return drawn.resolved()

    def resolved(self) -> RoundParams:
        """These parameters with the threshold fixed, or a BadRequestError saying what is wrong.

        The default threshold is the smallest safe for the largest turnout (the active-
        adversary floor of ``edgerec.secagg.min_threshold``, colluders included), and
        ``min_participants`` is raised to the smallest turnout that threshold can work with
        (``t <= degree``): fewer devices could never complete the round anyway.
        """
        self._check_basic()
        probe = self._secagg(0, 1, threshold=None)
        threshold = self.threshold
        if threshold is None:
            turnouts = range(self.min_participants, self.max_participants + 1)
            threshold = max(probe.floor_for(probe.degree_for(n)) for n in turnouts)
        smallest = next((n for n in range(self.min_participants, self.max_participants + 1)
                         if probe.degree_for(n) >= threshold), self.max_participants + 1)
        fixed = replace(self, threshold=threshold, min_participants=smallest)
        if smallest > self.max_participants:
            raise CohortTooSmallError(f"threshold {threshold} needs more than {self.max_participants} "
                                      "participants; draw a larger cohort or lower the threshold")
        turnouts = range(fixed.min_participants, fixed.max_participants + 1)
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

    def federated(self, params: Params, names: tuple[str, ...]) -> tuple[RoundParams, np.ndarray]:
        """These parameters with ``frozen`` spelled out in the model's order (shorthands
        expanded, each name once), and the mask of the federated entries of
        ``flatten(params, names)``.

        Raises:
            BadRequestError: a name that is not one of the model's weights, or every weight
                frozen (nothing would be federated).
        """
        self._check_frozen()
        wanted = set(expand_frozen(self.frozen, names))
        try:
            mask = federated_mask(params, names, wanted)
        except ConfigError as exc:
            raise BadRequestError(f"frozen: {exc}") from None
        if not mask.any():
            raise BadRequestError("frozen: every weight of the model is frozen, so the round "
                                  "would federate nothing")
        return replace(self, frozen=tuple(n for n in names if n in wanted)), mask

    def secagg_config(self, round_id: int, vector_length: int) -> SecAggConfig:
        """The secure-aggregation config of this round."""
        return self._secagg(round_id, vector_length, self.threshold)

    def make_strategy(self) -> FedAvg | FedAdam:
        """The server optimizer (pure, from ``edgerec.federated``)."""
        try:
            return make_strategy(self.strategy, self.server_lr)
        except ConfigError as exc:
            raise BadRequestError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["deadlines"] = list(self.deadlines)
        out["frozen"] = list(self.frozen)
        if self.kind == TRAINING:  # a training round's record reads as it did before kinds
            for name in ("kind", "candidate", "evaluation"):
                out.pop(name)
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
        if isinstance(values.get("frozen"), list):
            values["frozen"] = tuple(values["frozen"])
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
        if not (_finite(self.sampling_rate) and 0 < self.sampling_rate <= 1):
            raise BadRequestError("sampling_rate must be in (0, 1]")
        if self.tolerate_dropouts is not None and not (
                isinstance(self.tolerate_dropouts, int) and not isinstance(self.tolerate_dropouts, bool)
                and self.tolerate_dropouts >= 1):
            raise BadRequestError("tolerate_dropouts must be a positive integer (or null)")
        self._check_frozen()
        if self.kind not in ROUND_KINDS:
            raise BadRequestError(f"kind must be one of {ROUND_KINDS}")
        if self.kind == TRAINING and (self.candidate is not None or self.evaluation is not None):
            raise BadRequestError("a candidate and evaluation settings go with kind 'evaluation'")

    def _check_frozen(self) -> None:
        if not (isinstance(self.frozen, tuple) and all(isinstance(n, str) and n for n in self.frozen)):
            raise BadRequestError("frozen must be a list of weight names (e.g. emb_in, or 'tables')")

    def _secagg(self, round_id: int, length: int, threshold: int | None) -> SecAggConfig:
        try:
            return SecAggConfig(round_id, length, self.min_participants, self.graph, self.degree,
                                threshold, colluders=self.colluders)
        except ConfigError as exc:
            raise BadRequestError(str(exc)) from None


def draw_cohort(devices: Sequence[int], rate: float) -> list[int]:
    """Each of ``devices`` independently with probability ``rate``, from the OS's CSPRNG.

    Not numpy's or ``random``'s generators: whoever could predict the draw (their state leaks
    through earlier outputs) could tell who was in a round, and the audit's amplification by
    sampling assumes nobody can. ``rate == 1`` draws everyone (``random()`` is below 1).
    """
    rng = secrets.SystemRandom()
    return [d for d in devices if rng.random() < rate]


def parse_frozen(text: str) -> tuple[str, ...]:
    """``--frozen emb_in,emb_out`` (or ``tables``; ``none`` or empty: nothing) as names."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    return () if names == ("none",) else names


def rate_for_expected(expected: int, population: int) -> float:
    """The sampling rate that draws ``expected`` of ``population`` devices on average (at most 1)."""
    if not (isinstance(expected, int) and not isinstance(expected, bool) and expected >= 1):
        raise BadRequestError("the expected cohort must be a positive integer")
    if population < 1:
        raise ConflictError("no active devices to draw a cohort from")
    return min(1.0, expected / population)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _deadlines(raw: object) -> tuple[float, float, float, float]:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        raw = [raw] * 4
    if not isinstance(raw, (list, tuple)) or len(raw) != 4 or not all(_finite(v) and v > 0 for v in raw):
        raise BadRequestError("deadlines must be four positive numbers of seconds (one per stage)")
    return tuple(float(v) for v in raw)  # type: ignore[return-value]
