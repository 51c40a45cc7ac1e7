"""The pooled and attention encoders mixed: parameters, scores as the mixed log-probabilities,
the ONNX graph (float and int8) against numpy, and the frozen-tables shorthand."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerec import ConfigError
from edgerec.model.config import ModelConfig, TrainConfig
from edgerec.model.examples import latest_histories
from edgerec.model.export import export_onnx, quantize_int8
from edgerec.model.export_attention import activation_matmuls
from edgerec.model.mix import is_mix, join, score_items, split
from edgerec.model.network import user_vectors
from edgerec.model.params import (MIX_PREFIX, expand_frozen, federated_mask, init_params,
                                  item_tables, param_names)
from edgerec.scoring import Scorer
from edgerec.training import fit_params

CFG = ModelConfig(dim=8, history=6, encoder="mix", blocks=1, dropout=0.1, mix=0.3)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(axis=1, keepdims=True))


def _alone(params, features, items, signals) -> np.ndarray:
    """One tower's scores, computed as if it were a model on its own."""
    table_in, table_out = item_tables(params, features)
    return user_vectors(params, table_in, items, signals) @ table_out.T + params["bias"]


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_sequences):
    seqs, cat = tiny_sequences(n_users=40, n_items=60)
    params = fit_params(seqs, cat.features, CFG,
                        (TrainConfig(epochs=2, batch_size=16), TrainConfig(epochs=2, batch_size=8)))
    items, signals = latest_histories(seqs, CFG.history, np.arange(len(seqs)))
    signals[3] = 0  # an empty history: the cold-start user
    folder = tmp_path_factory.mktemp("mix")
    float_path = export_onnx(params, cat.features, CFG, folder / "f.onnx")
    return dict(params=params, cat=cat, items=items, signals=signals, folder=folder,
                float_path=float_path, expected=score_items(params, cat.features, CFG, items, signals))


def test_a_mix_holds_both_models_under_their_names():
    pooled, attention = CFG.towers()
    names = param_names(CFG)
    assert names == param_names(pooled) + tuple(MIX_PREFIX + n for n in param_names(attention))
    params = init_params(CFG, 30, 2, np.random.default_rng(0))
    assert set(params) == set(names) and is_mix(params)
    assert CFG.user_dim == 2 * CFG.dim and ModelConfig().user_dim == ModelConfig().dim


def test_the_config_round_trips_and_only_a_mix_stores_its_weight():
    assert ModelConfig.from_dict(CFG.to_dict()) == CFG
    assert "mix" not in ModelConfig().to_dict()
    assert "mix" not in ModelConfig(encoder="attention").to_dict()
    with pytest.raises(ConfigError):
        ModelConfig().towers()


@pytest.mark.parametrize("weight", [0.0, 1.0, -0.1, 1.5, True, "0.4"])
def test_a_mix_weight_outside_the_open_interval_is_refused(weight):
    with pytest.raises(ConfigError, match="mix must be"):
        ModelConfig(encoder="mix", mix=weight)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.booleans())
def test_split_then_join_gives_back_every_array(dim, with_adapter):
    cfg = ModelConfig(dim=dim, history=4, encoder="mix", blocks=1)
    params = init_params(cfg, 7, 1, np.random.default_rng(dim))
    if with_adapter:
        params["adapter"] = np.arange(2 * dim, dtype=np.float32)
    pooled, seq = split(params)
    assert not any(n.startswith(MIX_PREFIX) for n in seq) and "seq.user0" not in pooled
    if with_adapter:
        np.testing.assert_array_equal(pooled["adapter"], np.arange(dim))
        np.testing.assert_array_equal(seq["adapter"], np.arange(dim, 2 * dim))
    back = join(pooled, seq)
    assert set(back) == set(params)
    for name, value in params.items():
        np.testing.assert_array_equal(back[name], value)


