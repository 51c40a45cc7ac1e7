"""The shortlist (IVF) scoring graph: the top k of the items of a few clusters instead of all.

Needs the ``train`` extra (``onnx``). Same inputs as ``edgerec.model.export``'s graph, with the
batch fixed at 1 (it is the recommend() path; ``score_batch`` keeps the full graph), and only
its first two outputs, so ``Scorer.top_k`` runs either graph:

    inputs   hist_items [1, L], hist_signals [1, L], exclude [1, E] int64, score_offset [1, N],
             k [1] int64, user_offset [1, d]
    outputs  top_scores [1, k'], top_items [1, k'] int64, k' = min(k, probe * S)

It is a graph of its own because onnxruntime computes every node of a graph whatever outputs
are asked for: beside the full graph's ``scores`` it would save nothing. The nodes, after the
encoder's (``shared_user``, shared with the full graph):

    user = shared_user + user_offset;  q = [user, 1]
    clusters = TopK_probe(q . centroids^T + |user| * reach)         (edgerec.model.shortlist)
    candidates = members[clusters]                                  [1, probe * S], sentinel N
    scores = table_out[candidates] . user + bias[candidates] + offset[candidates]
    top_scores, top = TopK_k(scores);  top_items = candidates[top]

``table_out`` and ``bias`` are stored with one more row for the sentinel (zeros; bias -inf), so a
padded candidate scores -inf and ``Scorer.top_k`` drops it as it drops filtered items. The
offset is ``score_offset`` with the excluded items set to -inf (ScatterElements, an O(N) copy),
read at ``min(candidate, N - 1)``: the sentinel's bias is -inf already, and clipping avoids a
second O(N) copy that widening the offset by a column would cost.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._exceptions import ConfigError
from .config import ModelConfig
from .export import OPSET, _encoder_nodes, _initializers, _stays_float, quantize_weights
from .mix import scoring_tables
from .params import MIX_PREFIX, Params
from .shortlist import ShortlistConfig, ShortlistIndex

if TYPE_CHECKING:  # onnx is the train extra's: imported where a graph is built
    from onnx import ModelProto

__all__ = ["FLOAT_NODES", "build_shortlist_graph", "export_shortlist", "quantize_shortlist"]

#: The shortlist's own nodes that int8 quantization leaves alone: the centroid product (small,
#: and the cluster ranking is where an error costs recall), the product of two activations
#: (candidate rows by the user), and the gathers of int64 ids and of the bias (its -inf row).
FLOAT_NODES = ("centroid_matmul", "candidate_matmul", "members_gather", "bias_gather")
# The full graph's scoring initializers, which this graph does not read.
_FULL_GRAPH_ONLY = frozenset({"table_out_t", "bias"})


def _shortlist_arrays(table_out: np.ndarray, bias: np.ndarray, index: ShortlistIndex,
                      probe: int) -> dict[str, np.ndarray]:
    """The shortlist's initializers: the index, and the output table and bias with a sentinel
    row (zeros, -inf) at N."""
    n_items, dim = table_out.shape
    return {
        "sl_centroids_t": np.ascontiguousarray(index.centroids.T, np.float32),  # [D+1, K]
        "sl_reach": index.reach.astype(np.float32)[None, :],  # [1, K]
        "sl_members": index.members.astype(np.int64),
        "sl_table_out": np.concatenate([table_out, np.zeros((1, dim))]).astype(np.float32),
        "sl_bias": np.append(bias, -np.inf).astype(np.float32),
        "sl_one": np.ones((1, 1), np.float32),
        "sl_probe": np.array([probe], np.int64),
        "sl_n_candidates": np.array([probe * index.width], np.int64),
        "sl_last_item": np.array([n_items - 1], np.int64),
        "sl_row": np.array([1, -1], np.int64),
        "sl_column": np.array([-1, 1], np.int64),
    }


def _shortlist_nodes() -> list[Any]:
    """Nodes from ``user`` (and the graph inputs) to ``top_scores`` and ``top_items``."""
    from onnx import helper

    n = helper.make_node
    return [
        n("Concat", ["user", "sl_one"], ["sl_query"], axis=1),
        n("MatMul", ["sl_query", "sl_centroids_t"], ["sl_centroid_ip"], name="centroid_matmul"),
        n("ReduceL2", ["user"], ["sl_user_norm"], keepdims=1),  # [1, 1]
        n("Mul", ["sl_user_norm", "sl_reach"], ["sl_bonus"]),
        n("Add", ["sl_centroid_ip", "sl_bonus"], ["sl_cluster_scores"]),
        n("TopK", ["sl_cluster_scores", "sl_probe"], ["sl_probe_scores", "sl_clusters"], axis=1,
          largest=1, sorted=1),
        n("Gather", ["sl_members", "sl_clusters"], ["sl_member_rows"], name="members_gather"),
        n("Reshape", ["sl_member_rows", "sl_row"], ["sl_candidates"]),  # [1, C]
        n("Gather", ["sl_table_out", "sl_candidates"], ["sl_rows"], name="candidate_gather"),
        n("Reshape", ["user", "sl_column"], ["sl_user_column"]),  # [d, 1]
        n("MatMul", ["sl_rows", "sl_user_column"], ["sl_raw3"], name="candidate_matmul"),
        n("Reshape", ["sl_raw3", "sl_row"], ["sl_raw"]),
        n("Gather", ["sl_bias", "sl_candidates"], ["sl_cand_bias"], name="bias_gather"),
        n("Add", ["sl_raw", "sl_cand_bias"], ["sl_biased"]),
        n("Shape", ["exclude"], ["exclude_shape"]),
        n("Expand", ["neg_inf", "exclude_shape"], ["exclude_fill"]),
        n("ScatterElements", ["score_offset", "exclude", "exclude_fill"], ["sl_offset"], axis=1,
          reduction="min"),
        n("Min", ["sl_candidates", "sl_last_item"], ["sl_offset_rows"]),
        n("GatherElements", ["sl_offset", "sl_offset_rows"], ["sl_cand_offset"], axis=1),
        n("Add", ["sl_biased", "sl_cand_offset"], ["sl_scores"]),
        n("Min", ["k", "sl_n_candidates"], ["sl_k"]),
        n("TopK", ["sl_scores", "sl_k"], ["top_scores", "sl_top"], axis=1, largest=1, sorted=1),
        n("GatherElements", ["sl_candidates", "sl_top"], ["top_items"], axis=1),
    ]


def _check(index: ShortlistIndex, n_items: int, dim: int) -> None:
    if index.n_items != n_items or index.centroids.shape[1] != dim + 1:
        raise ConfigError(f"the shortlist index is for {index.n_items} items of "
                          f"{index.centroids.shape[1] - 1} dims, the model has {n_items} of {dim}")


def build_shortlist_graph(params: Params, features: np.ndarray, cfg: ModelConfig,
                          index: ShortlistIndex, scfg: ShortlistConfig) -> ModelProto:
    """The float32 ``onnx.ModelProto`` of the shortlist graph (``scfg.probe`` clusters, at
    most all of them), for an ``index`` built on this model's ``scoring_tables``."""
    from onnx import TensorProto, checker, helper, numpy_helper

    _, table_out, bias = scoring_tables(params, features, cfg)
    n_items, dim = table_out.shape
    _check(index, n_items, dim)
    probe = min(scfg.probe, index.clusters)
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    inputs = [
        helper.make_tensor_value_info("hist_items", i64, [1, cfg.history]),
        helper.make_tensor_value_info("hist_signals", i64, [1, cfg.history]),
        helper.make_tensor_value_info("exclude", i64, [1, "n_exclude"]),
        helper.make_tensor_value_info("score_offset", f32, [1, n_items]),
        helper.make_tensor_value_info("k", i64, [1]),
        helper.make_tensor_value_info("user_offset", f32, [1, dim]),
    ]
    outputs = [helper.make_tensor_value_info("top_scores", f32, [1, "k"]),
               helper.make_tensor_value_info("top_items", i64, [1, "k"])]
    # The encoder's initializers as the full graph stores them (and its neg_inf constant).
    inits = _initializers(params, features, cfg, skip=_FULL_GRAPH_ONLY)
    inits.append(numpy_helper.from_array(np.array([-1], np.int64), name="minus1"))
    inits += [numpy_helper.from_array(v, name=k)
              for k, v in _shortlist_arrays(table_out, bias, index, probe).items()]
    nodes = _encoder_nodes(cfg)
    nodes.append(helper.make_node("Add", ["shared_user", "user_offset"], ["user"]))
    nodes += _shortlist_nodes()
    graph = helper.make_graph(nodes, "edgerec_shortlist", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="edgerec")
    model.ir_version = 8  # as the full graph: onnxruntime 1.14 on
    checker.check_model(model)
    return model


def export_shortlist(params: Params, features: np.ndarray, cfg: ModelConfig,
                     index: ShortlistIndex, scfg: ShortlistConfig, path: str | Path) -> Path:
    """Write the float32 shortlist graph to ``path``."""
    import onnx

    path = Path(path)
    onnx.save_model(build_shortlist_graph(params, features, cfg, index, scfg), str(path))
    return path


def quantize_shortlist(float_path: str | Path, int8_path: str | Path) -> Path:
    """The shortlist graph with its item tables int8, by onnxruntime's dynamic quantization.

    The same rules as ``export.quantize_int8`` for the encoder's nodes; of the shortlist's, only
    the candidate rows' gather becomes int8 (``FLOAT_NODES`` stay float). onnxruntime quantizes
    a Gather's table per tensor (one scale for the whole table, a DequantizeLinear after the
    gather), not per item as it does the full graph's scoring MatMul.
    """
    import onnx

    names = [node.name for node in onnx.load(str(float_path)).graph.node]
    keep_float = [name for name in names
                  if name in FLOAT_NODES or _stays_float(name.removeprefix(MIX_PREFIX), True)]
    return quantize_weights(float_path, int8_path, keep_float)
