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
