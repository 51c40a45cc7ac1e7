"""Federated evaluation rounds end to end over real HTTP with a real ``edgerec-server``: devices
made with ``edgerec.open`` train a round (model 2), use model 2 (impressions, clicks, dismissals
of what it recommends), then take part in evaluation rounds of model 2 against candidate model
1 (``round open --kind evaluation --candidate 1``): the same secure aggregation and noise, their
``edgerec.fedeval`` vector instead of a delta, recorded on their ledger as ``evaluation`` and
charged to their epsilon; the server decodes the sum, stores the estimate, and shows it only to
an operator (``GET /v1/analytics``, ``edgerec-server analytics``). With no noise the figures are
exactly the estimate of the sum of what the devices encoded. A device refuses an announcement
whose layout key it does not know, and nothing of that round leaves it.
"""

from __future__ import annotations

import json
import math
import shutil

import dp_accounting as dp
import httpx
import numpy as np
import pytest

import edgerec
from edgerec.cli import main as edgerec_main
from edgerec.fedeval import estimate
from edgerec.privacy import decode_sum, rounding_bound, sum_encodings
from edgerec.sync import HttpxTransport, Response, SyncConditions, SyncSession, SyncStatus, SyncTimeouts
from edgerec.sync import client as sync_client
from edgerec.sync.client import STEPS
from edgerec.sync.device import SyncRecords
from edgerec_server.evaluation import noise_std_of_sum

from srv_helpers import cli

N = 4
DELTA = 1e-5


def _independent(zs: list[float]) -> float:
    """The devices' own epsilon after Gaussian releases of multipliers ``zs`` (dp-accounting)."""
    acct = dp.rdp.RdpAccountant()
    for z in zs:
        acct.compose(dp.GaussianDpEvent(noise_multiplier=z))
    return acct.get_epsilon(DELTA)


def _devices(tmp_path, url, key, token, n=N):
    """``n`` enrolled devices on model 1, each with old clicks (the training round reads them)."""
    rng = np.random.default_rng(0)
    cli_out = tmp_path / "first-bundle"
    out = []
    for d in range(n):
        folder = tmp_path / f"dev{d}"
        shutil.copytree(cli_out, folder / "bundle")
        rec = edgerec.open(folder / "app.db", bundle=folder / "bundle", public_key=key)
        items = rng.choice(30, size=8, replace=False)
        rec.log_many([{"user": f"u{d}", "item": f"i{int(i)}", "event": "click", "ts": 1e9 + k}
                      for k, i in enumerate(items)])
        assert _session(rec, HttpxTransport(url, timeout=30), url, key, token).enrol().ok
        out.append(rec)
    return out


def _session(rec, transport, url, key, token=None):
    return SyncSession(rec, url, enrolment_token=token, server_key=key, transport=transport,
                       allow=SyncConditions(min_new_interactions=0),
                       timeouts=SyncTimeouts(poll_interval=0.05, stage_timeout=60))


def _round(devices, url, key):
    """Every device takes part in the open round, stage by stage; their sessions."""
    sessions = [_session(rec, HttpxTransport(url, timeout=30), url, key) for rec in devices]
    for s in sessions:
        assert s.begin() is None, s._done
    for step in STEPS:
        for s in sessions:
            assert s.step(step) is None, s._done
    results = [s.finish() for s in sessions]
    assert {r.status for r in results} == {SyncStatus.PARTICIPATED}, results
    return sessions


def _use_model(rec, d):
    """What an app logs while model 2 serves: impressions of what it recommended, a click on
    one, a dismissal of another, and a click on something it did not show."""
    user = f"u{d}"
    shown = [r.item for r in rec.recommend(user, k=6)]
    rec.log_many([{"user": user, "item": i, "event": "impression"} for i in shown])
    rec.log(user, shown[d % 3], "click")
    rec.log(user, shown[3], "dismiss")
    seen = {e.item for e in rec.store.history(user)}
    rec.log(user, next(i for i in rec.bundle.catalogue.item_ids if i not in seen), "click")


