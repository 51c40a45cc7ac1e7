"""Row-sparse gradients and lazy Adam (edgerec.model.rows): the same gradient as the dense one,
only touched rows move, the stated rule for when training uses them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerec._exceptions import ConfigError
from edgerec.data import synthetic
from edgerec.model.config import ModelConfig, TrainConfig
from edgerec.model.network import loss_and_grads
from edgerec.model.params import init_params, item_tables, training_tables
from edgerec.model.rows import Rows, dense, merge_rows
from edgerec.model.sampled import NegativeSampler
from edgerec.training import Adam, TrainingRun, run_epochs
from edgerec.model.examples import next_item_examples


@settings(max_examples=60, deadline=None)
@given(index=st.lists(st.integers(0, 19), max_size=40), seed=st.integers(0, 10**6))
def test_merged_rows_are_the_scattered_sum(index, seed):
    values = np.random.default_rng(seed).standard_normal((len(index), 3)).astype(np.float32)
    rows = merge_rows(np.array(index, np.int64), values, 20)
    expected = np.zeros((20, 3), np.float32)
    np.add.at(expected, np.array(index, np.int64), values)
    assert np.array_equal(rows.to_dense(), expected)
    assert list(rows.index) == sorted(set(index)) and rows.shape == (20, 3)


def _batch(n_items: int, n_features: int, hidden: bool, seed: int):
    rng = np.random.default_rng(seed)
    cfg = ModelConfig(dim=8, history=6, hidden=hidden)
    features = (rng.random((n_items, n_features)) < 0.3).astype(np.float32)
    params = init_params(cfg, n_items, n_features, rng)
    params["bias"] = rng.standard_normal(n_items).astype(np.float32) * 0.1
    items = rng.integers(0, n_items, (16, cfg.history))
    signals = rng.integers(0, 6, (16, cfg.history))  # PAD (0) among them
    targets = rng.integers(0, n_items, 16)
    negatives = NegativeSampler.for_targets(targets, n_items, 20, 1.0).draw(rng)
    return params, features, items, signals, targets, negatives


@settings(max_examples=40, deadline=None)
@given(n_features=st.sampled_from([0, 4]), hidden=st.booleans(), sampled=st.booleans(),
       seed=st.integers(0, 10**6))
def test_sparse_gradients_are_the_dense_gradients_rows(n_features, hidden, sampled, seed):
    params, features, items, signals, targets, negatives = _batch(200, n_features, hidden, seed)
    negs = negatives if sampled else None
    loss_d, dense_grads = loss_and_grads(params, features, items, signals, targets, negatives=negs)
    loss_s, sparse_grads = loss_and_grads(params, features, items, signals, targets, negatives=negs,
                                          sparse=True)
    assert loss_d == loss_s and dense_grads.keys() == sparse_grads.keys()
    assert isinstance(sparse_grads["emb_in"], Rows)
    assert isinstance(sparse_grads["emb_out"], Rows) == sampled
    for name, grad in dense_grads.items():
        np.testing.assert_allclose(dense(sparse_grads[name]), grad, rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    # The touched rows are few: the history items and the targets and negatives, nothing else.
    used = np.unique(items[signals != 0])
    assert set(sparse_grads["emb_in"].index) <= set(used)
    if sampled:
        assert set(sparse_grads["emb_out"].index) == set(targets) | set(negatives.items)


def test_l2_on_rows_touches_only_those_rows():
    params, features, items, signals, targets, negatives = _batch(200, 0, False, 1)
    _, plain = loss_and_grads(params, features, items, signals, targets, negatives=negatives,
                              sparse=True)
    _, with_l2 = loss_and_grads(params, features, items, signals, targets, 0.01,
                                negatives=negatives, sparse=True)
    rows = plain["emb_out"].index
    np.testing.assert_allclose(with_l2["emb_out"].values,
                               plain["emb_out"].values + 0.02 * params["emb_out"][rows], rtol=1e-6)
    assert np.array_equal(with_l2["emb_out"].index, rows)


def test_lazy_adam_moves_only_touched_rows_and_matches_dense_adam_on_them():
    rng = np.random.default_rng(0)
    start = rng.standard_normal((50, 4)).astype(np.float32)
    lazy, full = {"t": start.copy()}, {"t": start.copy()}
    lazy_opt, full_opt = Adam(0.05), Adam(0.05)
    always, once = np.array([3, 7, 40]), np.array([8, 9])
    for step in range(3):
        index = np.sort(np.concatenate([always, once])) if step == 0 else always
        values = rng.standard_normal((len(index), 4)).astype(np.float32)
        lazy_opt.step(lazy, {"t": Rows(index, values, 50)})
        full_opt.step(full, {"t": Rows(index, values, 50).to_dense()})
        if step == 0:
            after_first = lazy["t"][once].copy()
    never = np.setdiff1d(np.arange(50), np.concatenate([always, once]))
    assert np.array_equal(lazy["t"][never], start[never])  # untouched rows: not one bit moved
    assert np.array_equal(lazy_opt.m["t"][never], np.zeros_like(start[never]))
    # A row touched at every step sees exactly the dense update (same step count, same bits).
    assert np.array_equal(lazy["t"][always], full["t"][always])
    # A row touched once stays where its one step left it; dense Adam's momentum moves it on.
    assert np.array_equal(lazy["t"][once], after_first)
    assert not np.array_equal(full["t"][once], after_first)


def test_lazy_adam_over_every_row_is_dense_adam_bit_for_bit():
    rng = np.random.default_rng(1)
    start = rng.standard_normal((300, 8)).astype(np.float32)
    lazy, full = {"t": start.copy()}, {"t": start.copy()}
    lazy_opt, full_opt = Adam(0.01), Adam(0.01)
    for _ in range(4):
        grad = rng.standard_normal((300, 8)).astype(np.float32)
        lazy_opt.step(lazy, {"t": Rows(np.arange(300), grad, 300)})
        full_opt.step(full, {"t": grad})
    assert np.array_equal(lazy["t"], full["t"])


def test_training_tables_are_item_tables_and_without_features_the_embeddings_themselves():
    rng = np.random.default_rng(2)
    for n_features in (0, 3):
        features = rng.random((30, n_features)).astype(np.float32)
        params = init_params(ModelConfig(dim=4, history=3), 30, n_features, rng)
        for got, want in zip(training_tables(params, features), item_tables(params, features)):
            assert np.array_equal(got, want)
    table_in, table_out = training_tables(params := init_params(ModelConfig(dim=4, history=3), 30, 0,
                                                                rng), np.zeros((30, 0), np.float32))
    assert table_in is params["emb_in"] and table_out is params["emb_out"]  # no copy


def test_dense_is_the_default_and_bad_values_are_refused():
    assert not TrainConfig().lazy_tables and TrainConfig(table_updates="lazy").lazy_tables
    with pytest.raises(ConfigError):
        TrainConfig(table_updates="auto")


def _trained(**options) -> dict[str, np.ndarray]:
    data = synthetic(40, 60, seed=0)
    run = TrainingRun.fresh(data.sequences(), data.catalogue.features, ModelConfig(dim=8, history=6),
                            TrainConfig(epochs=3, batch_size=32, seed=3, **options))
    run.advance(3)
    return run.params


def test_lazy_training_is_deterministic_differs_from_dense_and_learns():
    data = synthetic(40, 60, seed=0)
    lazy = _trained(softmax="sampled", negatives=16, table_updates="lazy")
    again = _trained(softmax="sampled", negatives=16, table_updates="lazy")
    assert all(np.array_equal(lazy[k], v) for k, v in again.items())
    dense_run = _trained(softmax="sampled", negatives=16)
    assert not np.array_equal(lazy["emb_out"], dense_run["emb_out"])
    # Lazy training lowers the training loss like dense training does.
    seqs, features = data.sequences(), data.catalogue.features
    examples = next_item_examples(seqs, 6)
    rng = np.random.default_rng(0)
    params = init_params(ModelConfig(dim=8, history=6), data.n_items, features.shape[1], rng)
    opt = Adam(1e-2)
    sampler = NegativeSampler.for_targets(examples[2], data.n_items, 16, 1.0)
    losses = run_epochs(params, features, examples, epochs=6, batch_size=32, rng=rng,
                        step=lambda g: opt.step(params, g), sampler=sampler,
                        l2={"emb_in": 1e-4, "emb_out": 1e-4},
                        loss=lambda *a, **k: loss_and_grads(*a, **k, sparse=True))
    assert losses[-1] < 0.9 * losses[0]
