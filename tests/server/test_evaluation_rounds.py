"""Evaluation rounds in-process (the coordinator behind Starlette's TestClient, a real SQLite
file, real secure aggregation, a fake clock): how they open, what devices are told, and that the
stored estimate is exactly that of the survivors' encodings, noise and a dropout included;
``/v1/analytics`` answers operators only. (``tests/e2e/test_evaluation_e2e.py`` runs the same
with real devices against a real server process.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgerec.fedeval import EvalConfig, estimate
from edgerec.privacy import decode_sum, rounding_bound, sum_encodings
from edgerec_server import RoundParams
from edgerec_server._exceptions import BadRequestError
from edgerec_server.audit import audit_rows
from edgerec_server.evaluation import noise_std_of_sum
from edgerec_server.operators import create_operator_token, revoke_operator_token

from srv_helpers import World, cli, tiny_bundle


@pytest.fixture
def world(tmp_path, bundle_dir):
    w = World(tmp_path / "state", bundle_dir)
    # Model 2: another (random) model over the same items, published after model 1.
    w.publisher.import_bundle(tiny_bundle(tmp_path / "v2", seed=1), w.clock())
    yield w
    w.close()


def test_an_evaluation_round_announces_its_layout_clip_and_models(world):
    apis = world.devices(4)
    record = world.co.open_round(RoundParams(min_participants=4, kind="evaluation", candidate=1,
                                             evaluation={"top_k": 5}, noise_multiplier=0.5))
    layout = EvalConfig(models=("installed", "candidate"), top_k=5).layout
    stored = world.state.round(record.id)
    assert (stored.base_version, stored.vector_length, stored.params["clip"]) == (2, len(layout), layout.l2_bound)
    assert stored.params["evaluation"] == {"top_k": 5, "max_held_out": 5, "max_impressions": 100,
                                           "attribution_s": 86400.0, "max_history": 4096,
                                           "metrics": ["hr", "ndcg"], "squares": True, "live": True}
    ann = apis[0].current_round()
    assert (ann.kind, ann.evaluation.layout_key, ann.evaluation.model_versions) == ("evaluation", layout.key, (2, 1))
    assert ann.evaluation.config() == layout.config and ann.clip == layout.l2_bound


@pytest.mark.parametrize("params, words", [
    ({"candidate": 2}, "is the base model"),
    ({"candidate": 9}, "no model version 9"),
    ({"frozen": ("emb_in",)}, "nothing to freeze"),
    ({"evaluation": {"top_k": 0}}, "top_k"),
    ({"evaluation": {"models": ["a"]}}, "unknown evaluation settings"),
])
def test_bad_evaluation_parameters_open_nothing(world, params, words):
    world.devices(4)
    with pytest.raises(BadRequestError, match=words):
        world.co.open_round(RoundParams(min_participants=4, kind="evaluation", **params))
    assert world.state.rounds() == []
    with pytest.raises(BadRequestError, match="go with kind 'evaluation'"):
        world.co.open_round(RoundParams(min_participants=4, candidate=1))


def test_round_open_checks_the_kind_options(world, capsys):
    from edgerec_server.cli import main

    world.devices(4)
    for flags, words in ((["--kind", "evaluation", "--clip", "2"], "leave --clip out"),
                         (["--candidate", "1"], "go with --kind evaluation"),
                         (["--top-k", "5"], "go with --kind evaluation"),
                         (["--lean"], "go with --kind evaluation")):
        assert main(["round", "open", "--min", "4", *flags, "--data-dir", str(world.tmp)]) == 2
        assert words in capsys.readouterr().err
    # The epsilon calibration of training rounds, for the layout's clip: z for 10 such rounds.
    opened = json.loads(cli(world.tmp, "round", "open", "--min", "4", "--kind", "evaluation",
                            "--top-k", "20", "--max-held-out", "3", "--epsilon", "4",
                            "--planned-rounds", "10"))
    assert "epsilon 4 over 10 planned rounds" in capsys.readouterr().err
    assert opened["kind"] == "evaluation" and opened["candidate"] is None
    assert (opened["evaluation"]["top_k"], opened["evaluation"]["max_held_out"]) == (20, 3)
    assert opened["noise_multiplier"] > 0 and opened["target_epsilon"] == 4
    listed = json.loads(cli(world.tmp, "round", "list"))
    assert listed["kind"] == "evaluation"


def test_a_lean_evaluation_round_announces_two_slots_and_their_bound(world):
    apis = world.devices(4)
    opened = json.loads(cli(world.tmp, "round", "open", "--min", "4", "--kind", "evaluation",
                            "--lean", "--noise", "1"))
    assert opened["evaluation"]["metrics"] == ["ndcg"] and opened["evaluation"]["live"] is False
    ann = apis[0].current_round()
    layout = ann.evaluation.config().layout
    assert layout.names == ("loo.devices", "installed.ndcg@10")
    assert (ann.vector_length, ann.clip) == (2, pytest.approx(2 ** 0.5))
    assert world.state.round(opened["round_id"]).params["clip"] == pytest.approx(2 ** 0.5)


def test_the_stored_estimate_is_exactly_that_of_the_survivors_encodings(world):
    apis = world.devices(5)
    record = world.co.open_round(RoundParams(min_participants=4, kind="evaluation", candidate=1,
                                             noise_multiplier=0.5, quiet_close=2.0,
                                             deadlines=(100, 100, 100, 100)))
    ann = apis[0].current_round()
    layout = ann.evaluation.config().layout
    rng = np.random.default_rng(3)
    parts = [world.participant(a, rng.random(len(layout))) for a in apis]  # slots in [0, 1]
    for step in ("advertise", "share_keys"):
        for p in parts:
            getattr(p, step)()
    survivors = parts[:4]  # the fifth vanishes before its masked input
    for p in survivors:
        p.masked_input()
    world.tick(2.1)
    for step in ("consistency", "unmask"):
        for p in survivors:
            getattr(p, step)()
    outcome = {p.result().status for p in survivors}
    assert {(s.state, s.survivors, s.model_version_out) for s in outcome} == {("done", 4, None)}

    fp = ann.fixed_point()
    total = decode_sum(sum_encodings([p.private.encoded for p in survivors]), fp, 4)
    stored = world.state.evaluation(record.id)
    assert stored.sum_vector == tuple(total)  # exactly: noise shares and rounding included
    assert stored.estimate == estimate(total, noise_std_of_sum(fp, 4), 4, layout=layout,
                                      rounding=rounding_bound(fp, 4)).to_dict()
    assert (stored.base_version, stored.candidate_version, stored.devices) == (2, 1, 4)
    assert (stored.noise_multiplier, stored.clip, stored.layout_key) == (0.5, layout.l2_bound, layout.key)
    assert world.publisher.latest().version == 2  # no model came out of it
    (row,) = audit_rows(world.state, world.config.dp_delta)
    assert row["kind"] == "evaluation" and row["cumulative_epsilon"] == pytest.approx(stored.cumulative_epsilon)
    assert stored.epsilon == stored.cumulative_epsilon  # the only round so far
    assert [e.kind for e in world.state.events()][-1] == "evaluation_stored"

    # Operators only: no credential, a device's credential, a revoked token are refused.
    get = lambda header=None: world.client.get(  # noqa: E731
        "/v1/analytics", headers={"Authorization": header} if header else {})
    assert get().status_code == 401 and get("Basic abc").status_code == 401
    assert get(f"Bearer {apis[0].identity.credential}").status_code == 401
    assert get("Bearer op_" + "x" * 43).status_code == 401
    token, _ = create_operator_token(world.state, world.clock())
    answer = get(f"Bearer {token}")
    assert answer.status_code == 200
    doc = answer.json()
    assert doc["evaluations"][0]["metrics"] == json.loads(json.dumps(stored.estimate["metrics"]))
    assert [(m["model_version"], m["role"]) for m in doc["models"]] == [(1, "candidate"), (2, "installed")]
    assert revoke_operator_token(world.state, token, world.clock())
    assert get(f"Bearer {token}").status_code == 403
