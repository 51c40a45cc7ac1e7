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
outside the lock (``_publish``), so devices are answered meanwhile; the claim keeps other
replicas off the round, and ``_publishing`` this replica's own ticks. While it is published the
round stays open, its status says "publishing", and it is "done" only once its model is stored.
A round that cannot reach its threshold aborts, and the published model stays as it was.
An evaluation round ends the same way, except that no model is made: its decoded sum and
estimate are stored with its completion (``_publish_evaluation``, ``evaluation_store.py``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

from edgerec._exceptions import ConfigError, MessageRejectedError, RoundAbortedError
from edgerec.model.params import param_names
from edgerec.secagg import (
    BadSignatureError,
    DuplicateSenderError,
    OutOfStageError,
    ReplayError,
    Stage,
    UnknownSenderError,
)
from edgerec.secagg.messages import CLIENT_MESSAGE_STAGE
from edgerec.sync import UPLOAD_KINDS, RoundAnnouncement, RoundStatus, UploadAck, decode_secagg

from . import audit
from ._exceptions import (
    BadRequestError,
    ConflictError,
    StageClosedError,
    ForbiddenError,
    GoneError,
    NotFoundError,
    ServerError,
)
from .active import ActiveRound
from .aggregation import AggregateError, NewModel, build_model
from .authority import Authority, load_authority
from .config import ServerConfig
from .evaluation import EVALUATION
from .evaluation_store import store_evaluation
from .logs import log_event
from .metrics import Metrics
from .publisher import Publisher
from .opening import open_round
from .polling import IdlePacer, stage_hint
from .rounds import RoundParams
from .state import DeviceRecord, RoundRecord, StateBackend

__all__ = ["Coordinator", "open_round"]

_MAX_CLOSE_FAILURES = 3
_STATUS_OF = {ReplayError: 409, DuplicateSenderError: 409, OutOfStageError: 409,
              BadSignatureError: 403, UnknownSenderError: 403}
#: What a round's status says while its last stage is closed and its model is being made.
PUBLISHING = "publishing"

#: Makes a finished round's model: ``build_model`` (tests pass a slower one).
BuildModel = Callable[[StateBackend, Publisher, ActiveRound], NewModel]


@dataclass(frozen=True)
class _Publication:
    """A round whose last stage this replica froze and claimed, to be unmasked and published
    outside the lock. ``now`` is when its close began (``clock``), ``started`` the same on
    ``perf_counter`` (for the metrics)."""

    active: ActiveRound
    now: float
    started: float


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
        publications: list[_Publication] = []
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
                self._publish(publication)

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
            try:
                message = decode_secagg(body)
            except MessageRejectedError as exc:
                raise self._reject(exc) from None
            stage = CLIENT_MESSAGE_STAGE.get(type(message))
            if stage is None:
                raise BadRequestError("not a device message (server messages are not uploaded)")
            if message.sender != device.id:  # type: ignore[union-attr]
                raise ForbiddenError(f"message sender {message.sender} is not device {device.id}")  # type: ignore[union-attr]
            if message.round_id != round_id:
                raise BadRequestError(f"message for round {message.round_id} sent to round {round_id}")
            kind, digest = UPLOAD_KINDS[stage], hashlib.sha256(body).digest()
            if active.digests.get((device.id, stage)) == digest:
                return UploadAck(round_id, kind, duplicate=True)
            # A resend may come to another replica than the first: the database knows.
            stored = self.state.message_digest(round_id, device.id, int(stage))
            if stored is not None:
                if stored == digest:
                    return UploadAck(round_id, kind, duplicate=True)
                raise self._reject(DuplicateSenderError(f"a different {kind} from {device.id} "
                                                        "was received"))
            if active.id in self._publishing:  # its machine is the publication's now
                raise StageClosedError(f"round {round_id} is closed: its model is being published")
            if active.record.frozen and stage == active.stage:
                raise StageClosedError(f"stage {stage.name} of round {round_id} is closing")
            started = time.perf_counter()
            try:
                active.machine.receive(message)  # type: ignore[arg-type]
            except MessageRejectedError as exc:
                raise self._reject(exc) from None
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

        Most calls are polls: they are answered from the cached round without the lock or the
        database (an outbox never changes once stored; a cache another replica has moved on
        is brought up to date by the next tick, and the device polls again anyway)."""
        cached = self._active.get(round_id)
        if cached is not None and device.id in cached.members:
            outbox = cached.outbox.get(stage)
            if outbox is not None:
                return _addressed(outbox, device, round_id, stage)
            if int(stage) > int(cached.stage):
                return None
        with self._lock:
            active = self._open(round_id, device)
            outbox = active.outbox.get(stage)
            return None if outbox is None else _addressed(outbox, device, round_id, stage)

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

    def _reject(self, exc: MessageRejectedError) -> ServerError:
        reason = type(exc).__name__
        self.metrics.rejections.labels(reason).inc()
        status = _STATUS_OF.get(type(exc), 400)
        cls = {403: ForbiddenError, 409: ConflictError}.get(status, BadRequestError)
        error = cls(f"{reason}: {exc}")
        error.code = reason
        return error

    # -- closing stages ----------------------------------------------------------------------
    def _maybe_close(self, active: ActiveRound) -> _Publication | None:
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

    def _close(self, active: ActiveRound, now: float) -> _Publication | None:
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
            return _Publication(active, now, started)
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

    def _publish(self, publication: _Publication) -> None:
        """Unmask the sum, apply the server optimizer, build and sign the model, then store it
        and complete the round (one transaction, which also erases the round's message bodies),
        all without the lock: devices are answered meanwhile. The database decides who
        publishes: ``complete_round`` writes only while this replica's claim holds. Killed
        here, this replica leaves the round open and frozen; once the claim lapses another
        replica (or this one restarted) closes the stage again from the stored messages."""
        active, now, started = publication.active, publication.now, publication.started
        if active.params.kind == EVALUATION:
            self._publish_evaluation(publication)
            return
        try:
            try:
                active.machine.advance()  # the unmasking: the survivors' sum, nothing else
                new = self._build(self.state, self.publisher, active)
            except (RoundAbortedError, AggregateError) as exc:
                self._abort_record(active.record, str(exc), len(active.advertised))
                self._published(active)
                return
            done = [r for r in self.state.rounds("done")] + [active.record]
            eps = audit.cumulative_epsilon((audit.release_of(r) for r in done),
                                           self.config.dp_delta, self.config.accountant)
            try:
                self.state.complete_round(
                    active.id, self.clock(), participants=len(active.advertised),
                    survivors=new.survivors, epsilon=eps, model_version=new.version,
                    archive=new.archive, sha256=new.sha256, strategy=new.strategy,
                    strategy_step=new.state.step, strategy_arrays=new.state.arrays,
                    owner=self.owner)
            except ConflictError:
                self._published(active)  # this replica's claim lapsed: another one finished it
                return
        except Exception as exc:
            self._publication_failed(active, exc)
            raise
        self._published(active)
        self.state.log_event("model_published", {"version": new.version, "round_id": active.id,
                                                  "sha256": new.sha256}, now)
        aggregate_s, m = new.aggregate_s, self.metrics
        m.aggregate.observe(aggregate_s)
        m.publish.observe(time.perf_counter() - started - aggregate_s)
        m.stage_close.labels(Stage.UNMASK.name).observe(time.perf_counter() - started)
        m.rounds.labels("done").inc()
        self._changed()
        m.participants.set(len(active.advertised))
        m.survivors.set(new.survivors)
        m.model_version.set(new.version)
        log_event("round_done", round_id=active.id, survivors=new.survivors,
                  model_version=new.version, epsilon=eps)

    def _publish_evaluation(self, publication: _Publication) -> None:
        """The end of an evaluation round: no model; the survivors' sum decoded, its metrics
        estimated and stored with the round's completion (``evaluation_store``), under the
        same claim, outside the lock, with the same failures as a model's publication."""
        active, now, started = publication.active, publication.now, publication.started
        try:
            try:
                active.machine.advance()  # the unmasking: the survivors' sum, nothing else
                stored = store_evaluation(self.state, active, self.config, self.clock(), self.owner)
            except (RoundAbortedError, AggregateError) as exc:
                self._abort_record(active.record, str(exc), len(active.advertised))
                self._published(active)
                return
            except ConflictError:
                self._published(active)  # this replica's claim lapsed: another one finished it
                return
        except Exception as exc:
            self._publication_failed(active, exc)
            raise
        self._published(active)
        self.state.log_event("evaluation_stored", {"round_id": active.id, "devices": stored.devices,
                                                   "models": [stored.base_version, stored.candidate_version]},
                             now)
        self.metrics.stage_close.labels(Stage.UNMASK.name).observe(time.perf_counter() - started)
        self.metrics.rounds.labels("done").inc()
        self.metrics.participants.set(len(active.advertised))
        self.metrics.survivors.set(stored.devices)
        self._changed()
        log_event("round_done", round_id=active.id, kind=EVALUATION, survivors=stored.devices,
                  epsilon=stored.cumulative_epsilon)

    def _publication_failed(self, active: ActiveRound, exc: Exception) -> None:
        with self._lock:  # rebuilt from the database and closed again by a later tick
            self._publishing.discard(active.id)
            self._failed(active, exc)

    def _published(self, active: ActiveRound) -> None:
        """The publication of ``active`` is over (the database says how): forget the round."""
        with self._lock:
            self._publishing.discard(active.id)
            self._active.pop(active.id, None)


def _addressed(outbox: dict[int, bytes], device: DeviceRecord, round_id: int, stage: Stage) -> bytes:
    body = outbox.get(device.id)
    if body is None:
        raise ConflictError(f"device {device.id} is not part of stage {stage.name} of round "
                            f"{round_id} (it missed an earlier stage)")
    return body
