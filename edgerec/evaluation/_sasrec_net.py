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
Macdonald 2023), and every parameter's gradient. Works in the parameters' dtype (float32 for
training, float64 for gradient checks); dropout masks come from the ``rng`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model.network import softmax_cross_entropy

__all__ = ["Params", "init_params", "forward", "loss_and_grads", "last_scores", "block_names"]

Params = dict[str, np.ndarray]
_LN_EPS = 1e-6
_BLOCK = ("ln1_g", "ln1_b", "wq", "wk", "wv", "ln2_g", "ln2_b", "w1", "b1", "w2", "b2")


def block_names(k: int) -> list[str]:
    """The parameter names of block ``k``."""
    return [f"b{k}.{name}" for name in _BLOCK]


def init_params(n_items: int, dim: int, max_len: int, blocks: int, rng: np.random.Generator,
                dtype: Any = np.float32) -> Params:
    """Embeddings ~ N(0, 1/d) (row 0, padding, is zero); Glorot-uniform projections; LN at 1, 0."""
    def glorot() -> np.ndarray:
        limit = np.sqrt(6.0 / (2 * dim))
        return rng.uniform(-limit, limit, (dim, dim)).astype(dtype)

    item = rng.normal(0.0, dim**-0.5, (n_items + 1, dim)).astype(dtype)
    item[0] = 0.0
    params: Params = {"item": item, "pos": rng.normal(0.0, dim**-0.5, (max_len, dim)).astype(dtype)}
    for k in range(blocks):
        names = dict(zip(_BLOCK, block_names(k)))
        for ln in ("ln1", "ln2"):
            params[names[f"{ln}_g"]] = np.ones(dim, dtype)
            params[names[f"{ln}_b"]] = np.zeros(dim, dtype)
        for w in ("wq", "wk", "wv", "w1", "w2"):
            params[names[w]] = glorot()
        params[names["b1"]] = np.zeros(dim, dtype)
        params[names["b2"]] = np.zeros(dim, dtype)
    params["ln_g"], params["ln_b"] = np.ones(dim, dtype), np.zeros(dim, dtype)
    return params


def n_blocks(params: Params) -> int:
    return sum(1 for name in params if name.endswith(".wq"))


# --- pieces --------------------------------------------------------------------------------------

def _keep(rng: np.random.Generator | None, rate: float, shape: tuple[int, ...],
          dtype: np.dtype[Any]) -> np.ndarray | None:
    """An inverted-dropout mask (kept entries scaled by 1/(1-rate)), or None when not dropping."""
    if rng is None or rate <= 0:
        return None
    draw = rng.random(shape, dtype=np.float32 if dtype == np.float32 else np.float64)
    return np.multiply(draw >= rate, 1.0 / (1.0 - rate), dtype=dtype)


def _drop(x: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    return x if keep is None else x * keep


def _ln(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    centred = x - x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + _LN_EPS)
    xhat = centred * rstd
    return xhat * g + b, xhat, rstd


def _ln_back(dy: np.ndarray, xhat: np.ndarray, rstd: np.ndarray, g: np.ndarray,
             grads: Params, g_name: str, b_name: str) -> np.ndarray:
    d = dy.shape[-1]
    grads[g_name] = (dy * xhat).reshape(-1, d).sum(axis=0)
    grads[b_name] = dy.reshape(-1, d).sum(axis=0)
    dxhat = dy * g
    return rstd * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                   - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))


def _wgrad(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Gradient of ``W`` in ``y = x @ W`` over every leading axis."""
    return x.reshape(-1, x.shape[-1]).T @ dy.reshape(-1, dy.shape[-1])


@dataclass
class _BlockCache:
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


@dataclass
class Forward:
    """The outputs ``[B, T, d]`` (after the final layer norm) and what the backward pass needs."""

    out: np.ndarray
    mask: np.ndarray  # [B, T, 1]
    keep_e: np.ndarray | None
    blocks: list[_BlockCache]
    x_hat: np.ndarray
    x_rstd: np.ndarray


def _attention_bias(seq: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    """``[B, T, T]``: 0 where a query may read a key, -inf where it may not."""
    bias = np.zeros((seq.shape[0], seq.shape[1], seq.shape[1]), dtype)
    bias[~_allowed(seq)] = -np.inf
    return bias


def _allowed(seq: np.ndarray) -> np.ndarray:
    """``[B, T, T]``: query t may read key s when s <= t and s is an item (or s == t, so that a
    padded query, whose output is discarded, still has something to attend to)."""
    width = seq.shape[1]
    causal = np.tril(np.ones((width, width), bool))
    return causal & ((seq > 0)[:, None, :] | np.eye(width, dtype=bool))


def _block(params: Params, k: int, x: np.ndarray, bias: np.ndarray, mask: np.ndarray,
           rate: float, rng: np.random.Generator | None) -> tuple[np.ndarray, _BlockCache]:
    n = dict(zip(_BLOCK, block_names(k)))
    dtype = x.dtype
    a, a_hat, a_rstd = _ln(x, params[n["ln1_g"]], params[n["ln1_b"]])
    q = a @ (params[n["wq"]] * dtype.type(1.0 / np.sqrt(x.shape[-1])))
    key, v = a @ params[n["wk"]], a @ params[n["wv"]]
    p = q @ key.transpose(0, 2, 1)  # the [B, T, T] arrays are the largest: worked on in place
    p += bias
    p -= p.max(axis=-1, keepdims=True)
    np.exp(p, out=p)
    p /= p.sum(axis=-1, keepdims=True)
    keep_p = _keep(rng, rate, p.shape, dtype)
    pd = _drop(p, keep_p)
    o = pd @ v
    keep_o = _keep(rng, rate, o.shape, dtype)
    h = x + _drop(o, keep_o)
    c, c_hat, c_rstd = _ln(h, params[n["ln2_g"]], params[n["ln2_b"]])
    f1 = c @ params[n["w1"]] + params[n["b1"]]
    keep_r = _keep(rng, rate, f1.shape, dtype)
    rd = _drop(np.maximum(f1, 0), keep_r)
    f2 = rd @ params[n["w2"]] + params[n["b2"]]
    keep_f = _keep(rng, rate, f2.shape, dtype)
    out = (h + _drop(f2, keep_f)) * mask
    return out, _BlockCache(x, a, a_hat, a_rstd, q, key, v, p, pd, keep_p, keep_o, c, c_hat, c_rstd,
                            f1, keep_r, rd, keep_f)


def _block_back(params: Params, k: int, cache: _BlockCache, dout: np.ndarray, mask: np.ndarray,
                grads: Params) -> np.ndarray:
    n = dict(zip(_BLOCK, block_names(k)))
    scale = cache.x.dtype.type(1.0 / np.sqrt(cache.x.shape[-1]))
    dh = dout * mask  # also the gradient of the feed-forward branch's output, before dropout
    df2 = _drop(dh, cache.keep_f)
    grads[n["w2"]] = _wgrad(cache.rd, df2)
    grads[n["b2"]] = df2.reshape(-1, df2.shape[-1]).sum(axis=0)
    df1 = _drop(df2 @ params[n["w2"]].T, cache.keep_r) * (cache.f1 > 0)
    grads[n["w1"]] = _wgrad(cache.c, df1)
    grads[n["b1"]] = df1.reshape(-1, df1.shape[-1]).sum(axis=0)
    dc = df1 @ params[n["w1"]].T
    dh = dh + _ln_back(dc, cache.c_hat, cache.c_rstd, params[n["ln2_g"]], grads, n["ln2_g"], n["ln2_b"])
    do = _drop(dh, cache.keep_o)
    dv = cache.pd.transpose(0, 2, 1) @ do
    ds = do @ cache.v.transpose(0, 2, 1)  # d pd, then d p, then d scores: in place
    if cache.keep_p is not None:
        ds *= cache.keep_p
    ds -= np.einsum("bts,bts->bt", ds, cache.p)[:, :, None]
    ds *= cache.p
    dq = (ds @ cache.k) * scale
    dk = ds.transpose(0, 2, 1) @ cache.q  # cache.q carries the scale
    grads[n["wq"]] = _wgrad(cache.a, dq)
    grads[n["wk"]] = _wgrad(cache.a, dk)
    grads[n["wv"]] = _wgrad(cache.a, dv)
    da = dq @ params[n["wq"]].T + dk @ params[n["wk"]].T + dv @ params[n["wv"]].T
    return dh + _ln_back(da, cache.a_hat, cache.a_rstd, params[n["ln1_g"]], grads, n["ln1_g"], n["ln1_b"])


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
    keep_e = _keep(rng, dropout, e.shape, item.dtype)
    x = _drop(e, keep_e) * mask
    bias = _attention_bias(seq, item.dtype)
    caches = []
    for k in range(n_blocks(params)):
        x, cache = _block(params, k, x, bias, mask, dropout, rng)
        caches.append(cache)
    out, x_hat, x_rstd = _ln(x, params["ln_g"], params["ln_b"])
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
    dx = _ln_back(d_out.reshape(fwd.out.shape), fwd.x_hat, fwd.x_rstd, params["ln_g"], grads, "ln_g", "ln_b")
    for k in reversed(range(len(fwd.blocks))):
        dx = _block_back(params, k, fwd.blocks[k], dx, fwd.mask, grads)
    de = _drop(dx * fwd.mask, fwd.keep_e)
    width = seq.shape[1]
    g_pos = np.zeros_like(params["pos"])
    g_pos[params["pos"].shape[0] - width:] = de.sum(axis=0)
    grads["pos"] = g_pos
    rows = seq.ravel()
    np.add.at(g_item, rows, de.reshape(-1, dim) * item.dtype.type(np.sqrt(dim)))
    g_item[0] = 0.0  # padding stays a zero vector
    grads["item"] = g_item
    return loss, grads
