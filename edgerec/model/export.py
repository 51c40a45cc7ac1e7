"""Export the model to an ONNX graph, and quantize it to int8 with onnxruntime's tools.

Needs the ``train`` extra (``onnx``); a device that only scores never imports this module.

The graph computes the user from the history (so a new event changes the next answer), scores
every item, removes excluded items, and returns the top k:

    inputs   hist_items [B, L] int64    item rows, most recent first (any row where padded)
             hist_signals [B, L] int64  signal codes; PAD_SIGNAL (weight 0) pads short histories
             exclude [B, E] int64       rows never to return (seen, dismissed); E may be 0
             score_offset [1|B, N] f32  added to every score: 0 keeps an item, -inf filters it
             k [1] int64                how many to return (<= N)
             user_offset [1|B, d] f32   the device's personal adapter, added to the user vector
    outputs  top_scores [B, k], top_items [B, k] int64, scores [B, N], user [B, d]

A mix (``ModelConfig(encoder="mix")``, ``edgerec.model.mix``) has both encoders' nodes, the
attention one's names under ``seq.``, their users side by side (``d`` is then ``2 * dim``) and
one scoring product over the towers' weighted output tables.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .config import ModelConfig
from .export_attention import attention_arrays, attention_nodes
from .mix import scoring_tables, split
from .params import MIX_PREFIX, Params

__all__ = ["OPSET", "build_graph", "export_onnx", "quantize_int8", "quantize_weights"]

OPSET = 18  # ScatterElements' reduction="min" needs 18; onnxruntime >= 1.14 runs it
_HIDDEN_NODES = ("hidden_matmul", "hidden_out_matmul")


def _encoder_arrays(params: Params, features: np.ndarray, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """What one encoder's nodes read: its history table, user0 and own weights."""
    table_in = params["emb_in"] + features @ params["feat_in"]
    arrays = {"table_in": table_in, "user0": params["user0"]}
    if cfg.encoder == "attention":
        arrays.update(attention_arrays(params, cfg))
    else:
        arrays.update(pos=params["pos"], signal=params["signal"], axis1=np.array([1], np.int64))
        for name in ("w1", "b1", "w2"):
            if name in params:
                arrays[name] = params[name]
    return arrays


def _initializers(params: Params, features: np.ndarray, cfg: ModelConfig,
                  skip: frozenset[str] = frozenset()):
    """The graph's initializers but ``skip`` (the shortlist graph stores its own output table)."""
    from onnx import numpy_helper

    _, table_out, bias = scoring_tables(params, features, cfg)
    arrays = {
        # Stored transposed so the scoring MatMul's weight is [d, N]: onnxruntime quantizes
        # it per output channel, i.e. one scale per item.
        "table_out_t": np.ascontiguousarray(table_out.T),
        "bias": bias,
        "neg_inf": np.array([-np.inf], np.float32),
    }
    if cfg.encoder == "mix":
        (pooled, seq), (pooled_cfg, seq_cfg) = split(params), cfg.towers()
        arrays.update(_encoder_arrays(pooled, features, pooled_cfg))
        arrays.update({MIX_PREFIX + k: v for k, v in _encoder_arrays(seq, features, seq_cfg).items()})
    else:
        arrays.update(_encoder_arrays(params, features, cfg))

    def as_stored(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v)
        return v.astype(np.float32) if v.dtype.kind == "f" else v

    return [numpy_helper.from_array(as_stored(v), name=k) for k, v in arrays.items() if k not in skip]


# Tensors every encoder reads as they are (graph inputs and shared constants): not renamed
# when a mix puts its attention tower's nodes under MIX_PREFIX.
_SHARED_TENSORS = frozenset({"hist_items", "hist_signals", "minus1", ""})


def _prefixed(nodes: list, prefix: str) -> list:
    """``nodes`` with their node names and every tensor name but ``_SHARED_TENSORS`` prefixed."""
    def rename(names: Iterable[str]) -> list[str]:
        return [name if name in _SHARED_TENSORS else prefix + name for name in names]

    for node in nodes:
        inputs, outputs = rename(node.input), rename(node.output)
        del node.input[:], node.output[:]
        node.input.extend(inputs)
        node.output.extend(outputs)
        if node.name:
            node.name = prefix + node.name
    return nodes


