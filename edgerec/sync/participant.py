"""One device's part in one federated round, end to end over HTTP.

::

    announcement = api.current_round()
    if announcement is not None:
        part = RoundParticipant(api, identity, announcement, update.delta)
        outcome = part.run()                 # advertise, share keys, masked input, unmask, result

``run()`` is the five steps below in order; each step may also be called on its own (a
simulation can stop after any of them to play a device that drops out). Before anything else
the announcement is checked against the app's :class:`~edgerec.sync.RoundPolicy` (a round
outside it is refused: :class:`~edgerec.sync.RoundRefusedError`). The delta is clipped, noised
with discrete Gaussian noise from a cryptographic generator, and fixed-point encoded
(``edgerec.privacy.privatize``) with the round's parameters before anything is masked; only
masked, signed secure-aggregation messages leave the device, each through ``api.on_upload``
first. Every peer's keys must carry a certificate from the pinned enrolment authority. A server
message that fails the device's checks is refused the same way (``RoundRefusedError``), and the
device sends nothing more in that round. A device that restarts mid-round cannot resume (its
round keys live only in this object): it has dropped out, and the round goes on without it.

Waiting and retrying follow ``timeouts`` (:class:`~edgerec.sync.SyncTimeouts`): between polls
the device sleeps for the server's ``Retry-After`` with jitter, and it waits for a stage at
least until the announced ``stage_deadline`` plus ``stage_grace`` (at most ``max_wait``);
a request without an answer, or answered 429/5xx, is retried by ``timeouts.backoff``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar, cast

import numpy as np

from .._exceptions import (ConfigError, MessageRejectedError, ProtocolError, RoundRefusedError,
                           SyncError)
from ..privacy import PrivateDelta, RandomSource, SecureRandom, privatize
from ..secagg import ClientMachine, ClientMessage, ServerMessage, Stage
from ..secagg.messages import SERVER_MESSAGE_STAGE
from .api import DeviceIdentity, NotYet, ServerApi
from .messages import RoundAnnouncement, RoundStatus
from .policy import RoundPolicy
from .runtime import SyncRuntime
from .timeouts import SyncTimeouts
from .waiting import poll_until

__all__ = ["ParticipationResult", "RoundParticipant"]

T = TypeVar("T")


@dataclass(frozen=True)
class ParticipationResult:
    """How a round ended for this device.

    ``status`` is the server's final word (done with ``model_version_out``, or aborted);
    ``original_norm`` and ``clipped`` are the delta's facts for the privacy ledger.
    """

    round_id: int
    status: RoundStatus
    original_norm: float
    clipped: bool


class RoundParticipant:
    """Drives an ``edgerec.secagg.ClientMachine`` through one round over a :class:`ServerApi`.

    Args:
        api: the server API, with this device's credential (and the ledger hook, if any).
        identity: the enrolled device (its id is the secure-aggregation id).
        announcement: the round, from ``api.current_round()``.
        delta: float delta from model ``announcement.base_model_version`` (flattened shared
            weights without those ``announcement.frozen`` names: ``vector_length`` entries;
            ``edgerec.sync.policy.federated_entries`` is the mask).
        authority_key: the pinned enrolment authority's raw Ed25519 public key: every peer's
            certificate must verify under it. Without one the device refuses every round (it
            could not tell real peers from keys the server made up).
        policy: the app's bounds on rounds (:class:`RoundPolicy`, secure defaults).
        noise_source: randomness for the noise and stochastic rounding (default: a fresh
            ``SecureRandom.from_os()`` per round; a reproducible source makes the round not
            private, which the device's ledger records as an infinite epsilon).
        timeouts: polling, waiting and retries (:class:`SyncTimeouts`; a wait that gives up
            raises ``TransportError``; resends are idempotent).
        runtime: clocks, sleep, jitter and the key generator for the round keys and masks
            (:class:`SyncRuntime`; the real ones by default).
        hold_uploads: each upload also waits (up to the API's ``hold``) for what the device
            fetches next and brings it back: one request a stage instead of an upload and a
            poll. Only for a participant with a thread of its own (:meth:`run` and
            ``SyncSession.run`` turn it on): a host stepping several devices in one thread
            must leave it off, or an upload would wait for the uploads queued behind it.
    """

    def __init__(self, api: ServerApi, identity: DeviceIdentity, announcement: RoundAnnouncement,
                 delta: np.ndarray, *, authority_key: bytes | None = None,
                 policy: RoundPolicy | None = None, noise_source: RandomSource | None = None,
                 timeouts: SyncTimeouts | None = None, runtime: SyncRuntime | None = None,
                 hold_uploads: bool = False) -> None:
        self.api, self.identity, self.announcement = api, identity, announcement
        self.hold_uploads = bool(hold_uploads)
        self._delta = np.asarray(delta, dtype=np.float64)
        if self._delta.shape != (announcement.vector_length,):
            raise ConfigError(f"delta has shape {self._delta.shape}; round {announcement.round_id} "
                              f"needs {announcement.vector_length} entries")
        if authority_key is not None and len(authority_key) != 32:
            raise ConfigError("authority_key must be a raw 32-byte Ed25519 public key")
        self._authority, self.policy = authority_key, policy or RoundPolicy()
        self._noise_source = noise_source
        self.timeouts, self.runtime = timeouts or SyncTimeouts(), runtime or SyncRuntime()
        self._machine: ClientMachine | None = None
        self._ahead: ServerMessage | RoundStatus | None = None  # what the last upload answered
        self.private: PrivateDelta | None = None

    @property
    def round_id(self) -> int:
        return self.announcement.round_id

    @property
    def private_noise(self) -> bool:
        """False when the noise came from a reproducible (hence not private) source."""
        return self._noise_source is None or bool(self._noise_source.private)

    def run(self) -> ParticipationResult:
        """Take part in every stage, then wait for the round's outcome (uploads held: this
        thread runs this device alone)."""
        self.hold_uploads = True
        self.advertise()
        self.share_keys()
        self.masked_input()
        self.consistency()
        self.unmask()
        return self.result()

    def check(self) -> None:
        """Refuse (:class:`RoundRefusedError`) a round outside the policy or without a pinned
        authority; called by :meth:`advertise`, and by the sync before it fine-tunes."""
        if self._authority is None:
            raise RoundRefusedError(f"round {self.round_id} refused: no enrolment authority key is "
                                    "pinned, so peers' keys cannot be checked")
        self.policy.check(self.announcement)

    def advertise(self) -> None:
        """Check the round, privatize the delta, make this round's keys and send them (stage 0)."""
        self.check()
        ann = self.announcement
        try:
            config, noise, fp = self.policy.secagg_config(ann), ann.noise(), ann.fixed_point()
        except ConfigError as exc:
            raise ProtocolError(f"round {ann.round_id} announces unusable parameters: {exc}") from exc
        source = self._noise_source or SecureRandom.from_os()
        self.private = privatize(self._delta, clip=ann.clip,
                                 noise=noise if ann.noise_multiplier > 0 else None,
                                 fp=fp, source=source)
        self._machine = ClientMachine(config, self.identity.device_id, self.identity.identity_key,
                                      self.private.encoded, self.runtime.key_rng,
                                      authority_key=self._authority,
                                      certificate=self.identity.certificate,
                                      now=self.runtime.wall_clock())
        self._upload(self._machine.advertise())

    def share_keys(self) -> None:
        """Wait for the key list, then send the encrypted shares (stage 1)."""
        self._step(Stage.SHARE_KEYS)

    def masked_input(self) -> None:
        """Wait for the forwarded shares, then send the masked vector (stage 2)."""
        self._step(Stage.MASKED_INPUT)

    def consistency(self) -> None:
        """Wait for the survivor set, then send this device's signature over it (stage 3)."""
        self._step(Stage.CONSISTENCY)

    def unmask(self) -> None:
        """Wait for the unmask request, then send the shares it asks for (stage 4)."""
        self._step(Stage.UNMASK)

    def result(self) -> ParticipationResult:
        """Wait until the server has finished the round (done or aborted) and say how."""
        ahead, self._ahead = self._ahead, None
        status = ahead if isinstance(ahead, RoundStatus) else self._wait(
            lambda: self.api.poll_outcome(self.round_id), "the round's result")
        private = self.private
        return ParticipationResult(self.round_id, status,
                                   private.original_norm if private else float("nan"),
                                   bool(private and private.clipped))

    # -- internals ---------------------------------------------------------------------------
    def _step(self, stage: Stage) -> None:
        if self._machine is None or self._machine.stage != stage:
            raise ConfigError(f"cannot enter stage {stage.name} now (call the steps in order)")
        ahead, self._ahead = self._ahead, None
        if SERVER_MESSAGE_STAGE.get(type(ahead)) == stage:  # the last upload's answer brought it
            incoming = cast(ServerMessage, ahead)
        else:
            # cast: poll_message answers a ServerMessage or NotYet and _wait returns the former,
            # but mypy cannot solve T in "T | NotYet" from a union of several messages.
            incoming = cast(ServerMessage, self._wait(
                lambda: self.api.poll_message(self.round_id, stage),
                f"the server's message for stage {stage.name}"))
        try:
            reply = self._machine.handle(incoming)
        except MessageRejectedError as exc:  # the server asked for something unsafe: refuse
            raise RoundRefusedError(f"round {self.round_id} refused at stage {stage.name}: "
                                    f"{type(exc).__name__}: {exc}") from exc
        self._upload(reply)

    def _upload(self, message: ClientMessage) -> None:
        if not self.hold_uploads:
            self._call(lambda: self.api.upload(self.round_id, message))
            return
        # The server may answer with what comes next (held until it is ready): kept for the
        # next step, which then need not poll for it.
        self._ahead = self._call(lambda: self.api.upload_then(self.round_id, message))

    def _wait(self, poll: Callable[[], T | NotYet], what: str) -> T:
        return poll_until(lambda: self._call(poll), f"{what} of round {self.round_id}",
                          timeouts=self.timeouts, runtime=self.runtime,
                          stage_deadline=self.announcement.stage_deadline,
                          refresh=self._announced_deadline)

    def _announced_deadline(self) -> float | None:
        """The stage deadline the server announces for this round now (None: no word). Only
        the deadline is read: the round's parameters stay the ones checked at the start."""
        try:
            found = self._call(self.api.poll_round)
        except SyncError:
            return None  # the wait gives up as it would have
        if isinstance(found, NotYet) or found.round_id != self.round_id:
            return None
        return found.stage_deadline

    def _call(self, request: Callable[[], T]) -> T:
        return self.timeouts.backoff.call(request, self.runtime)
