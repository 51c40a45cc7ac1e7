"""An open round in memory: the ``ServerMachine``, its outboxes, and how to rebuild it.

The database is the source of truth. An open round is rebuilt from it after a restart (or any
doubt) by replaying the accepted messages into a fresh ``ServerMachine`` whose randomness
comes from the round's stored seed, and closing the stages the database says were closed: the
same machine results, with the same key lists and graph the devices saw (the machine orders
what it holds, so the order messages arrived in does not matter). The same replay lets a
replica follow stages another replica closed (``catch_up``) and take in, before it closes a
stage, the messages other replicas accepted for it (``pull``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from edgerec.secagg import ServerMachine, Stage, decode, encode
from edgerec.sync import RoundAnnouncement, UPLOAD_KINDS

from .evaluation import EVALUATION, eval_announcement
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

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def stage(self) -> Stage:
        return self.machine.stage

    def deadline(self) -> float:
        """When the stage being collected closes, whoever has answered."""
        return self.stage_started_at + self.params.deadlines[min(int(self.stage), 3)]

    def quiet(self, now: float, count: int, last_at: float | None) -> bool:
        """True when ``quiet_close`` lets the stage close now: enough answers (``count`` stored
        for this stage, on any replica), then silence since the last one (``last_at``)."""
        quiet, p = self.params.quiet_close, self.params
        if quiet is None or last_at is None or now - last_at < quiet:
            return False
        assert p.threshold is not None
        enough = p.min_participants if self.stage == Stage.ADVERTISE else p.threshold
        return count >= enough

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
            population=self.record.population, frozen=tuple(p.frozen), kind=p.kind,
            evaluation=(eval_announcement(p, self.record.base_version) if p.kind == EVALUATION
                        else None))

    def store_outbox(self, stage: Stage, messages: dict) -> None:
        self.outbox[stage] = {u: encode(m) for u, m in messages.items()}

    def pull(self, state: StateBackend, stage: int) -> None:
        """Receive every stored message of ``stage`` this cache has not seen: the ones other
        replicas accepted (the machine orders all it holds, so arrival order does not matter)."""
        for m in state.messages(self.id, stage):
            if (m.device_id, m.stage) in self.digests:
                continue
            assert m.body is not None, "an open round's messages keep their bodies"
            self.machine.receive(decode(m.body))  # type: ignore[arg-type]
            self.digests[(m.device_id, m.stage)] = m.sha256
            if m.stage == Stage.ADVERTISE:
                self.advertised.add(m.device_id)

    def catch_up(self, state: StateBackend, record: RoundRecord) -> None:
        """Close, from the stored messages, every stage the database says is closed: the
        same outboxes the closing replica made (same messages, same seeded randomness)."""
        while int(self.stage) < record.stage:
            stage = self.stage
            self.pull(state, int(stage))
            self.store_outbox(Stage(stage + 1), self.machine.advance())
        self.record, self.stage_started_at = record, record.stage_started_at

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
        active.catch_up(state, record)
        active.pull(state, record.stage)
        return active
