"""A model a training round publishes goes on canary by itself (``canary_share``), once rollout
statements are in use; without them, or while another candidate is undecided, it does not."""

from __future__ import annotations

import pytest

from edgerec_server import rollout
from edgerec_server._exceptions import ServerConfigError
from edgerec_server.config import load_config

from srv_helpers import World


@pytest.fixture
def world(tmp_path, bundle_dir):
    w = World(tmp_path / "state", bundle_dir, canary_share=0.25)
    yield w
    w.close()


def test_a_published_model_goes_on_canary_once_statements_are_in_use(world):
    apis = world.devices(4)
    v2, _ = world.training_round(apis, 1)
    assert rollout.current(world.state) is None  # no statement yet: devices take the newest
    rollout.set_promoted(world.state, world.publisher, v2, world.clock())
    v3, _ = world.training_round(apis, 2)
    statement = rollout.current(world.state)
    assert (statement.promoted, statement.candidate, statement.share) == (v2, v3, 0.25)
    assert rollout.rollout_rows(world.state)[-1]["decision"] == "canary"
    # The next round builds on the promoted model; its model waits while model 3 is undecided.
    v4, _ = world.training_round(apis, 3)
    assert world.state.model(v4).parent == v2
    assert rollout.current(world.state).candidate == v3
    skipped = [e.detail for e in world.state.events() if e.kind == "canary_not_started"]
    assert [d["version"] for d in skipped] == [v4] and "still undecided" in skipped[0]["reason"]
    rollout.decide(world.state, world.publisher, world.clock(), override="reject")
    v5, _ = world.training_round(apis, 4)
    assert rollout.current(world.state).candidate == v5


def test_a_canary_that_fails_to_start_leaves_the_model_held_not_served(world, monkeypatch):
    """Worst instant: the round is stored, then signing its canary statement fails (the
    database, the key). The round stays done, and no device is served the new model."""
    apis = world.devices(4)
    rollout.set_promoted(world.state, world.publisher, 1, world.clock())

    def broken(*args, **kwargs):
        raise RuntimeError("the signing key went away")

    monkeypatch.setattr(rollout, "start_canary", broken)
    v2, _ = world.training_round(apis, 1)
    assert world.state.model(v2) is not None and rollout.current(world.state).candidate is None
    for api in apis:
        assert rollout.served_version(world.state, api.identity.device_id) == 1
        latest = world.client.get("/v1/models/latest",
                                  headers={"Authorization": f"Bearer {api.credential}"})
        assert latest.headers["x-edgerec-model-version"] == "1"


def test_without_a_share_a_published_model_waits_for_the_operator(tmp_path, bundle_dir):
    w = World(tmp_path / "state", bundle_dir)
    try:
        apis = w.devices(4)
        rollout.set_promoted(w.state, w.publisher, 1, w.clock())
        w.training_round(apis, 1)
        assert rollout.current(w.state).candidate is None
    finally:
        w.close()


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_a_share_outside_0_1_is_refused(tmp_path, share):
    with pytest.raises(ServerConfigError, match="canary_share"):
        load_config(data_dir=tmp_path, env={}, canary_share=share)
