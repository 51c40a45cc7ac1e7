"""The attention encoder's ONNX graph computes what numpy computes; int8 stays close; in a real
bundle, through the EdgeRec client, a logged event changes the very next recommendation."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import edgerec
from edgerec.bundle import write_bundle
from edgerec.data import synthetic
from edgerec.model.config import ModelConfig, TrainConfig
from edgerec.model.examples import latest_histories
from edgerec.model.export import export_onnx, quantize_int8
from edgerec.model.export_attention import activation_matmuls, weight_matmuls
from edgerec.model.network import user_vectors
from edgerec.model.params import item_tables
from edgerec.scoring import Scorer
from edgerec.training import fit_params

CFG = ModelConfig(dim=8, history=6, encoder="attention", blocks=2, dropout=0.1)


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_sequences):
    seqs, cat = tiny_sequences(n_users=40, n_items=60)
    params = fit_params(seqs, cat.features, CFG, TrainConfig(epochs=3, batch_size=8))
    folder = tmp_path_factory.mktemp("onnx")
    float_path = export_onnx(params, cat.features, CFG, folder / "f.onnx")
    users = np.arange(len(seqs))
    items, signals = latest_histories(seqs, CFG.history, users)
    signals[3] = 0  # an empty history: the cold-start user
    table_in, table_out = item_tables(params, cat.features)
    expected = user_vectors(params, table_in, items, signals) @ table_out.T + params["bias"]
    return dict(params=params, cat=cat, float_path=float_path, folder=folder, items=items,
                signals=signals, expected=expected, table_out=table_out)


def test_float_graph_matches_numpy_with_adapter(model):
    scorer = Scorer(model["float_path"], len(model["cat"]), CFG.history)
    np.testing.assert_allclose(scorer.score_batch(model["items"], model["signals"]),
                               model["expected"], rtol=1e-4, atol=1e-4)
    adapters = np.random.default_rng(5).standard_normal((len(model["items"]), CFG.dim)).astype(np.float32)
    np.testing.assert_allclose(scorer.score_batch(model["items"], model["signals"], adapters),
                               model["expected"] + adapters @ model["table_out"].T, rtol=1e-4, atol=1e-4)


def test_the_graph_uses_standard_ops_and_a_padded_tail_changes_nothing(model):
    ops = {node.op_type for node in onnx.load(str(model["float_path"])).graph.node}
    assert {"LayerNormalization", "Softmax", "MatMul", "Where"} <= ops
    scorer = Scorer(model["float_path"], len(model["cat"]), CFG.history)
    items = model["items"].copy()
    items[model["signals"] == 0] = 17  # what padding holds is never read
    np.testing.assert_allclose(scorer.score_batch(items, model["signals"]), model["expected"],
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("blocks", [False, True])
def test_int8_graph_is_close_and_quantizes_the_blocks_only_when_asked(model, blocks):
    path = quantize_int8(model["float_path"], model["folder"] / f"q{blocks}.onnx", blocks=blocks)
    graph = onnx.load(str(path)).graph
    float_matmuls = {node.name for node in graph.node if node.op_type == "MatMul"}
    assert set(activation_matmuls(CFG)) <= float_matmuls
    assert (set(weight_matmuls(CFG)) <= float_matmuls) is not blocks
    got = Scorer(path, len(model["cat"]), CFG.history).score_batch(model["items"], model["signals"])
    for row_got, row_want in zip(got, model["expected"]):
        assert np.corrcoef(row_got, row_want)[0, 1] > 0.99


@pytest.fixture(scope="module")
def attention_bundle(tmp_path_factory):
    ds = synthetic(n_users=200, n_items=120, seed=1)
    cfg = ModelConfig(dim=16, history=20, encoder="attention", blocks=1, dropout=0.1)
    params = fit_params(ds.sequences(), ds.catalogue.features, cfg,
                        TrainConfig(epochs=8, batch_size=16, seed=0))
    path = tmp_path_factory.mktemp("bundle") / "model-bundle"
    write_bundle(path, params, ds.catalogue, cfg, model_version=1)
    return path


def test_a_logged_event_changes_the_next_recommendation_through_the_client(tmp_path, attention_bundle):
    with edgerec.open(tmp_path / "app.db", bundle=attention_bundle) as rec:
        assert rec.bundle.config.encoder == "attention"
        cat = rec.bundle.catalogue
        cold = [r.item for r in rec.recommend(user="u1", k=10)]
        clicked = [i for i, t in zip(cat.item_ids, cat.titles) if "Genre 3" in t][:3]
        for item in clicked:
            rec.log(user="u1", item=item, event="click")
            after = rec.recommend(user="u1", k=10)
            assert item not in {r.item for r in after}  # seen items are excluded
        assert [r.item for r in after] != cold
        assert all(r.because is None or r.because in clicked for r in after)
        rec.log(user="u1", item=after[0].item, event="purchase")
        assert [r.item for r in rec.recommend(user="u1", k=10)] != [r.item for r in after]
