"""The device's sync: enrol once, take part in a round when the app allows it, install bundles.

::

    result = rec.sync("https://fl.example.com", enrolment_token=TOKEN, server_key=PINNED_KEY,
                      allow=SyncConditions(unmetered=wifi, charging=plugged, idle=screen_off))
    if not result.ok:
        log.info("sync: %s (%s)", result.status.value, result.message)

``rec.sync`` is :class:`SyncSession` run start to end. A host (such as the demo) that drives many devices stage by stage calls ``begin()``, then each of ``STEPS`` with
``step()``, then ``finish()``; each returns a final :class:`SyncResult` as soon as the sync is
over (None means "go on").

Guarantees: network and server problems never raise into the app (they come back as a
status: ``OFFLINE``, ``SERVER_ERROR``, ``ROUND_ABORTED``, ``BUNDLE_REJECTED``,
``ROUND_REFUSED``); only bad arguments raise (``ConfigError``). Requests that got no answer, or a
429/5xx, are retried with bounded exponential backoff and jitter, honouring ``Retry-After``;
waits in a round pace their polls by the server's ``Retry-After`` and last until the announced
stage deadline (:class:`~edgerec.sync.SyncTimeouts`). A "no round" result carries the
server's hint for when to ask again (``SyncResult.retry_after``). Every byte sent goes through the privacy
ledger first (the ``on_upload`` hook of :class:`ServerApi`). A bundle is installed only if its
signature verifies against the pinned ``server_key`` and its signed version is newer than any
this device installed, atomically; on any failure the current bundle keeps serving. A round is
joined only if its announcement is within the app's :class:`RoundPolicy` and the device can
check its peers' certificates against the pinned enrolment authority (``authority_key``, by
default ``server_key``); a refusal is a ``ROUND_REFUSED`` status and a ``refusal`` ledger row.
The noise comes from a cryptographic generator seeded by the OS. Logged events are never
touched, so nothing is lost when the device is offline.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar, cast

import numpy as np

from .._exceptions import (BundleError, ConfigError, EdgeRecError, MessageRejectedError,
                           ProtocolError, RoundAbortedError, RoundRefusedError,
                           ServerRejectedError, SyncError, TransportError)
from ._args import check_args, raw_key
from ..finetune import FineTuneConfig
from ..model.params import param_names
from ..privacy import RandomSource
from .api import DeviceIdentity, NotYet, ServerApi, new_identity_key
from .certificates import certificate_problem, current_certificate
from .device import SyncRecords, device_epsilon
from .evaluation import check_kind, evaluation_config, evaluation_contribution, ledger_note
from .messages import EVALUATION, RoundAnnouncement
from .participant import RoundParticipant
from .policy import RoundPolicy, federated_entries
from .runtime import SyncRuntime
from .status import SyncConditions, SyncResult, SyncStatus
from .timeouts import SyncTimeouts
from .transport import HttpxTransport, Transport
from .updates import Rollout, update_bundle

if TYPE_CHECKING:
    from ..client import EdgeRec

__all__ = ["DP_DELTA", "FEDERATED_FINETUNE", "STEPS", "SyncConditions", "SyncResult",
           "SyncSession", "SyncStatus"]

T = TypeVar("T")

#: Local training for a round: the settings the federated simulation chose on validation items
#: (SGD on the shared weights). The personal adapter is kept as it is and used in the forward
#: pass, but not refitted here: refitting it is ``fine_tune()``'s job, outside rounds.
FEDERATED_FINETUNE = FineTuneConfig(epochs=2, adapter_epochs=0, optimizer="sgd", lr=0.2, batch_size=64)
#: The delta of the device's own epsilon on its ledger, unless the app gives one.
DP_DELTA = 1e-5
#: The round's steps after ``begin()``, in order (``RoundParticipant`` method names).
STEPS = ("advertise", "share_keys", "masked_input", "consistency", "unmask")


class SyncSession:
    """One sync of one device with one server (see the module docstring).

    Args:
        rec: the device (``edgerec.open(...)``).
        server_url: the server's base URL; also the ledger's destination.
        enrolment_token: an operator's token, needed only until the device is enrolled.
        server_key: the server's pinned Ed25519 public key (raw or hex); without it no bundle
            is downloaded and the device only joins rounds on the model it has.
        authority_key: the pinned enrolment authority's Ed25519 public key (raw or hex), which
            every peer's certificate must verify under; default ``server_key`` (an
            ``edgerec-server`` that signs certificates with its bundle key). Without either the
            device refuses every round.
        policy: the app's bounds on rounds (:class:`RoundPolicy`; secure defaults).
        allow: the app's conditions (default: all met, at least one new interaction).
        budget: local training for the round (default :data:`FEDERATED_FINETUNE`).
        transport: a :class:`Transport` (default an httpx one, closed at the end).
        bundle_dir: where new bundles are installed (default: the installed bundle's root,
            which then holds versioned bundles and one pointer switched atomically).
        timeouts: request timeout, polling, waits and retries (:class:`SyncTimeouts`).
        runtime: clocks, sleep, jitter and the key generator (:class:`SyncRuntime`; the real
            ones by default, fakes in tests).
        noise_source: the noise's randomness (default: a fresh ``SecureRandom.from_os()`` per
            round). A reproducible source (tests) makes the round not private: the device's
            ledger then charges an infinite epsilon for it.
        dp_delta: the delta of the device's own epsilon on the ledger (default
            :data:`DP_DELTA`).
        insecure_http_hosts: host names the app accepts plain ``http://`` to (opt-in by name);
            without it ``http://`` is refused (ConfigError) except to loopback.
    """

    def __init__(self, rec: EdgeRec, server_url: str, *, enrolment_token: str | None = None,
                 server_key: bytes | str | None = None, authority_key: bytes | str | None = None,
                 policy: RoundPolicy | None = None, allow: SyncConditions | None = None,
                 budget: FineTuneConfig | None = None, transport: Transport | None = None,
                 bundle_dir: str | os.PathLike[str] | None = None,
                 timeouts: SyncTimeouts | None = None, runtime: SyncRuntime | None = None,
                 noise_source: RandomSource | None = None, dp_delta: float | None = None,
                 insecure_http_hosts: tuple[str, ...] = ()) -> None:
        check_args(server_url, enrolment_token, server_key, allow, budget, policy, timeouts,
                   runtime, insecure_http_hosts)
        self.rec, self.url = rec, server_url.rstrip("/")
        self.token, self.server_key = enrolment_token, server_key
        self.authority = raw_key(authority_key if authority_key is not None else server_key)
        self.policy = policy or RoundPolicy()
        self.allow, self.budget = allow or SyncConditions(), budget or FEDERATED_FINETUNE
        self.timeouts, self.runtime = timeouts or SyncTimeouts(), runtime or SyncRuntime()
        self._owned = transport is None
        self.transport: Transport = transport or HttpxTransport(self.url, timeout=self.timeouts.request)
        # cast: Bundle.__post_init__ sets root (None: the bundle's path), so it is a Path here.
        self.bundle_dir = Path(bundle_dir) if bundle_dir is not None else cast(Path, rec.bundle.root)
        self._noise_source = noise_source
        self._dp_delta = DP_DELTA if dp_delta is None else dp_delta
        self.records = SyncRecords(rec.device_state, rec.clock)
        self.version_before = rec.model_version
        self.identity: DeviceIdentity | None = None
        self.participant: RoundParticipant | None = None
        self.bytes_sent = 0
        self._installed = False
        self._refusing: RoundAnnouncement | None = None
        self._epsilon: float | None = None
        self._retry_after: float | None = None  # the server's last hint, for SyncResult
        self._done: SyncResult | None = None

    # -- the whole sync ----------------------------------------------------------------------
    def run(self) -> SyncResult:
        """Enrol if needed, update the bundle, take part in a round if allowed; never raises
        for network or server problems."""
        outcome = self.begin()
        if self.participant is not None:  # this device alone in this thread: uploads may wait
            self.participant.hold_uploads = True
        for name in STEPS:
            if outcome is not None:
                return outcome
            outcome = self.step(name)
        return outcome if outcome is not None else self.finish()

    def begin(self) -> SyncResult | None:
        """Enrol, update the bundle, check conditions, fetch the round and fine-tune.
        None: a round is ready to run (``self.participant``)."""
        return self._guarded(self._begin)

    def step(self, name: str) -> SyncResult | None:
        """Run one round step (``advertise``, ``share_keys``, ``masked_input``,
        ``consistency``, ``unmask``)."""
        if name not in STEPS:
            raise ConfigError(f"step must be one of {STEPS}, got {name!r}")
        if self.participant is None:
            raise ConfigError("no round to step through (begin() did not return None)")
        return self._guarded(getattr(self.participant, name))

    def finish(self) -> SyncResult:
        """Wait for the round's outcome, then install the model it produced."""
        if self.participant is None:
            raise ConfigError("no round to finish (begin() did not return None)")
        outcome = self._guarded(self._finish)
        assert outcome is not None
        return outcome

    def enrol(self) -> SyncResult:
        """Only enrol (or confirm the saved identity); nothing else is sent."""
        outcome = self._guarded(self._enrol)
        assert outcome is not None  # _enrol always answers, and so does _guarded then
        return outcome

    def close(self) -> None:
        """Close the transport if this session made it."""
        if self._owned:
            close = getattr(self.transport, "close", None)  # a Transport need not have close()
            if close is not None:
                close()

    # -- stages ------------------------------------------------------------------------------
    def _begin(self) -> SyncResult | None:
        refused = self._enrolled()
        if refused is not None:
            return refused
        if self.allow.unmetered:
            self._update_bundle()
        new = self.rec.store.count_since(self.records.last_mark())
        reason = self.allow.refusal(new)
        if reason is not None:
            return self._after_bundle(SyncStatus.CONDITIONS_NOT_MET, reason)
        ann = self._retry(self._api().poll_round)
        if isinstance(ann, NotYet):
            self._retry_after = ann.retry_after
            return self._after_bundle(SyncStatus.NO_ROUND, "no round open for this device")
        if ann.base_model_version != self.rec.model_version:
            return self._result(SyncStatus.MODEL_OUT_OF_DATE,
                                f"round {ann.round_id} builds on model {ann.base_model_version}; "
                                f"this device has {self.rec.model_version}", ann.round_id)
        waiting = self._certified()  # only rounds need it: peers check it
        if waiting is not None:
            return waiting
        self._refusing = ann  # a refusal from here on is recorded against this round
        self._prepare(ann)
        return None

    def _prepare(self, ann: RoundAnnouncement) -> None:
        assert self.identity is not None
        if self.authority is None:
            raise RoundRefusedError(f"round {ann.round_id} refused: no enrolment authority key is "
                                    "pinned, so peers' keys cannot be checked")
        check_kind(ann)
        self.policy.check(ann)  # before any training: a refused round costs the device nothing
        if ann.kind == EVALUATION:
            # The vector instead of a delta; no mark is saved: evaluating trains on nothing, so
            # the events logged since the last training round still count towards the next.
            config = evaluation_config(ann)
            vector = evaluation_contribution(
                self.rec, self.records, ann, config,
                lambda v: self._retry(lambda: self._api().bundle(v)), self.server_key)
            self.participant = self._participant(ann, vector)
            return
        bundle = self.rec.bundle  # the round's base model (its version was checked above)
        mask = federated_entries(ann, bundle.params, param_names(bundle.config))
        # The round's frozen weights stay fixed while fine-tuning (their delta is exactly 0) and
        # are left out of what is sent: only the vector_length federated entries are noised.
        budget = replace(self.budget, frozen=frozenset(ann.frozen))
        # The mark is taken before training: events logged while it runs count towards the next
        # round (the update may not have seen them).
        mark = self.rec.store.high_water_mark()
        update = self.rec.fine_tune(budget)
        self.participant = self._participant(ann, update.delta[mask])
        self.records.save_mark(mark)

    def _participant(self, ann: RoundAnnouncement, vector: np.ndarray) -> RoundParticipant:
        assert self.identity is not None
        return RoundParticipant(self._api(), self.identity, ann, vector, authority_key=self.authority,
                                policy=self.policy, noise_source=self._noise_source,
                                timeouts=self.timeouts, runtime=self.runtime)

    def _finish(self) -> SyncResult:
        assert self.participant is not None
        outcome = self.participant.result()
        rid = outcome.round_id
        if outcome.status.state != "done":
            return self._result(SyncStatus.ROUND_ABORTED,
                                f"round {rid} aborted: {outcome.status.reason}", rid)
        what = "evaluation round" if self.participant.announcement.kind == EVALUATION else "round"
        note = f"{what} {rid} done with {outcome.status.survivors} devices"
        if self.allow.unmetered:
            try:
                self._update_bundle()
            except BundleError as exc:
                return self._result(SyncStatus.BUNDLE_REJECTED,
                                    f"{note}; its bundle was refused, old model kept: {exc}", rid, True)
        return self._result(SyncStatus.PARTICIPATED, note, rid, True)

    # -- enrolment and bundles ---------------------------------------------------------------
    def _enrol(self) -> SyncResult:
        refused = self._enrolled()
        if refused is not None:
            return refused
        assert self.identity is not None  # _enrolled() answered None: enrolled
        return self._result(SyncStatus.NO_ROUND, f"enrolled as device {self.identity.device_id}")

    def _enrolled(self) -> SyncResult | None:
        self.identity = self.records.identity(self.url)
        if self.identity is not None:
            return None
        token = self.token
        if not token:
            return self._result(SyncStatus.NOT_ENROLLED, "not enrolled and no enrolment token given")
        key = self.records.pending_key(self.url, lambda: new_identity_key(self.runtime.key_rng))
        api = ServerApi(self.transport, on_upload=self._record)
        try:
            identity = self._retry(lambda: api.enrol(token, key))
        except ServerRejectedError as exc:
            if exc.status in (400, 401, 403):
                return self._result(SyncStatus.NOT_ENROLLED, f"enrolment refused: {exc}")
            raise
        self.records.save_identity(self.url, identity)
        self.identity = identity
        return None

    def _certified(self) -> SyncResult | None:
        """None once this device has a certificate that checks out under the pinned authority
        (fetched again first if it is missing or lapses soon); else why it cannot join."""
        identity = self.identity
        assert identity is not None
        now = self.runtime.wall_clock()
        certificate = current_certificate(identity, self.authority, now,
                                          lambda: self._retry(self._api().certificate))
        if not certificate:
            return self._result(SyncStatus.NOT_ENROLLED, f"enrolled as device {identity.device_id}; "
                                "waiting for the enrolment authority to sign its certificate")
        problem = certificate_problem(certificate, identity, self.authority, now)
        if problem is not None:
            return self._result(SyncStatus.NOT_ENROLLED,
                                f"this device's certificate does not check out: {problem}")
        if certificate != identity.certificate:
            self.identity = replace(identity, certificate=certificate)
            self.records.save_identity(self.url, self.identity)
        return None

    def _update_bundle(self) -> None:
        """Install what the signed rollout statement assigns, or a newer bundle (updates.py)."""
        assert self.identity is not None
        api = self._api()
        if self.server_key is not None and update_bundle(
                self.rec, self.records, self.bundle_dir, self.server_key,
                lambda etag: self._retry(lambda: api.latest_bundle(etag)),
                Rollout.of(api, self.identity.device_id, self._retry)):
            self._installed = True

    # -- plumbing ----------------------------------------------------------------------------
    def _api(self) -> ServerApi:
        assert self.identity is not None
        return ServerApi(self.transport, self.identity.credential, on_upload=self._record,
                         hold=self.timeouts.long_poll())

    def _record(self, kind: str, body: bytes) -> None:
        """The ledger row of ``body``, committed before it is sent (raising stops the send)."""
        part = self.participant
        if part is None:
            self.rec.ledger.record(body, kind=kind, destination=self.url)
        else:
            ann = part.announcement
            if self._epsilon is None:
                # Charged when the first byte of this round leaves, i.e. before the delta can.
                # Noise from a reproducible source protects nothing: charged as no noise.
                z = ann.noise_multiplier if part.private_noise else 0.0
                eps = device_epsilon(self.records.add_round(ann.round_id, z), self._dp_delta)
                self._epsilon = -1.0 if eps is None else eps
            known = self._epsilon >= 0
            notes = [] if part.private_noise else ["reproducible noise: not private"]
            if ann.kind == EVALUATION:
                # The masked input carries the evaluation vector: the row an auditor looks for.
                kind = "evaluation" if kind == "masked_input" else kind
                notes.append(ledger_note(ann))
            self.rec.ledger.record(body, kind=kind, round_id=ann.round_id, clip=ann.clip,
                                   noise_multiplier=ann.noise_multiplier,
                                   epsilon=self._epsilon if known else None,
                                   delta=self._dp_delta if known else None,
                                   destination=self.url, model_version=ann.base_model_version,
                                   note="; ".join(notes)[:1000] or None)
        self.bytes_sent += len(body)

    def _refused(self, exc: RoundRefusedError) -> SyncResult:
        """A round this device will not take part in: a ledger row saying why, and the status."""
        ann = self.participant.announcement if self.participant else self._refusing
        rid = ann.round_id if ann is not None else None
        self.rec.ledger.record(b"", kind="refusal", round_id=rid, destination=self.url,
                               model_version=ann.base_model_version if ann else None,
                               note=str(exc)[:1000])
        return self._result(SyncStatus.ROUND_REFUSED, str(exc), rid)

    def _retry(self, request: Callable[[], T]) -> T:
        return self.timeouts.backoff.call(request, self.runtime)

    def _after_bundle(self, status: SyncStatus, message: str) -> SyncResult:
        if self._installed:
            return self._result(SyncStatus.BUNDLE_INSTALLED,
                                f"installed model {self.rec.model_version}; {message}")
        return self._result(status, message)

    def _result(self, status: SyncStatus, message: str, round_id: int | None = None,
                participated: bool = False) -> SyncResult:
        return SyncResult(status, message, self.version_before, self.rec.model_version, round_id,
                          participated, self.bytes_sent,
                          self.identity.device_id if self.identity else None, self._retry_after)

    def _guarded(self, work: Callable[[], SyncResult | None]) -> SyncResult | None:
        """``work()``, with every network, server and device failure turned into a result."""
        if self._done is not None:
            return self._done
        rid = self.participant.round_id if self.participant else None
        try:
            outcome = work()
        except RoundRefusedError as exc:
            outcome = self._refused(exc)
        except TransportError as exc:
            outcome = self._result(SyncStatus.OFFLINE, f"server unreachable: {exc}", rid)
        except RoundAbortedError as exc:
            outcome = self._result(SyncStatus.ROUND_ABORTED, f"round {rid} aborted: {exc}", rid)
        except BundleError as exc:
            outcome = self._result(SyncStatus.BUNDLE_REJECTED, f"bundle refused, old model kept: {exc}")
        except ServerRejectedError as exc:
            self._retry_after = exc.retry_after
            outcome = self._result(SyncStatus.SERVER_ERROR, f"server refused: {exc}", rid)
        except (ProtocolError, MessageRejectedError, SyncError) as exc:
            outcome = self._result(SyncStatus.SERVER_ERROR,
                                   f"unusable answer from the server: {type(exc).__name__}: {exc}", rid)
        except (EdgeRecError, OSError) as exc:
            outcome = self._result(SyncStatus.DEVICE_ERROR, f"{type(exc).__name__}: {exc}", rid)
        if outcome is not None:
            self._done = outcome
            self.close()
        return outcome

