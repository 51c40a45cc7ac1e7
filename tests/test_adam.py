"""Adam updates large tables block by block of rows: the same bits as one whole-array update."""

from __future__ import annotations

import numpy as np

from edgerec.training import Adam


def _reference(param, grads, lr):
    """Adam written out over whole arrays, float32, in the optimizer's order of operations."""
    m, v = np.zeros_like(param), np.zeros_like(param)
    for t, grad in enumerate(grads, start=1):
        scale = np.float32(lr * np.sqrt(1 - 0.999**t) / (1 - 0.9**t))
        m = m * 0.9 + grad * (1 - 0.9)
        v = v * 0.999 + (grad * (1 - 0.999)) * grad
        param = param - (m / (np.sqrt(v) + 1e-8)) * scale
    return param


def test_blockwise_updates_equal_whole_array_updates():
    rng = np.random.default_rng(0)
    shapes = {"table": (5000, 64), "bias": (70_000,), "small": (3, 2)}  # tables span many blocks
    params = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    start = {k: v.copy() for k, v in params.items()}
    steps = [{k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()} for _ in range(3)]
    opt = Adam(1e-2)
    for grads in steps:
        opt.step(params, grads)
    for name in shapes:
        expected = _reference(start[name], [g[name] for g in steps], 1e-2)
        assert np.array_equal(params[name], expected), name
        assert not np.array_equal(params[name], start[name])


def test_frozen_parameters_do_not_move():
    params = {"a": np.ones((4, 2), np.float32), "b": np.ones(3, np.float32)}
    Adam(0.1).step(params, {"a": np.ones((4, 2), np.float32), "b": np.ones(3, np.float32)},
                   frozen=frozenset({"b"}))
    assert np.all(params["b"] == 1) and np.all(params["a"] < 1)


def test_row_gradients_and_l2_applied_densely_equal_the_dense_gradient_with_l2_added():
    """Adam(lazy=False) takes a Rows gradient as the dense array it stands for and adds L2 inside
    its update: the same bits as building the dense gradient and adding 2 * w * param to it."""
    from edgerec.model.rows import Rows

    rng = np.random.default_rng(1)
    shapes = {"table": (5000, 64), "bias": (70_000,)}  # many blocks; rows fall in some of them
    params = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    twin = {k: v.copy() for k, v in params.items()}
    sparse, dense = Adam(1e-2, lazy=False), Adam(1e-2)
    l2 = {"table": 3e-4, "bias": 0.0}
    for _ in range(3):
        grads = {}
        for name, shape in shapes.items():
            index = np.sort(rng.choice(shape[0], 700, replace=False))
            grads[name] = Rows(index, rng.standard_normal((700, *shape[1:])).astype(np.float32), shape[0])
        sparse.step(params, grads, l2=l2)
        full = {name: g.to_dense() for name, g in grads.items()}
        for name, weight in l2.items():
            full[name] += (2 * weight) * twin[name]
        dense.step(twin, full)
    for name in shapes:
        assert np.array_equal(params[name], twin[name]), name


def test_lazy_rows_move_only_their_rows_and_l2_only_there():
    from edgerec.model.rows import Rows

    params = {"table": np.ones((10, 3), np.float32)}
    opt = Adam(0.1)
    opt.step(params, {"table": Rows(np.array([2, 7]), np.ones((2, 3), np.float32), 10)}, l2={"table": 0.5})
    moved = np.flatnonzero((params["table"] != 1.0).any(axis=1))
    assert moved.tolist() == [2, 7]


def test_a_training_run_is_the_dense_training_it_replaces():
    """TrainingRun feeds Adam the item tables' Rows with L2 inside the update; a featureless
    catalogue (as a CSV gives) trains to the very bits of dense gradients with L2 added first."""
    from functools import partial

    from edgerec.data import synthetic
    from edgerec.model.config import ModelConfig, TrainConfig
    from edgerec.model.encoder import training_loss
    from edgerec.model.examples import next_item_examples, sequence_examples
    from edgerec.model.network import loss_and_grads
    from edgerec.model.params import init_params
    from edgerec.model.sampled import NegativeSampler
    from edgerec.training import TABLES, TrainingRun, run_epochs

    data = synthetic(n_users=80, n_items=120, n_genres=4, mean_length=12, seed=2)
    seqs, features = data.sequences(), np.zeros((120, 0), np.float32)
    pooled = ModelConfig(dim=8, history=6)
    attention = ModelConfig(dim=8, history=6, encoder="attention", blocks=1, dropout=0.2)
    for cfg, tcfg in ((pooled, TrainConfig(epochs=2, l2=3e-4, seed=4, batch_size=16)),
                      (pooled, TrainConfig(epochs=2, l2=1e-4, seed=4, batch_size=16,
                                           softmax="sampled", negatives=20)),
                      (attention, TrainConfig(epochs=2, l2=1e-4, seed=4, batch_size=16)),
                      (attention, TrainConfig(epochs=2, l2=0.0, seed=4, batch_size=16,
                                              softmax="sampled", negatives=20))):
        run = TrainingRun.fresh(seqs, features, cfg, tcfg)
        run.advance(2)
        params = init_params(cfg, 120, 0, np.random.default_rng(tcfg.seed))
        attending = cfg.encoder == "attention"
        examples = (sequence_examples if attending else next_item_examples)(seqs, cfg.history)
        rng, opt = np.random.default_rng(tcfg.seed), Adam(tcfg.lr)
        sampler = (NegativeSampler.for_targets(examples[2], 120, tcfg.negatives, tcfg.uniform_mix)
                   if tcfg.softmax == "sampled" else None)
        loss = training_loss(cfg, rng) if attending else partial(loss_and_grads, sparse=False)
        run_epochs(params, features, examples, epochs=2, batch_size=16, rng=rng,
                   step=lambda grads: opt.step(params, grads), l2={n: tcfg.l2 for n in TABLES},
                   dropout=tcfg.history_dropout, sampler=sampler, loss=loss)
        assert all(np.array_equal(run.params[n], params[n]) for n in params), (cfg.encoder, tcfg.softmax)
