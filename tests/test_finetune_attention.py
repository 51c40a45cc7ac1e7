"""Local fine-tuning of the attention encoder: it fits the device, moves the blocks and the
adapter, keeps the personal part out of the delta, and is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from edgerec.data import Sequences, synthetic
from edgerec.finetune import FineTuneConfig, fine_tune
from edgerec.model.config import ModelConfig, TrainConfig
from edgerec.model.params import flatten, param_names
from edgerec.training import fit_params


@pytest.fixture(scope="module")
def setup():
    ds = synthetic(n_users=80, n_items=60, seed=3)
    cfg = ModelConfig(dim=8, history=10, encoder="attention", blocks=2, dropout=0.1)
    seqs = ds.sequences()
    base = fit_params(Sequences(seqs.items[1:], seqs.signals[1:]), ds.catalogue.features, cfg,
                      TrainConfig(epochs=2, batch_size=16))
    device = Sequences(seqs.items[:2], seqs.signals[:2])
    return cfg, base, ds.catalogue.features, device


def test_fine_tuning_fits_the_device_and_moves_the_top_block_and_the_adapter(setup):
    cfg, base, features, device = setup
    up = fine_tune(base, features, device, cfg, FineTuneConfig(epochs=3))
    assert up.loss_after < up.loss_before
    names = param_names(cfg)
    np.testing.assert_allclose(up.delta, flatten(up.params, names) - flatten(base, names), atol=1e-6)
    for name in ("att1.wq", "att1.w2", "att_ln_g", "att_pos"):
        assert np.any(up.params[name] != base[name]), name
    assert up.adapter.shape == (cfg.dim,) and np.any(up.adapter != 0)
    assert "adapter" not in up.params


def test_same_seed_same_update_and_personalise_only_sends_nothing(setup):
    cfg, base, features, device = setup
    a = fine_tune(base, features, device, cfg, FineTuneConfig(seed=4))
    b = fine_tune(base, features, device, cfg, FineTuneConfig(seed=4))
    np.testing.assert_array_equal(a.delta, b.delta)
    np.testing.assert_array_equal(a.adapter, b.adapter)
    only = fine_tune(base, features, device, cfg, FineTuneConfig(epochs=0))
    assert not np.any(only.delta) and np.any(only.adapter)


def test_max_examples_bounds_the_work(setup):
    cfg, base, features, _ = setup
    rng = np.random.default_rng(0)
    long = Sequences([rng.integers(0, 60, 500)], [np.full(500, 3)])
    up = fine_tune(base, features, long, cfg, FineTuneConfig(max_examples=64, epochs=1))
    assert up.n_examples == 64
