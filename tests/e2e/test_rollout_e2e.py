"""Canary and rollback end to end over real HTTP with a real ``edgerec-server`` (SQLite, its
own signing key) and devices made with ``edgerec.open`` that only ever call ``rec.sync``.

A bad candidate (model 1 with its item tables shuffled) goes to a canary share, an evaluation
round of candidate against promoted runs on the other devices, ``rollout decide`` rejects it,
and the canary devices go back to the promoted model (an older install they accept only because
the signed statement names it). A good candidate (model 1's weights, re-signed) is promoted the
same way, and every device then installs it. A device refuses a rejected version even when the
server (or the network) offers it, and refuses forged, unsigned and replayed statements.
"""

from __future__ import annotations

import json
import shutil

import httpx
import numpy as np

import edgerec
from edgerec.bundle import load_bundle, write_bundle
from edgerec.signing import generate_signing_key, sign_bytes
from edgerec.sync import (HttpxTransport, Response, SyncConditions, SyncSession, SyncStatus,
                          SyncTimeouts)
from edgerec.sync.client import STEPS
from edgerec.sync.rollout import DOMAIN, canary_bucket

from srv_helpers import cli

N = 8  # devices; CANARY of them on each candidate's canary


def _session(rec, url, key, transport=None, token=None):
    return SyncSession(rec, url, enrolment_token=token, server_key=key,
                       transport=transport or HttpxTransport(url, timeout=30),
                       allow=SyncConditions(min_new_interactions=0),
                       timeouts=SyncTimeouts(poll_interval=0.05, stage_timeout=60))


def _devices(tmp_path, url, key, token):
    """``N`` enrolled devices on model 1; each user's last clicks are what model 1 recommends
    first, so model 1 ranks them well and a shuffled model does not."""
    rng = np.random.default_rng(0)
    out = []
    for d in range(N):
        folder = tmp_path / f"dev{d}"
        shutil.copytree(tmp_path / "model-1", folder / "bundle")
        rec = edgerec.open(folder / "app.db", bundle=folder / "bundle", public_key=key)
        user = f"u{d}"
        for k, i in enumerate(rng.choice(30, size=4, replace=False)):
            rec.log(user, f"i{int(i)}", "click", ts=1e9 + k)
        for k in range(5):
            rec.log(user, rec.recommend(user, k=1)[0].item, "click", ts=1e9 + 10 + k)
        assert _session(rec, url, key, token=token).enrol().ok
        out.append(rec)
    return out


def _ids(devices, url):
    from edgerec.sync.device import SyncRecords

    return [SyncRecords(r.device_state, r.clock).identity(url).device_id for r in devices]


def _share_for(ids, candidate, canary=2):
    """A share that puts exactly ``canary`` of ``ids`` on ``candidate``'s canary."""
    return sorted(canary_bucket(i, candidate) for i in ids)[canary]


def _sync_all(devices, url, key):
    return [_session(rec, url, key).run() for rec in devices]


def _evaluation_round(devices, url, key, data_dir, candidate, members):
    """An evaluation round of ``candidate`` against the promoted model (z = 0): the devices in
    ``members`` take part; the round draws no other."""
    opened = json.loads(cli(data_dir, "round", "open", "--kind", "evaluation", "--candidate",
                            str(candidate), "--min", "4", "--noise", "0", "--deadlines", "30,10,10,10"))
    assert opened["cohort"] == len(members)
    sessions = [_session(devices[i], url, key) for i in members]
    for s in sessions:
        assert s.begin() is None, s._done
    for step in STEPS:
        for s in sessions:
            assert s.step(step) is None, s._done
    assert {s.finish().status for s in sessions} == {SyncStatus.PARTICIPATED}
    return opened["round_id"]


def _shuffled(tmp_path):
    """Model 1 with its item tables shuffled: every item scored with another item's vectors."""
    source = load_bundle(tmp_path / "model-1")
    perm = np.random.default_rng(7).permutation(len(source.catalogue))
    params = {k: (v[perm] if k in ("emb_in", "emb_out") else v) for k, v in source.params.items()}
    out = tmp_path / "shuffled"
    write_bundle(out, params, source.catalogue, source.config, model_version=1)
    return out


class _Lying:
    """A lying server or network: rewrites answers by path."""

    def __init__(self, url, rewrite):
        self.inner, self.rewrite = HttpxTransport(url, timeout=30), rewrite

    def request(self, method, path, *, body=None, headers=None):
        answer = self.inner.request(method, path, body=body, headers=headers)
        return self.rewrite(self.inner, path, headers, answer)

    def close(self):
        self.inner.close()


def _statement(answer):
    raw = json.loads(answer.body)
    return raw, json.loads(bytes.fromhex(raw["statement"]))


def _with_statement(raw, fields, signature):
    body = {**raw, "statement": json.dumps(fields, sort_keys=True, separators=(",", ":")).encode().hex(),
            "signature": signature.hex()}
    return Response(200, {"content-type": "application/json"}, json.dumps(body).encode())