@settings(max_examples=20, deadline=None)
@given(st.floats(0.05, 0.95))
def test_scores_rank_as_the_towers_mixed_log_probabilities(model, weight):
    cfg = ModelConfig(dim=CFG.dim, history=CFG.history, encoder="mix", blocks=1, mix=weight)
    params, features = model["params"], model["cat"].features
    pooled, seq = split(params)
    args = (features, model["items"], model["signals"])
    mixed = weight * _log_softmax(_alone(pooled, *args)) + (1 - weight) * _log_softmax(_alone(seq, *args))
    got = score_items(params, features, cfg, model["items"], model["signals"])
    # The log-partitions are one number per user: the difference is constant along each row.
    gap = got - mixed
    np.testing.assert_allclose(gap - gap[:, :1], 0.0, atol=1e-4)


def test_the_towers_train_as_they_would_alone(tiny_sequences):
    seqs, cat = tiny_sequences(n_users=20, n_items=30)
    tcfgs = (TrainConfig(epochs=1, batch_size=16, seed=3), TrainConfig(epochs=1, batch_size=8, seed=3))
    pooled_cfg, seq_cfg = CFG.towers()
    mixed = fit_params(seqs, cat.features, CFG, tcfgs)
    alone = join(fit_params(seqs, cat.features, pooled_cfg, tcfgs[0]),
                 fit_params(seqs, cat.features, seq_cfg, tcfgs[1]))
    for name in param_names(CFG):
        np.testing.assert_array_equal(mixed[name], alone[name])
    with pytest.raises(ConfigError, match="two training configs"):
        fit_params(seqs, cat.features, pooled_cfg, tcfgs)


def test_float_graph_matches_numpy_with_a_two_tower_adapter(model):
    scorer = Scorer(model["float_path"], len(model["cat"]), CFG.history)
    np.testing.assert_allclose(scorer.score_batch(model["items"], model["signals"]),
                               model["expected"], rtol=1e-4, atol=1e-4)
    n = len(model["items"])
    adapters = np.random.default_rng(5).standard_normal((n, CFG.user_dim)).astype(np.float32)
    with_adapter = dict(model["params"], adapter=adapters[0])
    want = score_items(with_adapter, model["cat"].features, CFG, model["items"][:1], model["signals"][:1])
    np.testing.assert_allclose(scorer.score_batch(model["items"][:1], model["signals"][:1], adapters[:1]),
                               want, rtol=1e-4, atol=1e-4)


def test_int8_graph_is_close_and_keeps_the_attention_products_float(model):
    path = quantize_int8(model["float_path"], model["folder"] / "q.onnx")
    graph = onnx.load(str(path)).graph
    float_matmuls = {node.name for node in graph.node if node.op_type == "MatMul"}
    _, seq_cfg = CFG.towers()
    assert {MIX_PREFIX + name for name in activation_matmuls(seq_cfg)} <= float_matmuls
    assert "score_matmul" not in float_matmuls  # the scoring table is int8
    stored = {init.name: init.data_type for init in graph.initializer}
    eight_bit = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    for table in ("table_in", MIX_PREFIX + "table_in", "table_out_t"):  # both towers' tables
        assert table not in stored and stored[table + "_quantized"] in eight_bit, table
    got = Scorer(path, len(model["cat"]), CFG.history).score_batch(model["items"], model["signals"])
    for row_got, row_want in zip(got, model["expected"]):
        assert np.corrcoef(row_got, row_want)[0, 1] > 0.99


def test_the_tables_shorthand_freezes_both_towers_tables_and_only_those():
    params = init_params(CFG, 10, 2, np.random.default_rng(0))
    names = param_names(CFG)
    assert expand_frozen(["tables"]) == ("emb_in", "emb_out", "feat_in", "feat_out")
    mask = federated_mask(params, names, expand_frozen(["tables"], names))
    offset = 0
    for name in names:
        size = params[name].size
        tables = name.removeprefix(MIX_PREFIX) in ("emb_in", "emb_out", "feat_in", "feat_out")
        assert mask[offset: offset + size].all() != tables, name
        offset += size
    pooled_cfg = CFG.towers()[0]
    assert expand_frozen(["tables", "bias"], param_names(pooled_cfg)) == expand_frozen(["tables", "bias"])
    pooled = init_params(pooled_cfg, 10, 2, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="frozen names no shared weight"):
        federated_mask(pooled, param_names(pooled_cfg), ["seq.att0.wq"])
