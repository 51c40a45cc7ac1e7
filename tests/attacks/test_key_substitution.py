"""Attack: key substitution. A lying server invents all of a victim's neighbours, plays them
itself and runs an otherwise honest round: the "sum" is then the victim's own input (its
invented neighbours add zero). The defence: every peer must show an enrolment certificate from
the authority the device pins, which the server does not hold.

First at the protocol level (the attack is shown to recover the victim's input exactly from a
device that trusts relayed keys), then end to end: a real device (``edgerec.open`` +
``SyncSession`` over HTTP) against a lying server that relays invented neighbours; the device
refuses (status and ledger row) and its masked input never leaves it.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import edgerec
from edgerec.secagg import (BadCertificateError, ClientMachine, KeyList, PeerKeys, SecAggConfig,
                            ServerMachine, Stage, crypto, encode, encode_certificate,
                            issue_certificate)
from edgerec.sync import HttpxTransport, SyncConditions, SyncSession, SyncStatus, SyncTimeouts

from malicious_server import MaliciousServer, Script, announcement

NOW = 1_000_000.0
VICTIM = 1


def _certificate(authority: bytes, device: int, key: bytes) -> bytes:
    return encode_certificate(issue_certificate(authority, device, crypto.ed25519_public(key),
                                                NOW - 60, NOW + 3600))


def _sybil_round(victim: ClientMachine, config: SecAggConfig, attacker_authority: bytes,
                 victim_key: bytes) -> np.ndarray:
    """The attack: a real ServerMachine whose every participant but the victim is the
    attacker's own (zero inputs, its own keys, certificates from its own authority)."""
    keys = {c: crypto.ed25519_private(os.urandom) for c in range(2, 6)}
    sybils = {c: ClientMachine(config, c, k, np.zeros(config.vector_length, np.uint32), os.urandom,
                               certificate=_certificate(attacker_authority, c, k)) for c, k in keys.items()}
    identities = {c: crypto.ed25519_public(k) for c, k in keys.items()} | {VICTIM: crypto.ed25519_public(victim_key)}
    server = ServerMachine(config, identities, os.urandom)
    everyone = {VICTIM: victim, **sybils}
    for machine in everyone.values():
        server.receive(machine.advertise())
    for _ in (Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.CONSISTENCY, Stage.UNMASK):
        for c, msg in server.advance().items():
            server.receive(everyone[c].handle(msg))
    server.advance()
    return server.result.total


def test_the_attack_recovers_the_input_of_a_device_that_trusts_relayed_keys():
    config = SecAggConfig(9, 16)
    x = np.random.default_rng(0).integers(0, 2**32, 16, dtype=np.uint32)
    victim_key = crypto.ed25519_private(os.urandom)
    victim = ClientMachine(config, VICTIM, victim_key, x, os.urandom)  # no authority pinned
    total = _sybil_round(victim, config, crypto.ed25519_private(os.urandom), victim_key)
    assert np.array_equal(total, x)  # the server holds the victim's encoded, noised delta


def test_a_device_that_pins_the_authority_refuses_invented_neighbours():
    config = SecAggConfig(9, 16)
    operator = crypto.ed25519_private(os.urandom)  # the real enrolment authority: not the server's
    victim_key = crypto.ed25519_private(os.urandom)
    victim = ClientMachine(config, VICTIM, victim_key, np.zeros(16, np.uint32), os.urandom,
                           authority_key=crypto.ed25519_public(operator), now=NOW,
                           certificate=_certificate(operator, VICTIM, victim_key))
    with pytest.raises(BadCertificateError):
        _sybil_round(victim, config, crypto.ed25519_private(os.urandom), victim_key)
    assert victim.stage == Stage.SHARE_KEYS  # it never dealt a share, nor masked its input


# -- end to end: a real device over HTTP -----------------------------------------------------

class InventedNeighbours(Script):
    """Announces a round, then hands the device a key list of neighbours the server made up,
    each with keys it signed itself and a certificate from its own authority (or another
    device's real certificate): everything a server without the authority key can do."""

    def __init__(self, operator: bytes, vector_length: int, borrow: bool) -> None:
        super().__init__(certify=lambda d, key: encode_certificate(
            issue_certificate(operator, d, key, 0, 2**40)))
        self.vector_length, self.borrow = vector_length, borrow
        self.own_authority = crypto.ed25519_private(os.urandom)

    def announcement(self, device_id: int):
        return announcement(vector_length=self.vector_length)

    def download(self, device_id: int, round_id: int, stage: Stage) -> bytes | None:
        if stage != Stage.SHARE_KEYS:
            return None  # it never gets further: the device refuses the key list
        advert = next(m for d, m in self.received if d == device_id)
        peers = tuple(self._invented(c, advert) for c in range(2, 6))
        participants = (device_id, *range(2, 6))
        return encode(KeyList(round_id, device_id, os.urandom(32), 4, 4, participants, peers))

    def _invented(self, c: int, victim_advert) -> PeerKeys:
        from edgerec.secagg import AdvertiseKeys, sign_message

        key = crypto.ed25519_private(os.urandom)
        cert = (victim_advert.certificate if self.borrow  # a real certificate, of another key
                else _certificate(self.own_authority, c, key))
        enc, mask = crypto.x25519_keypair(os.urandom)[1], crypto.x25519_keypair(os.urandom)[1]
        signed = sign_message(AdvertiseKeys(1, c, enc, mask, cert), key)
        return PeerKeys(c, crypto.ed25519_public(key), enc, mask, signed.signature, cert)


@pytest.mark.parametrize("borrow", [False, True], ids=["own-authority", "borrowed-certificate"])
def test_a_real_device_refuses_and_its_delta_never_leaves(tmp_path, trained_bundle, borrow):
    operator = crypto.ed25519_private(os.urandom)
    shutil.copytree(trained_bundle, tmp_path / "bundle")
    rec = edgerec.open(tmp_path / "app.db", bundle=tmp_path / "bundle")
    rec.log_many([{"user": "u", "item": item, "event": "click"} for item in rec.bundle.catalogue.item_ids[:8]])
    from edgerec.model.params import param_names

    length = int(sum(rec.bundle.params[n].size for n in param_names(rec.bundle.config)))
    script = InventedNeighbours(operator, length, borrow)
    with MaliciousServer(script) as server:
        result = SyncSession(rec, server.url, enrolment_token="et_" + "x" * 24,
                             authority_key=crypto.ed25519_public(operator),
                             transport=HttpxTransport(server.url, timeout=5),
                             allow=SyncConditions(min_new_interactions=0),
                             timeouts=SyncTimeouts(poll_interval=0.01, stage_timeout=5,
                                                   max_wait=5)).run()
    assert result.status == SyncStatus.ROUND_REFUSED, result
    assert "certificate" in result.message.lower()
    kinds = [kind for _, kind in [(e.seq, e.kind) for e in rec.ledger.entries()]]
    assert kinds == ["enrol", "advertise_keys", "refusal"]
    sent = [type(m).__name__ for _, m in script.received]
    assert sent == ["AdvertiseKeys"]  # no shares dealt, no masked input: nothing to recover
    rec.close()
