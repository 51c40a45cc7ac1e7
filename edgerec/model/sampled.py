"""Sampled softmax with logQ correction: training on large catalogues. Pure numpy.

Full softmax cross-entropy scores every item for every example (a ``[B, N]`` buffer, three
``B x N x d`` products per step). The sampled estimator scores the target and a small set ``S``
of negatives shared by the whole batch (Jean et al. 2015; Bengio & Senecal 2008; the "logQ
correction" of Yi et al. 2019):

    loss_b = log( exp(o_bt) + sum_{j in S, j != t_b} exp(o_bj - log p_j) ) - o_bt

where ``p_j`` is the probability that item j is in ``S``. Each item is drawn independently
(Poisson sampling) with ``p_j = min(1, c * q_j)``, ``q`` a proposal distribution (popularity of
the training targets mixed with uniform) and ``c`` set so that ``sum_j p_j = negatives``. Then
``sum_{j in S} exp(o_j) / p_j`` is an unbiased (Horvitz-Thompson) estimate of the partition sum
over the non-target items, so the loss is a consistent estimate of the full cross-entropy, and
it *is* the full cross-entropy when every ``p_j`` is 1 (``negatives >= N`` with a uniform
proposal). An accidental hit (the target among the negatives) is removed from its row: the
target is already the first term.

Why Poisson sampling rather than ``negatives`` draws with replacement: inclusion probabilities
are exact and simple (no "expected count" approximation), and there are no duplicate rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .._exceptions import ConfigError
from .rows import Rows, merge_rows

__all__ = ["SOFTMAX_MODES", "SAMPLED_FROM_ITEMS", "Negatives", "NegativeSampler",
           "inclusion_probabilities", "popularity_proposal", "use_sampled", "sampled_softmax",
           "sampled_softmax_rows"]

SoftmaxMode = Literal["auto", "full", "sampled"]
SOFTMAX_MODES: tuple[str, ...] = ("auto", "full", "sampled")
#: ``softmax="auto"`` trains with sampled softmax from this many catalogue items on (and full
#: softmax below). Set by measurement (BENCHMARKS.md, "Sampled softmax", one seed): on the
#: 10k-item CSV an epoch takes 0.30x full softmax's time with 256 negatives, and uniform
#: negatives reach full softmax's test NDCG@10; on MovieLens-100K (1,682 items) an epoch with
#: 256 negatives still takes 0.83x, so small catalogues keep the exact loss.
SAMPLED_FROM_ITEMS = 5000


def use_sampled(mode: str, n_items: int, negatives: int) -> bool:
    """The stated rule: ``"full"`` never samples, ``"sampled"`` always does, and ``"auto"``
    samples when the catalogue has at least ``SAMPLED_FROM_ITEMS`` items and more than twice
    ``negatives`` of them (else the sample would be most of the catalogue: no saving)."""
    if mode not in SOFTMAX_MODES:
        raise ConfigError(f"softmax must be one of {SOFTMAX_MODES}, got {mode!r}")
    if mode == "auto":
        return n_items >= SAMPLED_FROM_ITEMS and n_items > 2 * negatives
    return mode == "sampled"


def popularity_proposal(targets: np.ndarray, n_items: int, uniform_mix: float) -> np.ndarray:
    """``q = (1 - uniform_mix) * unigram(targets) + uniform_mix / N``, float64, summing to 1.

    The unigram share draws popular items (the hard negatives: their logits are high) often; the
    uniform share keeps every item reachable, so rare items are pushed down too.
    """
    if not 0.0 <= uniform_mix <= 1.0:
        raise ConfigError(f"uniform_mix must be within 0..1, got {uniform_mix}")
    flat = np.asarray(targets, np.int64).ravel()
    flat = flat[(flat >= 0) & (flat < n_items)]  # any shape; negative entries are padding
    counts = np.bincount(flat, minlength=n_items).astype(np.float64)
    total = counts.sum()
    if total == 0:
        uniform_mix = 1.0
    unigram = counts / total if total else counts
    return (1.0 - uniform_mix) * unigram + uniform_mix / n_items


def inclusion_probabilities(proposal: np.ndarray, negatives: int) -> np.ndarray:
    """``p_j = min(1, c * q_j)`` with ``c`` such that ``sum_j p_j = min(negatives, N)``.

    Items whose proposal is 0 are never drawn (``p_j = 0``); when ``negatives`` is at least the
    number of items with ``q_j > 0`` all of those get ``p_j = 1``.
    """
    q = np.asarray(proposal, np.float64)
    if negatives < 1:
        raise ConfigError(f"negatives must be >= 1, got {negatives}")
    live = int(np.count_nonzero(q > 0))
    if negatives >= live:
        return (q > 0).astype(np.float64)
    # Water-filling, exactly: with the k largest q_j clipped to 1, c = (negatives - k) / (the
    # sum of the other q_j); the answer is the smallest k whose largest unclipped q_j stays <= 1
    # under that c (k = negatives - 1 always qualifies). Exact even for tiny q_j, unlike bisection.
    desc = np.sort(q)[::-1][:negatives]
    rest = q.sum() - np.concatenate([[0.0], np.cumsum(desc)[:-1]])  # sum of q without the top k
    scale = (negatives - np.arange(negatives)) / rest
    k = int(np.argmax(scale * desc <= 1.0))
    return np.minimum(1.0, scale[k] * q)


@dataclass(frozen=True)
class Negatives:
    """One batch's shared negatives: distinct item rows and ``log p`` of each (the correction)."""

    items: np.ndarray  # [S] int64, increasing
    log_inclusion: np.ndarray  # [S] float32


