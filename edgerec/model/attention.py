"""Transformer blocks in numpy, forward and backward by hand: the one implementation shared by
edgerec's attention encoder (``edgerec.model.encoder``) and the SASRec evaluation peer. Pure.

A block is single-head and pre-norm (SASRec's, Kang & McAuley 2018)::

    h  = x + Dropout(Attention(LN1(x)))
    x' = (h + Dropout(relu(LN2(h) @ w1 + b1) @ w2 + b2)) * mask      (dropout after the relu too)

with ``Attention(a) = Dropout(softmax(a wq (a wk)^T / sqrt(d) + bias)) a wv``. ``bias [B, T, T]``
is 0 where a query may read a key and -inf where it may not (the caller's layout decides which:
``attention_bias``). Works in the parameters' dtype (float32 to train, float64 for gradient
checks); dropout masks come from the ``rng`` passed in, none without one.

A block's parameters are named by a prefix (``block_names("b0.")``: ``b0.wq``, ...), so several
blocks, and several models, live in one flat parameter dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["BLOCK", "LN_EPS", "BlockCache", "attention_bias", "block_backward", "block_forward",
           "block_names", "drop", "init_block", "keep_mask", "layer_norm", "layer_norm_back",
           "wgrad"]

Params = dict[str, np.ndarray]
LN_EPS = 1e-6
_LEVELS = 1 << 16  # dropout draws: uint16
#: A block's parameters, by their short names.
BLOCK = ("ln1_g", "ln1_b", "wq", "wk", "wv", "ln2_g", "ln2_b", "w1", "b1", "w2", "b2")


def block_names(prefix: str) -> dict[str, str]:
    """Short name -> full parameter name of the block whose names start with ``prefix``."""
    return {short: prefix + short for short in BLOCK}


def init_block(params: Params, prefix: str, dim: int, rng: np.random.Generator,
               dtype: Any = np.float32) -> None:
    """Add a fresh block to ``params``: Glorot-uniform projections, layer norms at 1 and 0."""
    names = block_names(prefix)
    limit = np.sqrt(6.0 / (2 * dim))
    for ln in ("ln1", "ln2"):
        params[names[f"{ln}_g"]] = np.ones(dim, dtype)
        params[names[f"{ln}_b"]] = np.zeros(dim, dtype)
    for w in ("wq", "wk", "wv", "w1", "w2"):
        params[names[w]] = rng.uniform(-limit, limit, (dim, dim)).astype(dtype)
    params[names["b1"]] = np.zeros(dim, dtype)
    params[names["b2"]] = np.zeros(dim, dtype)


def keep_mask(rng: np.random.Generator | None, rate: float, shape: tuple[int, ...],
              dtype: np.dtype[Any]) -> np.ndarray | None:
    """An inverted-dropout mask (kept entries scaled by 1/(1-rate)), or None when not dropping."""
    if rng is None or rate <= 0:
        return None
    # 16 random bits an entry, not a float's 32 or 53: drawing the masks was a tenth of an
    # attention training step, and uint16 draws are 5x faster. The rate is rounded to a multiple
    # of 1/65536 and the kept entries scaled by its exact complement, so E[mask] = 1 still.
    dropped = min(_LEVELS - 1, round(rate * _LEVELS))
    draw = rng.integers(0, _LEVELS, shape, dtype=np.uint16)
    return np.multiply(draw >= dropped, _LEVELS / (_LEVELS - dropped), dtype=dtype)


def drop(x: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """``x`` through a mask from ``keep_mask`` (unchanged for None)."""
    return x if keep is None else x * keep


def layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layer norm over the last axis: ``(y, xhat, rstd)``, the latter two for the backward pass."""
    centred = x - x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + LN_EPS)
    xhat = centred * rstd
    return xhat * g + b, xhat, rstd


def layer_norm_back(dy: np.ndarray, xhat: np.ndarray, rstd: np.ndarray, g: np.ndarray,
                    grads: Params, g_name: str, b_name: str) -> np.ndarray:
    """Back through ``layer_norm``: stores the gain's and bias's gradients under the names given
    and returns the gradient w.r.t. its input."""
    d = dy.shape[-1]
    grads[g_name] = (dy * xhat).reshape(-1, d).sum(axis=0)
    grads[b_name] = dy.reshape(-1, d).sum(axis=0)
    dxhat = dy * g
    return rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                   - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))


