"""Rounds that federate fewer weights, end to end over real HTTP with a real ``edgerec-server``:
``round open --frozen tables`` leaves the item tables out. Devices (``edgerec.open`` +
``rec.sync``) fine-tune with the tables held fixed and send only the rest; the server puts zeros
back before FedAdam, so the tables come out bit-identical (even with momentum left by an
earlier round that federated them), and every device's ledger shows the smaller upload. A
frozen list changed on the way to a device is refused by that device before anything leaves.
"""

from __future__ import annotations

import json
import shutil

import httpx
import numpy as np

import edgerec
from edgerec.bundle import load_bundle
from edgerec.model.params import ITEM_TABLES, federated_mask, flatten, param_names
from edgerec.sync import (
    HttpxTransport,
    RecordingTransport,
    Response,
    SyncConditions,
    SyncSession,
    SyncStatus,
    SyncTimeouts,
)
from edgerec.sync.client import STEPS

from srv_helpers import cli

N_DEVICES = 5


def _devices(tmp_path, url, key, n=N_DEVICES, seed=0):
    """``n`` devices on the tiny model (30 items), each with its own clicks and ratings."""
    rng = np.random.default_rng(seed)
    out = []
    for d in range(n):
        folder = tmp_path / f"dev{d}"
        shutil.copytree(tmp_path / "first-bundle", folder / "bundle")
        rec = edgerec.open(folder / "app.db", bundle=folder / "bundle", public_key=key)
        items = rng.choice(30, size=12, replace=False)
        rec.log_many([{"user": f"u{d}", "item": f"i{int(i)}", "event": "click", "ts": 1e9 + k}
                      for k, i in enumerate(items)])
        out.append((rec, RecordingTransport(HttpxTransport(url, timeout=30))))
    return out


def _session(rec, transport, url, key, token):
    return SyncSession(rec, url, enrolment_token=token, server_key=key, transport=transport,
                       allow=SyncConditions(min_new_interactions=0),
                       timeouts=SyncTimeouts(poll_interval=0.05, stage_timeout=60))


def _round(devices, url, key, token):
    """Every device takes part in the open round; the length of each one's vector."""
    sessions = [_session(rec, t, url, key, token) for rec, t in devices]
    for s in sessions:
        assert s.begin() is None, s._done
    lengths = {s.participant.announcement.vector_length for s in sessions}
    for step in STEPS:
        for s in sessions:
            assert s.step(step) is None, s._done
    results = [s.finish() for s in sessions]
    assert {r.status for r in results} == {SyncStatus.PARTICIPATED}, results
    (length,) = lengths
    return length


def _strategy_state(data_dir):
    from edgerec_server import SqliteBackend

    state = SqliteBackend(data_dir / "state.sqlite3")
    try:
        return state.strategy_state("fedadam")
    finally:
        state.close()


def _masked_input_bytes(rec, round_id):
    (entry,) = [e for e in rec.ledger.entries()
                if e.round_id is not None and int(e.round_id) == round_id and e.kind == "masked_input"]
    return entry.n_bytes


