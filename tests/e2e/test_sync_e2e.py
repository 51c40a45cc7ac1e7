"""End to end over real HTTP on loopback: 20 devices (each its own SQLite file, identity and
bundle folder) sync with a real ``edgerec-server`` process for 3 rounds of secure aggregation
with DP; 3 devices drop at random stages. Every request body a device sends is recorded (a
RecordingTransport around the real httpx one) and checked: protocol messages of allowed kinds
only, none carrying an item id, user id or event name of the device, each one on the device's
ledger with its exact size and hash, and the same digests in the server's database.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
import json
import shutil
import sqlite3
from dataclasses import replace

import httpx
import numpy as np
import pytest

import edgerec
from edgerec.sync.device import SyncRecords
from edgerec.bundle import load_bundle, write_bundle
from edgerec.data import Catalogue, synthetic
from edgerec.model.config import ModelConfig, TrainConfig
from edgerec.secagg.messages import CLIENT_MESSAGE_STAGE
from edgerec.sync import (UPLOAD_KINDS, EnrolRequest, HttpxTransport, RecordingTransport,
                          SyncConditions, SyncSession, SyncStatus, SyncTimeouts, decode,
                          decode_secagg)
from edgerec.sync.client import STEPS
from edgerec.training import fit_params
from edgerec.workflows import loo_evaluator
from edgerec_server.demo.population import device_events, plan_population

from srv_helpers import cli

N_DEVICES, ROUNDS = 20, 3
EVENTS = ("impression", "view", "click", "add_to_cart", "purchase", "dismiss", "rating")


@pytest.fixture(scope="module")
def world():
    """Synthetic data with long, distinctive ids (so a chance match in random bytes is nil)."""
    ds = synthetic(n_users=200, n_items=120, seed=1)
    cat = ds.catalogue
    cat = Catalogue(tuple(f"sku-{int(i):05d}-catalogue" for i in cat.item_ids), cat.titles,
                    cat.features, cat.feature_names)
    ds = replace(ds, catalogue=cat, user_ids=tuple(f"person-{int(u):05d}-device" for u in ds.user_ids))
    pop = plan_population(ds, pilot_share=0.5, devices=N_DEVICES, seed=0)
    return ds, pop


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, world):
    """The first global model: trained centrally on the pilot users only."""
    ds, pop = world
    cfg = ModelConfig(dim=16, history=20)
    params = fit_params(pop.pilot_sequences(), ds.catalogue.features, cfg, TrainConfig(epochs=6, seed=0))
    path = tmp_path_factory.mktemp("pilot") / "bundle"
    write_bundle(path, params, ds.catalogue, cfg, model_version=1)
    return path


def _devices(tmp_path, ds, pop, url, key, token):
    devices = []
    for u in pop.devices.tolist():
        folder = tmp_path / f"dev{u}"
        shutil.copytree(tmp_path / "first-bundle", folder / "bundle")
        rec = edgerec.open(folder / "app.db", bundle=folder / "bundle", public_key=key)
        rec.log_many(device_events(ds, u))
        transport = RecordingTransport(HttpxTransport(url, timeout=30))
        devices.append((u, rec, transport))
    return devices


def _session(rec, transport, url, key, token):
    return SyncSession(rec, url, enrolment_token=token, server_key=key, transport=transport,
                       allow=SyncConditions(min_new_interactions=0),
                       timeouts=SyncTimeouts(poll_interval=0.05, stage_timeout=60))


def test_twenty_devices_three_rounds_with_dropouts_and_the_privacy_proof(server, data_dir, tmp_path, world):
    ds, pop = world
    key = bytes.fromhex(cli(data_dir, "public-key"))
    token = json.loads(cli(data_dir, "token", "create", "--uses", str(N_DEVICES), "--json"))["token"]
    cli(data_dir, "export-bundle", "--out", str(tmp_path / "first-bundle"))
    devices = _devices(tmp_path, ds, pop, server.url, key, token)
    for _, rec, transport in devices:  # members of a round are the devices enrolled when it opens
        assert _session(rec, transport, server.url, key, token).enrol().ok
    evaluate = loo_evaluator(pop.split, ds, load_bundle(tmp_path / "first-bundle").config)
    quality = [evaluate(devices[0][1].bundle.params)[1]]
    rng = np.random.default_rng(3)
    dropped: dict[int, tuple[int, str]] = {}
    for r in range(1, ROUNDS + 1):
        cli(data_dir, "round", "open", "--min", "16", "--max", str(N_DEVICES), "--clip", "1",
            "--noise", "0.3", "--deadlines", "10,3,3,3", "--strategy", "fedadam", "--server-lr", "0.02")
        drop_at, drop_dev = str(rng.choice(STEPS)), int(rng.integers(N_DEVICES))
        dropped[r] = (drop_dev, drop_at)
        sessions = {}
        for i, (_, rec, transport) in enumerate(devices):
            s = _session(rec, transport, server.url, key, token)
            assert s.begin() is None, s._done
            sessions[i] = s
        for step in STEPS:
            if step == drop_at:
                sessions.pop(drop_dev).close()  # gone: no more messages from it this round
            for s in sessions.values():
                assert s.step(step) is None, s._done
        results = {i: s.finish() for i, s in sessions.items()}
        assert {x.status for x in results.values()} == {SyncStatus.PARTICIPATED}, results
        assert {x.model_version_after for x in results.values()} == {r + 1}
        for i in results:  # "new events since the last round" now starts from what it trained on
            rec = devices[i][1]
            assert SyncRecords(rec.device_state, rec.clock).last_mark() == rec.store.high_water_mark() > 0
        if r > 1 and dropped[r - 1][0] != drop_dev and dropped[r - 1][1] != "advertise":
            late = results[dropped[r - 1][0]]  # it missed a model: updated it before joining
            assert late.model_version_before == r - 1 or late.model_version_before == r
        quality.append(evaluate(devices[(drop_dev + 1) % N_DEVICES][1].bundle.params)[1])

    # The model advanced and did not collapse on held-out items.
    assert load_bundle(devices[(drop_dev + 1) % N_DEVICES][1].bundle.path, public_key=key).version == 1 + ROUNDS
    assert quality[-1] >= 0.8 * quality[0], quality

    audit = httpx.get(server.url + "/v1/audit").json()["rounds"]
    assert [row["state"] for row in audit] == ["done"] * ROUNDS
    _check_privacy_proof(devices, ds, pop)
    _check_ledgers_match_server(devices, audit, data_dir, dropped)


def _check_privacy_proof(devices, ds, pop):
    """Only protocol messages of allowed kinds left, none carrying the device's data."""
    for u, rec, transport in devices:
        events = device_events(ds, u)
        secrets = {e["item"].encode() for e in events} | {ds.user_ids[u].encode()}
        secrets |= {e.encode() for e in EVENTS}
        sent = [(path, body) for method, path, body, _ in transport.log if body is not None]
        assert all(method == "GET" for method, _, body, _ in transport.log if body is None)
        kinds = []
        for path, body in sent:
            if path == "/v1/enrol":
                decode(body, EnrolRequest)
                kinds.append("enrol")
            else:
                message = decode_secagg(body)
                kinds.append(UPLOAD_KINDS[CLIENT_MESSAGE_STAGE[type(message)]])
            assert not any(s in body for s in secrets), f"device {u} sent some of its data to {path}"
        ledger = rec.ledger.entries()
        assert [e.kind for e in ledger] == kinds
        assert [(e.n_bytes, e.sha256) for e in ledger] == [
            (len(b), hashlib.sha256(b).hexdigest()) for _, b in sent]
        charged = [e for e in ledger if e.round_id is not None]
        assert all(e.clip == 1.0 and e.noise_multiplier == 0.3 and e.epsilon > 0 for e in charged)
        assert rec.ledger.total_bytes() == sum(len(b) for _, b in sent)


