"""Forward and backward passes of the model in numpy. Pure: arrays in, arrays out.

A batch is a set of histories, each the ``L`` most recent events of one user, most recent first:
``items [B, L]`` item rows and ``signals [B, L]`` signal codes (``PAD_SIGNAL`` pads a short
history; its weight is pinned to 0). The user vector is

    p = user0 + sum_l pos[l] * signal[s_l] * table_in[i_l]
    u = p + relu(p @ w1 + b1) @ w2            (when the hidden layer is on)
    u = u + adapter                           (on a device that fine-tuned: personal, never sent)

and the score of item j is ``u . table_out[j] + bias[j]``. The ONNX graph computes the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..events import PAD_SIGNAL
from . import encoder as _attention
from .params import Params, training_tables
from .rows import Grads, Rows
from .sampled import Negatives, sampled_softmax, sampled_softmax_rows

__all__ = ["Forward", "add_l2", "forward", "user_vectors", "loss_and_grads", "mean_loss",
           "scatter_rows", "softmax_cross_entropy"]


@dataclass(frozen=True)
class Forward:
    """What the backward pass needs from the forward pass."""

    table_in: np.ndarray
    table_out: np.ndarray
    weights: np.ndarray  # [B, L] pos * signal
    emb: np.ndarray  # [B, L, d] history item vectors
    pooled: np.ndarray  # [B, d]
    pre: np.ndarray | None  # [B, d] hidden pre-activation
    user: np.ndarray  # [B, d]


def _pool(params: Params, table_in: np.ndarray, items: np.ndarray, signals: np.ndarray):
    weights = params["pos"][None, : items.shape[1]] * params["signal"][signals]
    emb = table_in[items]
    # Batched matmul, not einsum: 2.5x faster on [64, 50, 64] (the same sums, float rounding).
    pooled = (weights[:, None, :] @ emb)[:, 0] + params["user0"]
    return weights, emb, pooled


def _user(params: Params, pooled: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    pre, user = None, pooled
    if "w1" in params:
        pre = pooled @ params["w1"] + params["b1"]
        user = pooled + np.maximum(pre, 0) @ params["w2"]
    if "adapter" in params:  # the device's personal offset (fine-tuning only; never shared)
        user = user + params["adapter"]
    return pre, user


def forward(params: Params, features: np.ndarray, items: np.ndarray, signals: np.ndarray) -> Forward:
    """User vectors for a batch of histories, keeping what backward needs."""
    table_in, table_out = training_tables(params, features)
    weights, emb, pooled = _pool(params, table_in, items, signals)
    pre, user = _user(params, pooled)
    return Forward(table_in, table_out, weights, emb, pooled, pre, user)


def user_vectors(params: Params, table_in: np.ndarray, items: np.ndarray, signals: np.ndarray) -> np.ndarray:
    """User vectors ``[B, d]`` from precomputed item tables (the scoring path)."""
    if _attention.is_attention(params):
        return _attention.user_vectors(params, table_in, items, signals)
    _, _, pooled = _pool(params, table_in, items, signals)
    return _user(params, pooled)[1]


def scatter_rows(index: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """``out[index[k]] += rows[k]`` for all k, via sort + reduceat (much faster than np.add.at)."""
    return summed_rows(index, rows, n).to_dense()


def summed_rows(index: np.ndarray, rows: np.ndarray, n: int) -> Rows:
    """:func:`scatter_rows` as ``Rows`` (the touched rows only; the same sums, the same bits)."""
    if index.size == 0:
        return Rows(np.zeros(0, np.int64), np.zeros((0, rows.shape[1]), rows.dtype), n)
    order = np.argsort(index, kind="stable")
    sorted_index = index[order]
    starts = np.flatnonzero(np.r_[True, sorted_index[1:] != sorted_index[:-1]])
    return Rows(sorted_index[starts].astype(np.int64), np.add.reduceat(rows[order], starts, axis=0), n)


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy over the batch and its gradient w.r.t. the logits.

    ``logits`` is overwritten with the gradient: the [B, N] buffer is the largest of a training
    step, and working in place saves four allocations and passes over it (same arithmetic, same
    bits as with fresh arrays).
    """
    rows = np.arange(len(targets))
    logits -= logits.max(axis=1, keepdims=True)
    target_logit = logits[rows, targets]  # a copy, taken before exp overwrites the buffer
    np.exp(logits, out=logits)
    total = logits.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(total[:, 0]) - target_logit))
    logits /= total
    logits[rows, targets] -= 1.0
    logits /= len(targets)
    return loss, logits


