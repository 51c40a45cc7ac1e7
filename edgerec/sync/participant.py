"""One device's part in one federated round, end to end over HTTP.

::

    announcement = api.current_round()
    if announcement is not None:
        part = RoundParticipant(api, identity, announcement, update.delta)
        outcome = part.run()                 # advertise, share keys, masked input, unmask, result

``run()`` is the four steps below in order; each step may also be called on its own (a
simulation can stop after any of them to play a device that drops out). The delta is clipped,
noised and fixed-point encoded (``edgerec.privacy.privatize``) with the round's parameters
before anything is masked; only masked, signed secure-aggregation messages leave the device,
each through ``api.on_upload`` first. A device that restarts mid-round cannot resume (its
round keys live only in this object): it has dropped out, and the round goes on without it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .._exceptions import ConfigError
from ..privacy import PrivateDelta, privatize
from ..secagg import ClientMachine, Stage
from .api import DeviceIdentity, ServerApi
from .errors import ProtocolError, TransportError
from .messages import RoundAnnouncement, RoundStatus

__all__ = ["ParticipationResult", "RoundParticipant"]


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
            weights, ``announcement.vector_length`` entries).
        rng: ``rng(n) -> n bytes`` for the round keys and masks (the OS by default).
        noise_rng: numpy Generator for the noise and stochastic rounding (OS-seeded default).
        poll_interval: seconds between polls while the server is still collecting a stage.
        stage_timeout: give up (``TransportError``) after waiting this long for one stage.
        transport_retries: resends of one request after no answer (resends are idempotent).
    """

    def __init__(self, api: ServerApi, identity: DeviceIdentity, announcement: RoundAnnouncement,
                 delta: np.ndarray, *, rng: Callable[[int], bytes] = os.urandom,
                 noise_rng: np.random.Generator | None = None, poll_interval: float = 1.0,
                 stage_timeout: float = 900.0, transport_retries: int = 2,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.api, self.identity, self.announcement = api, identity, announcement
        self._delta = np.asarray(delta, dtype=np.float64)
        if self._delta.shape != (announcement.vector_length,):
            raise ConfigError(f"delta has shape {self._delta.shape}; round {announcement.round_id} "
                              f"needs {announcement.vector_length} entries")
        self._rng, self._noise_rng = rng, noise_rng or np.random.default_rng()
        self._poll, self._timeout, self._retries = poll_interval, stage_timeout, transport_retries
        self._clock, self._sleep = clock, sleep
        self._machine: ClientMachine | None = None
        self.private: PrivateDelta | None = None

    @property
    def round_id(self) -> int:
        return self.announcement.round_id

    def run(self) -> ParticipationResult:
        """Take part in every stage, then wait for the round's outcome."""
        self.advertise()
        self.share_keys()
        self.masked_input()
        self.unmask()
        return self.result()

    def advertise(self) -> None:
        """Privatize the delta, make this round's keys and send them (stage 0)."""
        ann = self.announcement
        try:
            config, noise, fp = ann.secagg_config(), ann.noise(), ann.fixed_point()
        except ConfigError as exc:
            raise ProtocolError(f"round {ann.round_id} announces unusable parameters: {exc}") from exc
        self.private = privatize(self._delta, clip=ann.clip,
                                 noise=noise if ann.noise_multiplier > 0 else None,
                                 fp=fp, rng=self._noise_rng)
        self._machine = ClientMachine(config, self.identity.device_id, self.identity.identity_key,
                                      self.private.encoded, self._rng)
        self._upload(self._machine.advertise())

    def share_keys(self) -> None:
        """Wait for the key list, then send the encrypted shares (stage 1)."""
        self._step(Stage.SHARE_KEYS)

    def masked_input(self) -> None:
        """Wait for the forwarded shares, then send the masked vector (stage 2)."""
        self._step(Stage.MASKED_INPUT)

    def unmask(self) -> None:
        """Wait for the unmask request, then send the shares it asks for (stage 3)."""
        self._step(Stage.UNMASK)

    def result(self) -> ParticipationResult:
        """Wait until the server has finished the round (done or aborted) and say how."""
        status = self._wait(lambda: self._settled(self._call(lambda: self.api.round_status(self.round_id))),
                            "the round's result")
        private = self.private
        return ParticipationResult(self.round_id, status,
                                   private.original_norm if private else float("nan"),
                                   bool(private and private.clipped))

    # -- internals ---------------------------------------------------------------------------
    def _step(self, stage: Stage) -> None:
        if self._machine is None or self._machine.stage != stage:
            raise ConfigError(f"cannot enter stage {stage.name} now (call the steps in order)")
        incoming = self._wait(lambda: self._call(lambda: self.api.download(self.round_id, stage)),
                              f"the server's message for stage {stage.name}")
        self._upload(self._machine.handle(incoming))  # a refused message raises: we drop out

    def _upload(self, message: object) -> None:
        self._call(lambda: self.api.upload(self.round_id, message))  # type: ignore[arg-type]

    @staticmethod
    def _settled(status: RoundStatus) -> RoundStatus | None:
        return None if status.state == "open" else status

    def _wait(self, poll: Callable[[], object], what: str):  # type: ignore[no-untyped-def]
        give_up = self._clock() + self._timeout
        while True:
            got = poll()
            if got is not None:
                return got
            if self._clock() >= give_up:
                raise TransportError(f"round {self.round_id}: no answer for {what} "
                                     f"within {self._timeout:g} s")
            self._sleep(self._poll)

    def _call(self, request: Callable[[], object]):  # type: ignore[no-untyped-def]
        for attempt in range(self._retries + 1):
            try:
                return request()
            except TransportError:
                if attempt == self._retries:
                    raise
                self._sleep(self._poll)
        raise AssertionError("unreachable")

