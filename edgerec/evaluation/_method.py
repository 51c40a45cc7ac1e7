"""The interface every method in the evaluation protocol implements: ours and the peers alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from ..types import Sequences

__all__ = ["FittedModel", "Method", "one_per_fit"]


def one_per_fit(configs: Sequence[dict[str, Any]]) -> float:
    """The default cost of fitting ``configs``: one unit per fit."""
    return float(len(configs))


class FittedModel(Protocol):
    """A model fitted on training sequences, able to score every item for some users."""

    def score(self, users: np.ndarray, histories: Sequences) -> np.ndarray:
        """Scores ``[len(users), n_items]``, higher is better.

        ``users`` are user indices; ``histories`` holds every user's fitting sequence (the same
        one the model was fitted on), for methods that compute the user from the history.
        """
        ...


@dataclass(frozen=True)
class Method:
    """A named method with a hyper-parameter grid, tuned on the validation item only.

    ``fit(train, catalogue, seed, **hparams)`` returns a ``FittedModel``.
    """

    name: str
    fit: Callable[..., FittedModel]
    grid: tuple[dict[str, Any], ...] = field(default=({},))
    # Deterministic methods give the same result for every seed; the protocol fits them once.
    seeded: bool = True
    # How much work fitting these configs one after another is (one seed, one training set), in
    # ``cost_unit``s: lets a run estimate its duration from its first fit (``EvalPlan``).
    cost: Callable[[Sequence[dict[str, Any]]], float] = one_per_fit
    cost_unit: str = "fits"
    # Called before a stage's fits with (train, catalogue, [(seed, hparams), ...]): lets a method
    # do a stage's training up front (in parallel); its time counts in the stage's first fit.
    prepare: Callable[[Sequences, Any, Sequence[tuple[int, dict[str, Any]]]], None] | None = None
    # The name of a method run before this one whose chosen config this one uses instead of
    # choosing from its own grid (edgerec-int8 is edgerec's chosen model, quantized: their
    # difference is then the quantization's alone). Still scored on validation, once.
    follows: str | None = None