def mean_loss(params: Params, features: np.ndarray, items: np.ndarray, signals: np.ndarray,
              targets: np.ndarray) -> float:
    """Mean softmax cross-entropy of ``targets``, forward only (no gradients)."""
    if _attention.is_attention(params):
        return _attention.mean_loss(params, features, items, signals, targets)
    fwd = forward(params, features, items, signals)
    logits = fwd.user @ fwd.table_out.T + params["bias"]
    top = logits.max(axis=1, keepdims=True)
    log_total = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_total - logits[np.arange(len(targets)), targets]))


def _backward_user(params: Params, fwd: Forward, g_user: np.ndarray, grads: Params) -> np.ndarray:
    """Back through the hidden layer; returns the gradient w.r.t. the pooled vector."""
    if fwd.pre is None:
        return g_user
    hidden = np.maximum(fwd.pre, 0)
    grads["w2"] = hidden.T @ g_user
    g_pre = (g_user @ params["w2"].T) * (fwd.pre > 0)
    grads["w1"] = fwd.pooled.T @ g_pre
    grads["b1"] = g_pre.sum(axis=0)
    return g_user + g_pre @ params["w1"].T


def _history_rows(items: np.ndarray, weights: np.ndarray, g_pooled: np.ndarray, n_items: int) -> Rows:
    """``out[items[b, l]] += weights[b, l] * g_pooled[b]``: the gradient w.r.t. ``table_in``,
    as the rows of the history items it touches.

    As one product ``A @ g_pooled`` with ``A[j, b]`` the summed weight of the j-th distinct
    history item in row b: a few small arrays instead of a ``[B, L, d]`` tensor scattered row by
    row (7-9x faster on MovieLens-100K and on 10k items; equal up to float32 rounding).
    Weightless entries (PAD, dropped history) add nothing and are skipped.
    """
    rows, cols = np.nonzero(weights)
    if rows.size == 0:
        return Rows(np.zeros(0, np.int64), np.zeros((0, g_pooled.shape[1]), g_pooled.dtype), n_items)
    distinct, which = np.unique(items[rows, cols], return_inverse=True)
    summed = np.zeros((len(distinct), len(g_pooled)), g_pooled.dtype)
    np.add.at(summed, (which, rows), weights[rows, cols])
    return Rows(distinct.astype(np.int64), summed @ g_pooled, n_items)


def _backward_pool(params: Params, fwd: Forward, items: np.ndarray, signals: np.ndarray,
                   g_pooled: np.ndarray, grads: Params) -> Rows:
    """Back through the weighted history sum; returns the gradient w.r.t. table_in (its rows)."""
    grads["user0"] = g_pooled.sum(axis=0)
    g_weights = (fwd.emb @ g_pooled[:, :, None])[:, :, 0]
    length = items.shape[1]
    g_pos = np.zeros_like(params["pos"])
    g_pos[:length] = (g_weights * params["signal"][signals]).sum(axis=0)
    grads["pos"] = g_pos
    contrib = (g_weights * params["pos"][None, :length]).ravel()
    g_signal = np.bincount(signals.ravel(), weights=contrib, minlength=params["signal"].size)
    g_signal[PAD_SIGNAL] = 0.0  # padding carries no signal, whatever training says
    grads["signal"] = g_signal.astype(params["signal"].dtype)
    return _history_rows(items, fwd.weights, g_pooled, fwd.table_in.shape[0])


