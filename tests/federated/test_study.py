"""A private federated study: users choose epsilon, the pilot sees only pilot users' events,
and the run is judged beside the pilot model and the central model on the same users."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from edgerec import ConfigError, ModelConfig
from edgerec.cli import main
from edgerec.data import synthetic
from edgerec.evaluation.split import loo_split
from edgerec.federated.pilot import draw_pilot, only_users
from edgerec.federated.simulation import SimulationConfig
from edgerec.privacy import Release, releases_epsilon
from edgerec.workflows import federated_study

pytest.importorskip("dp_accounting", reason="privacy accounting needs edgerec[privacy]")

CFG = ModelConfig(dim=16, history=10)
SIM = SimulationConfig(rounds=2, clients_per_round=40, eval_every=2)


@pytest.fixture(scope="module")
def data():
    return synthetic(n_users=120, n_items=60, seed=2)


def _scrambled_devices(data, pilot: np.ndarray):
    """The same data set with every non-pilot user's items replaced by random ones."""
    rng = np.random.default_rng(7)
    item = data.item.copy()
    others = ~np.isin(data.user, pilot)
    item[others] = rng.integers(0, data.n_items, size=int(others.sum()))
    return replace(data, item=item)


def test_the_pilot_never_sees_a_device_users_events(data):
    pilot, _ = draw_pilot(data.n_users, 0.25, SIM.seed)
    a = federated_study(data, SIM, model=CFG, pilot_share=0.25, central=False)
    b = federated_study(_scrambled_devices(data, pilot), SIM, model=CFG, pilot_share=0.25, central=False)
    assert a.pilot_users == len(pilot) == 30 and a.devices == 90
    for name, value in a.first_model.items():  # devices' data changed, the first model did not
        np.testing.assert_array_equal(value, b.first_model[name])
    # ...while the federated model did learn from the devices' (different) events.
    assert any(not np.array_equal(a.result.params[n], b.result.params[n]) for n in a.result.params)


def test_pilot_and_devices_split_the_users():
    pilot, others = draw_pilot(100, 0.3, seed=4)
    assert len(pilot) == 30 and len(others) == 70
    assert sorted(np.concatenate([pilot, others]).tolist()) == list(range(100))
    assert np.array_equal(draw_pilot(100, 0.3, seed=4)[0], pilot)  # a seed names one pilot
    seqs = loo_split(synthetic(n_users=100, n_items=40, seed=1).sequences()).train
    kept = only_users(seqs, pilot)
    assert all((len(kept.items[u]) > 0) == (u in set(pilot.tolist()) and len(seqs.items[u]) > 0)
               for u in range(100))
    with pytest.raises(ConfigError):
        draw_pilot(100, 1.0, seed=0)


def test_a_chosen_epsilon_is_met_for_the_rounds_that_run(data):
    study = federated_study(data, SIM, model=CFG, epsilon=4.0, central=False)
    z = study.sim.noise_multiplier
    spent = releases_epsilon([Release(study.devices, 40, z)] * SIM.rounds, SIM.delta)
    assert study.epsilon == pytest.approx(spent) and 0.99 * 4.0 <= spent <= 4.0
    assert study.result.records[-1].epsilon == study.epsilon


def test_everyone_taking_part_is_accounted_without_sampling(data):
    sim = replace(SIM, clients_per_round=10_000)
    study = federated_study(data, sim, model=CFG, epsilon=6.0, central=False)
    assert all(r.participants == study.devices for r in study.result.records)
    assert study.epsilon == pytest.approx(releases_epsilon([Release(1, 1, study.sim.noise_multiplier)] * 2, 1e-5))


def test_the_study_reports_central_and_pilot_on_the_device_users(data):
    study = federated_study(data, SIM, model=CFG, pilot_share=0.2)
    assert 0 < study.pilot_ndcg < 1 and 0 < study.central_ndcg < 1 and 0 < study.ndcg < 1
    assert study.ndcg == study.result.records[-1].ndcg


def test_cli_simulate_epsilon_json_ends_with_the_summary(capsys):
    code = main(["simulate", "--rounds", "1", "--clients", "1000", "--epsilon", "8", "--pilot-share",
                 "0.1", "--quiet", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"epsilon", "delta", "ndcg@10", "central_ndcg@10", "pilot_ndcg@10"} <= set(summary)
    assert 7.9 <= summary["epsilon"] <= 8.0 and summary["pilot_users"] == 50
    assert all(0 < summary[k] < 1 for k in ("ndcg@10", "central_ndcg@10", "pilot_ndcg@10"))


def test_cli_simulate_refuses_noise_and_epsilon_together(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--noise", "1", "--epsilon", "8"])


def test_cli_simulate_frozen_tables_federates_the_rest(capsys):
    code = main(["simulate", "--rounds", "1", "--clients", "20", "--frozen", "tables", "--quiet",
                 "--json", "--no-central"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 < summary["ndcg@10"] < 1
    assert main(["simulate", "--rounds", "1", "--clients", "20", "--frozen", "emb_inn", "--quiet",
                 "--no-central"]) == 2  # a name the model does not have: one clear error
