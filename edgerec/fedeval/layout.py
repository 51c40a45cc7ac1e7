"""The evaluation vector: a fixed, versioned layout of named, bounded slots (pure).

One device's contribution to an evaluation round is a short float vector, never its events.
Every slot has a bound, so the vector's L2 norm has a ceiling known from the config alone:
that ceiling is the sensitivity the round's distributed noise is calibrated to (the ``clip`` of
``edgerec.privacy.privatize``), and clipping to it is a no-op for an honest device.

Layout version 1, for models ``M = (m0, m1, ...)`` (``m0`` the installed model, the others
candidates) and cut-off ``K`` (HR@K, NDCG@K)::

    loo.devices                 1 if the device ranked >= 1 held-out event, else 0     [0, 1]
    <m>.hr@K, <m>.hr@K.sq       the device's mean HR@K over its held-out events, and
                                its square (0 without held-out events)                 [0, 1]
    <m>.ndcg@K, <m>.ndcg@K.sq   the same for NDCG@K                                    [0, 1]
    <m>-<m0>.hr@K.sq            (hr(m) - hr(m0))^2, for each candidate m               [0, 1]
    <m>-<m0>.ndcg@K.sq          (ndcg(m) - ndcg(m0))^2                                 [0, 1]
    live.devices                1 if the device counted >= 1 impression, else 0       [0, 1]
    live.<c>, live.<c>.sq       for c in impressions, clicks, purchases, dismissals:
                                count / I (capped at I impressions), and its square    [0, 1]
    live.impressions*<c>        (impressions / I) * (c / I) for clicks, purchases,
                                dismissals                                             [0, 1]

The squares and cross products are there so the server can estimate the sampling variance of
each mean from the sum alone (``estimation.py``); they are bounded like the rest.

Lean layouts (``EvalConfig`` options, each named in the key only when it differs from the
default, so version-1 keys are unchanged): ``metrics=("ndcg",)`` keeps NDCG@K alone (no HR@K
slots), ``squares=False`` drops the per-model ``.sq`` slots (the paired-difference ``.sq``
slots stay: a rollout decision needs their spread), ``live=False`` drops every ``live.`` slot.
Each dropped slot lowers the L2 bound, which is what the round's noise is scaled to: the lean
layout of the installed model alone (``loo.devices``, ``installed.ndcg@K``) has bound
``sqrt(2) ~= 1.41`` against ``sqrt(17)``, so the same noise multiplier z puts 2.9x less noise
on its NDCG@K. Without the ``.sq`` slots the server bounds the sampling variance instead of
estimating it (``estimation.py``).

L2 bound: every slot lies in ``[0, 1]``, so ``||v||_2 <= sqrt(number of slots)``:
``sqrt(1 + 4|M| + 2(|M| - 1) + 12)``, i.e. ``sqrt(23) ~= 4.80`` for installed + candidate and
``sqrt(17) ~= 4.12`` for the installed model alone. ``encode`` clips each slot into its range
(and refuses NaN), so the bound holds for any input, hostile or not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from collections.abc import Mapping

import numpy as np

from .._exceptions import ConfigError

__all__ = ["LAYOUT_VERSION", "LIVE_COUNTS", "METRICS", "EvalConfig", "EvalLayout", "Slot"]

LAYOUT_VERSION = 1

#: The live-feedback counts, in slot order. Clicks, purchases and dismissals count impressions
#: that received one (so each is at most the impressions); see ``device.py`` for attribution.
LIVE_COUNTS = ("impressions", "clicks", "purchases", "dismissals")
#: The ranking metrics a layout may carry, in slot order.
METRICS = ("hr", "ndcg")


def _model_name(name: object) -> str:
    if not isinstance(name, str) or not name or not name.isidentifier():
        raise ConfigError(f"model slot names must be identifiers, got {name!r}")
    if name in ("loo", "live"):
        raise ConfigError(f"model slot name {name!r} is reserved")
    return name


def _int_in(value: object, low: int, high: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be an int within {low}..{high}, got {value!r}")
    return value


@dataclass(frozen=True)
class EvalConfig:
    """What a federated evaluation round measures; device and server must use the same one.

    Attributes:
        models: the model slots, installed first (``("installed", "candidate")``, or
            ``("installed",)`` when no candidate is evaluated). Each needs a scoring function
            on the device.
        top_k: the cut-off K of HR@K and NDCG@K.
        max_held_out: at most this many held-out events per device (its most recent ones).
        max_impressions: at most this many impressions per device (its most recent ones in the
            window); counts are divided by it, so each live slot is within [0, 1].
        attribution_s: a click, purchase or dismissal counts for the latest earlier impression
            of the same item by the same user only if it came at most this long after it.
        max_history: the history handed to a scoring function is cut to this many most recent
            events (the model reads at most its own ``history`` of them anyway); bounds work.
        metrics: which of ``("hr", "ndcg")`` the vector carries (in that order).
        squares: whether each model's metric carries its ``.sq`` slot (False: the server bounds
            the sampling variance; see the module docstring).
        live: whether the vector carries the live-feedback slots.
    """

    models: tuple[str, ...] = ("installed", "candidate")
    top_k: int = 10
    max_held_out: int = 5
    max_impressions: int = 100
    attribution_s: float = 86_400.0
    max_history: int = 4096
    metrics: tuple[str, ...] = METRICS
    squares: bool = True
    live: bool = True

    def __post_init__(self) -> None:
        models = self.models
        if not isinstance(models, tuple) or not 1 <= len(models) <= 8:
            raise ConfigError(f"models must be a tuple of 1..8 names, got {models!r}")
        names = tuple(_model_name(m) for m in models)
        if len(set(names)) != len(names):
            raise ConfigError(f"model slot names must be unique, got {models!r}")
        _int_in(self.top_k, 1, 1_000, "top_k")
        _int_in(self.max_held_out, 1, 1_000, "max_held_out")
        _int_in(self.max_impressions, 1, 1_000_000, "max_impressions")
        _int_in(self.max_history, 1, 1_000_000, "max_history")
        if not isinstance(self.metrics, tuple) or not self.metrics or \
                self.metrics != tuple(m for m in METRICS if m in self.metrics):
            raise ConfigError(f"metrics must be a non-empty tuple drawn from {METRICS} in that "
                              f"order, got {self.metrics!r}")
        for flag in ("squares", "live"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        a = self.attribution_s
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not (math.isfinite(a) and a >= 0):
            raise ConfigError(f"attribution_s must be a finite number >= 0, got {a!r}")

    @cached_property
    def layout(self) -> "EvalLayout":
        """The vector layout this config produces."""
        return EvalLayout.of(self)


@dataclass(frozen=True)
class Slot:
    """One named coordinate of the vector and the range ``[low, high]`` it is clipped into."""

    name: str
    low: float = 0.0
    high: float = 1.0


def _metric(model: str, metric: str, k: int) -> str:
    return f"{model}.{metric}@{k}"


@dataclass(frozen=True, eq=False)
class EvalLayout:
    """The slots of the vector, in order, with their bounds (build it with ``EvalLayout.of``).

    ``key`` names the layout exactly (version and every parameter that changes its meaning):
    a round announces it, and a device refuses to contribute under a layout it does not know.
    """

    version: int
    config: EvalConfig
    slots: tuple[Slot, ...]

    @staticmethod
    def of(config: EvalConfig) -> "EvalLayout":
        """The version-1 layout for ``config`` (see the module docstring)."""
        k, models = config.top_k, config.models
        slots = [Slot("loo.devices")]
        for m in models:
            for metric in config.metrics:
                slots.append(Slot(_metric(m, metric, k)))
                if config.squares:
                    slots.append(Slot(_metric(m, metric, k) + ".sq"))
        for m in models[1:]:
            for metric in config.metrics:
                slots.append(Slot(_metric(f"{m}-{models[0]}", metric, k) + ".sq"))
        if not config.live:
            return EvalLayout(LAYOUT_VERSION, config, tuple(slots))
        slots.append(Slot("live.devices"))
        slots += [Slot(f"live.{c}") for c in LIVE_COUNTS]
        slots += [Slot(f"live.{c}.sq") for c in LIVE_COUNTS]
        slots += [Slot(f"live.impressions*{c}") for c in LIVE_COUNTS[1:]]
        return EvalLayout(LAYOUT_VERSION, config, tuple(slots))

    def __len__(self) -> int:
        return len(self.slots)

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.slots)

    @cached_property
    def index(self) -> dict[str, int]:
        """Slot name -> position."""
        return {name: i for i, name in enumerate(self.names)}

    @cached_property
    def l2_bound(self) -> float:
        """The largest L2 norm ``encode`` can return: ``sqrt(sum max(|low|, |high|)^2)``.

        The sensitivity of the sum under the zero-out neighbouring relation; pass it as the
        round's clip (and to ``DistributedNoise``) so clipping never changes an honest vector.
        """
        return math.sqrt(sum(max(abs(s.low), abs(s.high)) ** 2 for s in self.slots))

    @cached_property
    def key(self) -> str:
        """e.g. ``"edgerec.fedeval/1;models=installed,candidate;k=10;held_out=5;impressions=100;
        attribution_s=86400;history=4096"``, then ``;metrics=ndcg``, ``;squares=0`` and
        ``;live=0`` for the lean options that differ from the default."""
        c = self.config
        lean = ((f";metrics={','.join(c.metrics)}" if c.metrics != METRICS else "")
                + ("" if c.squares else ";squares=0") + ("" if c.live else ";live=0"))
        return (f"edgerec.fedeval/{self.version};models={','.join(c.models)};k={c.top_k};"
                f"held_out={c.max_held_out};impressions={c.max_impressions};"
                f"attribution_s={c.attribution_s:g};history={c.max_history}{lean}")

    def metric_name(self, model: str, metric: str) -> str:
        """Slot name of a model's mean metric, e.g. ``installed.hr@10`` (``metric`` hr or ndcg)."""
        return _metric(model, metric, self.config.top_k)

    def encode(self, values: Mapping[str, float]) -> np.ndarray:
        """The float64 vector (read-only) of named slot values, each clipped into its range.

        Every slot must be given, and nothing else. Clipping each slot (rather than trusting the
        caller) keeps ``||v|| <= l2_bound`` whatever the values: negative counts, huge ones.

        Raises:
            ConfigError: a missing or unknown slot, or a value that is not a finite number.
        """
        if not isinstance(values, Mapping):
            raise ConfigError(f"values must be a mapping of slot names, got {type(values).__name__}")
        unknown = set(values) - set(self.index)
        missing = set(self.index) - set(values)
        if unknown or missing:
            raise ConfigError(f"values do not fit layout {self.key}: unknown {sorted(map(str, unknown))}, "
                              f"missing {sorted(missing)}")
        out = np.empty(len(self.slots), np.float64)
        for i, slot in enumerate(self.slots):
            raw = values[slot.name]
            if isinstance(raw, bool) or not isinstance(raw, (int, float, np.integer, np.floating)):
                raise ConfigError(f"slot {slot.name} must be a number, got {type(raw).__name__}")
            try:
                value = float(raw)
            except OverflowError:
                value = math.inf if raw > 0 else -math.inf
            if math.isnan(value):
                raise ConfigError(f"slot {slot.name} is NaN")
            out[i] = min(max(value, slot.low), slot.high)
        out.flags.writeable = False
        return out

    def check(self, vector: np.ndarray, *, name: str = "vector") -> np.ndarray:
        """``vector`` as float64 of this layout's length, finite, or ConfigError."""
        arr = np.asarray(vector, dtype=np.float64) if _numeric(vector) else None
        if arr is None or arr.shape != (len(self.slots),):
            shape = getattr(vector, "shape", type(vector).__name__)
            raise ConfigError(f"{name} must be a float vector of {len(self.slots)} entries, got {shape}")
        if not np.all(np.isfinite(arr)):
            raise ConfigError(f"{name} has NaN or infinite entries")
        return arr

    def decode(self, vector: np.ndarray) -> dict[str, float]:
        """Slot name -> value of one vector or of a sum of vectors (the inverse of ``encode``).

        Raises:
            ConfigError: a vector of another length, or with NaN or infinite entries.
        """
        arr = self.check(vector)
        return {name: float(v) for name, v in zip(self.names, arr)}


def _numeric(vector: object) -> bool:
    try:
        return bool(np.asarray(vector).dtype.kind in "biuf")
    except (TypeError, ValueError):
        return False
