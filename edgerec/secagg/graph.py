"""The neighbour graph of a round: complete (SecAgg) or a randomly relabelled Harary graph.

The Harary graph H(k, n) for even k puts the n participants on a ring and joins each to the
k/2 nearest on either side. Relabelling is a permutation derived from a 32-byte seed the server
publishes, so every client computes its own neighbours and can check the server's key list.
"""

from __future__ import annotations

import hashlib
from typing import Sequence


def ring_order(participants: Sequence[int], seed: bytes) -> list[int]:
    """``participants`` in a pseudo-random order fixed by ``seed`` (sorted by keyed hash)."""
    return sorted(participants, key=lambda c: (hashlib.sha256(seed + c.to_bytes(4, "big")).digest(), c))


def neighbourhoods(participants: Sequence[int], seed: bytes, degree: int) -> dict[int, frozenset[int]]:
    """Every participant's neighbour set (symmetric, no self-loops)."""
    everyone = frozenset(participants)
    if degree >= len(everyone) - 1:
        return {c: everyone - {c} for c in everyone}
    order = ring_order(sorted(everyone), seed)
    return {c: ring_neighbours(order, i, degree) for i, c in enumerate(order)}


def neighbours_of(client: int, participants: Sequence[int], seed: bytes, degree: int) -> frozenset[int]:
    """``client``'s neighbour set, without building the whole graph."""
    everyone = frozenset(participants)
    if degree >= len(everyone) - 1:
        return everyone - {client}
    order = ring_order(sorted(everyone), seed)
    return ring_neighbours(order, order.index(client), degree)


def ring_neighbours(order: Sequence[int], i: int, degree: int) -> frozenset[int]:
    """The neighbours of ``order[i]`` on the ring ``order`` (from :func:`ring_order`)."""
    n, half = len(order), degree // 2
    return frozenset(order[(i + d) % n] for d in range(-half, half + 1) if d != 0)