def loss_and_grads(params: Params, features: np.ndarray, items: np.ndarray, signals: np.ndarray,
                   targets: np.ndarray, l2: float = 0.0, negatives: Negatives | None = None, *,
                   sparse: bool = False) -> tuple[float, Grads]:
    """Softmax cross-entropy of predicting ``targets`` over all items, plus L2 on the tables.

    With ``negatives`` the cross-entropy is the sampled estimate over the targets and those
    shared negatives (``edgerec.model.sampled``) instead of the full one over all items.
    Returns the loss and the gradient of every parameter (same names and shapes); with
    ``sparse`` the gradients of ``emb_in`` (and, with ``negatives``, of ``emb_out`` and
    ``bias``) are ``Rows``: only the rows the batch touched. Attention encoder's parameters go
    to ``edgerec.model.encoder.loss_and_grads`` (position 0, no dropout; always dense).
    """
    if _attention.is_attention(params):
        return _attention.loss_and_grads(params, features, items, signals, targets, l2, negatives)
    fwd = forward(params, features, items, signals)
    grads: Grads = {}
    loss, g_user, g_table_out, grads["bias"] = output_loss(fwd.user, fwd.table_out, params["bias"],
                                                           targets, negatives, sparse)
    if "adapter" in params:
        grads["adapter"] = g_user.sum(axis=0)
    g_pooled = _backward_user(params, fwd, g_user, grads)
    rows_in = _backward_pool(params, fwd, items, signals, g_pooled, grads)
    g_table_in = rows_in if sparse else rows_in.to_dense()
    grads["emb_in"], grads["feat_in"] = g_table_in, _feature_grad(features, g_table_in)
    grads["emb_out"], grads["feat_out"] = g_table_out, _feature_grad(features, g_table_out)
    if l2 > 0:
        for name in ("emb_in", "emb_out", "feat_in", "feat_out", "adapter"):
            if name not in params:
                continue
            loss += l2 * float(np.sum(params[name] ** 2))
            grads[name] = add_l2(grads[name], params[name], l2)
    return loss, grads


def output_loss(user: np.ndarray, table_out: np.ndarray, bias: np.ndarray, targets: np.ndarray,
                negatives: Negatives | None, sparse: bool = False
                ) -> tuple[float, np.ndarray, np.ndarray | Rows, np.ndarray | Rows]:
    """The cross-entropy of ``targets`` given user vectors ``[M, d]``, and its gradients w.r.t.
    the users, ``table_out`` and ``bias``: sampled over ``negatives`` (the tables' as ``Rows``
    with ``sparse``), or full over every item (dense). Shared by both encoders."""
    if negatives is not None:
        sampled = sampled_softmax_rows if sparse else sampled_softmax
        return sampled(user, table_out, bias, targets, negatives)
    logits = user @ table_out.T
    logits += bias  # in place: the [M, N] buffer becomes the gradient below
    loss, g_logits = softmax_cross_entropy(logits, targets)
    return loss, g_logits @ table_out, g_logits.T @ user, g_logits.sum(axis=0)


def _feature_grad(features: np.ndarray, g_table: np.ndarray | Rows) -> np.ndarray:
    """The gradient w.r.t. a ``feat_*`` matrix from its table's (``table = emb + features @ feat``)."""
    if isinstance(g_table, Rows):
        return features[g_table.index].T @ g_table.values
    return features.T @ g_table


def add_l2(grad: np.ndarray | Rows, param: np.ndarray, weight: float) -> np.ndarray | Rows:
    """``grad + 2 * weight * param``; for ``Rows``, on the touched rows only (L2 per example)."""
    if isinstance(grad, Rows):
        return Rows(grad.index, grad.values + (2 * weight) * param[grad.index], grad.n)
    return grad + (2 * weight) * param
