"""The ONNX graph computes what the numpy model computes; int8 stays close; inputs behave."""

from __future__ import annotations

import numpy as np
import pytest

from edgerec.model.config import ModelConfig, TrainConfig
from edgerec.model.examples import latest_histories
from edgerec.model.export import export_onnx, quantize_int8
from edgerec.model.network import user_vectors
from edgerec.model.params import item_tables
from edgerec.scoring import Scorer
from edgerec.training import fit_params


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_sequences):
    seqs, cat = tiny_sequences(n_users=40, n_items=60)
    cfg = ModelConfig(dim=8, history=6)
    params = fit_params(seqs, cat.features, cfg, TrainConfig(epochs=3))
    folder = tmp_path_factory.mktemp("onnx")
    float_path = export_onnx(params, cat.features, cfg, folder / "f.onnx")
    int8_path = quantize_int8(float_path, folder / "q.onnx")
    users = np.arange(len(seqs))
    items, signals = latest_histories(seqs, cfg.history, users)
    table_in, table_out = item_tables(params, cat.features)
    expected = user_vectors(params, table_in, items, signals) @ table_out.T + params["bias"]
    return dict(cfg=cfg, params=params, cat=cat, float_path=float_path, int8_path=int8_path,
                items=items, signals=signals, expected=expected)


def test_float_graph_matches_numpy(model):
    scorer = Scorer(model["float_path"], len(model["cat"]), model["cfg"].history)
    got = scorer.score_batch(model["items"], model["signals"])
    np.testing.assert_allclose(got, model["expected"], rtol=1e-4, atol=1e-5)


def test_int8_graph_is_close_and_smaller(model):
    scorer = Scorer(model["int8_path"], len(model["cat"]), model["cfg"].history)
    got = scorer.score_batch(model["items"], model["signals"])
    want = model["expected"]
    for row_got, row_want in zip(got, want):
        assert np.corrcoef(row_got, row_want)[0, 1] > 0.99
    assert model["int8_path"].stat().st_size < model["float_path"].stat().st_size


def test_top_k_excludes_and_filters(model):
    scorer = Scorer(model["int8_path"], len(model["cat"]), model["cfg"].history)
    items, signals = model["items"][0], model["signals"][0]
    rows, scores = scorer.top_k(items, signals, np.array([], np.int64), 5)
    assert len(rows) == 5 and np.all(np.diff(scores) <= 0)
    excluded = rows[:2]
    rows2, _ = scorer.top_k(items, signals, np.concatenate([excluded, excluded]), 5)
    assert not set(excluded) & set(rows2.tolist())
    np.testing.assert_array_equal(rows2[:3], rows[2:5])
    offset = np.full((1, len(model["cat"])), -np.inf, np.float32)
    offset[0, [3, 7, 11]] = 0
    rows3, _ = scorer.top_k(items, signals, np.array([7]), 10, offset)
    assert sorted(rows3.tolist()) == [3, 11]  # only allowed, minus the excluded one


def test_k_larger_than_catalogue_returns_everything_once(model):
    n = len(model["cat"])
    scorer = Scorer(model["int8_path"], n, model["cfg"].history)
    rows, _ = scorer.top_k(model["items"][1], model["signals"][1], np.array([0]), n + 50)
    assert sorted(rows.tolist()) == list(range(1, n))


def test_a_corrupt_graph_is_a_scoring_error(tmp_path):
    from edgerec import ScoringError

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ScoringError):
        Scorer(bad, 3, 2)


def test_the_personal_adapter_shifts_the_user_vector(model):
    scorer = Scorer(model["float_path"], len(model["cat"]), model["cfg"].history)
    rng = np.random.default_rng(5)
    adapters = rng.standard_normal((len(model["items"]), model["cfg"].dim)).astype(np.float32)
    table_in, table_out = item_tables(model["params"], model["cat"].features)
    got = scorer.score_batch(model["items"], model["signals"], adapters)
    np.testing.assert_allclose(got, model["expected"] + adapters @ table_out.T, rtol=1e-4, atol=1e-4)
    rows, _ = scorer.top_k(model["items"][0], model["signals"][0], np.array([], np.int64), 3,
                           adapter=adapters[0])
    np.testing.assert_array_equal(rows, np.argsort(-got[0])[:3])


def test_quantizing_logs_no_preprocessing_advice_and_leaves_logging_as_it_was(model, tmp_path, caplog):
    import logging

    root = logging.getLogger()
    filters = list(root.filters)
    with caplog.at_level(logging.WARNING):
        quantize_int8(model["float_path"], tmp_path / "q.onnx")
        logging.warning("the host app's own warning")
    messages = [r.getMessage() for r in caplog.records]
    assert not any("pre-processing" in m for m in messages), messages
    assert "the host app's own warning" in messages
    assert root.filters == filters


def test_int8_scores_do_not_saturate_where_large_user_entries_meet_large_weights(tmp_path):
    """x86 CPUs without VNNI add pairs of uint8 x int8 products in int16 with saturation: with
    8-bit weights a user of large positive entries scoring items of large weights got about
    half its score on such a CPU. The weights' 7 bits keep every CPU exact to quantization."""
    n_items, dim = 30, 16
    cfg = ModelConfig(dim=dim, history=4, hidden=False)
    params = fit_params(*_one_user(n_items), cfg, TrainConfig(epochs=1))
    params["emb_in"][:] = 0.0  # the user is user0 whatever the history
    params["user0"][:] = 1.0  # every entry quantizes to 255
    params["emb_out"][:] = np.linspace(0.1, 1.0, n_items, dtype=np.float32)[:, None]  # 127 each
    params["bias"][:] = 0.0
    features = np.zeros((n_items, 0), np.float32)
    float_path = export_onnx(params, features, cfg, tmp_path / "f.onnx")
    scorer = Scorer(quantize_int8(float_path, tmp_path / "q.onnx"), n_items, cfg.history)
    got = scorer.score_batch(np.zeros((1, 4), np.int64), np.zeros((1, 4), np.int64))
    want = dim * np.linspace(0.1, 1.0, n_items)
    np.testing.assert_allclose(got[0], want, rtol=0.02)


def _one_user(n_items):
    from edgerec.types import Sequences

    seqs = Sequences([np.arange(5) % n_items], [np.ones(5, np.int64)])
    return seqs, np.zeros((n_items, 0), np.float32)
