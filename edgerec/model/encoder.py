"""The self-attention user encoder (``ModelConfig(encoder="attention")``): forward, backward and
loss in numpy. Pure: arrays in, arrays out; dropout masks from the ``rng`` passed in.

A history is the ``L`` most recent events, most recent first (position 0), ``PAD_SIGNAL`` pads.
Each event becomes

    x_l = table_in[i_l] + att_pos[l] + att_signal[s_l]          (0 at padded positions)

(``table_in`` folds the content features in, so new or rare items still speak). The ``x`` go
through ``blocks`` pre-norm transformer blocks (``edgerec.model.attention``, shared with the SASRec
peer) in which position l reads the positions m >= l, i.e. itself and the events before it, then
through a final layer norm. The user is the output at position 0, the most recent event:

    u = out[0] + user0 (+ adapter, the device's personal offset)

and the score of item j is ``u . table_out[j] + bias[j]`` as with the pooled encoder.

Because a position sees only older events, the output at position l is the user as it was
before event l-1, so one history trains every position at once (``all_positions``): position l
predicts the item at l-1, position 0 the example's target. That is SASRec's training, and L times
cheaper per target than one history per target (BENCHMARKS.md, "Attention encoder").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, NamedTuple

import numpy as np

from ..events import PAD_SIGNAL
from .attention import (BlockCache, attention_bias, block_backward, block_forward, drop, keep_mask,
                        layer_norm, layer_norm_back)
from .config import ModelConfig
from .rows import Grads
from .params import (ATT_LN_B, ATT_LN_G, ATT_POS, ATT_SIGNAL, Params, attention_prefix, item_tables,
                     training_tables)

__all__ = ["LossFn", "encode", "encode_back", "is_attention", "loss_and_grads", "mean_loss",
           "training_loss", "user_vectors"]

#: ``(params, features, items, signals, targets, negatives=...) -> (loss, grads)``
LossFn = Callable[..., "tuple[float, Grads]"]  # Grads: arrays, or Rows of the item tables

_POS, _SIGNAL, _LN_G, _LN_B, _prefix = ATT_POS, ATT_SIGNAL, ATT_LN_G, ATT_LN_B, attention_prefix


def is_attention(params: Params) -> bool:
    """Whether ``params`` are those of an attention encoder."""
    return _POS in params


def _n_blocks(params: Params) -> int:
    return sum(1 for name in params if name.startswith("att") and name.endswith(".wq"))


@dataclass
class EncoderCache:
    """What ``encode_back`` needs from ``encode``."""

    mask: np.ndarray  # [B, L, 1]
    keep_e: np.ndarray | None
    blocks: list[BlockCache]
    x_hat: np.ndarray
    x_rstd: np.ndarray


def _allowed(valid: np.ndarray) -> np.ndarray:
    """``[B, L, L]``: query l reads key m when m >= l (m is as old or older) and m is an event;
    a padded query reads itself (its output is discarded, but the softmax needs one key)."""
    width = valid.shape[1]
    older = np.triu(np.ones((width, width), bool))
    return older & (valid[:, None, :] | np.eye(width, dtype=bool))


def encode(params: Params, table_in: np.ndarray, items: np.ndarray, signals: np.ndarray, *,
           dropout: float = 0.0, rng: np.random.Generator | None = None
           ) -> tuple[np.ndarray, EncoderCache]:
    """The encoder's outputs ``[B, L, d]`` for histories ``items, signals [B, L]`` (dropout only
    with an ``rng``), and the cache for ``encode_back``."""
    width = items.shape[1]
    dtype = table_in.dtype
    valid = signals != PAD_SIGNAL
    mask = valid[:, :, None].astype(dtype)
    e = table_in[items] + params[_POS][:width] + params[_SIGNAL][signals]
    keep_e = keep_mask(rng, dropout, e.shape, dtype)
    x = drop(e, keep_e) * mask
    bias = attention_bias(_allowed(valid), dtype)
    caches = []
    for k in range(_n_blocks(params)):
        x, cache = block_forward(params, _prefix(k), x, bias, mask, dropout, rng)
        caches.append(cache)
    out, x_hat, x_rstd = layer_norm(x, params[_LN_G], params[_LN_B])
    return out, EncoderCache(mask, keep_e, caches, x_hat, x_rstd)


def encode_back(params: Params, items: np.ndarray, signals: np.ndarray, cache: EncoderCache,
                d_out: np.ndarray, grads: Params, n_items: int) -> np.ndarray:
    """Back through ``encode``: stores the encoder's gradients in ``grads`` and returns the
    gradient w.r.t. ``table_in`` ``[n_items, d]``."""
    from .network import scatter_rows  # network dispatches here: imported late, no cycle

    return scatter_rows(*_encode_back_rows(params, items, signals, cache, d_out, grads), n_items)


def _encode_back_rows(params: Params, items: np.ndarray, signals: np.ndarray, cache: EncoderCache,
                      d_out: np.ndarray, grads: Params) -> tuple[np.ndarray, np.ndarray]:
    """``encode_back`` with the ``table_in`` gradient as (item of each entry, its gradient row):
    rows of several passes are scattered into the table once."""
    dx = layer_norm_back(d_out, cache.x_hat, cache.x_rstd, params[_LN_G], grads, _LN_G, _LN_B)
    for k in reversed(range(len(cache.blocks))):
        dx = block_backward(params, _prefix(k), cache.blocks[k], dx, cache.mask, grads)
    de = drop(dx * cache.mask, cache.keep_e)
    width, dim = items.shape[1], de.shape[-1]
    g_pos = np.zeros_like(params[_POS])
    g_pos[:width] = de.sum(axis=0)
    grads[_POS] = g_pos
    flat = de.reshape(-1, dim)
    g_signal = np.zeros_like(params[_SIGNAL])
    np.add.at(g_signal, signals.ravel(), flat)
    g_signal[PAD_SIGNAL] = 0.0  # padding carries nothing (and its rows were masked anyway)
    grads[_SIGNAL] = g_signal
    return items.ravel(), flat


def _trimmed(items: np.ndarray, signals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The histories without the trailing columns that are padding in every row: positions count
    from the most recent event, so those columns change nothing but the work (short histories)."""
    used = np.flatnonzero((signals != PAD_SIGNAL).any(axis=0))
    width = int(used[-1]) + 1 if used.size else 1
    return items[:, :width], signals[:, :width]


