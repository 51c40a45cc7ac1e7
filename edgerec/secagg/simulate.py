"""Drive a whole round in memory: for tests, benchmarks and documentation. Pure: no I/O.

Every message goes through :mod:`edgerec.secagg.wire` (encode, count bytes, decode) unless
``wire_roundtrip=False``. A ``clock`` callable (e.g. ``time.perf_counter``) may be passed to
time each client and each server step; without it all times are zero.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .._exceptions import MessageRejectedError
from . import crypto, wire
from .certificate import encode_certificate, issue_certificate
from .client import ClientMachine
from .config import SecAggConfig
from .messages import Message, Stage
from .server import AggregateResult, ServerMachine

Rng = Callable[[int], bytes]


def deterministic_rng(seed: bytes) -> Rng:
    """A reproducible ``rng(n) -> bytes`` (AES-CTR keystream keyed by SHA-256(seed)).

    For tests and simulations only; production passes ``os.urandom``.
    """
    key = hashlib.sha256(b"edgerec/secagg/test-rng\x00" + seed).digest()
    stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return lambda n: stream.update(bytes(n))


@dataclass
class RoundOutcome:
    """What happened in a simulated round."""

    result: AggregateResult
    upload_bytes: dict[int, int] = field(default_factory=dict)
    download_bytes: dict[int, int] = field(default_factory=dict)
    client_seconds: dict[int, float] = field(default_factory=dict)
    #: server time per stage: receiving that stage's messages plus closing it
    server_seconds: dict[Stage, float] = field(default_factory=dict)
    #: clients that refused a server message (they then count as dropped), with the error
    refused: dict[int, MessageRejectedError] = field(default_factory=dict)


class _Sim:
    def __init__(self, wire_roundtrip: bool, clock: Callable[[], float] | None) -> None:
        self.wire, self.clock = wire_roundtrip, clock or (lambda: 0.0)
        self.up: dict[int, int] = {}
        self.down: dict[int, int] = {}
        self.client_s: dict[int, float] = {}
        self.server_s: dict[Stage, float] = {}

    def carry(self, msg: Message, count: dict[int, int], who: int) -> tuple[Message, float, float]:
        """(delivered message, sender-side seconds, receiver-side seconds)."""
        if not self.wire:
            return msg, 0.0, 0.0
        t0 = self.clock()
        data = wire.encode(msg)
        t1 = self.clock()
        delivered = wire.decode(data)
        count[who] = count.get(who, 0) + len(data)
        return delivered, t1 - t0, self.clock() - t1

    def to_server(self, server: ServerMachine, c: int, msg: Message, stage: Stage) -> None:
        delivered, sending, receiving = self.carry(msg, self.up, c)
        self.client_s[c] = self.client_s.get(c, 0.0) + sending
        t0 = self.clock()
        try:
            server.receive(delivered)  # type: ignore[arg-type]
        except MessageRejectedError:
            pass  # the server drops it; the round goes on
        self.server_s[stage] = self.server_s.get(stage, 0.0) + receiving + self.clock() - t0

    def to_client(self, client: ClientMachine, msg: Message, stage: Stage) -> tuple[Message, float]:
        delivered, sending, receiving = self.carry(msg, self.down, client.client_id)
        self.client_s[client.client_id] = self.client_s.get(client.client_id, 0.0) + receiving
        return delivered, sending

    def timed(self, who: int, fn: Callable[[], Message]) -> Message:
        t0 = self.clock()
        try:
            return fn()
        finally:
            self.client_s[who] = self.client_s.get(who, 0.0) + self.clock() - t0


def simulate_round(
    config: SecAggConfig,
    inputs: Mapping[int, np.ndarray],
    *,
    seed: bytes = b"",
    dropouts: Mapping[int, Stage] | None = None,
    identity_keys: Mapping[int, bytes] | None = None,
    authority_key: bytes | None = None,
    wire_roundtrip: bool = True,
    clock: Callable[[], float] | None = None,
) -> RoundOutcome:
    """Run one round for the clients in ``inputs`` and return the outcome.

    ``dropouts[c] = stage`` makes client ``c`` vanish at ``stage``: it sends nothing from that
    stage on (``Stage.ADVERTISE``: never shows up; ``Stage.UNMASK``: sends its masked input and
    its survivor signature but never answers the unmask request). With ``authority_key`` (a raw
    Ed25519 private key) every client gets an enrolment certificate from it and checks its
    peers'. Raises :class:`RoundAbortedError` like the server does.
    """
    drop_at = dict(dropouts or {})
    keys = dict(identity_keys or {})
    for c in inputs:
        keys.setdefault(c, crypto.ed25519_private(deterministic_rng(seed + b"/identity/%d" % c)))
    identities = {c: crypto.ed25519_public(keys[c]) for c in inputs}
    authority = crypto.ed25519_public(authority_key) if authority_key is not None else None
    server = ServerMachine(config, identities, deterministic_rng(seed + b"/server"),
                           authority_key=authority, now=_NOW)
    clients = {
        c: ClientMachine(config, c, keys[c], inputs[c], deterministic_rng(seed + b"/client/%d" % c),
                         authority_key=authority, now=_NOW,
                         certificate=_certificate(authority_key, c, identities[c]))
        for c in sorted(inputs)
    }
    sim = _Sim(wire_roundtrip, clock)
    refused: dict[int, MessageRejectedError] = {}

    def active(c: int, stage: Stage) -> bool:
        return c not in refused and drop_at.get(c, Stage.DONE) > stage

    for c, client in clients.items():
        if active(c, Stage.ADVERTISE):
            sim.to_server(server, c, sim.timed(c, client.advertise), Stage.ADVERTISE)
    for stage in (Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.CONSISTENCY, Stage.UNMASK):
        outbox = _close(server, sim, Stage(stage - 1))
        for c, msg in sorted(outbox.items()):
            if not active(c, stage):
                continue
            delivered, encode_s = sim.to_client(clients[c], msg, stage)
            sim.server_s[Stage(stage - 1)] += encode_s
            try:
                reply = sim.timed(c, lambda: clients[c].handle(delivered))  # type: ignore[arg-type]
            except MessageRejectedError as exc:
                refused[c] = exc
                continue
            sim.to_server(server, c, reply, stage)
    _close(server, sim, Stage.UNMASK)
    return RoundOutcome(server.result, sim.up, sim.down, sim.client_s, sim.server_s, refused)


_NOW = 1_000_000.0  # simulated rounds run at a fixed time, inside their certificates' validity


def _certificate(authority_key: bytes | None, client: int, identity: bytes) -> bytes:
    if authority_key is None:
        return b""
    return encode_certificate(issue_certificate(authority_key, client, identity, 0, 2 * _NOW))


def _close(server: ServerMachine, sim: _Sim, stage: Stage) -> dict:
    t0 = sim.clock()
    try:
        return server.advance()
    finally:
        sim.server_s[stage] = sim.server_s.get(stage, 0.0) + sim.clock() - t0
