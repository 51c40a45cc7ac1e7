"""What an evaluation run will do, said before it starts, and how long it will take, estimated
from each method's first fit (pure: seconds come in with ``FitRecord``s)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ._method import Method
from .results import FitRecord

__all__ = ["EvalPlan", "MethodPlan"]


@dataclass(frozen=True)
class MethodPlan:
    """One method's share of a run: its candidates, its final fits and their work.

    Work is counted in the method's ``cost_unit`` (edgerec: epochs of training; others: fits).
    The final fits' work depends on the candidate validation chooses: ``final_work`` is the
    least and the most it can be.
    """

    name: str
    candidates: int
    final_fits: int
    unit: str
    tune_work: float
    final_work: tuple[float, float]
    first_work: float  # what the first fit measures: the first candidate's, or the whole tuning's
    prepared: bool = False  # the tuning's training is done up front, timed in the first fit
    follows: str | None = None  # takes that method's chosen candidate

    @classmethod
    def of(cls, method: Method, seeds: int) -> "MethodPlan":
        """The plan of ``method`` run over ``seeds`` seeds."""
        final_fits = seeds if method.seeded else 1
        each = [method.cost((hparams,)) for hparams in method.grid]
        final = (min(each) * final_fits, max(each) * final_fits)
        if method.follows is not None:  # one candidate: the one the followed method chooses
            return cls(method.name, 1, final_fits, method.cost_unit, max(each), final, each[0],
                       follows=method.follows)
        # A method whose work is training (not counted in fits) and that trains a stage up front
        # (``Method.prepare``) times the whole tuning's training in its first fit.
        prepared = method.prepare is not None and method.cost_unit != "fits"
        first = method.cost(method.grid) if prepared else each[0]
        return cls(method.name, len(method.grid), final_fits, method.cost_unit,
                   method.cost(method.grid), final, first, prepared)

    def describe(self) -> str:
        """E.g. ``edgerec: 3 candidates, then 5 final fits (32 + 40-80 epochs)``."""
        final = f"{self.final_fits} final fit{'s' if self.final_fits != 1 else ''}"
        text = (f"{self.name}: {self.follows}'s chosen candidate, then {final}" if self.follows else
                f"{self.name}: {self.candidates} candidate{'s' if self.candidates != 1 else ''}, then {final}")
        if self.unit != "fits":
            low, high = self.final_work
            span = f"{low:g}" if low == high else f"{low:g}-{high:g}"
            text += f" ({self.tune_work:g} + {span} {self.unit})"
        return text

    def estimate(self, first: FitRecord) -> tuple[float, float]:
        """Seconds the whole method will take (least, most), from its first fit and scoring."""
        per_unit = first.fit_seconds / self.first_work if self.first_work > 0 else 0.0
        scoring = first.score_seconds * (self.candidates + self.final_fits)
        low, high = self.final_work
        return (per_unit * (self.tune_work + low) + scoring,
                per_unit * (self.tune_work + high) + scoring)


@dataclass(frozen=True)
class EvalPlan:
    """Every method's plan for a run over ``seeds`` seeds."""

    seeds: int
    methods: tuple[MethodPlan, ...]

    @classmethod
    def of(cls, methods: Sequence[Method], seeds: int) -> "EvalPlan":
        return cls(seeds, tuple(MethodPlan.of(m, seeds) for m in methods))

    def describe(self) -> list[str]:
        """Lines saying what will run: seeds, methods, candidates and final fits."""
        fits = sum(m.candidates + m.final_fits for m in self.methods)
        head = (f"{self.seeds} seed{'s' if self.seeds != 1 else ''}, {len(self.methods)} methods, "
                f"{fits} fits in all; each method is tuned on the validation item with the first seed, "
                f"then refit once per seed (deterministic methods once)")
        return [head, *(f"  {m.describe()}" for m in self.methods)]

    def estimate_line(self, first: FitRecord) -> str | None:
        """After a method's first fit: how long that method will take in all (None for the
        methods this plan does not know)."""
        plan = next((m for m in self.methods if m.name == first.method), None)
        if plan is None:
            return None
        low, high = plan.estimate(first)
        span = _duration(high) if _duration(low) == _duration(high) else f"{_duration(low)} to {_duration(high)}"
        work = f" ({plan.first_work:g} {plan.unit})" if plan.unit != "fits" else ""
        what = "tuning's training" if plan.prepared else "first fit"
        return (f"{plan.name}: {what}{work} took {first.fit_seconds:.1f} s + "
                f"{first.score_seconds:.1f} s scoring; estimate for all of {plan.name}: {span}")


def _duration(seconds: float) -> str:
    """Rounded for a person: '40 s', '3 min', '1.2 h'."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