def _with_offsets(params: Params, states: np.ndarray) -> np.ndarray:
    user = states + params["user0"]
    if "adapter" in params:  # the device's personal offset (fine-tuning only; never shared)
        user = user + params["adapter"]
    return user


def user_vectors(params: Params, table_in: np.ndarray, items: np.ndarray,
                 signals: np.ndarray) -> np.ndarray:
    """User vectors ``[B, d]`` from precomputed item tables (the scoring path; no dropout)."""
    items, signals = _trimmed(items, signals)
    out, _ = encode(params, table_in, items, signals)
    return _with_offsets(params, out[:, 0])


def _targets(items: np.ndarray, signals: np.ndarray, targets: np.ndarray,
             all_positions: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, positions and target items of the outputs the loss reads: position 0 of every
    history (its target), and with ``all_positions`` every event's position l >= 1 too, whose
    target is the item at l - 1 (the event that followed it)."""
    if not all_positions:
        rows = np.arange(len(targets))
        return rows, np.zeros_like(rows), targets
    following = np.concatenate([targets[:, None], items[:, :-1]], axis=1)
    used = signals != PAD_SIGNAL
    used[:, 0] = True  # position 0 always: with an empty history it teaches the cold-start user
    rows, cols = np.nonzero(used)
    return rows, cols, following[rows, cols]


def mean_loss(params: Params, features: np.ndarray, items: np.ndarray, signals: np.ndarray,
              targets: np.ndarray, *, all_positions: bool = False) -> float:
    """Mean softmax cross-entropy of ``targets`` from position 0 (with ``all_positions``, of
    every targeted position, as in training), forward only."""
    table_in, table_out = item_tables(params, features)
    items, signals = _trimmed(items, signals)
    out, _ = encode(params, table_in, items, signals)
    rows, cols, tgt = _targets(items, signals, targets, all_positions)
    logits = _with_offsets(params, out[rows, cols]) @ table_out.T + params["bias"]
    top = logits.max(axis=1, keepdims=True)
    log_total = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_total - logits[np.arange(len(tgt)), tgt]))


def loss_and_grads(params: Params, features: np.ndarray, items: np.ndarray, signals: np.ndarray,
                   targets: np.ndarray, l2: float = 0.0, negatives: Any = None, *,
                   all_positions: bool = False, dropout: float = 0.0,
                   rng: np.random.Generator | None = None, sparse: bool = False) -> tuple[float, Grads]:
    """Mean softmax cross-entropy over the targeted positions (``_targets``), plus L2 on the
    tables; full softmax over all items, or sampled over ``negatives`` (``edgerec.model.sampled``).
    Returns the loss and the gradient of every parameter; with ``sparse`` the item tables'
    gradients (``emb_in``, and with ``negatives`` ``emb_out`` and ``bias``) are ``Rows``, the
    rows the batch touched (L2, if any, on those rows), for an optimizer that takes them.

    The batch's histories go through the encoder in groups of similar length
    (``_width_groups``): a history attends only to itself, so this is the same loss and gradient
    as one pass, without the work on the padding of short histories.
    """
    from .network import _feature_grad, add_l2, output_loss, scatter_rows, summed_rows  # late

    table_in, table_out = training_tables(params, features)
    passes = []
    for group in _width_groups(signals, table_in.shape[1]):
        g_items, g_signals = _trimmed(items[group], signals[group])
        out, cache = encode(params, table_in, g_items, g_signals, dropout=dropout, rng=rng)
        passes.append(_Pass(g_items, g_signals, out, cache,
                            *_targets(g_items, g_signals, targets[group], all_positions)))
    user = _with_offsets(params, np.concatenate([p.out[p.rows, p.cols] for p in passes]))
    tgt = np.concatenate([p.targets for p in passes])
    grads: Grads = {}
    loss, g_user, g_table_out, grads["bias"] = output_loss(user, table_out, params["bias"], tgt,
                                                           negatives, sparse)
    grads["user0"] = g_user.sum(axis=0)
    if "adapter" in params:
        grads["adapter"] = g_user.sum(axis=0)
    index, flat = _backward_passes(params, passes, g_user, grads)
    g_table_in = (summed_rows(index, flat, table_in.shape[0]) if sparse
                  else scatter_rows(index, flat, table_in.shape[0]))
    grads["emb_in"], grads["feat_in"] = g_table_in, _feature_grad(features, g_table_in)
    grads["emb_out"], grads["feat_out"] = g_table_out, _feature_grad(features, g_table_out)
    if l2 > 0:
        for name in ("emb_in", "emb_out", "feat_in", "feat_out", "adapter"):
            if name in params:
                loss += l2 * float(np.sum(params[name] ** 2))
                grads[name] = add_l2(grads[name], params[name], l2)
    return loss, grads


class _Pass(NamedTuple):
    """One pass of ``loss_and_grads`` through the encoder: its histories, outputs and cache, and
    the (row, position, target) of each output the loss reads."""

    items: np.ndarray
    signals: np.ndarray
    out: np.ndarray
    cache: EncoderCache
    rows: np.ndarray
    cols: np.ndarray
    targets: np.ndarray


def _backward_passes(params: Params, passes: list[_Pass], g_user: np.ndarray,
                     grads: Grads) -> tuple[np.ndarray, np.ndarray]:
    """Back through each pass of ``loss_and_grads``: sums the encoder's gradients into ``grads``
    and returns the ``table_in`` gradient as (item of each entry, its row)."""
    index, flat, start = [], [], 0
    for one in passes:
        d_out = np.zeros_like(one.out)
        d_out[one.rows, one.cols] = g_user[start : start + len(one.rows)]  # each (row, position) once
        start += len(one.rows)
        pass_grads: Params = {}
        rows_in = _encode_back_rows(params, one.items, one.signals, one.cache, d_out, pass_grads)
        index.append(rows_in[0])
        flat.append(rows_in[1])
        for name, value in pass_grads.items():
            grads[name] = grads[name] + value if name in grads else value
    return np.concatenate(index), np.concatenate(flat)


# What a separate pass through the encoder costs beyond its arithmetic, in the units of
# ``_width_groups`` (positions x (5 d + 2 width)): numpy's per-call overheads of ~60 small
# operations; measured on the 10k-item CSV (BENCHMARKS.md, "Attention encoder: histories by
# length").
_PASS_COST = 60_000


def _width_groups(signals: np.ndarray, dim: int) -> list[np.ndarray]:
    """The batch's rows in at most three groups of similar history length, each pass as wide as
    its longest history, chosen to minimise the work: positions x (5 d + 2 width) per pass
    (projections and feed-forward, attention) plus ``_PASS_COST`` each. A short history (a
    user's first events, the cold-start example) no longer pays for the longest in its batch."""
    used = signals != PAD_SIGNAL
    width = np.where(used.any(axis=1), used.shape[1] - np.argmax(used[:, ::-1], axis=1), 1)
    tops = np.unique(width)  # candidate pass widths, ascending
    upto = np.searchsorted(np.sort(width), tops, side="right")  # rows of width <= each top

    def cost(rows: np.ndarray, top: np.ndarray) -> np.ndarray:
        return np.where(rows > 0, rows * top * (5 * dim + 2 * top) + _PASS_COST, 0)

    n, last = len(width), len(tops) - 1
    a, b = np.meshgrid(np.arange(len(tops)), np.arange(len(tops)), indexing="ij")
    total = (cost(upto[a], tops[a]) + cost(upto[b] - upto[a], tops[b])
             + cost(n - upto[b], np.full_like(a, tops[last])))
    total = np.where(a <= b, total, np.inf)  # splits after tops[a] and tops[b] (b = last: 2 groups)
    best_a, best_b = np.unravel_index(int(np.argmin(total)), total.shape)
    bounds = sorted({int(tops[best_a]), int(tops[best_b]), int(tops[last])})
    groups, low = [], 0
    for top in bounds:
        group = np.flatnonzero((width > low) & (width <= top))
        if group.size:
            groups.append(group)
        low = top
    return groups


def training_loss(cfg: ModelConfig, rng: np.random.Generator, *, sparse: bool = False) -> LossFn | None:
    """The loss a training run uses for ``cfg``: for the attention encoder, every position of a
    history targeted, with ``cfg.dropout`` drawn from ``rng`` (None: the pooled model's own);
    ``sparse``: the item tables' gradients as ``Rows`` (for ``training.Adam``)."""
    if cfg.encoder != "attention":
        return None
    return partial(loss_and_grads, all_positions=True, dropout=cfg.dropout, rng=rng, sparse=sparse)
