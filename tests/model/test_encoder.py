"""The attention encoder: gradients agree with finite differences (with dropout, every position
targeted, adapter, sampled softmax); what a position may read; config and parameter names."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerec._exceptions import ConfigError
from edgerec.events import PAD_SIGNAL
from edgerec.model import encoder
from edgerec.model.config import ModelConfig
from edgerec.model.network import loss_and_grads as dispatched_loss
from edgerec.model.network import user_vectors
from edgerec.model.params import init_params, item_tables, param_names
from edgerec.model.sampled import Negatives

N_ITEMS, N_FEAT = 9, 3


def _problem(blocks: int = 2, seed: int = 0, dim: int = 6, history: int = 5):
    rng = np.random.default_rng(seed)
    cfg = ModelConfig(dim=dim, history=history, encoder="attention", blocks=blocks)
    params = {k: v.astype(np.float64) for k, v in init_params(cfg, N_ITEMS, N_FEAT, rng).items()}
    for name in params:  # move layer norms and biases off their initial 1 and 0
        if name.endswith(("_g", "_b", ".b1", ".b2")) or name in ("bias", "user0"):
            params[name] = params[name] + rng.standard_normal(params[name].shape) * 0.1
    features = rng.random((N_ITEMS, N_FEAT))
    items = rng.integers(0, N_ITEMS, (4, cfg.history))
    signals = rng.integers(1, 12, (4, cfg.history))
    signals[1, 3:] = PAD_SIGNAL  # a short history
    signals[2, :] = PAD_SIGNAL  # an empty one: the cold-start user
    targets = rng.integers(0, N_ITEMS, 4)
    return cfg, params, features, items, signals, targets


def _check_gradients(params, names, loss, eps: float = 1e-6, per_name: int = 12) -> None:
    _, grads = loss()
    pick = np.random.default_rng(5)
    for name in names:
        flat = params[name].ravel()
        for idx in pick.choice(flat.size, min(flat.size, per_name), replace=False):
            saved = flat[idx]
            flat[idx] = saved + eps
            up, _ = loss()
            flat[idx] = saved - eps
            down, _ = loss()
            flat[idx] = saved
            numeric = (up - down) / (2 * eps)
            assert grads[name].ravel()[idx] == pytest.approx(numeric, rel=1e-4, abs=1e-7), (name, idx)


@pytest.mark.parametrize("all_positions, dropout, adapter", [
    (False, 0.0, False), (True, 0.0, True), (True, 0.3, False), (False, 0.3, True)])
@pytest.mark.parametrize("pass_cost", [None, 0])  # 0: the batch's histories in 3 passes by length
def test_gradients_match_finite_differences(all_positions, dropout, adapter, pass_cost, monkeypatch):
    if pass_cost is not None:
        monkeypatch.setattr(encoder, "_PASS_COST", pass_cost)
    cfg, params, features, items, signals, targets = _problem()
    names = param_names(cfg)
    if adapter:
        params["adapter"] = np.random.default_rng(9).standard_normal(cfg.dim) * 0.2
        names += ("adapter",)

    def loss():  # the same dropout masks every call: a fresh generator from one seed
        return encoder.loss_and_grads(params, features, items, signals, targets, 0.01,
                                      all_positions=all_positions, dropout=dropout,
                                      rng=np.random.default_rng(3))

    _check_gradients(params, names, loss)


def test_gradients_with_sampled_negatives_match_finite_differences():
    cfg, params, features, items, signals, targets = _problem(blocks=1)
    negatives = Negatives(np.array([0, 4, 7]), np.log(np.array([0.2, 0.3, 0.1])))

    def loss():
        return encoder.loss_and_grads(params, features, items, signals, targets,
                                      negatives=negatives, all_positions=True)

    _check_gradients(params, param_names(cfg), loss, per_name=6)


def test_the_model_dispatches_attention_parameters_to_the_encoder():
    cfg, params, features, items, signals, targets = _problem()
    direct, grads = encoder.loss_and_grads(params, features, items, signals, targets, 0.01)
    via, via_grads = dispatched_loss(params, features, items, signals, targets, 0.01)
    assert via == direct and set(via_grads) == set(grads) == set(param_names(cfg))
    table_in, _ = item_tables(params, features)
    assert np.array_equal(user_vectors(params, table_in, items, signals),
                          encoder.user_vectors(params, table_in, items, signals))


def test_every_position_trains_on_the_event_that_followed_it():
    cfg, params, features, items, signals, targets = _problem()
    rows, cols, tgt = encoder._targets(items, signals, targets, True)
    for row, col, target in zip(rows, cols, tgt):
        assert target == (targets[row] if col == 0 else items[row, col - 1])
        assert col == 0 or signals[row, col] != PAD_SIGNAL
    # 5 events, 3 events, none (position 0 alone: it teaches the cold-start user), 5 events
    assert list(np.bincount(rows)) == [5, 3, 1, 5] and list(cols[rows == 2]) == [0]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 4), st.integers(0, 2**31 - 1))
def test_a_position_reads_only_itself_and_older_events(position, seed):
    """Changing the events more recent than position l (and padded entries) changes no output
    at l: what lets every position of one history be a training example."""
    cfg, params, features, items, signals, _ = _problem(seed=1)
    table_in, _ = item_tables(params, features)
    rng = np.random.default_rng(seed)
    before, _ = encoder.encode(params, table_in, items, signals)
    newer_items, newer_signals = items.copy(), signals.copy()
    newer_items[:, :position] = rng.integers(0, N_ITEMS, (4, position))
    newer_signals[:, :position] = rng.integers(1, 12, (4, position))
    padded = signals == PAD_SIGNAL
    newer_items[padded] = rng.integers(0, N_ITEMS, int(padded.sum()))  # what padding says: nothing
    after, _ = encoder.encode(params, table_in, newer_items, newer_signals)
    assert np.allclose(after[:, position:], before[:, position:], atol=1e-12)


def test_a_new_event_changes_the_user_and_the_empty_history_gives_user0_plus_ln_bias():
    cfg, params, features, items, signals, _ = _problem()
    table_in, _ = item_tables(params, features)
    user = encoder.user_vectors(params, table_in, items, signals)
    assert np.allclose(user[2], params["user0"] + params["att_ln_b"])
    shifted_items = np.concatenate([[[4]] * 4, items[:, :-1]], axis=1)
    shifted_signals = np.concatenate([[[7]] * 4, signals[:, :-1]], axis=1)
    moved = encoder.user_vectors(params, table_in, shifted_items, shifted_signals)
    assert np.all(np.abs(moved - user).max(axis=1) > 1e-6)


def test_attention_options_are_checked_and_pooled_manifests_keep_their_keys():
    with pytest.raises(ConfigError, match="encoder"):
        ModelConfig(encoder="lstm")
    with pytest.raises(ConfigError, match="blocks"):
        ModelConfig(encoder="attention", blocks=0)
    with pytest.raises(ConfigError, match="dropout"):
        ModelConfig(encoder="attention", dropout=1.0)
    assert set(ModelConfig().to_dict()) == {"dim", "history", "hidden"}  # as before the encoder
    assert ModelConfig.from_dict({"dim": 8, "history": 4, "hidden": True}).encoder == "pooled"
    att = ModelConfig(encoder="attention", blocks=3, dropout=0.1)
    assert ModelConfig.from_dict(att.to_dict()) == att


def test_attention_parameters_are_named_and_shaped_per_block():
    cfg = ModelConfig(dim=8, history=7, encoder="attention", blocks=3)
    params = init_params(cfg, N_ITEMS, N_FEAT, np.random.default_rng(0))
    assert tuple(params) == param_names(cfg) or set(params) == set(param_names(cfg))
    assert sum(name.endswith(".wq") for name in params) == 3
    assert params["att_pos"].shape == (7, 8) and params["att2.w1"].shape == (8, 8)
    assert "pos" not in params and "w1" not in params and not params["att_signal"][PAD_SIGNAL].any()


@pytest.mark.parametrize("all_positions", [False, True])
@pytest.mark.parametrize("sampled", [False, True])
def test_histories_by_length_give_the_loss_and_gradients_of_one_pass(all_positions, sampled, monkeypatch):
    cfg, params, features, items, signals, targets = _problem(history=8)
    items, signals, targets = (np.concatenate([a] * 3) for a in (items, signals, targets))
    signals[4, 1:] = PAD_SIGNAL
    signals[7, 6:] = PAD_SIGNAL
    negatives = Negatives(np.array([0, 4, 7]), np.log(np.array([0.2, 0.3, 0.1]))) if sampled else None

    def run(cost):
        monkeypatch.setattr(encoder, "_PASS_COST", cost)
        return encoder.loss_and_grads(params, features, items, signals, targets, 0.01,
                                      negatives=negatives, all_positions=all_positions)

    assert len(encoder._width_groups(signals, cfg.dim)) == 1  # at the real pass cost
    monkeypatch.setattr(encoder, "_PASS_COST", 0)
    assert len(encoder._width_groups(signals, cfg.dim)) == 3
    (one, one_grads), (split, split_grads) = run(10**18), run(0)
    assert split == pytest.approx(one, rel=1e-12)
    assert one_grads.keys() == split_grads.keys()
    for name in one_grads:
        np.testing.assert_allclose(split_grads[name], one_grads[name], rtol=1e-10, atol=1e-14, err_msg=name)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=70), st.integers(1, 10**6),
       st.sampled_from([8, 64]))
def test_width_groups_split_a_batch_into_at_most_three_passes_that_cost_no_more(lengths, cost, dim):
    signals = np.full((len(lengths), 50), PAD_SIGNAL)
    for row, length in enumerate(lengths):
        signals[row, :length] = 1
    widths = np.maximum(np.array(lengths), 1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(encoder, "_PASS_COST", cost)
        groups = encoder._width_groups(signals, dim)
    assert 1 <= len(groups) <= 3
    rows = np.concatenate(groups)
    assert sorted(rows.tolist()) == list(range(len(lengths)))  # every row exactly once
    tops = [int(widths[g].max()) for g in groups]
    assert tops == sorted(set(tops))  # by length: each pass's histories longer than the last's
    for group in groups:
        assert np.all(np.diff(group) > 0)  # batch order kept inside a pass

    def work(groups_):
        return sum(len(g) * int(widths[g].max()) * (5 * dim + 2 * int(widths[g].max())) + cost
                   for g in groups_)

    assert work(groups) <= work([np.arange(len(lengths))])


@settings(max_examples=50, deadline=None)
@given(st.floats(0.01, 0.9), st.sampled_from([np.float32, np.float64]), st.integers(0, 1000))
def test_dropout_masks_keep_the_expectation_and_drop_at_the_rate(rate, dtype, seed):
    from edgerec.model.attention import keep_mask

    mask = keep_mask(np.random.default_rng(seed), rate, (200, 500), np.dtype(dtype))
    assert mask is not None and mask.dtype == dtype
    kept = mask > 0
    scale = float(mask[kept][0])
    assert np.all(mask[kept] == mask.dtype.type(scale))  # one scale for every kept entry
    dropped = 1.0 - 1.0 / scale  # the rate the scale stands for: E[mask] = 1 exactly
    assert abs(dropped - rate) <= 1 / 65536
    assert abs((~kept).mean() - rate) < 5 * np.sqrt(rate * (1 - rate) / mask.size)  # 5 sigma
    assert keep_mask(None, rate, (3,), np.dtype(dtype)) is None
    assert keep_mask(np.random.default_rng(0), 0.0, (3,), np.dtype(dtype)) is None


@pytest.mark.parametrize("sampled", [False, True])
def test_row_gradients_are_the_dense_gradients_rows(sampled):
    from edgerec.model.rows import Rows, dense

    cfg, params, features, items, signals, targets = _problem()
    negatives = Negatives(np.array([0, 4, 7]), np.log(np.array([0.2, 0.3, 0.1]))) if sampled else None
    full = encoder.loss_and_grads(params, features, items, signals, targets, negatives=negatives,
                                  all_positions=True)
    rows = encoder.loss_and_grads(params, features, items, signals, targets, negatives=negatives,
                                  all_positions=True, sparse=True)
    assert rows[0] == full[0]
    assert isinstance(rows[1]["emb_in"], Rows)
    assert isinstance(rows[1]["emb_out"], Rows) == sampled
    for name in full[1]:  # feat_* from the rows: the same sums in another order
        np.testing.assert_allclose(dense(rows[1][name]), full[1][name], rtol=1e-12, atol=1e-15,
                                   err_msg=name)