def _analytics(url, token):
    answer = httpx.get(url + "/v1/analytics", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_evaluation_rounds_are_private_sums_the_ledger_charges_and_the_operator_reads(
        server, data_dir, tmp_path, monkeypatch):
    key = bytes.fromhex(cli(data_dir, "public-key"))
    token = json.loads(cli(data_dir, "token", "create", "--uses", str(N), "--json"))["token"]
    cli(data_dir, "export-bundle", "--out", str(tmp_path / "first-bundle"))
    devices = _devices(tmp_path, server.url, key, token)

    # A training round (z = 1) makes model 2; each device installs it and remembers the newest
    # event its fine-tune read: those are never held out.
    cli(data_dir, "round", "open", "--min", str(N), "--noise", "1", "--deadlines", "20,5,5,5")
    _round(devices, server.url, key)
    assert {rec.model_version for rec in devices} == {2}
    assert {rec.trained_until for rec in devices} == {1e9 + 7}
    for d, rec in enumerate(devices):
        _use_model(rec, d)

    # Evaluation round, z = 1: model 2 (installed) against candidate model 1.
    opened = json.loads(cli(data_dir, "round", "open", "--kind", "evaluation", "--candidate", "1",
                            "--min", str(N), "--noise", "1", "--deadlines", "20,5,5,5"))
    assert (opened["kind"], opened["candidate"], opened["evaluation"]["top_k"]) == ("evaluation", 1, 10)
    rid = opened["round_id"]
    sessions = _round(devices, server.url, key)
    ann = sessions[0].participant.announcement
    layout = ann.evaluation.config().layout
    assert (ann.kind, ann.evaluation.model_versions, ann.vector_length) == ("evaluation", (2, 1), len(layout))
    assert opened["clip"] == ann.clip == layout.l2_bound
    assert {rec.model_version for rec in devices} == {2}  # the candidate was never installed

    # Each device's ledger: the evaluation vector's row, with clip, z and the epsilon of both
    # rounds it sent to; the bytes of every row are what the server received for the round.
    rows = httpx.get(server.url + "/v1/audit").json()["rounds"]
    audit = next(r for r in rows if r["round_id"] == rid)
    assert (audit["kind"], audit["candidate_version"], audit["model_version_out"]) == ("evaluation", 1, None)
    sent = 0
    for rec in devices:
        mine = [e for e in rec.ledger.entries() if e.round_id == str(rid)]
        assert [e.kind for e in mine] == ["advertise_keys", "share_keys", "evaluation", "consistency", "unmask"]
        (vector_row,) = [e for e in mine if e.kind == "evaluation"]
        assert vector_row.clip == pytest.approx(layout.l2_bound) and vector_row.noise_multiplier == 1.0
        assert vector_row.epsilon == pytest.approx(_independent([1.0, 1.0]))
        assert layout.key in vector_row.note and "candidate 1" in vector_row.note
        assert rec.ledger.epsilon_charged() == pytest.approx(_independent([1.0, 1.0]))
        sent += sum(e.n_bytes for e in mine)
    assert audit["bytes_received"] == sent and math.isfinite(audit["cumulative_epsilon"])
    with_cli = json.loads(_edgerec_audit(devices[0]))
    assert [e["kind"] for e in with_cli["entries"] if e["round_id"] == str(rid)][2] == "evaluation"

    # The operator's view, and nobody else's.
    op_token = cli(data_dir, "operator-token", "create", "--note", "test")
    assert httpx.get(server.url + "/v1/analytics").status_code == 401
    credential = SyncRecords(devices[0].device_state, devices[0].clock).identity(server.url).credential
    as_device = httpx.get(server.url + "/v1/analytics", headers={"Authorization": f"Bearer {credential}"})
    assert as_device.status_code == 401
    doc = _analytics(server.url, op_token)
    (row,) = doc["evaluations"]
    assert (row["round_id"], row["models"], row["devices"]) == (rid, {"installed": 2, "candidate": 1}, N)
    assert row["epsilon"] == pytest.approx(_independent([1.0]), rel=1e-3)
    assert row["cumulative_epsilon"] == pytest.approx(audit["cumulative_epsilon"])
    assert [m["model_version"] for m in doc["models"]] == [1, 2]

    # Evaluation round, z = 0: the analytics are exactly the estimate of the devices' encodings.
    vectors: list[np.ndarray] = []
    real = sync_client.evaluation_contribution
    monkeypatch.setattr(sync_client, "evaluation_contribution",
                        lambda *a, **k: vectors.append(real(*a, **k)) or vectors[-1])
    rid0 = json.loads(cli(data_dir, "round", "open", "--kind", "evaluation", "--candidate", "1",
                          "--min", str(N), "--noise", "0", "--deadlines", "20,5,5,5"))["round_id"]
    sessions = _round(devices, server.url, key)
    fp = sessions[0].participant.announcement.fixed_point()
    total = decode_sum(sum_encodings([s.participant.private.encoded for s in sessions]), fp, N)
    expected = estimate(total, noise_std_of_sum(fp, N), N, layout=layout,
                        rounding=rounding_bound(fp, N)).to_dict()
    doc = _analytics(server.url, op_token)
    row = doc["evaluations"][-1]
    assert row["round_id"] == rid0 and row["metrics"] == json.loads(json.dumps(expected["metrics"]))
    assert row["epsilon"] is None and row["differentially_private"] is False
    # ... and the plain estimate of the devices' float vectors, up to fixed-point rounding.
    plain = np.sum(vectors, axis=0)
    assert len(vectors) == N and np.abs(total - plain).max() <= rounding_bound(fp, N)
    assert plain[layout.index["live.impressions"]] == pytest.approx(N * 6 / 100)
    assert plain[layout.index["loo.devices"]] == N  # every device held out its new clicks
    # A total is a slot times its cap (impressions: max_impressions), so its rounding is too.
    tolerance = max(1e-6, ann.evaluation.config().max_impressions * rounding_bound(fp, N))
    for name, m in estimate(plain, 0.0, N, layout=layout).metrics.items():
        got = row["metrics"][name]["value"]
        assert (got is None and math.isnan(m.value)) or got == pytest.approx(m.value, abs=tolerance), name
    assert row["metrics"]["live.ctr"]["value"] == pytest.approx(N / (N * 6))  # one click each
    installed = next(m for m in doc["models"] if m["model_version"] == 2)
    assert installed["role"] == "installed" and installed["round_id"] == rid0
    assert installed["metrics"]["ndcg@10"] == row["metrics"]["installed.ndcg@10"]
    candidate = next(m for m in doc["models"] if m["model_version"] == 1)
    assert candidate["metrics"]["ndcg@10 - v2"] == row["metrics"]["candidate-installed.ndcg@10"]

    # The CLI shows the same; a revoked operator token opens nothing.
    assert json.loads(cli(data_dir, "analytics", "--json")) == doc
    table = cli(data_dir, "analytics")
    assert "ndcg@10 - v2" in table and "live.ctr" in table
    cli(data_dir, "operator-token", "revoke", op_token)
    revoked = httpx.get(server.url + "/v1/analytics", headers={"Authorization": f"Bearer {op_token}"})
    assert revoked.status_code == 403
    for rec in devices:
        rec.close()


def _edgerec_audit(rec) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert edgerec_main(["audit", "--db", str(rec.store.path), "--json"]) == 0
    return out.getvalue()


class _Tamper:
    """A lying server (or network): rewrites the evaluation part of the announcement."""

    def __init__(self, inner, change):
        self.inner, self.change, self.log = inner, change, []

    def request(self, method, path, *, body=None, headers=None):
        answer = self.inner.request(method, path, body=body, headers=headers)
        self.log.append((method, path))
        if path == "/v1/rounds/current" and answer.status == 200:
            raw = json.loads(answer.body)
            self.change(raw)
            answer = Response(answer.status, answer.headers, json.dumps(raw).encode())
        return answer

    def close(self):
        self.inner.close()


def _next_version(raw):
    raw["evaluation"]["layout_key"] = raw["evaluation"]["layout_key"].replace("fedeval/1;", "fedeval/2;")


def _key_says_other_k(raw):
    raw["evaluation"]["layout_key"] = raw["evaluation"]["layout_key"].replace(";k=10;", ";k=20;")


def _params_say_other_k(raw):  # the key as announced, the parameters changed under it
    raw["evaluation"]["top_k"] = 20


def _no_layout(raw):
    del raw["evaluation"]


TAMPERS = [(_next_version, "not one this device knows"), (_key_says_other_k, "not one this device knows"),
           (_params_say_other_k, "not one this device knows"), (_no_layout, "no evaluation layout")]


def test_an_unknown_layout_key_is_refused_and_nothing_of_the_round_leaves(server, data_dir, tmp_path):
    key = bytes.fromhex(cli(data_dir, "public-key"))
    token = json.loads(cli(data_dir, "token", "create", "--uses", str(N), "--json"))["token"]
    cli(data_dir, "export-bundle", "--out", str(tmp_path / "first-bundle"))
    devices = _devices(tmp_path, server.url, key, token)
    rid = json.loads(cli(data_dir, "round", "open", "--kind", "evaluation", "--min", str(N),
                         "--noise", "1"))["round_id"]
    rec = devices[0]
    for n, (change, words) in enumerate(TAMPERS, 1):
        attacked = _Tamper(HttpxTransport(server.url, timeout=30), change)
        result = _session(rec, attacked, server.url, key).run()
        assert result.status == SyncStatus.ROUND_REFUSED and words in result.message, (change, result)
        assert result.round_id == rid and not result.participated and result.bytes_sent == 0
        refusal = rec.ledger.entries()[-1]
        assert (refusal.kind, refusal.round_id, refusal.n_bytes) == ("refusal", str(rid), 0)
        assert [e.kind for e in rec.ledger.entries() if e.round_id is not None] == ["refusal"] * n
        assert not [p for m, p in attacked.log if m == "POST" and "/rounds/" in p]
        assert not [p for m, p in attacked.log if p.startswith("/v1/models/") and p != "/v1/models/latest"]
    assert rec.trained_until is None  # and nothing was trained for it

    # The same device on an honest link knows the layout and joins.
    control = _session(rec, HttpxTransport(server.url, timeout=30), server.url, key)
    assert control.begin() is None, control._done
    assert control.participant.announcement.evaluation.models == ("installed",)
    control.close()
    for rec in devices:
        rec.close()
