"""A step-by-step round driver for the secagg tests: honest clients, a server, and access to
every message in between so a test can tamper with one of them."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pytest

from edgerec.secagg import (ClientMachine, ConsistencyRequest, SecAggConfig, ServerMachine, Stage,
                            deterministic_rng, encode_certificate, issue_certificate)
from edgerec.secagg import crypto

NOW = 1_000_000.0  # the harness's clock: inside every certificate it issues


class Harness:
    """One round of ``n`` honest clients with small random inputs, driven by hand.

    An enrolment authority (``authority_key``, private; ``authority`` public) certifies every
    client, and every client pins it, as devices do.
    """

    def __init__(
        self,
        n: int = 5,
        length: int = 16,
        graph: str = "complete",
        degree: int | None = None,
        threshold: int | None = None,
        round_id: int = 1,
        seed: bytes = b"harness",
        colluders: int = 0,
    ) -> None:
        self.config = SecAggConfig(round_id, length, graph=graph, degree=degree, threshold=threshold,
                                   colluders=colluders)
        self.now = NOW
        self.ids = list(range(10, 10 + n))  # not 0-based, so ids and share x-coordinates differ
        self.keys = {c: crypto.ed25519_private(deterministic_rng(seed + b"/id/%d" % c)) for c in self.ids}
        self.identities = {c: crypto.ed25519_public(k) for c, k in self.keys.items()}
        self.authority_key = crypto.ed25519_private(deterministic_rng(seed + b"/authority"))
        self.authority = crypto.ed25519_public(self.authority_key)
        self.certificates = {c: self.certify(c, self.identities[c]) for c in self.ids}
        rng = np.random.default_rng(int.from_bytes(seed[:8].ljust(8, b"\0"), "big"))
        self.inputs = {c: rng.integers(0, 2**32, length, dtype=np.uint32) for c in self.ids}
        self.server = ServerMachine(self.config, self.identities, deterministic_rng(seed + b"/server"),
                                    authority_key=self.authority, now=NOW)
        self.clients = {c: self.client(c) for c in self.ids}

    def certify(self, c: int, identity: bytes, authority_key: bytes | None = None) -> bytes:
        """An enrolment certificate for ``c``'s ``identity`` (by this harness's authority)."""
        cert = issue_certificate(authority_key or self.authority_key, c, identity, NOW - 60, NOW + 3600)
        return encode_certificate(cert)

    def client(self, c: int, rng_label: bytes = b"", **kw) -> ClientMachine:
        """A fresh machine for client ``c`` (same keys and input; other randomness if labelled)."""
        rng = deterministic_rng(b"client/%d/" % c + rng_label)
        kw.setdefault("authority_key", self.authority)
        kw.setdefault("now", NOW)
        kw.setdefault("certificate", self.certificates[c])
        return ClientMachine(self.config, c, self.keys[c], self.inputs[c], rng, **kw)

    def advertise(self, who: Iterable[int] | None = None) -> dict:
        """Every (or ``who``'s) AdvertiseKeys, already delivered to the server."""
        msgs = {c: self.clients[c].advertise() for c in (self.ids if who is None else who)}
        self.send(msgs)
        return msgs

    def send(self, msgs: dict) -> None:
        for m in msgs.values():
            self.server.receive(m)

    def reply(self, outbox: dict, who: Iterable[int] | None = None, send: bool = True) -> dict:
        """The clients' answers to ``outbox`` (only ``who``'s), delivered unless ``send=False``."""
        chosen = set(outbox if who is None else who)
        msgs = {c: self.clients[c].handle(m) for c, m in outbox.items() if c in chosen}
        if send:
            self.send(msgs)
        return msgs

    def run_to(self, stage: Stage) -> dict:
        """Drive an honest round until the server's messages for ``stage`` exist; return them."""
        self.advertise()
        outbox = self.server.advance()
        for current in (Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.CONSISTENCY, Stage.UNMASK):
            if current == stage:
                return outbox
            self.reply(outbox)
            outbox = self.server.advance()
        return outbox

    def expected(self, survivors: Iterable[int]) -> np.ndarray:
        total = np.zeros(self.config.vector_length, dtype=np.uint32)
        for c in survivors:
            total += self.inputs[c]
        return total

    def finish(self, outbox: dict | None = None) -> np.ndarray:
        """Answer the consistency requests in ``outbox`` (if it holds them), then the unmask
        requests (an honest round's if not given), close, return the total."""
        outbox = self.run_to(Stage.UNMASK) if outbox is None else outbox
        if any(isinstance(m, ConsistencyRequest) for m in outbox.values()):
            self.reply(outbox)
            outbox = self.server.advance()
        self.reply(outbox)
        self.server.advance()
        return self.server.result.total


@pytest.fixture
def make_round():
    """``make_round(n=5, ...)`` -> a :class:`Harness`."""
    return Harness