def _encoder_nodes(cfg: ModelConfig) -> list:
    """Nodes from the history to ``shared_user``, the user before the device's adapter."""
    from onnx import helper

    if cfg.encoder == "attention":
        return attention_nodes(cfg)
    if cfg.encoder != "mix":
        return _pooled_nodes(cfg.hidden)
    pooled, seq = cfg.towers()
    nodes = _pooled_nodes(pooled.hidden) + _prefixed(attention_nodes(seq), MIX_PREFIX)
    for node in nodes:  # the pooled tower's user is one of two halves here
        node.output[:] = ["pooled_user" if out == "shared_user" else out for out in node.output]
    nodes.append(helper.make_node("Concat", ["pooled_user", MIX_PREFIX + "shared_user"],
                                  ["shared_user"], axis=1))
    return nodes


def _nodes(cfg: ModelConfig):
    from onnx import helper

    n = helper.make_node
    nodes = _encoder_nodes(cfg)
    nodes.append(n("Add", ["shared_user", "user_offset"], ["user"]))
    nodes += [
        n("MatMul", ["user", "table_out_t"], ["raw"], name="score_matmul"),
        n("Add", ["raw", "bias"], ["biased"]),
        n("Add", ["biased", "score_offset"], ["offset_scores"]),
        n("Shape", ["exclude"], ["exclude_shape"]),
        n("Expand", ["neg_inf", "exclude_shape"], ["exclude_fill"]),
        n("ScatterElements", ["offset_scores", "exclude", "exclude_fill"], ["scores"], axis=1,
          reduction="min"),
        n("TopK", ["scores", "k"], ["top_scores", "top_items"], axis=1, largest=1, sorted=1),
    ]
    return nodes


def _pooled_nodes(hidden: bool):
    from onnx import helper

    n = helper.make_node
    nodes = [
        n("Gather", ["signal", "hist_signals"], ["sig_w"], name="signal_gather"),
        n("Mul", ["sig_w", "pos"], ["hist_w"], name="hist_weights"),
        n("Gather", ["table_in", "hist_items"], ["hist_emb"], name="history_gather"),
        n("Unsqueeze", ["hist_w", "minus1"], ["hist_w3"]),
        n("Mul", ["hist_emb", "hist_w3"], ["weighted"]),
        n("ReduceSum", ["weighted", "axis1"], ["pooled_sum"], keepdims=0),
        n("Add", ["pooled_sum", "user0"], ["pooled"]),
    ]
    if hidden:
        nodes += [
            n("MatMul", ["pooled", "w1"], ["pre0"], name=_HIDDEN_NODES[0]),
            n("Add", ["pre0", "b1"], ["pre"]),
            n("Relu", ["pre"], ["act"]),
            n("MatMul", ["act", "w2"], ["resid"], name=_HIDDEN_NODES[1]),
            n("Add", ["pooled", "resid"], ["shared_user"]),
        ]
    else:
        nodes.append(n("Identity", ["pooled"], ["shared_user"]))
    return nodes


def build_graph(params: Params, features: np.ndarray, cfg: ModelConfig):
    """The float32 ``onnx.ModelProto`` of the model with content features folded into the tables."""
    from onnx import TensorProto, checker, helper, numpy_helper

    n_items, dim = params["emb_in"].shape[0], cfg.user_dim
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    inputs = [
        helper.make_tensor_value_info("hist_items", i64, ["batch", cfg.history]),
        helper.make_tensor_value_info("hist_signals", i64, ["batch", cfg.history]),
        helper.make_tensor_value_info("exclude", i64, ["batch", "n_exclude"]),
        helper.make_tensor_value_info("score_offset", f32, ["offset_rows", n_items]),
        helper.make_tensor_value_info("k", i64, [1]),
        helper.make_tensor_value_info("user_offset", f32, ["offset_users", dim]),
    ]
    outputs = [
        helper.make_tensor_value_info("top_scores", f32, ["batch", "k"]),
        helper.make_tensor_value_info("top_items", i64, ["batch", "k"]),
        helper.make_tensor_value_info("scores", f32, ["batch", n_items]),
        helper.make_tensor_value_info("user", f32, ["batch", dim]),
    ]
    inits = _initializers(params, features, cfg)
    inits.append(numpy_helper.from_array(np.array([-1], np.int64), name="minus1"))
    graph = helper.make_graph(_nodes(cfg), "edgerec", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="edgerec")
    model.ir_version = 8  # readable by onnxruntime releases from 1.14 on
    checker.check_model(model)
    return model