def _check_ledgers_match_server(devices, audit, data_dir, dropped):
    """What each ledger says left is what the server stored (digest and size), round by round."""
    with sqlite3.connect(f"file:{data_dir / 'state.sqlite3'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT round_id, device_id, stage, sha256, size FROM stage_messages").fetchall()
    server = {(r, d, s): (bytes(h).hex(), n) for r, d, s, h, n in rows}
    stage_of = {kind: stage for stage, kind in UPLOAD_KINDS.items()}
    on_ledgers = {}
    for _, rec, _ in devices:
        device_id = json.loads(rec._state.get("sync_identity").value)["device_id"]
        for e in rec.ledger.entries():
            if e.round_id is not None:
                on_ledgers[(int(e.round_id), device_id, int(stage_of[e.kind]))] = (e.sha256, e.n_bytes)
    assert on_ledgers == server
    for row in audit:
        rid = row["round_id"]
        advertised = {k for k in on_ledgers if k[0] == rid and k[2] == 0}
        masked = {k for k in on_ledgers if k[0] == rid and k[2] == 2}
        assert row["participants"] == len(advertised)
        assert row["survivors"] == len(masked)
        assert row["participants"] == N_DEVICES - (dropped[rid][1] == "advertise")


def test_devices_syncing_on_their_own_send_one_request_a_stage(server, data_dir, tmp_path, world):
    """``rec.sync`` (``SyncSession.run``) on devices that each run in their own thread, as
    phones do: every upload waits for the next stage's message and brings it back, so a round
    is five uploads a device and no stage poll; the ledger still has each of the five bodies,
    and the round publishes as before."""
    ds, pop = world
    key = bytes.fromhex(cli(data_dir, "public-key"))
    token = json.loads(cli(data_dir, "token", "create", "--uses", str(N_DEVICES), "--json"))["token"]
    cli(data_dir, "export-bundle", "--out", str(tmp_path / "first-bundle"))
    devices = _devices(tmp_path, ds, pop, server.url, key, token)[:6]
    for _, rec, transport in devices:
        assert _session(rec, transport, server.url, key, token).enrol().ok
    cli(data_dir, "round", "open", "--min", "6", "--noise", "0", "--deadlines", "30,30,30,30")
    for _, _, transport in devices:
        transport.log.clear()
    with ThreadPoolExecutor(len(devices)) as pool:
        results = list(pool.map(lambda d: _session(d[1], d[2], server.url, key, token).run(), devices))
    assert {r.status for r in results} == {SyncStatus.PARTICIPATED}, results
    assert {r.model_version_after for r in results} == {2}
    for _, rec, transport in devices:
        round_calls = [(m, p) for m, p, _, _ in transport.log if "/v1/rounds/" in p and "current" not in p]
        assert [m for m, _ in round_calls] == ["POST"] * 5, round_calls  # no GET of a message
        assert all("?then=" in p for _, p in round_calls)
        kinds = [e.kind for e in rec.ledger.entries() if e.kind in UPLOAD_KINDS.values()]
        assert sorted(kinds) == sorted(UPLOAD_KINDS.values())
