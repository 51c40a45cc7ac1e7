"""The attention encoder (``edgerec.model.encoder``) as ONNX nodes, opset 18 standard ops only
(Gather, MatMul, Softmax, LayerNormalization, Where, ...). ``export.build_graph`` puts them in
front of the scoring nodes when ``ModelConfig.encoder == "attention"``.

The nodes read ``hist_items`` and ``hist_signals [B, L]`` and write ``shared_user [B, d]``: the
output at position 0 plus ``user0``. Only position 0's output is read, and every step after the
attention is per position, so the last block computes its query, feed-forward and final norm for
position 0 alone (keys and values still come from every position): the same numbers as the
numpy encoder, about a block's worth of work less.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..events import PAD_SIGNAL
from .attention import LN_EPS, block_names
from .config import ModelConfig
from .params import ATT_LN_B, ATT_LN_G, ATT_POS, ATT_SIGNAL, Params, attention_prefix

__all__ = ["attention_arrays", "attention_nodes", "weight_matmuls", "activation_matmuls"]

_WEIGHTS = ("wq", "wk", "wv", "w1", "w2")


def _node_name(k: int, what: str) -> str:
    return f"att{k}_{what}"


def weight_matmuls(cfg: ModelConfig) -> list[str]:
    """Names of the blocks' weight MatMuls (x @ W): what int8 quantization may take or leave."""
    return [_node_name(k, f"{w}_matmul") for k in range(cfg.blocks) for w in _WEIGHTS]


def activation_matmuls(cfg: ModelConfig) -> list[str]:
    """Names of the MatMuls of two activations (q k^T and p v): never quantized (no weight to
    store as int8, and their inputs' ranges change with every history)."""
    return [_node_name(k, what) for k in range(cfg.blocks) for what in ("scores", "mix")]


def attention_arrays(params: Params, cfg: ModelConfig) -> dict[str, np.ndarray]:
    """The encoder's initializers, float32 (``wq`` carries the 1/sqrt(d) of the scores)."""
    width = cfg.history
    arrays: dict[str, Any] = {
        ATT_POS: params[ATT_POS][:width],
        ATT_SIGNAL: params[ATT_SIGNAL],
        ATT_LN_G: params[ATT_LN_G],
        ATT_LN_B: params[ATT_LN_B],
        "att_older": np.triu(np.ones((width, width), bool)),  # query l reads keys m >= l
        "att_self": np.eye(width, dtype=bool),
        "att_pad": np.array(PAD_SIGNAL, np.int64),
        "att_zero": np.array(0.0, np.float32),
        "att_neg_inf": np.array(-np.inf, np.float32),
        "att_first": np.array([0], np.int64),
        "att_one": np.array([1], np.int64),
        "att_index0": np.array(0, np.int64),
    }
    for k in range(cfg.blocks):
        for short, name in block_names(attention_prefix(k)).items():
            value = params[name]
            if short == "wq":
                value = value * np.float32(1.0 / np.sqrt(cfg.dim))
            arrays[name] = value
    return {name: np.asarray(value, np.float32) if np.asarray(value).dtype.kind == "f"
            else np.asarray(value) for name, value in arrays.items()}


