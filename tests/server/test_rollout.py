"""The server's side of canary and rollback (``edgerec_server.rollout``), in process on a real
SQLite file with the server's real signing key: the stated rule, what a canary may be, what
``/v1/rollout`` and ``/v1/models/latest`` serve to which device, and what a decision writes."""

from __future__ import annotations

import pytest

from edgerec.sync import RolloutAnswer, codec
from edgerec.sync.rollout import canary_bucket, open_statement
from edgerec_server import rollout
from edgerec_server._exceptions import BadRequestError, ConflictError
from edgerec_server.state import EvaluationRecord

from srv_helpers import World


@pytest.fixture
def world(tmp_path, bundle_dir):
    w = World(tmp_path / "state", bundle_dir)
    w.publisher.import_bundle(bundle_dir, w.clock())  # model 2
    yield w
    w.close()


@pytest.mark.parametrize("low, high, margin, action", [
    (-0.3, -0.01, 0.0, "reject"), (0.0, 0.2, 0.0, "promote"), (-0.01, 0.2, 0.02, "promote"),
    (-0.01, 0.2, 0.0, "keep"), (-0.2, 0.0, 0.0, "keep"), (None, None, 0.0, "keep")])
def test_the_stated_rule(low, high, margin, action):
    assert rollout.decision_rule(low, high, margin)[0] == action


def test_a_canary_must_be_a_newer_published_undecided_version(world, bundle_dir):
    state, pub, now = world.state, world.publisher, world.clock()
    for candidate, share in ((9, 0.1), (1, 0.1), (2, 0.0), (2, 1.5)):
        with pytest.raises(BadRequestError):
            rollout.start_canary(state, pub, candidate, share, now)
    record = rollout.start_canary(state, pub, 2, 0.5, now)
    assert (record.seq, record.promoted, record.candidate) == (1, 1, 2)
    pub.import_bundle(bundle_dir, now)  # model 3
    with pytest.raises(ConflictError, match="still undecided"):
        rollout.start_canary(state, pub, 3, 0.5, now)
    decision = rollout.decide(state, pub, now, override="reject")
    assert decision.record is not None and decision.record.rejected == (2,)
    with pytest.raises(BadRequestError, match="rejected"):
        rollout.start_canary(state, pub, 2, 0.5, now)
    with pytest.raises(BadRequestError, match="nothing to decide"):
        rollout.decide(state, pub, now)


def test_devices_are_served_the_statement_and_the_version_it_assigns_them(world):
    devices = world.devices(6)
    ids = [api.identity.device_id for api in devices]
    assert world.client.get("/v1/rollout", headers=_auth(devices[0])).status_code == 204
    share = sorted(canary_bucket(i, 2) for i in ids)[3]
    rollout.start_canary(world.state, world.publisher, 2, share, world.clock())
    for api, device_id in zip(devices, ids):
        answer = world.client.get("/v1/rollout", headers=_auth(api))
        signed = codec.decode(answer.content, RolloutAnswer)
        statement = open_statement(signed.statement, signed.signature, world.publisher.public_key)
        latest = world.client.get("/v1/models/latest", headers=_auth(api))
        expected = 2 if canary_bucket(device_id, 2) < share else 1
        assert statement.version_for(device_id) == expected
        assert latest.headers["x-edgerec-model-version"] == str(expected)
    assert world.client.get("/v1/rollout").status_code == 401  # models are not public here


def test_a_decision_rests_on_the_newest_evaluation_of_the_pair_and_is_logged(world):
    state, pub, now = world.state, world.publisher, world.clock()
    rollout.start_canary(state, pub, 2, 0.5, now)
    kept = rollout.decide(state, pub, now)
    assert kept.action == "keep" and kept.record is None
    for rid, (low, high) in enumerate(((-0.5, 0.1), (0.01, 0.2)), 1):
        _evaluated(state, rid, low, high)
    decision = rollout.decide(state, pub, now)
    assert (decision.action, decision.round_id, decision.low) == ("promote", 2, 0.01)
    assert rollout.current(state).promoted == 2 and rollout.current(state).candidate is None
    logged = [e for e in state.events() if e.kind == "rollout_decided"]
    assert [e.detail["decision"] for e in logged] == ["keep", "promote"]
    assert "round 2" in logged[-1].detail["reason"]
    rows = rollout.rollout_rows(state)
    assert [r["decision"] for r in rows] == ["canary", "promote"] and rows[1]["evaluation_round_id"] == 2


def _evaluated(state, rid, low, high):
    record = state.create_round({"kind": "evaluation"}, b"s" * 32, 1.0, 1, 17, [], population=0)
    assert record.id == rid
    metrics = {rollout.METRIC: {"value": (low + high) / 2, "low": low, "high": high}}
    state.complete_evaluation(EvaluationRecord(rid, 1.0, 1, 2, "key", {}, 5, 0.0, 4.0, 0.0, 0.0,
                                               0.0, (0.0,), {"metrics": metrics}), participants=5)


def _auth(api):
    return {"Authorization": f"Bearer {api.credential}"}
