"""SASRec (Kang & McAuley 2018) in numpy: parameters, forward and backward by hand. Pure.

A batch is ``seq [B, T]`` of item rows shifted by one (0 is padding), left-padded so every
user's latest item is in the last column; ``T <= max_len``. Positions are counted from the
right: column t of a width-T batch has the learned embedding ``pos[max_len - T + t]``, the one it
would have in a full ``max_len`` window, so narrower batches (short histories) are the same
computation with fewer padding columns. Each block is the paper's, single-head, pre-norm::

    x0 = Dropout(item[seq] * sqrt(d) + pos) * mask
    h  = x + Dropout(Attention(LN1(x)))        causal; padded keys masked
    x' = (h + Dropout(relu(LN2(h) @ w1 + b1) @ w2 + b2)) * mask      (dropout after the relu too)

with ``Attention(a) = Dropout(softmax(a wq (a wk)^T / sqrt(d))) a wv`` and a final layer norm.
The score of item j at a position is that position's output dotted with ``item[j + 1]``: the
item table is shared by input and output, as in the paper. ``loss_and_grads`` is the full
softmax cross-entropy over all items at every position that has a next item (gSASRec, Petrov &
Macdonald 2023), and every parameter's gradient. The blocks' math is
``edgerec.model.attention``'s (shared with edgerec's attention encoder). Works in the parameters' dtype (float32 for
training, float64 for gradient checks); dropout masks come from the ``rng`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model.attention import (BLOCK, attention_bias, block_backward, block_forward, drop,
                               init_block, keep_mask, layer_norm, layer_norm_back)
from ..model.network import softmax_cross_entropy

__all__ = ["Params", "init_params", "forward", "loss_and_grads", "last_scores", "block_names"]

Params = dict[str, np.ndarray]


def block_names(k: int) -> list[str]:
    """The parameter names of block ``k``."""
    return [f"b{k}.{name}" for name in BLOCK]


def init_params(n_items: int, dim: int, max_len: int, blocks: int, rng: np.random.Generator,
                dtype: Any = np.float32) -> Params:
    """Embeddings ~ N(0, 1/d) (row 0, padding, is zero); Glorot-uniform projections; LN at 1, 0."""
    item = rng.normal(0.0, dim**-0.5, (n_items + 1, dim)).astype(dtype)
    item[0] = 0.0
    params: Params = {"item": item, "pos": rng.normal(0.0, dim**-0.5, (max_len, dim)).astype(dtype)}
    for k in range(blocks):
        init_block(params, f"b{k}.", dim, rng, dtype)
    params["ln_g"], params["ln_b"] = np.ones(dim, dtype), np.zeros(dim, dtype)
    return params


def n_blocks(params: Params) -> int:
    return sum(1 for name in params if name.endswith(".wq"))


@dataclass
class Forward:
    """The outputs ``[B, T, d]`` (after the final layer norm) and what the backward pass needs."""

    out: np.ndarray
    mask: np.ndarray  # [B, T, 1]
    keep_e: np.ndarray | None
    blocks: list[Any]  # attention.BlockCache per block
    x_hat: np.ndarray
    x_rstd: np.ndarray


def _allowed(seq: np.ndarray) -> np.ndarray:
    """``[B, T, T]``: query t may read key s when s <= t and s is an item (or s == t, so that a
    padded query, whose output is discarded, still has something to attend to)."""
    width = seq.shape[1]
    causal = np.tril(np.ones((width, width), bool))
    return causal & ((seq > 0)[:, None, :] | np.eye(width, dtype=bool))


# --- the network ---------------------------------------------------------------------------------

def forward(params: Params, seq: np.ndarray, *, dropout: float = 0.0,
            rng: np.random.Generator | None = None) -> Forward:
    """The network on ``seq [B, T]`` (0 = padding, left-padded); dropout only with an ``rng``."""
    item, pos = params["item"], params["pos"]
    width, dim = seq.shape[1], item.shape[1]
    if width > pos.shape[0]:
        raise ValueError(f"sequence width {width} exceeds max_len {pos.shape[0]}")
    mask = (seq > 0)[:, :, None].astype(item.dtype)
    e = item[seq] * item.dtype.type(np.sqrt(dim)) + pos[pos.shape[0] - width:]
    keep_e = keep_mask(rng, dropout, e.shape, item.dtype)
    x = drop(e, keep_e) * mask
    bias = attention_bias(_allowed(seq), item.dtype)
    caches = []
    for k in range(n_blocks(params)):
        x, cache = block_forward(params, f"b{k}.", x, bias, mask, dropout, rng)
        caches.append(cache)
    out, x_hat, x_rstd = layer_norm(x, params["ln_g"], params["ln_b"])
    return Forward(out, mask, keep_e, caches, x_hat, x_rstd)


def last_scores(params: Params, seq: np.ndarray) -> np.ndarray:
    """Scores ``[B, n_items]`` of every item from the last position (inference: no dropout)."""
    out = forward(params, seq).out[:, -1]
    return out @ params["item"][1:].T


def loss_and_grads(params: Params, seq: np.ndarray, targets: np.ndarray, *, dropout: float = 0.0,
                   rng: np.random.Generator | None = None) -> tuple[float, Params]:
    """Mean cross-entropy over all items of ``targets [B, T]`` (item rows shifted by one, 0 =
    no target) at every position that has an item and a target; the gradient of every parameter."""
    fwd = forward(params, seq, dropout=dropout, rng=rng)
    item = params["item"]
    dim = item.shape[1]
    flat = np.flatnonzero((seq > 0) & (targets > 0))
    if flat.size == 0:
        return 0.0, {name: np.zeros_like(value) for name, value in params.items()}
    hidden = fwd.out.reshape(-1, dim)[flat]
    loss, g_logits = softmax_cross_entropy(hidden @ item[1:].T, targets.ravel()[flat] - 1)
    grads: Params = {}
    g_item = np.zeros_like(item)
    g_item[1:] = g_logits.T @ hidden
    d_out = np.zeros((seq.size, dim), item.dtype)
    d_out[flat] = g_logits @ item[1:]
    dx = layer_norm_back(d_out.reshape(fwd.out.shape), fwd.x_hat, fwd.x_rstd, params["ln_g"], grads,
                         "ln_g", "ln_b")
    for k in reversed(range(len(fwd.blocks))):
        dx = block_backward(params, f"b{k}.", fwd.blocks[k], dx, fwd.mask, grads)
    de = drop(dx * fwd.mask, fwd.keep_e)
    width = seq.shape[1]
    g_pos = np.zeros_like(params["pos"])
    g_pos[params["pos"].shape[0] - width:] = de.sum(axis=0)
    grads["pos"] = g_pos
    rows = seq.ravel()
    np.add.at(g_item, rows, de.reshape(-1, dim) * item.dtype.type(np.sqrt(dim)))
    g_item[0] = 0.0  # padding stays a zero vector
    grads["item"] = g_item
    return loss, grads
