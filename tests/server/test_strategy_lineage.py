"""FedAdam's state follows the line of models (``edgerec_server.aggregation``): it carries on from
round to round on the model it produced, and starts afresh when a round builds on another model,
e.g. the promoted version after the candidate its moments came from was rejected."""

from __future__ import annotations

import numpy as np
import pytest

from edgerec.federated import FedAdam, StrategyState
from edgerec_server import rollout
from edgerec_server.aggregation import BUILT_KEY
from edgerec_server.publisher import flat_weights

from srv_helpers import World

LR = 0.1


@pytest.fixture
def world(tmp_path, bundle_dir):
    w = World(tmp_path / "state", bundle_dir)
    yield w
    w.close()


def _round(world, apis, seed: int) -> tuple[int, np.ndarray]:
    return world.training_round(apis, seed, strategy="fedadam", server_lr=LR)


def _weights(world, version: int) -> np.ndarray:
    return flat_weights(world.publisher.load(version)).astype(np.float32)


def test_the_optimizer_state_carries_on_along_its_line_and_restarts_after_a_rejection(world):
    apis = world.devices(4)
    v2, mean2 = _round(world, apis, 1)  # built on model 1
    after2 = FedAdam(lr=LR).apply(_weights(world, 1), mean2, StrategyState())[1]
    step, arrays = world.state.strategy_state("fedadam")
    assert int(arrays[BUILT_KEY]) == v2 == 2 and step == 1

    v3, mean3 = _round(world, apis, 2)  # built on model 2, the state's own: it carries on
    carried = FedAdam(lr=LR).apply(_weights(world, 2), mean3, after2)[0]
    fresh = FedAdam(lr=LR).apply(_weights(world, 2), mean3, StrategyState())[0]
    assert not np.allclose(carried, fresh, atol=1e-4)  # the check below can tell them apart
    np.testing.assert_allclose(_weights(world, v3), carried, atol=1e-4)

    # Model 3 goes on canary and is rejected: the next round builds on model 2 again, and the
    # moments of the line that led to model 3 must not push it back that way.
    rollout.start_canary(world.state, world.publisher, v3, 0.5, world.clock())
    assert rollout.decide(world.state, world.publisher, world.clock(), override="reject").action == "reject"
    after3 = FedAdam(lr=LR).apply(_weights(world, 2), mean3, after2)[1]
    v4, mean4 = _round(world, apis, 3)
    assert world.state.model(v4).parent == 2
    fresh = FedAdam(lr=LR).apply(_weights(world, 2), mean4, StrategyState())[0]
    stale = FedAdam(lr=LR).apply(_weights(world, 2), mean4, after3)[0]
    assert not np.allclose(fresh, stale, atol=1e-4)
    np.testing.assert_allclose(_weights(world, v4), fresh, atol=1e-4)
    assert world.state.strategy_state("fedadam")[0] == 1  # the step count restarted too