@dataclass(frozen=True)
class NegativeSampler:
    """Draws a batch's negatives with fixed inclusion probabilities (see the module docstring)."""

    inclusion: np.ndarray  # [N] p_j

    @classmethod
    def for_targets(cls, targets: np.ndarray, n_items: int, negatives: int,
                    uniform_mix: float) -> "NegativeSampler":
        """The sampler of a training set whose next-item targets are ``targets``."""
        q = popularity_proposal(targets, n_items, uniform_mix)
        return cls(inclusion_probabilities(q, negatives))

    def draw(self, rng: np.random.Generator) -> Negatives:
        """Each item independently with probability ``p_j`` (``rng.random() < 1`` always holds,
        so items with ``p_j = 1`` are always in)."""
        items = np.flatnonzero(rng.random(self.inclusion.size) < self.inclusion)
        return Negatives(items, np.log(self.inclusion[items]).astype(np.float32))


def sampled_softmax(user: np.ndarray, table_out: np.ndarray, bias: np.ndarray, targets: np.ndarray,
                    negatives: Negatives) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """The sampled loss (mean over the batch) and its gradients w.r.t. ``user [B, d]``,
    ``table_out [N, d]`` and ``bias [N]`` (dense; zero outside the targets and negatives).

    Column 0 of the ``[B, 1 + S]`` logits is each row's target, uncorrected; the others are the
    shared negatives, corrected by ``-log p``, with a row's own target masked out.
    """
    loss, g_user, g_table, g_bias = sampled_softmax_rows(user, table_out, bias, targets, negatives)
    return loss, g_user, g_table.to_dense(), g_bias.to_dense()


def sampled_softmax_rows(user: np.ndarray, table_out: np.ndarray, bias: np.ndarray,
                         targets: np.ndarray, negatives: Negatives) -> tuple[float, np.ndarray, Rows, Rows]:
    """:func:`sampled_softmax` with the ``table_out`` and ``bias`` gradients as ``Rows``: only
    the negatives' and the targets' rows (the same values as the dense gradients' rows)."""
    from .network import softmax_cross_entropy  # the same in-place CE as full softmax

    neg = negatives.items
    target_rows = table_out[targets]  # [B, d]
    neg_rows = table_out[neg]  # [S, d]
    logits = np.empty((len(targets), 1 + len(neg)), user.dtype)
    logits[:, 0] = np.einsum("bd,bd->b", user, target_rows) + bias[targets]
    np.matmul(user, neg_rows.T, out=logits[:, 1:])
    logits[:, 1:] += bias[neg] - negatives.log_inclusion
    # Accidental hits: neg is sorted, so each target's column is one binary search away.
    col = np.searchsorted(neg, targets)
    hit = col < len(neg)
    hit[hit] = neg[col[hit]] == targets[hit]
    logits[np.flatnonzero(hit), 1 + col[hit]] = -np.inf
    loss, g = softmax_cross_entropy(logits, np.zeros(len(targets), np.int64))
    g_target, g_neg = g[:, 0], g[:, 1:]
    g_user = g_target[:, None] * target_rows + g_neg @ neg_rows
    # The negatives' rows first, then each target's in batch order: the order the dense
    # gradient was summed in before (so it stays the same bits).
    index = np.concatenate([neg, targets])
    g_table = merge_rows(index, np.concatenate([g_neg.T @ user, g_target[:, None] * user]),
                         len(table_out))
    g_bias = merge_rows(index, np.concatenate([g_neg.sum(axis=0), g_target]), len(bias))
    return loss, g_user, g_table, g_bias
