"""The first model: trained on the pilot's events only, for the epochs its own held-out items chose."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edgerec import ConfigError, ModelConfig
from edgerec.data import synthetic
from edgerec.evaluation import ndcg_at, rank_users
from edgerec.evaluation.ours import FloatModel
from edgerec.federated.pilot import draw_pilot, only_users
from edgerec.federated.pilot_training import HELD_OUT, train_pilot
from edgerec.model.config import TrainConfig
from edgerec.training import fit_params
from edgerec.types import Sequences

CFG = ModelConfig(dim=16, history=10)
TRAIN = TrainConfig(epochs=16, seed=3)


@pytest.fixture(scope="module")
def pilot_data():
    data = synthetic(n_users=80, n_items=50, seed=5)
    pilot, _ = draw_pilot(data.n_users, 0.5, seed=1)
    return data, only_users(data.sequences(), pilot)


def test_the_epochs_that_score_best_on_the_pilots_last_events_are_chosen(pilot_data):
    data, seqs = pilot_data
    fit = train_pilot(seqs, data.catalogue.features, CFG, TRAIN, candidates=(1, 3, 6))
    assert set(fit.scores) == {1, 3, 6}
    assert fit.scores[fit.epochs] == max(fit.scores.values())
    # Each score is what a run of that many epochs on all but the last HELD_OUT events of each
    # user gives on those events (each ranked after the events before it).
    users = np.array([u for u, x in enumerate(seqs.items) if len(x) >= HELD_OUT + 2])
    assert len(users) > 10

    def cut(j: int) -> Sequences:
        keep = set(users.tolist())
        return Sequences([x[:-j] if u in keep else x for u, x in enumerate(seqs.items)],
                         [g[:-j] if u in keep else g for u, g in enumerate(seqs.signals)])

    three = fit_params(cut(HELD_OUT), data.catalogue.features, CFG, replace(TRAIN, epochs=3))
    model = FloatModel(three, CFG, data.catalogue.features)
    per_j = [ndcg_at(rank_users(model, cut(j), users, np.array([seqs.items[u][-j] for u in users]),
                                data.n_items)).mean() for j in range(1, HELD_OUT + 1)]
    assert fit.scores[3] == pytest.approx(float(np.mean(per_j)))


def test_the_first_model_is_then_trained_on_every_pilot_event(pilot_data):
    data, seqs = pilot_data
    fit = train_pilot(seqs, data.catalogue.features, CFG, TRAIN, candidates=(2, 4))
    again = fit_params(seqs, data.catalogue.features, CFG, replace(TRAIN, epochs=fit.epochs))
    for name, value in again.items():
        np.testing.assert_array_equal(fit.params[name], value)


def test_a_pilot_too_short_to_hold_out_trains_for_the_configured_epochs():
    data = synthetic(n_users=10, n_items=20, seed=1)
    short = Sequences([s[:HELD_OUT + 1] for s in data.sequences().items],
                      [g[:HELD_OUT + 1] for g in data.sequences().signals])
    fit = train_pilot(short, data.catalogue.features, CFG, replace(TRAIN, epochs=2))
    assert fit.scores == {} and fit.epochs == 2


@pytest.mark.parametrize("bad", [(), (0, 4), (-1,)])
def test_epoch_candidates_must_be_positive(pilot_data, bad):
    data, seqs = pilot_data
    with pytest.raises(ConfigError):
        train_pilot(seqs, data.catalogue.features, CFG, TRAIN, candidates=bad)