def test_a_bad_candidate_is_rolled_back_and_a_good_one_promoted(server, data_dir, tmp_path):
    url = server.url
    key = bytes.fromhex(cli(data_dir, "public-key"))
    token = json.loads(cli(data_dir, "token", "create", "--uses", str(N), "--json"))["token"]
    cli(data_dir, "export-bundle", "--version", "1", "--out", str(tmp_path / "model-1"))
    devices = _devices(tmp_path, url, key, token)
    ids = _ids(devices, url)
    assert httpx.get(url + "/v1/rollout", headers={"Authorization": "Bearer x"}).status_code == 401

    # -- the bad candidate: model 2 on a canary of 2 devices ------------------------------------
    share = _share_for(ids, 2)
    canary = [i for i, d in enumerate(ids) if canary_bucket(d, 2) < share]
    rest = [i for i in range(N) if i not in canary]
    started = json.loads(cli(data_dir, "rollout", "canary", "--bundle", str(_shuffled(tmp_path)),
                             "--share", repr(share)))
    assert (started["seq"], started["promoted"], started["candidate"]) == (1, 1, 2)
    results = _sync_all(devices, url, key)
    assert [r.model_version for r in devices] == [2 if i in canary else 1 for i in range(N)]
    assert {results[i].status for i in canary} == {SyncStatus.BUNDLE_INSTALLED}

    undecided = json.loads(cli(data_dir, "rollout", "decide"))
    assert undecided["decision"] == "keep" and "no evaluation round" in undecided["reason"]
    rid = _evaluation_round(devices, url, key, data_dir, 2, rest)
    decided = json.loads(cli(data_dir, "rollout", "decide"))
    assert (decided["decision"], decided["round_id"], decided["seq"]) == ("reject", rid, 2), decided
    assert decided["high"] < 0 and "upper end < 0" in decided["reason"]

    # A canary device is offered the rejected model 2 by a lying server (as the promoted
    # model's bundle and as "latest", with no statement): it refuses and keeps what it has.
    def offer_rejected(inner, path, headers, answer):
        if path in ("/v1/models/1", "/v1/models/latest"):
            return inner.request("GET", "/v1/models/2", headers=headers)
        return answer

    lying = _session(devices[canary[0]], url, key, _Lying(url, offer_rejected)).run()
    assert lying.status == SyncStatus.BUNDLE_REJECTED and "rejected it" in lying.message, lying
    assert devices[canary[0]].model_version == 2

    def no_statement(inner, path, headers, answer):
        if path == "/v1/rollout":
            return Response(204, {}, b"")
        return offer_rejected(inner, path, headers, answer)

    stripped = _session(devices[canary[0]], url, key, _Lying(url, no_statement)).run()
    assert stripped.status == SyncStatus.BUNDLE_REJECTED and "rejected it" in stripped.message

    # On an honest link the canary devices go back to model 1: older than what they ran, and
    # installed only because the signed statement promotes it.
    _sync_all(devices, url, key)
    assert [r.model_version for r in devices] == [1] * N

    # -- the good candidate: model 1's weights as model 3 --------------------------------------
    share = _share_for(ids, 3)
    canary = [i for i, d in enumerate(ids) if canary_bucket(d, 3) < share]
    rest = [i for i in range(N) if i not in canary]
    started = json.loads(cli(data_dir, "rollout", "canary", "--bundle", str(tmp_path / "model-1"),
                             "--share", repr(share)))
    assert (started["promoted"], started["candidate"], started["rejected"]) == (1, 3, [2])
    _sync_all(devices, url, key)
    assert [r.model_version for r in devices] == [3 if i in canary else 1 for i in range(N)]
    rid = _evaluation_round(devices, url, key, data_dir, 3, rest)
    decided = json.loads(cli(data_dir, "rollout", "decide", "--margin", "0.05"))
    assert (decided["decision"], decided["round_id"]) == ("promote", rid), decided
    _sync_all(devices, url, key)
    assert [r.model_version for r in devices] == [3] * N

    # The audit and the operations log say which decision, on which round, and why.
    rollouts = httpx.get(url + "/v1/audit").json()["rollouts"]
    assert [(r["seq"], r["decision"]) for r in rollouts] == [
        (1, "canary"), (2, "reject"), (3, "canary"), (4, "promote")]
    assert "model 2 rejected" in rollouts[1]["reason"] and rollouts[3]["evaluation_round_id"] == rid
    assert json.loads(cli(data_dir, "audit", "--json"))["rollouts"] == rollouts

    # -- forged, unsigned and replayed statements are refused ----------------------------------
    rec = devices[0]
    forger = generate_signing_key()

    def forge(how):
        def rewrite(inner, path, headers, answer):
            if path != "/v1/rollout":
                return answer
            raw, fields = _statement(answer)
            changed = {**fields, "promoted": 2, "rejected": [], "seq": fields["seq"] + 1}
            data = json.dumps(changed, sort_keys=True, separators=(",", ":")).encode()
            signature = {"forged": sign_bytes(forger, DOMAIN + data),
                         "unsigned": b"",
                         "tampered": bytes.fromhex(raw["signature"])}[how]
            return _with_statement(raw, changed, signature)
        return rewrite

    for how in ("forged", "unsigned", "tampered"):
        result = _session(rec, url, key, _Lying(url, forge(how))).run()
        assert result.status == SyncStatus.BUNDLE_REJECTED, (how, result)
        assert "signature does not verify" in result.message and rec.model_version == 3

    old = httpx.get(url + "/v1/rollout", headers={"Authorization": f"Bearer {_credential(rec, url)}"})
    assert old.status_code == 200

    def replay(inner, path, headers, answer):
        if path != "/v1/rollout":
            return answer
        # statement 2 (the rejection: promoted 1) as it was signed: genuine, but older
        raw = json.loads(answer.body)
        return _with_statement(raw, json.loads(rollouts[1]["statement"]),
                               bytes.fromhex(rollouts[1]["signature"]))

    replayed = _session(rec, url, key, _Lying(url, replay)).run()
    assert replayed.status == SyncStatus.BUNDLE_REJECTED and "replay" in replayed.message
    assert rec.model_version == 3
    for r in devices:
        r.close()


def _credential(rec, url):
    from edgerec.sync.device import SyncRecords

    return SyncRecords(rec.device_state, rec.clock).identity(url).credential
