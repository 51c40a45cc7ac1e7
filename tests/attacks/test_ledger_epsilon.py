"""Attack (on the auditor's trust): a device's ledger reporting an epsilon that is no longer
true. The hostile review found that after a round without noise (z = 0, epsilon infinite) the
ledger stored NULL and went on reporting the last finite figure for ever: a device that had sent
an un-noised delta still showed, say, 4.3.

Real devices (``edgerec.open`` + ``SyncSession``) take part in real rounds with a real
``edgerec-server`` process: z = 1, then z = 0, then z = 1 again. After each round every device's
ledger (in the app, read-only by an auditor with ``read_ledger``, and as ``edgerec audit --json``)
must report exactly what dp-accounting says for the rounds that device sent a delta to, with no
amplification: finite after the first, infinite after the second, and still infinite after the
third.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
from pathlib import Path

import dp_accounting as dp
import pytest

import edgerec
from edgerec.cli import main as edgerec_main
from edgerec.sync import HttpxTransport, SyncConditions, SyncSession, SyncStatus, SyncTimeouts
from edgerec.sync.client import STEPS

from srv_helpers import cli
from srv_helpers import bundle_dir, data_dir, server, server_factory  # noqa: F401  (fixtures)

DELTA = 1e-5
N = 4


def _independent(zs: list[float]) -> float:
    if any(z == 0 for z in zs):
        return math.inf
    acct = dp.rdp.RdpAccountant()
    for z in zs:
        acct.compose(dp.GaussianDpEvent(noise_multiplier=z))
    return acct.get_epsilon(DELTA)


def _round(devices, url: str, key: bytes, data_dir: Path, z: float) -> None:
    cli(data_dir, "round", "open", "--min", str(N), "--clip", "1", "--noise", str(z),
        "--deadlines", "20,5,5,5")
    sessions = [SyncSession(rec, url, server_key=key, transport=HttpxTransport(url, timeout=10),
                            allow=SyncConditions(min_new_interactions=0),
                            timeouts=SyncTimeouts(poll_interval=0.05, stage_timeout=30))
                for rec in devices]
    for s in sessions:
        assert s.begin() is None, s._done
    for step in STEPS:
        for s in sessions:
            assert s.step(step) is None, s._done
    assert {s.finish().status for s in sessions} == {SyncStatus.PARTICIPATED}


def test_the_ledger_epsilon_is_the_devices_own_bound_and_infinity_stays(server, data_dir, bundle_dir, tmp_path):
    key = bytes.fromhex(cli(data_dir, "public-key"))
    token = json.loads(cli(data_dir, "token", "create", "--uses", str(N), "--json"))["token"]
    cli(data_dir, "export-bundle", "--out", str(tmp_path / "first"))
    devices = []
    for d in range(N):
        folder = tmp_path / f"device{d}"
        shutil.copytree(tmp_path / "first", folder / "bundle")
        rec = edgerec.open(folder / "app.db", bundle=folder / "bundle", public_key=key)
        rec.log_many([{"user": "u", "item": i, "event": "click"} for i in rec.bundle.catalogue.item_ids[d:d + 5]])
        assert SyncSession(rec, server.url, enrolment_token=token, server_key=key).enrol().ok
        devices.append(rec)

    zs: list[float] = []
    for z in (1.0, 0.0, 1.0):
        _round(devices, server.url, key, data_dir, z)
        zs.append(z)
        expected = _independent(zs)
        for rec in devices:
            snapshot = edgerec.read_ledger(rec.store.path)
            assert rec.ledger.epsilon_charged() == pytest.approx(expected)
            assert snapshot.epsilon == pytest.approx(expected)
            assert snapshot.differentially_private is math.isfinite(expected)
            exported = json.loads(json.dumps(snapshot.to_dict()))  # valid JSON: no bare Infinity
            assert exported["epsilon"] == ("inf" if math.isinf(expected) else pytest.approx(expected))
        assert 0 < _independent(zs[:1]) < math.inf  # the first round's figure was a real one
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert edgerec_main(["audit", "--db", str(devices[0].store.path), "--json"]) == 0
    audit = json.loads(out.getvalue())
    assert audit["epsilon"] == "inf" and audit["differentially_private"] is False
    rows = [e for e in audit["entries"] if e["round_id"] is not None]
    assert {e["round_id"] for e in rows} == {"1", "2", "3"}
    for rec in devices:
        rec.close()
