"""One device's evaluation contribution, computed from its own events (pure: no I/O, no clock).

What is measured, for each model slot of the ``EvalConfig`` (installed first, then candidates):

**Leave-one-out on the device's newest events.** Held-out events are the consumption events
(view, click, add_to_cart, purchase, rating: ``CONSUMED_EVENTS``) with
``held_out_after < ts < until``, of an item the catalogue knows, that are the first
consumption or dismissal of that item by that user (an item already consumed or dismissed is
excluded from ``recommend()``, so a repeat could never have been recommended). The device keeps
its most recent ``max_held_out`` of them. ``held_out_after`` is the caller's cut-off: the
timestamp of the newest event any model being evaluated may have trained on (the last local
fine-tuning or training round this device took part in), so no held-out event was trained on.
Each held-out event is ranked LOO-full, as DESIGN.md's protocol: its user's history is every
non-impression event of a known item before it (the scoring path's history, most recent first,
so earlier held-out events are history for later ones); the model ranks ALL items not in that
history; ties and NaN scores count against the held-out item. HR@K and NDCG@K are averaged over
the device's held-out events: a device weighs one, as a user does in the protocol.

**Live feedback on what the installed model showed.** Over the window
``live_since <= ts < until`` (``live_since``: when the installed model was installed), the
device's most recent ``max_impressions`` impressions of known items (impressions the app logs
for what ``recommend()`` showed) are counted; a click, purchase or dismissal of the same item by
the same user counts for the latest impression before it (same timestamp: the impression first)
if it came at most ``attribution_s`` after it. Each impression counts at most once per kind,
so clicks, purchases and dismissals never exceed impressions.

Order: events are sorted by timestamp, ties kept in the order given (the store's insertion
order, as its history reads them). Events at or after ``until`` are ignored entirely.

Hostile inputs give a bounded vector or an ``EdgeRecError``: malformed records
(``InvalidEventError``), scores of the wrong shape or a failing scorer (``ScoringError``), bad
parameters (``ConfigError``). NaN scores rank against the held-out item; unknown items are
skipped; duplicated timestamps keep their given order; millions of events cost time linear in
their number (plus at most ``max_held_out`` scoring calls per model), and every count is capped.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._exceptions import ConfigError, EdgeRecError, InvalidEventError, ScoringError
from ..events import CONSUMED_EVENTS, PAD_SIGNAL, EventType, Interaction, signal_code
from ..types import Catalogue
from .layout import LIVE_COUNTS, EvalConfig, EvalLayout
from .scorers import ScoreFn

__all__ = ["DeviceEval", "device_eval", "device_eval_vector"]

_IMPRESSION = EventType.IMPRESSION.value
_FEEDBACK = {EventType.CLICK.value: 1, EventType.PURCHASE.value: 2, EventType.DISMISS.value: 4}
_EVENTS = frozenset(e.value for e in EventType)


@dataclass(frozen=True, eq=False)
class DeviceEval:
    """A device's evaluation figures before encoding: what its vector says, by name.

    Attributes:
        layout: the layout the figures are for.
        held_out: how many held-out events were ranked (``0..max_held_out``).
        hr, ndcg: per model slot, the mean HR@K and NDCG@K over them (0.0 without any).
        impressions: impressions counted (``0..max_impressions``).
        clicks, purchases, dismissals: of those, how many were clicked, bought, dismissed.

    Raises:
        ConfigError: figures outside their ranges (a negative count, a mean above 1, more
            clicks than impressions, ...): they could not come from ``device_eval``.
    """

    layout: EvalLayout = field(repr=False)
    held_out: int
    hr: tuple[float, ...]
    ndcg: tuple[float, ...]
    impressions: int
    clicks: int
    purchases: int
    dismissals: int

    def __post_init__(self) -> None:
        if not isinstance(self.layout, EvalLayout):
            raise ConfigError(f"layout must be an EvalLayout, got {type(self.layout).__name__}")
        cfg = self.layout.config
        _count(self.held_out, cfg.max_held_out, "held_out")
        for name in ("hr", "ndcg"):
            means = getattr(self, name)
            if not isinstance(means, tuple) or len(means) != len(cfg.models):
                raise ConfigError(f"{name} needs one mean per model slot {cfg.models}, got {means!r}")
            for m in means:
                if not (isinstance(m, float) and 0.0 <= m <= 1.0) or (self.held_out == 0 and m != 0.0):
                    raise ConfigError(f"{name} means must be floats in [0, 1] (0 without held-out "
                                      f"events), got {means!r}")
        _count(self.impressions, cfg.max_impressions, "impressions")
        for name in LIVE_COUNTS[1:]:
            _count(getattr(self, name), self.impressions, name)

    def values(self) -> dict[str, float]:
        """Slot name -> value, every slot of the layout (see ``layout.py`` for the meaning; a
        lean layout takes the subset it names)."""
        lay, models = self.layout, self.layout.config.models
        out = {"loo.devices": 1.0 if self.held_out else 0.0}
        for metric in ("hr", "ndcg"):
            means = getattr(self, metric)
            for m, value in zip(models, means):
                name = lay.metric_name(m, metric)
                out[name], out[name + ".sq"] = value, value * value
            for m, value in zip(models[1:], means[1:]):
                out[lay.metric_name(f"{m}-{models[0]}", metric) + ".sq"] = (value - means[0]) ** 2
        scale = float(lay.config.max_impressions)
        out["live.devices"] = 1.0 if self.impressions else 0.0
        share = {c: getattr(self, c) / scale for c in LIVE_COUNTS}
        for c in LIVE_COUNTS:
            out[f"live.{c}"], out[f"live.{c}.sq"] = share[c], share[c] ** 2
        for c in LIVE_COUNTS[1:]:
            out[f"live.impressions*{c}"] = share["impressions"] * share[c]
        return {name: out[name] for name in lay.names}

    def vector(self) -> np.ndarray:
        """The encoded vector (float64, read-only), ``||v|| <= layout.l2_bound``."""
        return self.layout.encode(self.values())


def _count(value: object, high: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise ConfigError(f"{name} must be an int within 0..{high}, got {value!r}")
    return value


def device_eval_vector(events: Iterable[Interaction | Mapping[str, Any]], *, config: EvalConfig,
                       catalogue: Catalogue, scorers: Mapping[str, ScoreFn], held_out_after: float,
                       live_since: float, until: float) -> np.ndarray:
    """``device_eval(...).vector()``: what the device contributes to the round (float64,
    read-only, every slot in [0, 1], ``||v|| <= config.layout.l2_bound``)."""
    return device_eval(events, config=config, catalogue=catalogue, scorers=scorers,
                       held_out_after=held_out_after, live_since=live_since, until=until).vector()


def device_eval(
    events: Iterable[Interaction | Mapping[str, Any]],
    *,
    config: EvalConfig,
    catalogue: Catalogue,
    scorers: Mapping[str, ScoreFn],
    held_out_after: float,
    live_since: float,
    until: float,
) -> DeviceEval:
    """The device's LOO metrics per model slot and its live feedback (see the module docstring).

    ``events``: the device's events, every user (``Interaction``s or ``export()`` records).
    ``scorers``: one ``ScoreFn`` per model slot of ``config.models`` (``scorer_score_fn`` wraps
    an ONNX ``Scorer``, ``params_score_fn`` the numpy model); all score rows of ``catalogue``.

    Raises:
        InvalidEventError: a malformed event record.
        ScoringError: a scorer failed or returned other than ``[len(catalogue)]`` numbers.
        ConfigError: bad parameters, or scorers that do not match ``config.models``.
    """
    if not isinstance(config, EvalConfig):
        raise ConfigError(f"config must be an EvalConfig, got {type(config).__name__}")
    if not isinstance(catalogue, Catalogue) or len(catalogue) == 0:
        raise ConfigError("catalogue must be a non-empty Catalogue")
    if not isinstance(scorers, Mapping) or set(scorers) != set(config.models):
        got = sorted(scorers) if isinstance(scorers, Mapping) else type(scorers).__name__
        raise ConfigError(f"scorers must map exactly the model slots {config.models}, got {got}")
    cut, since, end = (_finite(v, n) for v, n in ((held_out_after, "held_out_after"),
                                                    (live_since, "live_since"), (until, "until")))
    ev = _Events.parse(events, end)
    held_out, hr, ndcg = _loo(ev, config, catalogue, scorers, cut)
    counts = _live(ev, config, catalogue.index, since)
    return DeviceEval(config.layout, held_out, hr, ndcg, *counts)


def _finite(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class _Events:
    """The events before ``until`` as columns, sorted by (ts, impressions first, given order)."""

    def __init__(self, users: list[str], items: list[str], kinds: list[str], values: list[float],
                 ts: np.ndarray) -> None:
        self.users, self.items, self.kinds, self.values, self.ts = users, items, kinds, values, ts

    @staticmethod
    def parse(events: Iterable[Interaction | Mapping[str, Any]], until: float) -> "_Events":
        if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Iterable):
            raise InvalidEventError(f"events must be an iterable of events, got {type(events).__name__}")
        users: list[str] = []
        items: list[str] = []
        kinds: list[str] = []
        values: list[float] = []
        stamps: list[float] = []
        for number, record in enumerate(events):
            user, item, kind, value, ts = _fields(record, number)
            if ts < until:
                users.append(user)
                items.append(item)
                kinds.append(kind)
                values.append(value)
                stamps.append(ts)
        ts_arr = np.array(stamps, np.float64)
        later = np.array([k != _IMPRESSION for k in kinds], bool)
        order = np.lexsort((np.arange(len(stamps)), later, ts_arr)).tolist()
        return _Events([users[i] for i in order], [items[i] for i in order],
                       [kinds[i] for i in order], [values[i] for i in order], ts_arr[order])


def _fields(record: object, number: int) -> tuple[str, str, str, float, float]:
    if type(record) is Interaction:  # the store's records: the fast path first
        raw = (record.user, record.item, record.event, record.value, record.ts)
    elif type(record) is dict or isinstance(record, (Mapping, Interaction)):
        if isinstance(record, Interaction):
            raw = (record.user, record.item, record.event, record.value, record.ts)
        else:
            try:
                raw = (record["user"], record["item"], record["event"], record.get("value", 1.0),
                       record["ts"])
            except KeyError as exc:
                raise InvalidEventError(f"event {number} has no {exc.args[0]!r}") from None
    else:
        raise InvalidEventError(f"event {number} is a {type(record).__name__}, not an event")
    user, item, kind, value, ts = raw
    if type(user) is not str or type(item) is not str:
        user, item = _id(user, "user", number), _id(item, "item", number)
    if type(kind) is not str:
        kind = str(kind) if isinstance(kind, str) else None
    if kind not in _EVENTS:
        raise InvalidEventError(f"event {number}: unknown event type {raw[2]!r}")
    if type(value) is not float or not math.isfinite(value):
        value = _number(value, "value", number)
    if type(ts) is not float or not math.isfinite(ts) or ts < 0:
        ts = _number(ts, "ts", number)
    return user, item, kind, value, ts


def _id(ident: object, name: str, number: int) -> str:
    if isinstance(ident, bool) or not isinstance(ident, (str, int)):
        raise InvalidEventError(f"event {number}: {name} must be a str or int id")
    return str(ident)


def _number(x: object, name: str, number: int) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise InvalidEventError(f"event {number}: {name} must be a number")
    try:
        f = float(x)
    except OverflowError:
        raise InvalidEventError(f"event {number}: {name} is too large") from None
    if not math.isfinite(f) or (name == "ts" and f < 0):
        raise InvalidEventError(f"event {number}: {name} must be finite (and ts >= 0), got {x!r}")
    return f


def _loo(ev: _Events, config: EvalConfig, catalogue: Catalogue, scorers: Mapping[str, ScoreFn],
         cut: float) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """Rank the most recent held-out events; (count, mean HR@K per model, mean NDCG@K)."""
    index, n_items = catalogue.index, len(catalogue)
    seen: dict[str, set[str]] = {}
    history: dict[str, list[int]] = {}  # per user: positions of non-impression known events
    rows = np.full(len(ev.kinds), -1, np.int64)
    signals = np.full(len(ev.kinds), PAD_SIGNAL, np.int64)
    held: deque[int] = deque(maxlen=config.max_held_out)
    for pos, kind in enumerate(ev.kinds):
        if kind == _IMPRESSION:
            continue
        user, item = ev.users[pos], ev.items[pos]
        mine = seen.setdefault(user, set())
        first = item not in mine
        mine.add(item)
        row = index.get(item)
        if row is None:
            continue
        rows[pos], signals[pos] = row, signal_code(kind, ev.values[pos])
        if first and kind in CONSUMED_EVENTS and ev.ts[pos] > cut:
            held.append(pos)
        history.setdefault(user, []).append(pos)
    k = config.top_k
    hits = np.zeros((len(config.models), len(held)))
    gains = np.zeros_like(hits)
    for j, pos in enumerate(held):
        mine_pos = history[ev.users[pos]]
        before = np.asarray(mine_pos[: bisect_left(mine_pos, pos)], np.int64)[::-1]
        recent = before[: config.max_history]
        exclude = np.unique(rows[before])
        for i, model in enumerate(config.models):
            scores = _score(scorers[model], rows[recent], signals[recent], n_items, model)
            rank = _rank(scores, int(rows[pos]), exclude)
            if rank < k:
                hits[i, j], gains[i, j] = 1.0, 1.0 / math.log2(rank + 2.0)
    if not len(held):
        zero = (0.0,) * len(config.models)
        return 0, zero, zero
    hr = tuple(min(1.0, float(h)) for h in hits.mean(axis=1))
    ndcg = tuple(min(1.0, max(0.0, float(g))) for g in gains.mean(axis=1))
    return len(held), hr, ndcg


def _score(fn: ScoreFn, items: np.ndarray, signals: np.ndarray, n_items: int, model: str) -> np.ndarray:
    try:
        raw = fn(items.copy(), signals.copy())
        scores = np.asarray(raw)
    except EdgeRecError:
        raise
    except Exception as exc:  # a foreign scorer: translate, keep the cause
        raise ScoringError(f"the scorer of model slot {model!r} failed: {exc!r}") from exc
    if scores.shape != (n_items,) or scores.dtype.kind not in "iuf":
        raise ScoringError(f"the scorer of model slot {model!r} returned {scores.dtype} scores of "
                           f"shape {scores.shape}, expected {n_items} numbers")
    return scores.astype(np.float64, copy=False)


def _rank(scores: np.ndarray, target: int, exclude: np.ndarray) -> int:
    """0-based rank of ``target`` among the items not in ``exclude`` (as ``rank_of_target``):
    ties and NaN count against the target."""
    target_score = scores[target]
    with np.errstate(invalid="ignore"):
        beats = scores >= target_score
    beats |= np.isnan(scores)
    if math.isnan(target_score):
        beats[:] = True
    beats[exclude] = False
    beats[target] = False
    return int(np.count_nonzero(beats))


def _live(ev: _Events, config: EvalConfig, index: Mapping[str, int],
          since: float) -> tuple[int, int, int, int]:
    """(impressions, clicked, bought, dismissed) over the window, capped (module docstring)."""
    start = int(np.searchsorted(ev.ts, since, side="left"))
    latest: dict[tuple[str, str], int] = {}
    shown: list[float] = []
    flags: list[int] = []
    window = config.attribution_s
    for pos in range(start, len(ev.kinds)):
        kind, item = ev.kinds[pos], ev.items[pos]
        if item not in index:
            continue
        key = (ev.users[pos], item)
        if kind == _IMPRESSION:
            latest[key] = len(shown)
            shown.append(float(ev.ts[pos]))
            flags.append(0)
        elif kind in _FEEDBACK:
            j = latest.get(key)
            if j is not None and ev.ts[pos] - shown[j] <= window:
                flags[j] |= _FEEDBACK[kind]
    kept = flags[-config.max_impressions:]
    clicked, bought, dismissed = (sum(1 for f in kept if f & bit) for bit in (1, 2, 4))
    return len(kept), clicked, bought, dismissed
