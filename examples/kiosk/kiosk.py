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
        self._rec = rec
        self.config = config
        self.filters = CatalogueFilters(rec.bundle.catalogue, stock_share=config.stock_share)
        self.sessions = Sessions(config.idle_timeout, clock=clock, new_id=new_id)
        self.federation = federation  # the sync worker's status (None: no server configured)
        self._clock = clock
        self._renders = itertools.count(1)
        self._timings: deque[float] = deque(maxlen=500)
        self._lock = threading.Lock()
        self.events = 0
        self.forgotten = 0
        self.last_input = clock()

    # -- the installed model --------------------------------------------------------------------
    @property
    def rec(self) -> EdgeRec:
        """The ``EdgeRec`` serving now. A request reads it once and keeps using that object, so
        a swap (a new bundle installed by the sync worker) never mixes two models in one answer."""
        return self._rec

    def swap(self, rec: EdgeRec) -> None:
        """Serve ``rec`` from the next request on (it shares this kiosk's store).

        One reference assignment: requests in flight finish on the old object, which stays whole
        (its bundle and scorer are in memory), and the next ones see the new one. Filters are
        rebuilt first only if the catalogue itself changed (federated rounds keep it)."""
        if rec.bundle.catalogue.content_hash != self._rec.bundle.catalogue.content_hash:
            self.filters = CatalogueFilters(rec.bundle.catalogue, stock_share=self.config.stock_share)
        self._rec = rec

    # -- sessions -------------------------------------------------------------------------------
    @property
    def holds_sessions(self) -> bool:
        """Ended sessions wait for a federated round instead of being erased at once."""
        return self.config.forget_sessions and self.config.federation is not None

    def forget_orphans(self) -> int:
        """Erase sessions a previous run left behind (a crash or restart ends them unseen).

        With a coordinating server they are not orphans but ended sessions still waiting for a
        round: the sync worker erases them after one, or at the retention bound."""
        if not self.config.forget_sessions or self.holds_sessions:
            return 0
        return self.erase(self.ended_sessions())

    def end(self, ended: list[str]) -> int:
        """Sessions that ended: erase their events now, unless the kiosk keeps them (``--keep-
        sessions``) or holds them for the next federated round. Returns rows erased."""
        if not self.config.forget_sessions or self.holds_sessions:
            return 0
        return self.erase(ended)

    def erase(self, ids: list[str]) -> int:
        """``rec.forget`` each session id; returns the events erased."""
        rec = self.rec
        erased = sum(rec.forget(sid) for sid in ids)
        with self._lock:
            self.forgotten += erased
        return erased

    def ended_sessions(self) -> list[str]:
        """Session ids with events in the store that are no longer live (ended, or left by an
        earlier run)."""
        live = self.sessions.live_ids()
        return [u for u in self.rec.store.users() if u.startswith(PREFIX) and u not in live]

    def idle_for(self) -> float:
        """Seconds since the last visitor input (a page, an action or a reset)."""
        return self._clock() - self.last_input

    # -- visitor actions ------------------------------------------------------------------------
    def act(self, session: str, item: str, action: str) -> str:
        """Log ``action`` ("click" or "dismiss") on ``item``; returns the item's title."""
        rec = self.rec
        row = rec.bundle.catalogue.index.get(item)
        if row is None:
            raise UnknownItem(item)
        rec.log(session, item, ACTIONS[action])
        with self._lock:
            self.events += 1
        self.last_input = self._clock()
        return rec.bundle.catalogue.title(row)

    def cards(self, session: str, filters: Filters, rec: EdgeRec | None = None) -> list[Card]:
        """The grid for ``session`` now: ``k`` recommendations within the filters' candidates."""
        rec = rec or self.rec
        catalogue_filters = self.filters
        recs = rec.recommend(session, self.config.k, candidates=catalogue_filters.candidates(filters))
        stock = catalogue_filters.stock
        return [Card(r.item, r.title, r.reason, r.item in stock) for r in recs]

    def view(self, visit: Visit, filters: Filters, notice: str = "") -> dict[str, Any]:
        """Everything the page templates need for one render."""
        rec = self.rec  # one model for the whole render, even if a swap happens meanwhile
        self.last_input = self._clock()
        return {
            "cards": self.cards(visit.id, filters, rec),
            "filters": filters,
            "fields": filters.query(),
            "genres": self.filters.genres,
            "visitor": visit.number,
            "notice": notice,
            "render": next(self._renders),
            "model_version": rec.model_version,
            "idle_ms": int(self.config.idle_timeout * 1000),
        }

    def timed(self, seconds: float) -> None:
        """Record the server time of one action (log + recommend + render), for the operator."""
        with self._lock:
            self._timings.append(seconds)

    # -- operator -------------------------------------------------------------------------------
    def operator(self) -> OperatorView:
        """The figures the operator page shows."""
        rec = self.rec
        bundle = rec.bundle
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
            stored_events=rec.store.count(),
            live_sessions=self.sessions.live,
            visitors=self.sessions.started,
            ended_sessions=self.sessions.ended,
            events_this_run=self.events,
            forgotten_events=self.forgotten,
            forget_sessions=self.config.forget_sessions,
            hold_sessions=self.holds_sessions,
            idle_timeout=self.config.idle_timeout,
            action_ms_p50=p50,
            action_ms_p95=p95,
            actions_timed=len(times),
            federation=self.federation(),
        )