def test_frozen_tables_stay_bit_identical_and_devices_send_less(server, data_dir, tmp_path):
    key = bytes.fromhex(cli(data_dir, "public-key"))
    token = json.loads(cli(data_dir, "token", "create", "--uses", str(N_DEVICES), "--json"))["token"]
    cli(data_dir, "export-bundle", "--out", str(tmp_path / "first-bundle"))
    devices = _devices(tmp_path, server.url, key)
    for rec, transport in devices:
        assert _session(rec, transport, server.url, key, token).enrol().ok
    first = load_bundle(tmp_path / "first-bundle")
    names = param_names(first.config)
    total = flatten(first.params, names).size
    mask = federated_mask(first.params, names, ITEM_TABLES)
    federated = int(mask.sum())
    assert 0 < federated < total

    # Round 1 federates every weight (FedAdam: it leaves momentum on the tables).
    opened = json.loads(cli(data_dir, "round", "open", "--min", str(N_DEVICES), "--noise", "0.5",
                            "--deadlines", "20,5,5,5", "--strategy", "fedadam", "--server-lr", "0.05"))
    assert opened["federated_weights"] == total and opened["frozen"] == []
    assert _round(devices, server.url, key, token) == total
    step1, arrays1 = _strategy_state(data_dir)
    assert np.abs(arrays1["m"][~mask]).min() > 0  # the tables' momentum would move them again

    # Round 2 freezes the item tables ("tables" is the four of them, stored spelled out).
    opened = json.loads(cli(data_dir, "round", "open", "--min", str(N_DEVICES), "--noise", "0.5",
                            "--deadlines", "20,5,5,5", "--strategy", "fedadam", "--server-lr", "0.05",
                            "--frozen", "tables"))
    assert opened["federated_weights"] == federated
    assert opened["frozen"] == [n for n in names if n in ITEM_TABLES]
    assert _round(devices, server.url, key, token) == federated  # what the devices were told

    rec = devices[0][0]
    assert rec.model_version == 3  # installed after the round
    v2 = cli(data_dir, "export-bundle", "--version", "2", "--out", str(tmp_path / "v2"))
    assert json.loads(v2)["model_version"] == 2
    base, after = load_bundle(tmp_path / "v2").params, rec.bundle.params
    for name in names:
        same = np.array_equal(after[name], base[name])
        assert same == (name in ITEM_TABLES), name  # frozen: bit for bit; the rest moved

    # The optimizer's state keeps the full shape; the frozen entries sat the round out.
    step2, arrays2 = _strategy_state(data_dir)
    assert step2 == step1 + 1
    for name in ("m", "v"):
        assert arrays2[name].shape == (total,)
        np.testing.assert_array_equal(arrays2[name][~mask], arrays1[name][~mask])
        assert not np.array_equal(arrays2[name][mask], arrays1[name][mask])

    # What left each device: the same message, 4 bytes (one uint32) per weight fewer; the
    # ledger has exactly what was sent, and the audit says what was federated.
    for rec, transport in devices:
        full, small = _masked_input_bytes(rec, 1), _masked_input_bytes(rec, 2)
        assert full - small == 4 * (total - federated)
        sent = [len(body) for _, path, body, _ in transport.log if body is not None]
        assert sum(e.n_bytes for e in rec.ledger.entries()) == sum(sent)
    rows = httpx.get(server.url + "/v1/audit").json()["rounds"]
    assert [(r["federated_weights"], r["frozen"]) for r in rows] == [
        (total, []), (federated, opened["frozen"])]
    listing = [json.loads(line) for line in cli(data_dir, "round", "list").splitlines()]
    assert [r["federated_weights"] for r in listing] == [total, federated]


class _Tamper:
    """A network attacker on one device's link: rewrites the round announcement it receives."""

    def __init__(self, inner, change):
        self.inner, self.change, self.log = inner, change, []

    def request(self, method, path, *, body=None, headers=None):
        answer = self.inner.request(method, path, body=body, headers=headers)
        self.log.append((method, path, body))
        if path == "/v1/rounds/current" and answer.status == 200:
            raw = json.loads(answer.body)
            self.change(raw)
            answer = Response(answer.status, answer.headers, json.dumps(raw).encode())
        return answer

    def close(self):
        self.inner.close()


def _drop_one(raw):
    raw["frozen"] = raw["frozen"][1:]


def _add_unknown(raw):
    raw["frozen"] = raw["frozen"] + ["emb_everything"]


def _remove_field(raw):  # as if the round froze nothing (an announcement from before the field)
    del raw["frozen"]


def _freeze_all_but_one(raw):
    raw["frozen"] = [n for n in raw["frozen"]] + ["bias", "pos", "signal", "user0", "w1", "b1"]


TAMPERS = [(_drop_one, "announces"), (_add_unknown, "does not have"), (_remove_field, "announces"),
           (_freeze_all_but_one, "announces")]


def test_a_changed_frozen_list_is_refused_before_anything_leaves(server, data_dir, tmp_path):
    key = bytes.fromhex(cli(data_dir, "public-key"))
    token = json.loads(cli(data_dir, "token", "create", "--uses", "4", "--json"))["token"]
    cli(data_dir, "export-bundle", "--out", str(tmp_path / "first-bundle"))
    devices = _devices(tmp_path, server.url, key, n=4)
    for rec, transport in devices:
        assert _session(rec, transport, server.url, key, token).enrol().ok
    opened = json.loads(cli(data_dir, "round", "open", "--min", "4", "--noise", "0.5",
                            "--frozen", "emb_in,emb_out,feat_in,feat_out"))
    rid = opened["round_id"]

    rec, honest = devices[0]
    for n, (change, words) in enumerate(TAMPERS, 1):
        attacked = _Tamper(HttpxTransport(server.url, timeout=30), change)
        result = _session(rec, attacked, server.url, key, token).run()
        assert result.status == SyncStatus.ROUND_REFUSED and words in result.message, (change, result)
        assert result.round_id == rid and not result.participated
        refusal = rec.ledger.entries()[-1]
        assert (refusal.kind, int(refusal.round_id), refusal.n_bytes) == ("refusal", rid, 0)
        assert words in refusal.note
        # Nothing of the round left: no stage message on the ledger or on the wire.
        assert [e.kind for e in rec.ledger.entries() if e.round_id is not None] == ["refusal"] * n
        assert not [p for m, p, _ in attacked.log if m == "POST" and "/rounds/" in p]

    # The same device on an honest link joins the round (the announcement as the server made it).
    control = _session(rec, honest, server.url, key, token)
    assert control.begin() is None, control._done
    assert control.participant.announcement.vector_length == opened["federated_weights"]
    control.close()
