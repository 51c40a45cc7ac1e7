"""Local fine-tuning: deterministic, bounded, personal part separate from the shared delta."""

from __future__ import annotations

import numpy as np
import pytest

from edgerec import ConfigError
from edgerec.data import Sequences, synthetic
from edgerec.finetune import FineTuneConfig, fine_tune
from edgerec.model.config import ModelConfig, TrainConfig
from edgerec.model.params import flatten, param_names
from edgerec.training import fit_params


@pytest.fixture(scope="module")
def setup():
    ds = synthetic(n_users=80, n_items=60, seed=3)
    cfg = ModelConfig(dim=8, history=10)
    seqs = ds.sequences()
    base = fit_params(Sequences(seqs.items[1:], seqs.signals[1:]), ds.catalogue.features, cfg,
                      TrainConfig(epochs=2))
    device = Sequences(seqs.items[:1], seqs.signals[:1])
    return cfg, base, ds.catalogue.features, device


def test_same_seed_same_update_and_base_untouched(setup):
    cfg, base, features, device = setup
    snapshot = {k: v.copy() for k, v in base.items()}
    a = fine_tune(base, features, device, cfg, FineTuneConfig(seed=4))
    b = fine_tune(base, features, device, cfg, FineTuneConfig(seed=4))
    np.testing.assert_array_equal(a.delta, b.delta)
    np.testing.assert_array_equal(a.adapter, b.adapter)
    for k in base:
        np.testing.assert_array_equal(base[k], snapshot[k])


def test_update_fits_the_device_and_delta_is_new_minus_base(setup):
    cfg, base, features, device = setup
    up = fine_tune(base, features, device, cfg)
    assert up.loss_after < up.loss_before
    names = param_names(cfg)
    np.testing.assert_allclose(up.delta, flatten(up.params, names) - flatten(base, names), atol=1e-6)
    assert up.adapter.shape == (cfg.dim,) and np.any(up.adapter != 0)
    assert "adapter" not in up.params  # the personal part is never inside the shared weights


def test_personalise_only_sends_nothing_new(setup):
    cfg, base, features, device = setup
    up = fine_tune(base, features, device, cfg, FineTuneConfig(epochs=0))
    assert not np.any(up.delta)
    assert np.any(up.adapter)


def test_max_examples_bounds_the_work_to_the_most_recent(setup):
    cfg, base, features, _ = setup
    rng = np.random.default_rng(0)
    long = Sequences([rng.integers(0, 60, 500)], [np.full(500, 3)])
    up = fine_tune(base, features, long, cfg, FineTuneConfig(max_examples=64, epochs=1, adapter_epochs=1))
    assert up.n_examples == 64


def test_a_previous_adapter_is_continued(setup):
    cfg, base, features, device = setup
    first = fine_tune(base, features, device, cfg, FineTuneConfig(epochs=0, adapter_epochs=1))
    again = fine_tune(base, features, device, cfg, FineTuneConfig(epochs=0, adapter_epochs=0),
                      adapter=first.adapter)
    np.testing.assert_array_equal(again.adapter, first.adapter)


def test_empty_device_changes_nothing(setup):
    cfg, base, features, _ = setup
    up = fine_tune(base, features, Sequences([], []), cfg)
    assert up.n_examples == 0 and not np.any(up.delta) and not np.any(up.adapter)


@pytest.mark.parametrize("kwargs", [{"epochs": -1}, {"max_examples": 0}, {"lr": 0}, {"adapter_l2": -1}])
def test_bad_budget_is_refused(kwargs):
    with pytest.raises(ConfigError):
        FineTuneConfig(**kwargs)
