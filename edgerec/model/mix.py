"""The pooled and attention encoders mixed (``ModelConfig(encoder="mix")``). Pure numpy.

A mix is two whole models, each with its own item tables: the pooled one under its usual names,
the attention one under ``MIX_PREFIX`` (``edgerec.model.params``). Each is trained on its own
loss, as it would be alone (the two losses do not share a weight, so training the sum is
training each), and the score of item j for a user is

    mix * (u_p . out_p[j] + bias_p[j]) + (1 - mix) * (u_a . out_a[j] + bias_a[j])

which ranks items as ``mix * log_softmax(pooled) + (1 - mix) * log_softmax(attention)`` does
(the log-partition is one number per user). As one scoring product it is

    [u_p, u_a] . [mix * out_p[j], (1 - mix) * out_a[j]] + mix * bias_p[j] + (1 - mix) * bias_a[j]

so the user vector is the two towers' side by side (``2d``) and a device's adapter is the two
towers' adapters side by side: the ONNX graph computes the same (``edgerec.model.export``).
"""

from __future__ import annotations

import numpy as np

from .config import ModelConfig
from .network import user_vectors as _user_vectors
from .params import MIX_PREFIX, Params, item_tables

__all__ = ["is_mix", "join", "score_items", "scoring_tables", "split", "user_vectors"]

_ADAPTER = "adapter"


def is_mix(params: Params) -> bool:
    """Whether ``params`` are those of a mix."""
    return MIX_PREFIX + "user0" in params


def split(params: Params) -> tuple[Params, Params]:
    """The pooled tower's parameters and the attention tower's (names without the prefix). A
    2d ``adapter`` is cut in two, the first half the pooled tower's."""
    pooled = {n: v for n, v in params.items() if not n.startswith(MIX_PREFIX) and n != _ADAPTER}
    seq = {n[len(MIX_PREFIX):]: v for n, v in params.items() if n.startswith(MIX_PREFIX)}
    if _ADAPTER in params:
        half = params[_ADAPTER].shape[-1] // 2
        pooled[_ADAPTER], seq[_ADAPTER] = params[_ADAPTER][:half], params[_ADAPTER][half:]
    return pooled, seq


def join(pooled: Params, seq: Params) -> Params:
    """Inverse of ``split``: one mix's parameters from its towers' (adapters side by side when
    both towers have one)."""
    out = {n: v for n, v in pooled.items() if n != _ADAPTER}
    out.update({MIX_PREFIX + n: v for n, v in seq.items() if n != _ADAPTER})
    if _ADAPTER in pooled and _ADAPTER in seq:
        out[_ADAPTER] = np.concatenate([pooled[_ADAPTER], seq[_ADAPTER]])
    return out


def scoring_tables(params: Params, features: np.ndarray,
                   cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(table_in, table_out, bias)`` such that ``user_vectors(params, table_in, ...) @
    table_out.T + bias`` scores every item: the item tables and bias as they are for one
    encoder; for a mix, the towers' side by side with the output ones weighted."""
    if cfg.encoder != "mix":
        table_in, table_out = item_tables(params, features)
        return table_in, table_out, params["bias"]
    pooled, seq = split(params)
    in_p, out_p = item_tables(pooled, features)
    in_a, out_a = item_tables(seq, features)
    weight = np.float32(cfg.mix)
    table_out = np.concatenate([weight * out_p, (np.float32(1) - weight) * out_a], axis=1)
    bias = weight * pooled["bias"] + (np.float32(1) - weight) * seq["bias"]
    return np.concatenate([in_p, in_a], axis=1), table_out, bias.astype(np.float32)


def user_vectors(params: Params, table_in: np.ndarray, items: np.ndarray,
                 signals: np.ndarray) -> np.ndarray:
    """User vectors from ``scoring_tables``' ``table_in``: any encoder's (``[B, d]``), a mix's
    two towers' side by side (``[B, 2d]``)."""
    if not is_mix(params):
        return _user_vectors(params, table_in, items, signals)
    pooled, seq = split(params)
    half = table_in.shape[1] // 2
    return np.concatenate([_user_vectors(pooled, table_in[:, :half], items, signals),
                           _user_vectors(seq, table_in[:, half:], items, signals)], axis=1)


def score_items(params: Params, features: np.ndarray, cfg: ModelConfig, items: np.ndarray,
                signals: np.ndarray) -> np.ndarray:
    """Scores ``[B, N]`` of every item for histories ``items, signals [B, L]``, any encoder."""
    table_in, table_out, bias = scoring_tables(params, features, cfg)
    return user_vectors(params, table_in, items, signals) @ table_out.T + bias
