"""``round open --epsilon E --planned-rounds R [--delta D]``: the operator names a privacy
target and the noise multiplier is chosen for the draw (the audit's own release and accountant).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

from ._exceptions import BadRequestError
from .config import ServerConfig

__all__ = ["EpsilonTarget", "epsilon_target"]


@dataclass(frozen=True)
class EpsilonTarget:
    """``round open --epsilon E --planned-rounds R [--delta D]``: z chosen for the draw."""

    epsilon: float
    rounds: int
    delta: float
    accountant: str

    def noise_for(self, population: int, cohort: int) -> float:
        """The least z whose R rounds drawing ``cohort`` of ``population`` the audit accounts
        at <= E (``audit.noise_for_target``: the audit's own release and accountant)."""
        from .audit import noise_for_target

        return noise_for_target(self.epsilon, population, cohort, self.rounds, self.delta,
                                self.accountant)

    def describe(self, population: int, cohort: int, z: float) -> str:
        """The line ``round open`` prints about the z it chose."""
        drawn = f"all {population}" if cohort >= population else f"{cohort} of {population}"
        return (f"epsilon {self.epsilon:g} over {self.rounds} planned rounds of {drawn} devices "
                f"(delta {self.delta:g}): noise multiplier z = {z:.4g}")

    def to_dict(self) -> dict[str, float | int]:
        """What ``round open`` adds to its JSON."""
        return {"target_epsilon": self.epsilon, "planned_rounds": self.rounds, "delta": self.delta}


def epsilon_target(args: argparse.Namespace, config: ServerConfig) -> EpsilonTarget | None:
    """What ``--epsilon`` asks for (None: the operator set z with ``--noise``, or no noise)."""
    if args.epsilon is None:
        if args.planned_rounds is not None or args.delta is not None:
            raise BadRequestError("--planned-rounds and --delta go with --epsilon")
        return None
    if args.planned_rounds is None:
        raise BadRequestError("--epsilon needs --planned-rounds R: the rounds the budget is spread over")
    if not (math.isfinite(args.epsilon) and args.epsilon > 0):
        raise BadRequestError("--epsilon must be a positive number")
    if args.planned_rounds < 1:
        raise BadRequestError("--planned-rounds must be at least 1")
    delta = config.dp_delta if args.delta is None else args.delta
    if not 0 < delta < 1:
        raise BadRequestError("--delta must be in (0, 1)")
    if delta > config.dp_delta:
        print(f"warning: the audit reports epsilon at delta {config.dp_delta:g}; calibrated at "
              f"delta {delta:g}, its figure can exceed {args.epsilon:g}", file=sys.stderr)
    return EpsilonTarget(float(args.epsilon), int(args.planned_rounds), float(delta),
                        config.accountant)
