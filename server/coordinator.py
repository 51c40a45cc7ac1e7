"""The round lifecycle: collect each stage, close it by turnout or deadline, aggregate,
publish, audit. Time comes in as a ``clock`` (and deadlines are data), so tests drive it.

Every accepted message and every stage transition is written to the ``StateBackend`` before it
is acknowledged or visible to any device. The in-memory ``ActiveRound`` is a cache of what the
database says, so several replicas can serve one round: before each device request and each
close, the cache catches up with stages other replicas closed (``_sync``); a message is stored
only while its stage is being collected and not frozen (checked in the database); and a stage
is closed by the one replica that froze and claimed it (``claim_stage``), on every message any
replica stored for it. A claim lapses after ``close_lease_s``, so a replica killed while
closing is replaced by another. Within one process, work happens under one lock, except the end
of a round: the unmasking, the new model's export, quantization and signature, and storing it
(with the round's completion and the erasure of its message bodies, in one transaction) run
outside the lock (``publishing.py``: ``tick`` hands each round whose last stage it claimed to
``Publishing.publish``, which reports back through ``PublicationHooks``), so devices are
answered meanwhile; the claim keeps other replicas off the round, and ``_publishing`` this
replica's own ticks. While it is published the round stays open, its status says "publishing",
and it is "done" only once its model is stored. A round that cannot reach its threshold aborts,
and the published model stays as it was. An evaluation round ends the same way, except that no
model is made: its decoded sum and estimate are stored with its completion (``publishing.py``,
``evaluation_store.py``). An upload is decoded and checked on its own (``messages.py``) before
it reaches the round.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import replace
from typing import Callable

from edgerec._exceptions import ConfigError, MessageRejectedError, RoundAbortedError
from edgerec.model.params import param_names
from edgerec.secagg import DuplicateSenderError, Stage
from edgerec.sync import UPLOAD_KINDS, RoundAnnouncement, RoundStatus, UploadAck

from ._exceptions import (
    ConflictError,
    StageClosedError,
    ForbiddenError,
    GoneError,
    NotFoundError,
    ServerError,
)
from .active import ActiveRound
from .aggregation import build_model  # looked up here at start (a test patches it)
from .authority import Authority, load_authority
from .config import ServerConfig
from .evaluation import EVALUATION
from .logs import log_event
from .messages import addressed, checked_upload, rejected
from .metrics import Metrics
from .publisher import Publisher
from .opening import open_round
from .polling import IdlePacer, stage_hint
from .publishing import PUBLISHING, BuildModel, Publication, PublicationHooks, Publishing
from .rounds import RoundParams
from .state import DeviceRecord, RoundRecord, StateBackend

__all__ = ["NOT_CACHED", "Coordinator", "open_round"]

#: ``Coordinator.cached_download``'s answer when the cached round cannot tell.
NOT_CACHED = object()

_MAX_CLOSE_FAILURES = 3


class Coordinator:
    """Drives every open round; the HTTP layer only parses, calls and serializes."""

    def __init__(self, state: StateBackend, publisher: Publisher, config: ServerConfig, *,
                 clock: Callable[[], float] = time.time, metrics: Metrics | None = None,
                 authority: Authority | None = None, build: BuildModel | None = None) -> None:
        self.state, self.publisher, self.config, self.clock = state, publisher, config, clock
        self._build = build or build_model
        self.metrics = metrics or Metrics()
        self.authority = authority or load_authority(config)
        self._lock = threading.RLock()
        #: who this replica is when it claims a stage to close (unique per process)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._active: dict[int, ActiveRound] = {}
        self._failures: dict[int, int] = {}
        #: rounds this replica is publishing (outside the lock): no tick here closes them again,
        #: and nothing but the publication touches their machine
        self._publishing: set[int] = set()
        self._pacer = IdlePacer(state, config, clock)
        #: called (from any thread) when an open round moves on here: long polls wake on it
        self.on_change: Callable[[], None] | None = None
        #: unmasks and publishes the rounds whose last stage this replica claimed (outside the lock)
        self._end_of_round = Publishing(
            state, publisher, config, clock=clock, metrics=self.metrics, owner=self.owner,
            build=self._build, hooks=PublicationHooks(
                abort=self._abort_record, published=self._published,
                failed=self._publication_failed, changed=self._changed))
        self._schedule = (RoundParams.from_dict(config.schedule_round)
                          if config.schedule_every_s > 0 else None)
        if self._schedule is not None:
            self._schedule.check()  # its cohort size is only known at each draw
            if state.latest_model() is not None and self._schedule.kind != EVALUATION:
                # its frozen names, against today's model
                base = publisher.load(publisher.latest().version)
                self._schedule.federated(base.params, param_names(base.config))
        self.recover()

    # -- start-up and housekeeping -----------------------------------------------------------
    def recover(self) -> None:
        """Load every open round from the database (after a restart, or one opened by the CLI)."""
        with self._lock:
            for record in self.state.rounds("open"):
                if record.id not in self._active and record.id not in self._publishing:
                    self._load(record)

    def _load(self, record: RoundRecord) -> ActiveRound | None:
        try:
            active = ActiveRound.rebuild(self.state, record, self.authority.public_key)
        except (MessageRejectedError, RoundAbortedError, ServerError, ConfigError, AssertionError) as exc:
            self._abort_record(record, f"could not be rebuilt after a restart: {exc}", None)
            return None
        self._active[record.id] = active
        log_event("round_loaded", round_id=record.id, stage=active.stage.name)
        return active

    def tick(self) -> None:
        """Pick up new rounds and close every stage whose turnout or deadline has come; a
        round whose last stage closes here is published in this call, after the lock is let go."""
        publications: list[Publication] = []
        try:
            with self._lock:
                self.recover()
                self._maybe_schedule()
                for active in list(self._active.values()):
                    if active.id in self._publishing:
                        continue  # its claim is this replica's, and a thread is on it
                    try:
                        publication = self._maybe_close(active)
                    except Exception as exc:
                        self._failed(active, exc)
                        raise
                    if publication is not None:
                        publications.append(publication)
        finally:
            for publication in publications:
                self._end_of_round.publish(publication)

    def _failed(self, active: ActiveRound, exc: Exception) -> None:
        """A close failed: half-closed in memory, not in the database. Rebuild the round from
        the truth (at the next request or tick), and give up on a round that keeps failing."""
        self._active.pop(active.id, None)
        failures = self._failures[active.id] = self._failures.get(active.id, 0) + 1
        if failures >= _MAX_CLOSE_FAILURES:
            self._abort_record(active.record, f"closing failed {failures} times: {exc}",
                               len(active.advertised))

    def _maybe_schedule(self) -> None:
        """Open the scheduled round when none is open and the last closed long enough ago."""
        if self._schedule is None or self._active:
            return
        closed = [r.closed_at or r.opened_at for r in self.state.rounds()]
        if closed and self.clock() - max(closed) < self.config.schedule_every_s:
            return
        try:
            self.open_round(self._schedule)
        except (ConflictError, NotFoundError):  # too few devices or no model yet: next tick
            return

    def open_round(self, params: RoundParams) -> RoundRecord:
        """Open a round now (the CLI does the same on the database directly)."""
        with self._lock:
            record = open_round(self.state, self.publisher, params, self.clock())
            self.metrics.rounds_opened.inc()
            self._load(record)
            return record

    # -- device requests ---------------------------------------------------------------------
    def announcement(self, device: DeviceRecord) -> RoundAnnouncement | None:
        """The round ``device`` may join now (or is in), else None."""
        with self._lock:
            self.recover()
            for cached in list(self._active.values()):
                if device.id not in cached.members:
                    continue
                active = self._sync(cached)  # another replica may have moved it on
                if active is None:
                    continue
                # Every drawn member may join while advertisements are taken: the cohort is the
                # draw, and refusing late members would make it something else than the draw.
                joinable = active.stage == Stage.ADVERTISE
                if joinable or device.id in active.advertised:
                    return active.announcement()
            return None

    def status(self, round_id: int) -> RoundStatus:
        """Where a round is: read from the database, whichever replica took its messages."""
        record = self.state.round(round_id)
        if record is None:
            raise NotFoundError(f"no round {round_id}")
        if record.state == "open":
            joined = self.state.stage_activity(round_id, int(Stage.ADVERTISE))[0]
            # The last stage frozen: a replica is unmasking and publishing (or, its claim
            # lapsed, another will): the round is done only once the model is stored.
            stage = (PUBLISHING if record.stage == Stage.UNMASK and record.frozen
                     else UPLOAD_KINDS.get(Stage(record.stage), "closing"))
            return RoundStatus(round_id, "open", stage, joined, None, record.base_version)
        stage = "done" if record.state == "done" else "aborted"
        return RoundStatus(round_id, record.state, stage, record.participants or 0,
                           record.survivors, record.base_version, record.out_version,
                           record.reason)

    def accept(self, device: DeviceRecord, round_id: int, body: bytes) -> UploadAck:
        """Store one signed stage message from ``device`` (idempotent for identical resends)."""
        with self._lock:
            active = self._open(round_id, device)
            message, stage = checked_upload(device, round_id, body, self.metrics)
            kind, digest = UPLOAD_KINDS[stage], hashlib.sha256(body).digest()
            if active.digests.get((device.id, stage)) == digest:
                return UploadAck(round_id, kind, duplicate=True)
            # A resend may come to another replica than the first: the database knows.
            stored = self.state.message_digest(round_id, device.id, int(stage))
            if stored is not None:
                if stored == digest:
                    return UploadAck(round_id, kind, duplicate=True)
                raise rejected(DuplicateSenderError(f"a different {kind} from {device.id} "
                                                    "was received"), self.metrics)
            if active.id in self._publishing:  # its machine is the publication's now
                raise StageClosedError(f"round {round_id} is closed: its model is being published")
            if active.record.frozen and stage == active.stage:
                raise StageClosedError(f"stage {stage.name} of round {round_id} is closing")
            started = time.perf_counter()
            try:
                active.machine.receive(message)  # type: ignore[arg-type]
            except MessageRejectedError as exc:
                raise rejected(exc, self.metrics) from None
            try:
                self.state.add_message(round_id, device.id, int(stage), body, digest, self.clock())
            except BaseException:
                # The machine took a message the database does not have: rebuild from the truth.
                self._active.pop(round_id, None)
                raise
            active.digests[(device.id, stage)] = digest
            if stage == Stage.ADVERTISE:
                active.advertised.add(device.id)
            active.receive_seconds += time.perf_counter() - started
            self.metrics.messages.labels(kind).inc()
            return UploadAck(round_id, kind)

    def download(self, device: DeviceRecord, round_id: int, stage: Stage) -> bytes | None:
        """The encoded server message opening ``stage`` for ``device``; None: not closed yet.

        Most calls are polls, answered from the cached round (``cached_download``)."""
        found = self.cached_download(device, round_id, stage)
        if found is not NOT_CACHED:
            return found  # type: ignore[return-value]
        with self._lock:
            active = self._open(round_id, device)
            outbox = active.outbox.get(stage)
            return None if outbox is None else addressed(outbox, device, round_id, stage)

    def cached_download(self, device: DeviceRecord, round_id: int, stage: Stage) -> object:
        """``download``'s answer when the cached round has it, without the lock or the database
        (safe from any thread: an outbox never changes once stored; a cache another replica
        has moved on is brought up to date by the next tick, and the device polls again
        anyway); :data:`NOT_CACHED` when only ``download`` can tell."""
        cached = self._active.get(round_id)
        if cached is not None and device.id in cached.members:
            outbox = cached.outbox.get(stage)
            if outbox is not None:
                return addressed(outbox, device, round_id, stage)
            if int(stage) > int(cached.stage):
                return None
        return NOT_CACHED

    def is_member(self, round_id: int, device_id: int) -> bool:
        """Whether ``device_id`` was drawn into round ``round_id``: from the cached round when
        this replica holds it (a draw never changes), else from the database."""
        cached = self._active.get(round_id)
        if cached is not None and device_id in cached.members:
            return True
        return self.state.is_member(round_id, device_id)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def poll_hint(self, round_id: int | None = None) -> int:
        """``Retry-After`` seconds for a device told "not yet" (see ``polling.py``)."""
        active = self._active.get(round_id) if round_id is not None else None
        if active is not None:
            return stage_hint(len(active.members), self.clock(), active.deadline(), self.config)
        return self._pacer.idle_hint()

    def _open(self, round_id: int, device: DeviceRecord) -> ActiveRound:
        active = self._active.get(round_id)
        if active is None:
            self.recover()
            active = self._active.get(round_id)
        if active is not None:
            active = self._sync(active)
        if active is not None:
            if device.id not in active.members:
                raise ForbiddenError(f"device {device.id} is not a member of round {round_id}")
            return active
        record = self.state.round(round_id)
        if record is None:
            raise NotFoundError(f"no round {round_id}")
        if record.state == "aborted":
            raise GoneError(f"round {round_id} was aborted: {record.reason}")
        raise ConflictError(f"round {round_id} is over (model version {record.out_version})")

    def _sync(self, active: ActiveRound) -> ActiveRound | None:
        """The cached round brought to what the database says: another replica may have closed
        stages, finished or aborted it. None when it is no longer open."""
        record = self.state.round(active.id)
        if record is None or record.state != "open":
            self._active.pop(active.id, None)
            self._changed()  # finished or aborted (here or on another replica)
            return None
        if active.id in self._publishing:
            return active  # unmasked outside the lock: its machine is the publication's
        if record.stage < int(active.stage):  # cannot be, unless a close half-failed here
            self._active.pop(active.id, None)
            return self._load(record)
        behind = record.stage > int(active.stage)
        try:
            active.catch_up(self.state, record)
        except (MessageRejectedError, RoundAbortedError, AssertionError):
            self._active.pop(active.id, None)  # cannot follow: rebuild from the truth
            return self._load(record)
        if behind:
            self._changed()  # another replica closed a stage: wake the polls held here
        return active

    # -- closing stages ----------------------------------------------------------------------
    def _maybe_close(self, active: ActiveRound) -> Publication | None:
        synced = self._sync(active)
        if synced is None:
            return None
        now, record, stage = self.clock(), synced.record, int(synced.stage)
        count, last_at = self.state.stage_activity(synced.id, stage)
        ready = count >= len(synced.machine.expected)  # every message the stage waits for
        # A replica that claimed the stage and died: its claim lapses, another closes it.
        abandoned = record.frozen and (record.lease_until or 0.0) < now
        if ready or abandoned or now >= synced.deadline() or synced.quiet(now, count, last_at):
            return self._close(synced, now)
        return None

    def _close(self, active: ActiveRound, now: float) -> Publication | None:
        """Close the stage being collected (under the lock); the last one is only claimed
        here, and handed back to be published outside the lock."""
        stage = active.stage
        # Freeze the stage and claim it: one replica closes it, on every message stored for it.
        lease_until = now + self.config.close_lease_s
        if not self.state.claim_stage(active.id, int(stage), self.owner, now,
                                      self.config.close_lease_s):
            return None  # another replica is closing it
        active.pull(self.state, int(stage))
        self.metrics.stage_open.labels(stage.name).observe(now - active.stage_started_at)
        self.metrics.stage_receive.labels(stage.name).inc(active.receive_seconds)
        started = time.perf_counter()
        if stage == Stage.UNMASK:
            # Every message of the stage is in the machine and no other may join (frozen in
            # the database, and refused here while _publishing holds the round).
            active.record = replace(active.record, frozen=True, lease_owner=self.owner,
                                    lease_until=lease_until)
            self._publishing.add(active.id)
            return Publication(active, now, started)
        try:
            outbox = active.machine.advance()
        except RoundAbortedError as exc:
            self._abort(active, str(exc))
            return None
        # Durable before any device sees it, and only while this replica's claim holds.
        if not self.state.set_stage(active.id, int(stage) + 1, now, owner=self.owner):
            self._active.pop(active.id, None)  # the claim lapsed: another replica closed it
            return None
        active.store_outbox(Stage(stage + 1), outbox)
        active.record = replace(active.record, stage=int(stage) + 1, stage_started_at=now,
                                frozen=False, lease_owner=None, lease_until=None)
        active.stage_started_at, active.receive_seconds = now, 0.0
        self.metrics.stage_close.labels(stage.name).observe(time.perf_counter() - started)
        log_event("stage_closed", round_id=active.id, stage=stage.name,
                  next_recipients=len(outbox))
        self._changed()
        return None

    def _abort(self, active: ActiveRound, reason: str) -> None:
        self._active.pop(active.id, None)
        self._abort_record(active.record, reason, len(active.advertised))

    def _abort_record(self, record: RoundRecord, reason: str, participants: int | None) -> None:
        now = self.clock()
        self.state.abort_round(record.id, now, reason, participants)
        self.state.log_event("round_aborted", {"round_id": record.id, "reason": reason}, now)
        self.metrics.rounds.labels("aborted").inc()
        self._changed()
        log_event("round_aborted", logging.WARNING, round_id=record.id, reason=reason)

    # -- the end of a round: publishing.py reports back here (PublicationHooks) -------------
    def _publication_failed(self, active: ActiveRound, exc: Exception) -> None:
        with self._lock:  # rebuilt from the database and closed again by a later tick
            self._publishing.discard(active.id)
            self._failed(active, exc)

    def _published(self, active: ActiveRound) -> None:
        """The publication of ``active`` is over (the database says how): forget the round."""
        with self._lock:
            self._publishing.discard(active.id)
            self._active.pop(active.id, None)
