"""The kiosk's behaviour, without HTTP: sessions, events, the grid to show, the operator's figures.

Every visitor action is one ``rec.log()`` followed by one ``rec.recommend()``: the model reads the
session's history inside the scoring path, so the next grid reflects the action with no retraining.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from edgerec import EdgeRec

from .config import KioskConfig
from .filters import CatalogueFilters, Filters
from .operator_view import FederationView, OperatorView
from .sessions import PREFIX, Sessions, Visit, new_session_id

__all__ = ["Card", "Kiosk", "UnknownItem"]

ACTIONS = {"click": "click", "dismiss": "dismiss"}


class UnknownItem(LookupError):
    """An item id the installed catalogue does not have."""


@dataclass(frozen=True)
class Card:
    """One tile of the grid."""

    item: str
    title: str
    reason: str
    in_stock: bool


class Kiosk:
    """An ``EdgeRec`` plus the anonymous sessions and filters of one kiosk screen."""

    def __init__(self, rec: EdgeRec, config: KioskConfig, *,
                 clock: Callable[[], float] = time.monotonic,
                 new_id: Callable[[], str] = new_session_id,
                 federation: Callable[[], FederationView | None] = lambda: None):
        self.rec = rec
        self.config = config
        self.filters = CatalogueFilters(rec.bundle.catalogue, stock_share=config.stock_share)
        self.sessions = Sessions(config.idle_timeout, clock=clock, new_id=new_id)
        self.federation = federation  # issue 7 part 2 plugs the sync client's status in here
        self._renders = itertools.count(1)
        self._timings: deque[float] = deque(maxlen=500)
        self._lock = threading.Lock()
        self.events = 0
        self.forgotten = 0

    # -- sessions -------------------------------------------------------------------------------
    def forget_orphans(self) -> int:
        """Erase sessions a previous run left behind (a crash or restart ends them unseen)."""
        if not self.config.forget_sessions:
            return 0
        return self.end([u for u in self.rec.store.users() if u.startswith(PREFIX)])

    def end(self, ended: list[str]) -> int:
        """Sessions that ended: erase their events unless the kiosk keeps them. Returns rows erased."""
        if not self.config.forget_sessions:
            return 0
        erased = sum(self.rec.forget(sid) for sid in ended)
        with self._lock:
            self.forgotten += erased
        return erased

    # -- visitor actions ------------------------------------------------------------------------
    def act(self, session: str, item: str, action: str) -> str:
        """Log ``action`` ("click" or "dismiss") on ``item``; returns the item's title."""
        row = self.rec.bundle.catalogue.index.get(item)
        if row is None:
            raise UnknownItem(item)
        self.rec.log(session, item, ACTIONS[action])
        with self._lock:
            self.events += 1
        return self.rec.bundle.catalogue.title(row)

    def cards(self, session: str, filters: Filters) -> list[Card]:
        """The grid for ``session`` now: ``k`` recommendations within the filters' candidates."""
        recs = self.rec.recommend(session, self.config.k, candidates=self.filters.candidates(filters))
        stock = self.filters.stock
        return [Card(r.item, r.title, r.reason, r.item in stock) for r in recs]

    def view(self, visit: Visit, filters: Filters, notice: str = "") -> dict[str, Any]:
        """Everything the page templates need for one render."""
        return {
            "cards": self.cards(visit.id, filters),
            "filters": filters,
            "fields": filters.query(),
            "genres": self.filters.genres,
            "visitor": visit.number,
            "notice": notice,
            "render": next(self._renders),
            "model_version": self.rec.model_version,
            "idle_ms": int(self.config.idle_timeout * 1000),
        }

    def timed(self, seconds: float) -> None:
        """Record the server time of one action (log + recommend + render), for the operator."""
        with self._lock:
            self._timings.append(seconds)

    # -- operator -------------------------------------------------------------------------------
    def operator(self) -> OperatorView:
        """The figures the operator page shows."""
        bundle = self.rec.bundle
        with self._lock:
            times = sorted(self._timings)
        p50 = statistics.median(times) * 1e3 if times else None
        p95 = times[min(len(times) - 1, int(0.95 * len(times)))] * 1e3 if times else None
        return OperatorView(
            model_version=bundle.version,
            parent_version=bundle.manifest.parent_version,
            dataset=str(bundle.manifest.hyperparameters.get("dataset", "?")),
            created_at=bundle.manifest.created_at,
            n_items=len(bundle.catalogue),
            in_stock=len(self.filters.stock),
            bundle_path=str(bundle.path),
            db_path=str(self.config.db),
            stored_events=self.rec.store.count(),
            live_sessions=self.sessions.live,
            visitors=self.sessions.started,
            ended_sessions=self.sessions.ended,
            events_this_run=self.events,
            forgotten_events=self.forgotten,
            forget_sessions=self.config.forget_sessions,
            idle_timeout=self.config.idle_timeout,
            action_ms_p50=p50,
            action_ms_p95=p95,
            actions_timed=len(times),
            federation=self.federation(),
        )
