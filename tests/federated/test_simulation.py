"""The in-process federated simulation: learns from devices' data, accounts privacy, is seeded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgerec import ConfigError, ModelConfig
from edgerec.cli import main
from edgerec.data import synthetic
from edgerec.federated.simulation import SimulationConfig
from edgerec.workflows import federated_run

pytest.importorskip("dp_accounting", reason="privacy accounting needs edgerec[privacy]")

CFG = ModelConfig(dim=16, history=10)


@pytest.fixture(scope="module")
def data():
    return synthetic(n_users=120, n_items=60, seed=2)


def _run(data, **kw):
    sim = SimulationConfig(**{"rounds": 12, "clients_per_round": 30, "eval_every": 4, **kw})
    return federated_run(data, sim, model=CFG)


def test_rounds_improve_the_global_model(data):
    result = _run(data)
    scored = [r for r in result.records if r.ndcg is not None]
    assert [r.round for r in scored] == [4, 8, 12]
    first, *_, last = scored
    assert last.ndcg > first.ndcg  # the model learns from data it never saw centrally
    assert all(r.participants == 30 and r.epsilon is None for r in result.records)


def test_same_seed_same_run(data):
    a, b = _run(data, rounds=3), _run(data, rounds=3)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])


def test_noise_is_charged_by_the_accountant(data):
    result = _run(data, rounds=4, noise_multiplier=1.0, clip=0.1)
    eps = [r.epsilon for r in result.records]
    assert all(e is not None and e > 0 for e in eps)
    assert eps == sorted(eps) and eps[0] < eps[-1]


def test_clipping_is_reported(data):
    result = _run(data, rounds=2, clip=1e-4)
    assert all(r.clipped == 1.0 and r.mean_norm > 1e-4 for r in result.records)


def test_bad_config_is_refused():
    with pytest.raises(ConfigError):
        SimulationConfig(rounds=0)
    with pytest.raises(ConfigError):
        SimulationConfig(strategy="fedsgd")


def test_cli_simulate_json(capsys):
    code = main(["simulate", "--rounds", "2", "--clients", "10", "--eval-every", "1", "--quiet",
                 "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["round"] for r in rows] == [1, 2]
    assert all(0 <= r["ndcg"] <= 1 and r["participants"] == 10 for r in rows)
