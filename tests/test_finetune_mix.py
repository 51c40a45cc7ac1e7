"""Fine-tuning a mix on a device: each tower as alone, the adapter and delta side by side, frozen
names honoured per tower; through the client, the two-tower adapter is saved and used at once."""

from __future__ import annotations

import numpy as np
import pytest

import edgerec
from edgerec.bundle import load_bundle, write_bundle
from edgerec.data import Sequences, synthetic
from edgerec.finetune import FineTuneConfig, fine_tune
from edgerec.model.config import ModelConfig, TrainConfig
from edgerec.model.mix import split
from edgerec.model.params import MIX_PREFIX, flatten, param_names
from edgerec.training import fit_params

CFG = ModelConfig(dim=8, history=10, encoder="mix", blocks=1, dropout=0.1, mix=0.4)


@pytest.fixture(scope="module")
def setup():
    ds = synthetic(n_users=80, n_items=60, seed=3)
    seqs = ds.sequences()
    base = fit_params(Sequences(seqs.items[1:], seqs.signals[1:]), ds.catalogue.features, CFG,
                      (TrainConfig(epochs=2), TrainConfig(epochs=2, batch_size=16)))
    return base, ds, Sequences(seqs.items[:2], seqs.signals[:2])


def test_each_tower_is_fine_tuned_as_alone_and_the_update_puts_them_side_by_side(setup):
    base, ds, device = setup
    fcfg = FineTuneConfig(epochs=2, seed=7)
    up = fine_tune(base, ds.catalogue.features, device, CFG, fcfg)
    names = param_names(CFG)
    np.testing.assert_allclose(up.delta, flatten(up.params, names) - flatten(base, names), atol=1e-6)
    assert up.adapter.shape == (CFG.user_dim,) and "adapter" not in up.params
    (pooled_base, seq_base), towers = split(base), CFG.towers()
    pooled = fine_tune(pooled_base, ds.catalogue.features, device, towers[0], fcfg)
    seq = fine_tune(seq_base, ds.catalogue.features, device, towers[1], fcfg)
    np.testing.assert_array_equal(up.delta, np.concatenate([pooled.delta, seq.delta]))
    np.testing.assert_array_equal(up.adapter, np.concatenate([pooled.adapter, seq.adapter]))
    assert up.loss_before == pytest.approx(0.4 * pooled.loss_before + 0.6 * seq.loss_before)
    assert up.loss_after < up.loss_before


def test_frozen_names_of_either_tower_keep_a_zero_delta(setup):
    base, ds, device = setup
    frozen = frozenset({"emb_out", MIX_PREFIX + "emb_in", MIX_PREFIX + "att0.wq"})
    up = fine_tune(base, ds.catalogue.features, device, CFG, FineTuneConfig(frozen=frozen))
    moved, offset = {}, 0
    for name in param_names(CFG):
        size = base[name].size
        moved[name] = bool(np.any(up.delta[offset: offset + size]))
        offset += size
    assert not any(moved[name] for name in frozen)
    assert all(moved[name] for name in ("emb_in", "seq.emb_out", "seq.att0.wk", "w1"))


def test_a_mix_bundle_serves_real_time_feedback_and_its_adapter_at_once(tmp_path, setup):
    base, ds, _ = setup
    path = tmp_path / "bundle"
    write_bundle(path, base, ds.catalogue, CFG, model_version=1)
    assert load_bundle(path).config == CFG
    with edgerec.open(tmp_path / "app.db", bundle=path) as rec:
        cat = rec.bundle.catalogue
        cold = [r.item for r in rec.recommend(user="me", k=10)]
        liked = [i for i, t in zip(cat.item_ids, cat.titles) if "Genre 2" in t][:20]
        rec.log(user="me", item=liked[0], event="click")
        assert [r.item for r in rec.recommend(user="me", k=10)] != cold
        rec.log_many([{"user": "me", "item": item, "event": "click", "ts": 1000.0 + n}
                      for n, item in enumerate(liked[1:])])
        before = [(r.item, r.score) for r in rec.recommend("me", k=10)]
        update = rec.fine_tune(edgerec.FineTuneConfig(epochs=1, adapter_epochs=3))
        assert update.adapter.shape == (2 * CFG.dim,)
        after = [(r.item, r.score) for r in rec.recommend("me", k=10)]
        assert after != before
    with edgerec.open(tmp_path / "app.db", bundle=path) as rec:
        assert [(r.item, r.score) for r in rec.recommend("me", k=10)] == after  # adapter kept


def test_a_mix_bundle_checks_the_shape_of_both_towers_weights(setup):
    from edgerec.bundle import _expected_shapes

    base, ds, _ = setup
    shapes = _expected_shapes(CFG, len(ds.catalogue), ds.catalogue.features.shape[1])
    for name in param_names(CFG):
        assert shapes[name] == base[name].shape, name