def wgrad(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Gradient of ``W`` in ``y = x @ W`` over every leading axis."""
    return x.reshape(-1, x.shape[-1]).T @ dy.reshape(-1, dy.shape[-1])


def attention_bias(allowed: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    """``[B, T, T]``: 0 where ``allowed`` (query t may read key s), -inf elsewhere. Every query
    must be allowed at least one key (e.g. itself), or its softmax is undefined."""
    bias = np.zeros(allowed.shape, dtype)
    bias[~allowed] = -np.inf
    return bias


@dataclass
class BlockCache:
    """What ``block_backward`` needs from ``block_forward``."""

    x: np.ndarray
    a: np.ndarray
    a_hat: np.ndarray
    a_rstd: np.ndarray
    q: np.ndarray  # already scaled by 1/sqrt(d)
    k: np.ndarray
    v: np.ndarray
    p: np.ndarray
    pd: np.ndarray  # p after dropout
    keep_p: np.ndarray | None
    keep_o: np.ndarray | None
    c: np.ndarray
    c_hat: np.ndarray
    c_rstd: np.ndarray
    f1: np.ndarray
    keep_r: np.ndarray | None
    rd: np.ndarray
    keep_f: np.ndarray | None


def block_forward(params: Params, prefix: str, x: np.ndarray, bias: np.ndarray, mask: np.ndarray,
                  rate: float, rng: np.random.Generator | None) -> tuple[np.ndarray, BlockCache]:
    """One block on ``x [B, T, d]``; ``mask [B, T, 1]`` zeroes the outputs of padded positions."""
    n = block_names(prefix)
    dtype = x.dtype
    a, a_hat, a_rstd = layer_norm(x, params[n["ln1_g"]], params[n["ln1_b"]])
    q = a @ (params[n["wq"]] * dtype.type(1.0 / np.sqrt(x.shape[-1])))
    key, v = a @ params[n["wk"]], a @ params[n["wv"]]
    p = q @ key.transpose(0, 2, 1)  # the [B, T, T] arrays are the largest: worked on in place
    p += bias
    p -= p.max(axis=-1, keepdims=True)
    np.exp(p, out=p)
    p /= p.sum(axis=-1, keepdims=True)
    keep_p = keep_mask(rng, rate, p.shape, dtype)
    pd = drop(p, keep_p)
    o = pd @ v
    keep_o = keep_mask(rng, rate, o.shape, dtype)
    h = x + drop(o, keep_o)
    c, c_hat, c_rstd = layer_norm(h, params[n["ln2_g"]], params[n["ln2_b"]])
    f1 = c @ params[n["w1"]] + params[n["b1"]]
    keep_r = keep_mask(rng, rate, f1.shape, dtype)
    rd = drop(np.maximum(f1, 0), keep_r)
    f2 = rd @ params[n["w2"]] + params[n["b2"]]
    keep_f = keep_mask(rng, rate, f2.shape, dtype)
    out = (h + drop(f2, keep_f)) * mask
    return out, BlockCache(x, a, a_hat, a_rstd, q, key, v, p, pd, keep_p, keep_o, c, c_hat, c_rstd,
                           f1, keep_r, rd, keep_f)


def block_backward(params: Params, prefix: str, cache: BlockCache, dout: np.ndarray,
                   mask: np.ndarray, grads: Params) -> np.ndarray:
    """Back through ``block_forward``: stores the block's gradients in ``grads``, returns the
    gradient w.r.t. its input ``x``."""
    n = block_names(prefix)
    scale = cache.x.dtype.type(1.0 / np.sqrt(cache.x.shape[-1]))
    dh = dout * mask  # also the gradient of the feed-forward branch's output, before dropout
    df2 = drop(dh, cache.keep_f)
    grads[n["w2"]] = wgrad(cache.rd, df2)
    grads[n["b2"]] = df2.reshape(-1, df2.shape[-1]).sum(axis=0)
    df1 = drop(df2 @ params[n["w2"]].T, cache.keep_r) * (cache.f1 > 0)
    grads[n["w1"]] = wgrad(cache.c, df1)
    grads[n["b1"]] = df1.reshape(-1, df1.shape[-1]).sum(axis=0)
    dc = df1 @ params[n["w1"]].T
    dh = dh + layer_norm_back(dc, cache.c_hat, cache.c_rstd, params[n["ln2_g"]], grads,
                              n["ln2_g"], n["ln2_b"])
    do = drop(dh, cache.keep_o)
    dv = cache.pd.transpose(0, 2, 1) @ do
    ds = do @ cache.v.transpose(0, 2, 1)  # d pd, then d p, then d scores: in place
    if cache.keep_p is not None:
        ds *= cache.keep_p
    ds -= np.einsum("bts,bts->bt", ds, cache.p)[:, :, None]
    ds *= cache.p
    dq = (ds @ cache.k) * scale
    dk = ds.transpose(0, 2, 1) @ cache.q  # cache.q carries the scale
    grads[n["wq"]] = wgrad(cache.a, dq)
    grads[n["wk"]] = wgrad(cache.a, dk)
    grads[n["wv"]] = wgrad(cache.a, dv)
    da = dq @ params[n["wq"]].T + dk @ params[n["wk"]].T + dv @ params[n["wv"]].T
    return dh + layer_norm_back(da, cache.a_hat, cache.a_rstd, params[n["ln1_g"]], grads,
                                n["ln1_g"], n["ln1_b"])
