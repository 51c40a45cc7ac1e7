"""The split-view attack end to end: eleven real devices (``edgerec.open`` + ``SyncSession`` over
HTTP) against a lying server that runs the round honestly up to the masked inputs (a real
``ServerMachine`` behind it), then tells one half of the devices that the other half's last
two dropped and the other half the opposite, hoping to collect self-mask seeds from one view
and mask keys from the other. Every device refuses (status ``round_refused`` and a ``refusal``
row on its ledger) and the attacker receives no share at all.
"""

from __future__ import annotations

import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import edgerec
from edgerec.model.params import param_names
from edgerec.secagg import (ConsistencyCheck, ConsistencyRequest, SecAggConfig, ServerMachine, Stage,
                            UnmaskRequest, UnmaskResponse, crypto, encode, encode_certificate,
                            issue_certificate)
from edgerec.sync import HttpxTransport, SyncConditions, SyncSession, SyncStatus, SyncTimeouts

from malicious_server import MaliciousServer, Script, announcement

N, T = 11, 8


class SplitView(Script):
    """Honest until the masked inputs; then two survivor sets, one per half."""

    def __init__(self, operator: bytes, length: int) -> None:
        super().__init__(certify=lambda d, key: encode_certificate(issue_certificate(operator, d, key, 0, 2**40)))
        self.operator, self.length = crypto.ed25519_public(operator), length
        self.lock = threading.Lock()
        self.machine: ServerMachine | None = None
        self.outbox: dict[Stage, dict[int, bytes]] = {}
        self.checks: dict[int, bytes] = {}
        self.views: dict[int, tuple[int, ...]] = {}
        self.adverts: list = []

    def announcement(self, device_id: int):
        return announcement(vector_length=self.length, min_participants=N, max_participants=N,
                            threshold=T, min_survivors=T)

    def upload(self, device_id: int, round_id: int, message) -> None:
        super().upload(device_id, round_id, message)
        with self.lock:
            if self.machine is None:  # wait for every advertisement (all devices enrolled by then)
                self.adverts.append(message)
                if len(self.adverts) < N:
                    return
                config = SecAggConfig(round_id, self.length, min_clients=N, threshold=T)
                self.machine = ServerMachine(config, self.devices, os.urandom, authority_key=self.operator)
                for advert in self.adverts[:-1]:
                    self.machine.receive(advert)
            if isinstance(message, ConsistencyCheck):
                self.checks[device_id] = message.survivors_signature
                if len(self.checks) == N:
                    self._unmask_requests(round_id)
                return
            self.machine.receive(message)
            if not self.machine.pending:
                stage = self.machine.stage
                out = self.machine.advance()
                if stage == Stage.MASKED_INPUT:
                    out = self._split(round_id)
                self.outbox[Stage(stage + 1)] = {c: encode(m) for c, m in out.items()}

    def _split(self, round_id: int) -> dict:
        ids = sorted(self.devices)
        half = set(ids[: N // 2])
        for c in ids:  # each half is told the other half's last two dropped
            gone = set(ids[-2:]) if c in half else set(ids[:2])
            self.views[c] = tuple(sorted(set(ids) - gone)) if c not in gone else tuple(ids)
        return {c: ConsistencyRequest(round_id, c, view) for c, view in self.views.items()}

    def _unmask_requests(self, round_id: int) -> None:
        """Every device gets the signatures of the devices in its own view (half of which signed
        the other view: the attacker cannot forge theirs)."""
        for c in self.checks:
            # each signature with the signer's mask set, as the honest machine kept them
            signatures = tuple((p, self.machine._masked[p][0], s) for p, s in sorted(self.checks.items())
                               if p != c and p in self.views[c])
            self.outbox.setdefault(Stage.UNMASK, {})[c] = encode(UnmaskRequest(round_id, c, signatures, ()))

    def download(self, device_id: int, round_id: int, stage: Stage) -> bytes | None:
        with self.lock:
            return self.outbox.get(stage, {}).get(device_id)


@pytest.fixture
def devices(tmp_path, trained_bundle):
    recs = []
    for d in range(N):
        shutil.copytree(trained_bundle, tmp_path / f"d{d}" / "bundle")
        rec = edgerec.open(tmp_path / f"d{d}" / "app.db", bundle=tmp_path / f"d{d}" / "bundle")
        items = rec.bundle.catalogue.item_ids
        rec.log_many([{"user": "u", "item": items[(d + i) % len(items)], "event": "click"} for i in range(6)])
        recs.append(rec)
    yield recs
    for rec in recs:
        rec.close()


def test_eleven_real_devices_refuse_a_split_view_and_no_share_leaves(devices):
    operator = crypto.ed25519_private(os.urandom)
    length = int(sum(devices[0].bundle.params[n].size for n in param_names(devices[0].bundle.config)))
    script = SplitView(operator, length)
    with MaliciousServer(script) as server:
        def sync(rec):
            return SyncSession(rec, server.url, enrolment_token="et_" + "x" * 24,
                               authority_key=crypto.ed25519_public(operator),
                               transport=HttpxTransport(server.url, timeout=10),
                               allow=SyncConditions(min_new_interactions=0),
                               timeouts=SyncTimeouts(poll_interval=0.02, stage_timeout=60)).run()

        with ThreadPoolExecutor(N) as pool:
            results = list(pool.map(sync, devices))
    assert {r.status for r in results} == {SyncStatus.ROUND_REFUSED}, [r.message for r in results]
    assert all("survivor" in r.message for r in results), [r.message for r in results]
    for rec in devices:
        kinds = [e.kind for e in rec.ledger.entries()]
        assert kinds == ["enrol", "advertise_keys", "share_keys", "masked_input", "consistency", "refusal"]
    sent = [type(m) for _, m in script.received]
    assert UnmaskResponse not in sent  # not one share of anyone: nothing to rebuild any sum from
    assert sent.count(ConsistencyCheck) == N  # (the attack got as far as it can)
