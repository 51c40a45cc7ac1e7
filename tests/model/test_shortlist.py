"""The IVF shortlist: the index holds every item once; probing every cluster is the exact top k;
the ONNX graph computes what the numpy reference computes, for every encoder; int8 stays close."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgerec import ConfigError
from edgerec.model.config import ModelConfig
from edgerec.model.export import export_onnx
from edgerec.model.export_shortlist import (FLOAT_NODES, build_shortlist_graph, export_shortlist,
                                            quantize_shortlist)
from edgerec.model.mix import scoring_tables, user_vectors
from edgerec.model.params import MIX_PREFIX, init_params
from edgerec.model.shortlist import (ShortlistConfig, ShortlistIndex, build_index, cluster_count,
                                     exact_top_k, shortlist_top_k)
from edgerec.scoring import Scorer

N_ITEMS, N_FEATURES, HISTORY = 300, 3, 6


def _table(seed: int, n: int, dim: int, repeats: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A random output table and bias; with ``repeats``, only three distinct rows."""
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((n, dim)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    if repeats:
        pick = rng.integers(0, min(3, n), n)
        table, bias = table[pick], bias[pick]
    return table, bias


shortlist_configs = st.builds(
    ShortlistConfig, clusters=st.one_of(st.none(), st.integers(1, 12)), probe=st.integers(1, 12),
    iterations=st.integers(0, 4), sample=st.integers(1, 80), seed=st.integers(0, 3),
    balance=st.floats(1.0, 3.0))


@settings(max_examples=60, deadline=None)
@given(shortlist_configs, st.integers(1, 70), st.integers(1, 5), st.integers(0, 99), st.booleans())
def test_every_item_is_in_exactly_one_cluster_and_padding_is_the_sentinel(cfg, n, dim, seed,
                                                                          repeats):
    table, bias = _table(seed, n, dim, repeats)
    index = build_index(table, bias, cfg)
    k = cluster_count(n, cfg)
    assert index.centroids.shape == (k, dim + 1) and index.reach.shape == (k,)
    assert index.members.shape[0] == k and index.members.dtype == np.int64
    real = index.members < n
    np.testing.assert_array_equal(np.sort(index.members[real]), np.arange(n))
    assert np.all(index.members[~real] == n)
    for row, keep in zip(index.members, real):  # items first, increasing; then sentinels
        assert np.all(keep[: keep.sum()]) and np.all(np.diff(row[keep]) > 0)
    assert real.sum(axis=1).max() <= max(1, math.ceil(cfg.balance * n / k))
    assert np.all(np.isfinite(index.reach)) and np.all(index.reach >= 0)


@settings(max_examples=60, deadline=None)
@given(shortlist_configs, st.integers(1, 70), st.integers(1, 5), st.integers(0, 99),
       st.integers(1, 80))
def test_probing_every_cluster_is_the_exact_top_k(cfg, n, dim, seed, k):
    table, bias = _table(seed, n, dim)
    index = build_index(table, bias, cfg)
    user = np.random.default_rng(seed + 1).standard_normal(dim).astype(np.float32)
    want_items, want_scores = exact_top_k(table, bias, user, k)
    got_items, got_scores = shortlist_top_k(table_out=table, bias=bias, index=index, user=user,
                                            k=k, probe=index.clusters)
    np.testing.assert_array_equal(got_items, want_items)
    np.testing.assert_allclose(got_scores, want_scores, atol=1e-4)


@settings(max_examples=60, deadline=None)
@given(shortlist_configs, st.integers(1, 70), st.integers(0, 99), st.integers(1, 80),
       st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_excluded_and_filtered_items_are_never_returned(cfg, n, seed, k, excluded, filtered):
    table, bias = _table(seed, n, 4)
    index = build_index(table, bias, cfg)
    rng = np.random.default_rng(seed + 2)
    exclude = np.flatnonzero(rng.random(n) < excluded)
    offset = np.where(rng.random(n) < filtered, -np.inf, rng.standard_normal(n)).astype(np.float32)
    user = rng.standard_normal(4).astype(np.float32)
    for probe in (cfg.probe, index.clusters):
        items, scores = shortlist_top_k(index, table, bias, user, k, exclude, offset[None],
                                        probe=probe)
        assert not set(items.tolist()) & (set(exclude.tolist()) | set(np.flatnonzero(np.isinf(offset)).tolist()))
        assert len(items) <= k and np.all(np.isfinite(scores)) and np.all(np.diff(scores) <= 0)


def test_identical_items_still_fill_the_clusters_once_each(monkeypatch):
    # Identical rows all pick the same cluster round after round: past the rounds allowed,
    # the rest is poured into the room left, and the index still holds every item once.
    from edgerec.model import shortlist

    monkeypatch.setattr(shortlist, "_SPILL_ROUNDS", 1)
    table, bias = np.ones((50, 3), np.float32), np.zeros(50, np.float32)
    index = build_index(table, bias, ShortlistConfig(clusters=5, balance=1.0))
    assert index.members.shape == (5, 10)
    np.testing.assert_array_equal(np.sort(index.members.ravel()), np.arange(50))


@pytest.mark.parametrize("bad", [dict(clusters=0), dict(clusters=2.5), dict(probe=0),
                                 dict(probe=True), dict(iterations=-1), dict(sample=0),
                                 dict(seed=-1), dict(balance=0.9), dict(balance=True)])
def test_a_bad_shortlist_option_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        ShortlistConfig(**bad)


def test_an_index_that_cannot_be_built_is_a_config_error():
    table, bias = _table(0, 5, 2)
    with pytest.raises(ConfigError):
        build_index(table, bias[:4], ShortlistConfig())
    with pytest.raises(ConfigError):
        build_index(np.where(table > 0, np.inf, table), bias, ShortlistConfig())


# --- the ONNX graph --------------------------------------------------------------------------

ENCODERS = {
    "pooled": ModelConfig(dim=8, history=HISTORY),
    "attention": ModelConfig(dim=8, history=HISTORY, encoder="attention", blocks=2),
    "mix": ModelConfig(dim=8, history=HISTORY, encoder="mix", blocks=1, mix=0.3),
}


def _model(cfg: ModelConfig, seed: int = 0):
    """Fresh parameters with a random bias (a trained model's popularity), random features."""
    rng = np.random.default_rng(seed)
    params = init_params(cfg, N_ITEMS, N_FEATURES, rng)
    for name in ("bias", MIX_PREFIX + "bias"):
        if name in params:
            params[name] = (rng.standard_normal(N_ITEMS) * 0.3).astype(np.float32)
    features = (rng.random((N_ITEMS, N_FEATURES)) < 0.3).astype(np.float32)
    return params, features


def _queries(cfg: ModelConfig, n: int, seed: int = 1):
    """``n`` histories (one empty), adapters, excluded rows and offsets (some -inf)."""
    rng = np.random.default_rng(seed)
    for case in range(n):
        length = 0 if case == 0 else int(rng.integers(1, HISTORY + 3))
        items = rng.integers(0, N_ITEMS, length)
        signals = rng.integers(1, 12, length)
        adapter = (rng.standard_normal(cfg.user_dim) * 0.1).astype(np.float32)
        exclude = rng.integers(0, N_ITEMS, int(rng.integers(0, 20)))
        offset = np.where(rng.random(N_ITEMS) < 0.2, -np.inf,
                          rng.standard_normal(N_ITEMS) * 0.05).astype(np.float32)[None]
        yield items, signals, adapter, exclude, offset


def _user(params, features, cfg, scorer: Scorer, items, signals, adapter) -> np.ndarray:
    table_in, _, _ = scoring_tables(params, features, cfg)
    padded_items, padded_signals = scorer.pad(items, signals)
    return user_vectors(params, table_in, padded_items, padded_signals)[0] + adapter


@pytest.fixture(scope="module", params=sorted(ENCODERS))
def graphs(request, tmp_path_factory):
    cfg = ENCODERS[request.param]
    params, features = _model(cfg)
    _, table_out, bias = scoring_tables(params, features, cfg)
    scfg = ShortlistConfig(probe=3, balance=1.5)
    index = build_index(table_out, bias, scfg)
    folder = tmp_path_factory.mktemp(f"shortlist_{request.param}")
    all_clusters = ShortlistConfig(probe=index.clusters)
    return dict(cfg=cfg, params=params, features=features, table_out=table_out, bias=bias,
                scfg=scfg, index=index,
                probed=export_shortlist(params, features, cfg, index, scfg, folder / "s.onnx"),
                every=export_shortlist(params, features, cfg, index, all_clusters,
                                       folder / "all.onnx"),
                full=export_onnx(params, features, cfg, folder / "full.onnx"))


def test_the_float_graph_computes_the_numpy_shortlist(graphs):
    cfg = graphs["cfg"]
    scorer = Scorer(graphs["probed"], N_ITEMS, cfg.history)
    for items, signals, adapter, exclude, offset in _queries(cfg, 12):
        got_items, got_scores = scorer.top_k(items, signals, exclude, 10, offset, adapter)
        user = _user(graphs["params"], graphs["features"], cfg, scorer, items, signals, adapter)
        want_items, want_scores = shortlist_top_k(
            graphs["index"], graphs["table_out"], graphs["bias"], user, 10, exclude, offset,
            probe=graphs["scfg"].probe)
        np.testing.assert_array_equal(got_items, want_items)
        np.testing.assert_allclose(got_scores, want_scores, atol=1e-4)


def test_probing_every_cluster_is_the_full_graphs_top_k(graphs):
    cfg = graphs["cfg"]
    shortlist = Scorer(graphs["every"], N_ITEMS, cfg.history)
    full = Scorer(graphs["full"], N_ITEMS, cfg.history)
    for items, signals, adapter, exclude, offset in _queries(cfg, 8, seed=2):
        for k in (1, 10, N_ITEMS + 5):
            got_items, got_scores = shortlist.top_k(items, signals, exclude, k, offset, adapter)
            want_items, want_scores = full.top_k(items, signals, exclude, k, offset, adapter)
            np.testing.assert_array_equal(got_items, want_items)
            np.testing.assert_allclose(got_scores, want_scores, atol=1e-4)


def test_the_graph_refuses_an_index_of_another_model(graphs):
    other = ShortlistIndex(graphs["index"].centroids, graphs["index"].reach,
                           graphs["index"].members, N_ITEMS + 1)
    with pytest.raises(ConfigError):
        build_shortlist_graph(graphs["params"], graphs["features"], graphs["cfg"], other,
                              graphs["scfg"])


# --- int8 ------------------------------------------------------------------------------------


def _clustered_model(n_items: int, dim: int, seed: int = 0):
    """A pooled model whose output table has clusters (as a trained one has): 40 blobs."""
    rng = np.random.default_rng(seed)
    cfg = ModelConfig(dim=dim, history=HISTORY)
    params = init_params(cfg, n_items, 0, rng)
    centers = rng.standard_normal((40, dim)) / np.sqrt(dim)
    blobs = centers[rng.integers(0, 40, n_items)]
    params["emb_out"] = (blobs + rng.standard_normal((n_items, dim)) * 0.35 / np.sqrt(dim)
                         ).astype(np.float32)
    params["emb_in"] = params["emb_out"] * np.float32(3)  # a history points at similar items
    params["bias"] = (rng.standard_normal(n_items) * 0.3).astype(np.float32)
    return cfg, params, np.zeros((n_items, 0), np.float32)


def test_the_int8_shortlist_finds_most_of_the_float_full_graphs_top_10(tmp_path):
    n_items = 4000
    cfg, params, features = _clustered_model(n_items, 16)
    _, table_out, bias = scoring_tables(params, features, cfg)
    scfg = ShortlistConfig(clusters=250, probe=16)  # 16 x 20 candidates: 8% of the items
    index = build_index(table_out, bias, scfg)
    float_path = export_shortlist(params, features, cfg, index, scfg, tmp_path / "s.onnx")
    int8_path = quantize_shortlist(float_path, tmp_path / "q.onnx")
    full = Scorer(export_onnx(params, features, cfg, tmp_path / "full.onnx"), n_items, HISTORY)
    shortlist = Scorer(int8_path, n_items, HISTORY)
    rng = np.random.default_rng(3)
    overlaps = []
    for _ in range(50):
        items = rng.integers(0, n_items, HISTORY)
        signals = rng.integers(1, 12, HISTORY)
        want, _ = full.top_k(items, signals, np.array([], np.int64), 10)
        got, _ = shortlist.top_k(items, signals, np.array([], np.int64), 10)
        overlaps.append(len(set(got.tolist()) & set(want.tolist())) / 10)
    assert np.mean(overlaps) >= 0.9, np.mean(overlaps)  # 0.97 when written (float shortlist 0.98)
    assert int8_path.stat().st_size < float_path.stat().st_size


def test_quantizing_makes_the_item_tables_int8_and_keeps_the_index_float(graphs, tmp_path):
    int8_path = quantize_shortlist(graphs["probed"], tmp_path / "q.onnx")
    model = onnx.load(str(int8_path))
    stored = {t.name: t.data_type for t in model.graph.initializer}
    eight_bit = (onnx.TensorProto.UINT8, onnx.TensorProto.INT8)
    assert stored["sl_table_out_quantized"] in eight_bit
    assert stored["sl_centroids_t"] == onnx.TensorProto.FLOAT
    assert stored["sl_bias"] == onnx.TensorProto.FLOAT and "sl_table_out" not in stored
    names = {node.name for node in model.graph.node}
    assert set(FLOAT_NODES) <= names  # still there, as themselves
    assert not any(node.op_type in ("MatMulInteger", "DynamicQuantizeLinear")
                   and node.name.startswith(("centroid", "candidate")) for node in model.graph.node)
