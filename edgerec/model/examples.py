"""Turn per-user sequences into next-event training examples and scoring histories. Pure numpy."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..types import Sequences
from ..events import PAD_SIGNAL

__all__ = ["next_item_examples", "sequence_examples", "latest_histories"]


def _windows(seq: np.ndarray, length: int, pad: int) -> np.ndarray:
    """Row t holds seq[t-length:t] most recent first, padded: the history before event t."""
    padded = np.concatenate([np.full(length, pad, seq.dtype), seq])
    return sliding_window_view(padded, length)[: len(seq), ::-1]


def next_item_examples(seqs: Sequences, length: int,
                       users: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every event of every (selected) user as a target, with the history before it.

    Returns ``items [E, L]``, ``signals [E, L]`` (most recent first, PAD-padded) and ``targets [E]``.
    The first event of a user has an empty history: it teaches the cold-start user.
    """
    chosen = range(len(seqs)) if users is None else users
    items, signals, targets = [], [], []
    for u in chosen:
        seq, sig = seqs.items[u], seqs.signals[u]
        if len(seq) == 0:
            continue
        items.append(_windows(seq.astype(np.int32), length, 0))
        signals.append(_windows(sig.astype(np.int8), length, PAD_SIGNAL))
        targets.append(seq.astype(np.int32))
    if not items:
        empty = np.zeros((0, length), np.int32)
        return empty, empty.astype(np.int8), np.zeros(0, np.int32)
    return np.concatenate(items), np.concatenate(signals), np.concatenate(targets)


def sequence_examples(seqs: Sequences, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Examples for an encoder that trains every position of a history at once (the attention
    encoder's ``all_positions``): a history of ``length`` targets the events t, t-1, ... t-length+1.

    So each user's events are targets once: t = last, last - length, ... (and event 0, the
    cold-start example, when that stride misses it). Same layout as ``next_item_examples``, about
    ``length`` times fewer rows.
    """
    items, signals, targets = [], [], []
    for seq, sig in zip(seqs.items, seqs.signals):
        if len(seq) == 0:
            continue
        every_items = _windows(seq.astype(np.int32), length, 0)
        every_signals = _windows(sig.astype(np.int8), length, PAD_SIGNAL)
        chosen = np.arange(len(seq) - 1, -1, -length)
        if chosen[-1] != 0:
            chosen = np.append(chosen, 0)
        items.append(every_items[chosen])
        signals.append(every_signals[chosen])
        targets.append(seq[chosen].astype(np.int32))
    if not items:
        empty = np.zeros((0, length), np.int32)
        return empty, empty.astype(np.int8), np.zeros(0, np.int32)
    return np.concatenate(items), np.concatenate(signals), np.concatenate(targets)


def latest_histories(seqs: Sequences, length: int,
                     users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each user, the ``length`` most recent events (most recent first, PAD-padded)."""
    items = np.zeros((len(users), length), np.int64)
    signals = np.full((len(users), length), PAD_SIGNAL, np.int64)
    for row, u in enumerate(users):
        seq, sig = seqs.items[u][-length:][::-1], seqs.signals[u][-length:][::-1]
        items[row, : len(seq)] = seq
        signals[row, : len(sig)] = sig
    return items, signals