def attention_nodes(cfg: ModelConfig) -> list[Any]:
    """Nodes from ``hist_items``, ``hist_signals`` to ``shared_user`` (needs ``table_in``,
    ``user0`` and ``minus1`` from the scoring graph's initializers)."""
    from onnx import helper

    n = helper.make_node
    nodes = [
        n("Gather", ["table_in", "hist_items"], ["att_items"], name="history_gather"),
        n("Gather", [ATT_SIGNAL, "hist_signals"], ["att_signals"], name="signal_gather"),
        n("Add", ["att_items", "att_signals"], ["att_e0"]),
        n("Add", ["att_e0", ATT_POS], ["att_e"]),
        n("Equal", ["hist_signals", "att_pad"], ["att_padded"]),
        n("Not", ["att_padded"], ["att_valid"]),
        n("Cast", ["att_valid"], ["att_valid_f"], to=1),
        n("Unsqueeze", ["att_valid_f", "minus1"], ["att_mask"]),  # [B, L, 1]
        n("Mul", ["att_e", "att_mask"], ["att_x0"]),
        n("Unsqueeze", ["att_valid", "att_one"], ["att_keys"]),  # [B, 1, L]
        n("Or", ["att_keys", "att_self"], ["att_readable"]),
        n("And", ["att_readable", "att_older"], ["att_allowed"]),
        n("Where", ["att_allowed", "att_zero", "att_neg_inf"], ["att_bias"]),  # [B, L, L]
        n("Slice", ["att_bias", "att_first", "att_one", "att_one"], ["att_bias0"]),  # [B, 1, L]
        n("Slice", ["att_mask", "att_first", "att_one", "att_one"], ["att_mask0"]),
    ]
    x = "att_x0"
    for k in range(cfg.blocks):
        last = k == cfg.blocks - 1
        block, x = _block_nodes(k, x, last), f"att{k}_out"
        nodes += block
    nodes += [
        n("LayerNormalization", [x, ATT_LN_G, ATT_LN_B], ["att_final"], axis=-1, epsilon=LN_EPS),
        n("Gather", ["att_final", "att_index0"], ["att_state"], axis=1),  # position 0: [B, d]
        n("Add", ["att_state", "user0"], ["shared_user"]),
    ]
    return nodes


def _block_nodes(k: int, x: str, last: bool) -> list[Any]:
    """Block ``k`` on ``x``; the last one for position 0 only (``[B, 1, d]`` out)."""
    from onnx import helper

    n, p, t = helper.make_node, block_names(attention_prefix(k)), f"att{k}_"

    def matmul(a: str, w: str, out: str) -> Any:
        return n("MatMul", [a, p[w]], [out], name=_node_name(k, f"{w}_matmul"))

    nodes = [n("LayerNormalization", [x, p["ln1_g"], p["ln1_b"]], [t + "a"], axis=-1,
               epsilon=LN_EPS)]
    query_in, resid, bias, mask = t + "a", x, "att_bias", "att_mask"
    if last:
        nodes += [n("Slice", [t + "a", "att_first", "att_one", "att_one"], [t + "a0"]),
                  n("Slice", [x, "att_first", "att_one", "att_one"], [t + "x0"])]
        query_in, resid, bias, mask = t + "a0", t + "x0", "att_bias0", "att_mask0"
    nodes += [
        matmul(query_in, "wq", t + "q"),
        matmul(t + "a", "wk", t + "k"),
        matmul(t + "a", "wv", t + "v"),
        n("Transpose", [t + "k"], [t + "kt"], perm=[0, 2, 1]),
        n("MatMul", [t + "q", t + "kt"], [t + "s0"], name=_node_name(k, "scores")),
        n("Add", [t + "s0", bias], [t + "s"]),
        n("Softmax", [t + "s"], [t + "p"], axis=-1),
        n("MatMul", [t + "p", t + "v"], [t + "o"], name=_node_name(k, "mix")),
        n("Add", [resid, t + "o"], [t + "h"]),
        n("LayerNormalization", [t + "h", p["ln2_g"], p["ln2_b"]], [t + "c"], axis=-1,
          epsilon=LN_EPS),
        matmul(t + "c", "w1", t + "f1m"),
        n("Add", [t + "f1m", p["b1"]], [t + "f1"]),
        n("Relu", [t + "f1"], [t + "r"]),
        matmul(t + "r", "w2", t + "f2m"),
        n("Add", [t + "f2m", p["b2"]], [t + "f2"]),
        n("Add", [t + "h", t + "f2"], [t + "y"]),
        n("Mul", [t + "y", mask], [t + "out"]),
    ]
    return nodes
