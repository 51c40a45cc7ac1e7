"""An open round in memory: the ``ServerMachine``, its outboxes, and how to rebuild it.

The database is the source of truth. An open round is rebuilt from it after a restart (or any
doubt) by replaying the accepted messages, in acceptance order, into a fresh ``ServerMachine``
whose randomness comes from the round's stored seed, and closing the stages the database says
were closed: the same machine results, with the same key lists and graph the devices saw.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from edgerec.secagg import ServerMachine, Stage, decode, encode
from edgerec.sync import RoundAnnouncement, UPLOAD_KINDS

from .rounds import RoundParams
from .state import RoundRecord, StateBackend

__all__ = ["ActiveRound", "seeded_rng"]

_SEED_DOMAIN = b"edgerec_server/round-rng/v1\x00"


def seeded_rng(seed: bytes) -> Callable[[int], bytes]:
    """``rng(n) -> bytes``: an AES-256-CTR keystream keyed by the round's 32 random seed bytes.

    The seed comes from the OS and is stored with the round, so a replay draws the same bytes.
    """
    key = hashlib.sha256(_SEED_DOMAIN + seed).digest()
    stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return lambda n: stream.update(bytes(n))


@dataclass
class ActiveRound:
    """One open round: its record, parameters, machine and the encoded server messages."""

    record: RoundRecord
    params: RoundParams
    members: dict[int, bytes]
    machine: ServerMachine
    stage_started_at: float
    #: encoded server message per recipient, by the client stage it opens
    outbox: dict[Stage, dict[int, bytes]] = field(default_factory=dict)
    #: SHA-256 of each accepted body, by (device, stage): an identical resend is acknowledged
    digests: dict[tuple[int, int], bytes] = field(default_factory=dict)
    advertised: set[int] = field(default_factory=set)
    receive_seconds: float = 0.0
    #: messages accepted in the stage being collected, and when the last one came (for
    #: ``quiet_close``). A rebuild starts both afresh (replayed messages are not counted), so a
    #: rebuilt stage falls back to closing by turnout or deadline: slower, never early.
    stage_messages: int = 0
    last_message_at: float | None = None

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def stage(self) -> Stage:
        return self.machine.stage

    def deadline(self) -> float:
        """When the stage being collected closes, whoever has answered."""
        return self.stage_started_at + self.params.deadlines[min(int(self.stage), 3)]

    def quiet(self, now: float) -> bool:
        """True when ``quiet_close`` lets the stage close now: enough answers, then silence."""
        quiet, p = self.params.quiet_close, self.params
        if quiet is None or self.last_message_at is None or now - self.last_message_at < quiet:
            return False
        assert p.threshold is not None
        enough = p.min_participants if self.stage == Stage.ADVERTISE else p.threshold
        return self.stage_messages >= enough

    def announcement(self) -> RoundAnnouncement:
        """What devices are told about this round."""
        p = self.params
        assert p.threshold is not None
        stage = self.stage if self.stage in UPLOAD_KINDS else Stage.UNMASK
        return RoundAnnouncement(
            round_id=self.id, vector_length=self.record.vector_length,
            min_participants=p.min_participants, max_participants=p.max_participants,
            threshold=p.threshold, graph=p.graph, degree=p.degree, clip=p.clip,
            noise_multiplier=p.noise_multiplier, min_survivors=p.min_survivors, colluders=p.colluders,
            base_model_version=self.record.base_version, stage=UPLOAD_KINDS[stage],
            stage_deadline=self.deadline(), sampling_rate=float(p.sampling_rate),
            population=self.record.population, frozen=tuple(p.frozen))

    def store_outbox(self, stage: Stage, messages: dict) -> None:
        self.outbox[stage] = {u: encode(m) for u, m in messages.items()}

    @classmethod
    def rebuild(cls, state: StateBackend, record: RoundRecord,
                authority_key: bytes | None = None) -> ActiveRound:
        """The round as the database has it (replaying its accepted messages). With
        ``authority_key`` every advertisement must carry a certificate from that authority."""
        params = RoundParams.from_dict(record.params)
        members = state.members(record.id)
        machine = ServerMachine(params.secagg_config(record.id, record.vector_length), members,
                                seeded_rng(record.seed), authority_key=authority_key)
        active = cls(record, params, members, machine, record.stage_started_at)
        by_stage: dict[int, list] = {}
        for m in state.messages(record.id):
            by_stage.setdefault(m.stage, []).append(m)
        for stage in range(record.stage + 1):
            for m in by_stage.get(stage, []):
                assert m.body is not None, "an open round's messages keep their bodies"
                machine.receive(decode(m.body))  # type: ignore[arg-type]
                active.digests[(m.device_id, m.stage)] = m.sha256
                if stage == Stage.ADVERTISE:
                    active.advertised.add(m.device_id)
            if stage < record.stage:
                active.store_outbox(Stage(stage + 1), machine.advance())
        return active