def export_onnx(params: Params, features: np.ndarray, cfg: ModelConfig, path: str | Path) -> Path:
    """Write the float32 graph to ``path``."""
    import onnx

    path = Path(path)
    onnx.save_model(build_graph(params, features, cfg), str(path))
    return path


def quantize_int8(float_path: str | Path, int8_path: str | Path, *, blocks: bool = True) -> Path:
    """Quantize the item tables to int8 with onnxruntime's dynamic quantization.

    The two item tables (history gather and scoring MatMul) hold almost every byte; they become
    int8 with one scale per item (per channel). The small hidden layer stays float: it is a
    rounding error in size and keeps the user vector precise. The attention encoder's block
    weights become int8 too unless ``blocks`` is False (the products of two activations never):
    on MovieLens-100K that is 313 kB instead of 426, at the same validation NDCG@10 (0.1127 vs
    0.1126; float 0.1133) and no slower (BENCHMARKS.md, "Attention encoder").
    """
    import onnx

    int8_path = Path(int8_path)
    # A mix's attention nodes are named as alone, under MIX_PREFIX: the same rules apply.
    names = [node.name for node in onnx.load(str(float_path)).graph.node]
    keep_float = [name for name in names if _stays_float(name.removeprefix(MIX_PREFIX), blocks)]
    return quantize_weights(float_path, int8_path, keep_float)


def quantize_weights(float_path: str | Path, int8_path: str | Path, keep_float: list[str]) -> Path:
    """onnxruntime's dynamic quantization of every MatMul and Gather but ``keep_float``: int8
    weights, one scale per output channel (per item, for the scoring product).

    The weights use 7 bits of the 8 (``reduce_range``). onnxruntime's int8 products on x86 CPUs
    without VNNI (AVX2, AVX-512 without VNNI: most laptops and kiosks) add pairs of
    uint8 x int8 products into int16 with saturation: 255 * 127 * 2 overflows, and a user whose
    large entries meet an item's large weights got a clipped score (seen on an AVX2 machine:
    score correlation with float 0.84 for one user of a small attention model, 0.9998 with 7
    bits). 255 * 63 * 2 cannot overflow, on any CPU.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8_path = Path(int8_path)
    with _without_preprocessing_hint():
        quantize_dynamic(str(float_path), str(int8_path), op_types_to_quantize=["MatMul", "Gather"],
                         nodes_to_exclude=keep_float, per_channel=True, reduce_range=True,
                         weight_type=QuantType.QInt8)
    return int8_path


def _stays_float(node: str, blocks: bool) -> bool:
    """Whether the node (its name as in a graph of one encoder) is left out of quantization."""
    return node in _HIDDEN_NODES or node == "signal_gather" or _float_block(node, blocks)


def _float_block(node: str, blocks: bool) -> bool:
    """Whether an attention block's MatMul stays float (names from ``export_attention``)."""
    if not node.startswith("att"):
        return False
    return node.endswith(("_scores", "_mix")) or (not blocks and node.endswith("_matmul"))


class _DropPreprocessingHint(logging.Filter):
    """Drops onnxruntime's advice to run its pre-processing (shape inference and graph
    optimisation for static quantization): our graph is built with its shapes, and dynamic
    quantization of two tables gains nothing from it. Every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextmanager
def _without_preprocessing_hint() -> Iterator[None]:
    """For the duration of one quantization, the root logger (where onnxruntime logs the hint
    with ``logging.warning``) drops that one message; the host app's logging is left as it was."""
    root, hint = logging.getLogger(), _DropPreprocessingHint()
    root.addFilter(hint)
    try:
        yield
    finally:
        root.removeFilter(hint)
