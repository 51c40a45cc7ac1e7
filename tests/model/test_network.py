"""The numpy model: analytic gradients agree with finite differences; shapes and invariants."""

from __future__ import annotations

import numpy as np
import pytest

from edgerec.events import PAD_SIGNAL
from edgerec.model.config import ModelConfig
from edgerec.model.network import loss_and_grads, scatter_rows, user_vectors
from edgerec.model.params import flatten, init_params, item_tables, param_names, unflatten


def _problem(hidden: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    cfg = ModelConfig(dim=6, history=5, hidden=hidden)
    n_items, n_feat = 9, 3
    params = {k: v.astype(np.float64) for k, v in init_params(cfg, n_items, n_feat, rng).items()}
    if hidden:  # a non-zero w2 so the hidden path carries gradient
        params["w2"] = rng.standard_normal(params["w2"].shape) * 0.3
    params["bias"] = rng.standard_normal(n_items) * 0.1
    features = rng.random((n_items, n_feat))
    items = rng.integers(0, n_items, (4, cfg.history))
    signals = rng.integers(1, 12, (4, cfg.history))
    signals[1, 3:] = PAD_SIGNAL  # a short history
    targets = rng.integers(0, n_items, 4)
    return cfg, params, features, items, signals, targets


@pytest.mark.parametrize("hidden, adapter", [(False, False), (True, False), (True, True)])
def test_gradients_match_finite_differences(hidden, adapter):
    cfg, params, features, items, signals, targets = _problem(hidden)
    names = param_names(cfg)
    if adapter:
        params["adapter"] = np.random.default_rng(9).standard_normal(cfg.dim) * 0.2
        names += ("adapter",)
    l2 = 0.01
    _, grads = loss_and_grads(params, features, items, signals, targets, l2)
    eps = 1e-6
    for name in names:
        flat = params[name].ravel()
        for idx in range(min(flat.size, 25)):
            saved = flat[idx]
            flat[idx] = saved + eps
            up, _ = loss_and_grads(params, features, items, signals, targets, l2)
            flat[idx] = saved - eps
            down, _ = loss_and_grads(params, features, items, signals, targets, l2)
            flat[idx] = saved
            numeric = (up - down) / (2 * eps)
            analytic = grads[name].ravel()[idx]
            if name == "signal" and idx == PAD_SIGNAL:
                assert analytic == 0.0  # padding's weight is pinned
                continue
            assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-7), (name, idx)


def test_padding_does_not_change_the_user():
    cfg, params, features, items, signals, _ = _problem(True)
    table_in, _ = item_tables(params, features)
    before = user_vectors(params, table_in, items, signals)
    changed = items.copy()
    changed[1, 3:] = (changed[1, 3:] + 1) % 9  # different items behind the PAD signals
    after = user_vectors(params, table_in, changed, signals)
    np.testing.assert_allclose(before, after)


def test_empty_history_is_the_cold_start_user():
    cfg, params, features, items, signals, _ = _problem(False)
    table_in, _ = item_tables(params, features)
    empty = np.full_like(signals, PAD_SIGNAL)
    users = user_vectors(params, table_in, items, empty)
    np.testing.assert_allclose(users, np.tile(params["user0"], (len(items), 1)))


def test_scatter_rows_matches_add_at():
    rng = np.random.default_rng(3)
    index = rng.integers(0, 7, 50)
    rows = rng.standard_normal((50, 4))
    expected = np.zeros((7, 4))
    np.add.at(expected, index, rows)
    np.testing.assert_allclose(scatter_rows(index, rows, 7), expected)
    assert scatter_rows(index[:0], rows[:0], 7).shape == (7, 4)


def test_flatten_round_trips():
    cfg, params, *_ = _problem(True)
    names = param_names(cfg)
    vec = flatten(params, names)
    assert vec.size == sum(params[n].size for n in names)
    back = unflatten(vec, params, names)
    for n in names:
        np.testing.assert_allclose(back[n], params[n], rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError):
        unflatten(vec[:-1], params, names)


def test_mean_loss_is_the_loss_without_gradients():
    from edgerec.model.network import mean_loss

    cfg, params, features, items, signals, targets = _problem(True)
    expected, _ = loss_and_grads(params, features, items, signals, targets)
    assert mean_loss(params, features, items, signals, targets) == pytest.approx(expected, rel=1e-12)
