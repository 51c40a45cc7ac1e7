"""The kiosk's part in federated learning: a background thread that calls ``rec.sync()``.

Nothing here runs in the request path. Every ``interval`` seconds the worker:

1. opens a *worker* ``EdgeRec`` on the kiosk's own store and installed bundle, and calls
   ``rec.sync(server, ...)`` on it. The SDK enrols once, installs a newer signed bundle into the
   kiosk's bundle folder (atomically) and joins an open round when the conditions allow;
2. erases the ended sessions a completed round has just used, and those older than the
   retention bound (see "Sessions" below);
3. if the model, or the device state the model reads (the personal adapter), changed, hands the
   kiosk a fresh ``EdgeRec`` built from that bundle with ``kiosk.swap``.

Why a separate ``EdgeRec`` for the sync: ``EdgeRec._install`` replaces the bundle, the scorer and
the adapter one attribute after another, so a request reading the serving object during the
install could mix two models. Installing on an object no request reads, then swapping one
reference, keeps each answer on one whole model with no lock in the request path.

Sessions. Federated learning needs the visitors' events, which the kiosk otherwise erases when a
session ends. With a server configured, an ended session is *held*: its events stay (no cookie
can reach them any more) until a round that completed with this kiosk's update has used them,
then they are erased; a session no round uses within ``retention`` seconds is erased anyway.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable

from edgerec import EdgeRec
from edgerec.privacy.ledger import iso_utc
from edgerec.sync import SyncConditions, SyncResult, SyncStatus

from .config import FederationSettings
from .kiosk import Kiosk
from .operator_view import FederationView, SyncRow, ledger_rows

__all__ = ["SyncWorker"]

HISTORY = 20  # syncs kept for the operator page


class SyncWorker:
    """Runs ``rec.sync`` for ``kiosk`` in a daemon thread; ``tick()`` is one sync, for tests.

    ``sync_options`` go to ``rec.sync`` as they are (e.g. ``timeouts=SyncTimeouts(...)``);
    ``wall`` is the wall clock of the ledger and the events (retention compares event timestamps
    with it).
    """

    def __init__(self, kiosk: Kiosk, settings: FederationSettings, *,
                 wall: Callable[[], float] = time.time, sync_options: dict[str, Any] | None = None):
        self.kiosk, self.settings = kiosk, settings
        self._wall = wall
        self._options = dict(sync_options or {})
        self._history: deque[SyncRow] = deque(maxlen=HISTORY)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._syncing = False
        self.rounds_joined = 0
        self.erased_after_rounds = 0
        self.erased_at_retention = 0
        self.device_id: int | None = None
        self.model_changed_at: float | None = None

    # -- the loop -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background thread (the first sync runs at once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kiosk-sync", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop; a sync in the middle of a round is not waited for beyond
        ``timeout`` (the thread is a daemon; the SDK's ledger is written before every send)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - the kiosk must keep serving whatever happens here
                self._note(None, f"{type(exc).__name__}: {exc}", 0.0)
            self._stop.wait(self.settings.interval)

    # -- one sync -------------------------------------------------------------------------------
    def conditions(self) -> SyncConditions:
        """What the kiosk tells the SDK about itself now.

        A kiosk is on mains power and a wired or trusted network, so ``charging`` and
        ``unmetered`` are always true; ``idle`` means no visitor input for ``idle_after`` seconds
        (fine-tuning then competes with nobody's clicks); ``min_new_interactions`` comes from the
        settings and is checked by the SDK against the events stored since the last round.
        """
        return SyncConditions(unmetered=True, charging=True,
                              idle=self.kiosk.idle_for() >= self.settings.idle_after,
                              min_new_interactions=self.settings.min_new_interactions)

    def tick(self) -> SyncResult:
        """One sync, then erasure of held sessions it used, then the swap if anything changed."""
        kiosk, s = self.kiosk, self.settings
        serving = kiosk.rec
        # Ended before the sync starts: every one of their events is in the store when the SDK
        # fine-tunes, so a completed round has certainly used them.
        held = kiosk.ended_sessions() if kiosk.holds_sessions else []
        worker = EdgeRec(serving.store, serving.bundle)  # shares the store; never closed here
        with self._lock:
            self._syncing = True
        started = time.perf_counter()
        try:
            result = worker.sync(s.server, enrolment_token=s.enrolment_token, server_key=s.server_key,
                                 allow=self.conditions(), insecure_http_hosts=s.insecure_http_hosts,
                                 **self._options)
        finally:
            with self._lock:
                self._syncing = False
        seconds = time.perf_counter() - started
        erased = self._erase_used(held) if result.participated and held else 0
        erased += self._erase_expired()
        if worker.model_version != serving.model_version or result.round_id is not None or erased:
            # A fresh object re-reads the device state (adapter) that sync or forget changed.
            kiosk.swap(EdgeRec(serving.store, worker.bundle))
        if worker.model_version != serving.model_version:
            self.model_changed_at = self._wall()
        if result.participated:
            self.rounds_joined += 1
        if result.device_id is not None:
            self.device_id = result.device_id
        self._note(result, result.message, seconds)
        return result

    def _erase_used(self, held: list[str]) -> int:
        # The sync client counts new events from a high-water mark of row ids, not a count, so
        # these erasures do not hold back the kiosk's next round.
        erased = self.kiosk.erase(held)
        self.erased_after_rounds += erased
        return erased

    def _erase_expired(self) -> int:
        if not self.kiosk.holds_sessions:
            return 0
        rec, cutoff = self.kiosk.rec, self._wall() - self.settings.retention
        expired = [sid for sid in self.kiosk.ended_sessions()
                   if max((e.ts for e in rec.store.history(sid)), default=0.0) < cutoff]
        if not expired:
            return 0
        erased = self.kiosk.erase(expired)
        self.erased_at_retention += erased
        return erased

    def _note(self, result: SyncResult | None, message: str, seconds: float) -> None:
        version = self.kiosk.rec.model_version
        row = SyncRow(
            at=iso_utc(self._wall()),
            status=result.status.value if result else SyncStatus.DEVICE_ERROR.value,
            ok=bool(result and result.ok), message=message,
            round=result.round_id if result else None,
            bytes_sent=result.bytes_sent if result else 0,
            model_before=result.model_version_before if result else version,
            model_after=result.model_version_after if result else version,
            seconds=round(seconds, 3))
        with self._lock:
            self._history.appendleft(row)

    # -- the operator's view --------------------------------------------------------------------
    def view(self) -> FederationView:
        """The figures of the operator page's "Federated learning" section."""
        kiosk, s = self.kiosk, self.settings
        rec = kiosk.rec
        snapshot = rec.ledger.snapshot()
        held = kiosk.ended_sessions() if kiosk.holds_sessions else []
        with self._lock:
            history, syncing = tuple(self._history), self._syncing
        return FederationView(
            server=s.server,
            state="syncing" if syncing else "waiting",
            conditions=(f"mains power and wired network (charging, unmetered); idle after "
                        f"{s.idle_after:g} s without input; at least {s.min_new_interactions} new "
                        f"events since the last round"),
            interval_s=s.interval,
            key_pinned=s.server_key is not None,
            device_id=self.device_id,
            model_version=rec.model_version,
            model_changed_at=None if self.model_changed_at is None else iso_utc(self.model_changed_at),
            last=history[0] if history else None,
            history=history,
            rounds_joined=self.rounds_joined,
            held_sessions=len(held),
            held_events=sum(rec.store.count(sid) for sid in held),
            retention_s=s.retention,
            erased_after_rounds=self.erased_after_rounds,
            erased_at_retention=self.erased_at_retention,
            ledger_entries=len(snapshot.entries),
            ledger_bytes=snapshot.total_bytes,
            ledger_epsilon=snapshot.epsilon,
            ledger_delta=snapshot.delta,
            ledger=ledger_rows(snapshot),
        )
