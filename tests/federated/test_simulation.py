"""The in-process federated simulation: learns from devices' data, accounts privacy as it runs
(fixed-size cohorts), is seeded, and says that its seeded noise is not private."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgerec import ConfigError, ModelConfig
from edgerec.cli import main
from edgerec.data import synthetic
from edgerec.evaluation.split import loo_split
from edgerec.federated.simulation import SIMULATED_NOISE, SimulationConfig
from edgerec.privacy import Release, releases_epsilon
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


def test_same_seed_same_run_even_with_noise(data):
    a, b = _run(data, rounds=2, noise_multiplier=0.5), _run(data, rounds=2, noise_multiplier=0.5)
    c = _run(data, rounds=2, noise_multiplier=0.5, seed=1)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    assert any(not np.array_equal(a.params[n], c.params[n]) for n in a.params)


def test_noise_is_charged_as_the_rounds_ran(data):
    result = _run(data, rounds=3, noise_multiplier=1.0, clip=0.1)
    eps = [r.epsilon for r in result.records]
    holders = sum(len(items) > 0 for items in loo_split(data.sequences()).train_val.items)
    # Each round: a cohort of 30 drawn without replacement from the 120 devices with data.
    assert eps == [releases_epsilon([Release(holders, 30, 1.0)] * r, 1e-5) for r in (1, 2, 3)]
    assert eps[0] < eps[1] < eps[2]


def test_clipping_is_reported(data):
    result = _run(data, rounds=2, clip=1e-4)
    assert all(r.clipped == 1.0 and r.mean_norm > 1e-4 for r in result.records)


def test_bad_config_is_refused():
    with pytest.raises(ConfigError):
        SimulationConfig(rounds=0)
    with pytest.raises(ConfigError):
        SimulationConfig(strategy="fedsgd")


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_cli_simulate_json(capsys):
    code = main(["simulate", "--rounds", "2", "--clients", "10", "--eval-every", "1", "--quiet",
                 "--json", "--no-central"])
    assert code == 0
    *rows, summary = _json_lines(capsys.readouterr().out)
    assert [r["round"] for r in rows] == [1, 2]
    assert all(0 <= r["ndcg"] <= 1 and r["participants"] == 10 for r in rows)
    assert all(r["epsilon"] is None and "epsilon_note" not in r for r in rows)
    # The summary: no noise is no DP, no pilot and no central model asked for are null.
    assert summary["epsilon"] == "inf" and summary["delta"] == 1e-5
    assert summary["ndcg@10"] == rows[-1]["ndcg"]
    assert summary["central_ndcg@10"] is None and summary["pilot_ndcg@10"] is None


def test_cli_simulate_says_its_noise_is_seeded(capsys):
    args = ["simulate", "--rounds", "1", "--clients", "10", "--eval-every", "1", "--quiet",
            "--noise", "1.0", "--no-central"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "simulated; seeded noise: not private" == SIMULATED_NOISE and SIMULATED_NOISE in out
    row = next(line for line in out.splitlines() if line.split()[:1] == ["1"])
    assert row.split()[3].endswith("*")  # the epsilon column points at the note
    assert main(args + ["--json"]) == 0
    record, summary = _json_lines(capsys.readouterr().out)
    assert record["epsilon"] > 0 and record["epsilon_note"] == SIMULATED_NOISE
    assert summary["epsilon"] == record["epsilon"] and summary["noise_multiplier"] == 1.0


def test_frozen_weights_stay_put_and_only_the_rest_is_noised(data):
    from dataclasses import replace as _replace

    from edgerec.federated.simulation import federated_mask
    from edgerec.model.params import init_params, param_names

    tables = frozenset({"emb_in", "emb_out", "feat_in", "feat_out"})
    sim = SimulationConfig(rounds=2, clients_per_round=30, eval_every=2, noise_multiplier=1.0)
    sim = _replace(sim, local=_replace(sim.local, frozen=tables))
    result = federated_run(data, sim, model=CFG)
    init = init_params(CFG, data.n_items, data.catalogue.features.shape[1], np.random.default_rng(0))
    for name in param_names(CFG):
        same = np.array_equal(result.params[name], init[name])
        assert same == (name in tables), name  # frozen ones exactly kept, the others moved
    mask = federated_mask(init, param_names(CFG), tables)
    assert mask.sum() == sum(init[n].size for n in param_names(CFG) if n not in tables)


def test_frozen_must_name_a_set_of_shared_weights():
    from edgerec.finetune import FineTuneConfig

    with pytest.raises(ConfigError):
        FineTuneConfig(frozen={"emb_in"})  # a mutable set: refused (configs are frozen)
    with pytest.raises(ConfigError):
        FineTuneConfig(frozen=frozenset({"adapter"}))


def test_a_frozen_name_the_model_does_not_have_is_refused(data):
    from dataclasses import replace as _replace

    sim = SimulationConfig(rounds=1, clients_per_round=10)
    with pytest.raises(ConfigError, match="emb_inn"):
        federated_run(data, _replace(sim, local=_replace(sim.local, frozen=frozenset({"emb_inn"}))), model=CFG)
