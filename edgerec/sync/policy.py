"""The app's bounds on a round: what a device accepts from a server's announcement.

A lying server may announce anything. A device that believed a huge ``min_survivors`` would
add almost no noise while its ledger charged the full epsilon; one that believed a low
threshold would let the server unmask small sums. So the device checks the announcement
against bounds the app chose (:class:`RoundPolicy`) before it trains or sends anything, and
refuses the round otherwise: :class:`RoundRefusedError`, which the sync turns into the status
``round_refused`` and a ``refusal`` row on the privacy ledger.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .._exceptions import ConfigError, RoundRefusedError
from ..model.params import Params, federated_mask
from ..secagg import SecAggConfig, min_threshold
from .messages import RoundAnnouncement

__all__ = ["RoundPolicy", "RoundRefusedError", "federated_entries"]

_MAX_COHORT = 100_000


@dataclass(frozen=True)
class RoundPolicy:
    """Bounds on the rounds this device takes part in (secure defaults; apps may tighten them).

    Attributes:
        colluders: devices assumed to share everything with a lying server (``c``). The device
            uses the larger of this and the announced figure, so its noise and the threshold it
            accepts cover them.
        min_fraction: the threshold floor: ``t`` must exceed this share of a neighbourhood
            (2/3: the active-adversary setting of Bonawitz et al. 2017).
        min_noise_multiplier, max_noise_multiplier: the noise multiplier ``z`` the app accepts
            (0 allows rounds without differential privacy, where only secure aggregation and
            clipping protect the delta).
        max_clip: the largest clip bound ``C`` the app accepts.
        min_participants, max_participants: the cohort sizes the app finds plausible.
    """

    colluders: int = 0
    min_fraction: Fraction = Fraction(2, 3)
    min_noise_multiplier: float = 0.0
    max_noise_multiplier: float = 1000.0
    max_clip: float = 100.0
    min_participants: int = 3
    max_participants: int = _MAX_COHORT

    def __post_init__(self) -> None:
        if isinstance(self.colluders, bool) or not isinstance(self.colluders, int) or self.colluders < 0:
            raise ConfigError("colluders must be an int >= 0")
        if not 0 <= Fraction(self.min_fraction) < 1:
            raise ConfigError("min_fraction must be in [0, 1)")
        if not 0 <= self.min_noise_multiplier <= self.max_noise_multiplier < math.inf:
            raise ConfigError("need 0 <= min_noise_multiplier <= max_noise_multiplier < inf")
        if not 0 < self.max_clip < math.inf:
            raise ConfigError("max_clip must be a positive finite number")
        if not 3 <= self.min_participants <= self.max_participants <= _MAX_COHORT:
            raise ConfigError(f"need 3 <= min_participants <= max_participants <= {_MAX_COHORT}")

    def secagg_config(self, ann: RoundAnnouncement) -> SecAggConfig:
        """The secure-aggregation parameters this device holds the round to."""
        return SecAggConfig(ann.round_id, ann.vector_length, ann.min_participants, ann.graph,
                            ann.degree, ann.threshold, colluders=self.colluders_for(ann),
                            min_fraction=Fraction(self.min_fraction))

    def colluders_for(self, ann: RoundAnnouncement) -> int:
        return max(self.colluders, int(ann.colluders))

    def check(self, ann: RoundAnnouncement) -> None:
        """Refuse (:class:`RoundRefusedError`, saying why) an announcement outside the bounds."""
        reason = self.refusal(ann)
        if reason is not None:
            raise RoundRefusedError(f"round {ann.round_id} refused: {reason}")

    def refusal(self, ann: RoundAnnouncement) -> str | None:
        """Why ``ann`` is refused, or None."""
        for check in (self._cohort, self._threshold, self._noise):
            reason = check(ann)
            if reason is not None:
                return reason
        return None

    def _cohort(self, ann: RoundAnnouncement) -> str | None:
        if not self.min_participants <= ann.min_participants <= ann.max_participants <= self.max_participants:
            return (f"cohort of {ann.min_participants}..{ann.max_participants} devices; this app "
                    f"accepts {self.min_participants}..{self.max_participants}")
        if not 0 < ann.sampling_rate <= 1:
            return f"sampling rate {ann.sampling_rate} is not a probability"
        return None

    def _threshold(self, ann: RoundAnnouncement) -> str | None:
        c = self.colluders_for(ann)
        try:
            config = self.secagg_config(ann)
        except ConfigError as exc:
            return f"unusable secure-aggregation parameters: {exc}"
        # The largest cohort has the largest neighbourhoods and so needs the largest threshold.
        degree = config.degree_for(ann.max_participants)
        floor = min_threshold(degree, c, Fraction(self.min_fraction))
        if not floor <= ann.threshold <= config.degree_for(ann.min_participants):
            return (f"threshold {ann.threshold} outside {floor}..{config.degree_for(ann.min_participants)} "
                    f"(neighbourhoods of up to {degree + 1}, {c} colluders)")
        if not 1 <= ann.min_survivors <= ann.threshold - c:
            return (f"noise calibrated to {ann.min_survivors} survivors, but only "
                    f"t - c = {ann.threshold - c} honest devices are sure to be in any sum")
        return None

    def _noise(self, ann: RoundAnnouncement) -> str | None:
        z, clip = ann.noise_multiplier, ann.clip
        if not (math.isfinite(z) and self.min_noise_multiplier <= z <= self.max_noise_multiplier):
            return (f"noise multiplier {z} outside this app's "
                    f"{self.min_noise_multiplier}..{self.max_noise_multiplier}")
        if not (math.isfinite(clip) and 0 < clip <= self.max_clip):
            return f"clip bound {clip} outside this app's (0, {self.max_clip}]"
        return None


def federated_entries(ann: RoundAnnouncement, params: Params, names: tuple[str, ...]) -> np.ndarray:
    """Which entries of this device's flattened delta the round takes: all but the weights
    ``ann.frozen`` names (a boolean mask over ``flatten(params, names)``).

    The device's model is the round's base (signed; ``base_model_version`` is checked first),
    so the device works the count out itself and holds the announcement to it. Refused
    (:class:`RoundRefusedError`): frozen names its model does not have, a round that freezes
    every weight, and a ``vector_length`` other than the count of the weights left: a frozen
    list changed on the way (or by the server) without the length matching it is caught here,
    before the device trains or sends anything.
    """
    try:
        mask = federated_mask(params, names, ann.frozen)
    except ConfigError as exc:
        raise RoundRefusedError(f"round {ann.round_id} refused: it freezes weights this device's "
                                f"model does not have ({exc})") from None
    federated = int(mask.sum())
    if federated == 0:
        raise RoundRefusedError(f"round {ann.round_id} refused: it freezes every weight")
    if federated != ann.vector_length:
        raise RoundRefusedError(
            f"round {ann.round_id} refused: it announces {ann.vector_length} federated weights, but "
            f"model {ann.base_model_version} with {list(ann.frozen) or 'nothing'} frozen has {federated}")
    return mask
