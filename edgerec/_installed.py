"""The model ``EdgeRec`` serves, and what ``recommend()`` reads from it besides the scores.

``Installed`` holds everything a recommendation reads about the model, swapped as one
reference; ``known_history`` is a user's stored events the model knows, as its inputs;
``candidate_offset`` is the score offset of a candidate filter (cached per installed model);
``item_ids`` checks the item-id collections ``recommend()`` is given.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ._exceptions import ConfigError
from .bundle import Bundle
from .events import signal_code
from .scoring import TopKScorer
from .store import InteractionStore

__all__ = ["Installed", "candidate_offset", "item_ids", "known_history"]

_OFFSET_CACHE = 8  # candidate filters an app typically cycles through (in stock, category, ...)


@dataclass(frozen=True, eq=False)
class Installed:
    """Everything a recommendation reads about the model, swapped as one reference so a request
    running during an install sees the old model or the new one, never a mix."""

    bundle: Bundle
    scorer: TopKScorer  # a Scorer, or a baseline a benchmark installs (float32, numpy)
    adapter: np.ndarray | None
    offsets: OrderedDict = field(default_factory=OrderedDict)  # candidate filter -> score offset
    warned: set[str] = field(default_factory=set)  # unknown items logged (UnknownItemWarning)

    @property
    def index(self) -> dict[str, int]:
        return self.bundle.catalogue.index


def candidate_offset(m: Installed, candidates: frozenset[str] | None,
                     lock: threading.Lock) -> np.ndarray | None:
    """-inf for every item outside ``candidates`` (cached: apps reuse a few filters); ``lock``
    guards the cache."""
    if candidates is None:
        return None
    key = candidates
    with lock:
        cached = m.offsets.get(key)
        if cached is not None:
            m.offsets.move_to_end(key)
            return cached
    cached = np.full((1, len(m.index)), -np.inf, np.float32)
    cached[0, [m.index[c] for c in key if c in m.index]] = 0.0
    with lock:
        m.offsets[key] = cached
        if len(m.offsets) > _OFFSET_CACHE:
            m.offsets.popitem(last=False)
    return cached


def known_history(store: InteractionStore, m: Installed,
                  user: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Known items of the user's non-impression events, most recent first."""
    rows: list[int] = []
    signals: list[int] = []
    events: list[str] = []
    index = m.index
    for item, event, value in store.profile(user):
        row = index.get(item)
        if row is not None:
            rows.append(row)
            signals.append(signal_code(event, value))
            events.append(event)
    return np.array(rows, np.int64), np.array(signals, np.int64), events


def item_ids(name: str, values: object) -> frozenset[str]:
    """A collection of item ids as text; one str is not a collection (it would be read per
    character), nor is a number."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ConfigError(f"{name} must be a collection of item ids (list, set, tuple), got "
                          f"{type(values).__name__}")
    out = set()
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ConfigError(f"{name} must hold item ids (str or int), got {type(value).__name__}")
        out.add(str(value))
    return frozenset(out)
