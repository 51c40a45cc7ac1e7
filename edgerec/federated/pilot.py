"""Who trains the first model: a pilot of consenting users, drawn at random (pure).

A pilot user's events are collected centrally, with consent, to train the first global model;
they are never devices and are never counted in the devices' privacy accounting. Everyone else
is a device whose events stay on it. One rule, used by the simulation and the demo alike, so a
seed names the same pilot in both.
"""

from __future__ import annotations

import numpy as np

from .._exceptions import ConfigError
from ..types import Sequences

__all__ = ["draw_pilot", "only_users"]


def draw_pilot(n_users: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(pilot, others)``: ``round(share * n_users)`` users drawn at random, and the rest.

    Both sorted. The draw is a permutation of the users seeded with ``seed``, pilot first.
    """
    if not 0.0 <= share < 1.0:
        raise ConfigError(f"pilot share must be within [0, 1), got {share!r}")
    order = np.random.default_rng(seed).permutation(n_users)
    n_pilot = int(round(share * n_users))
    return np.sort(order[:n_pilot]), np.sort(order[n_pilot:])


def only_users(seqs: Sequences, users: np.ndarray) -> Sequences:
    """``seqs`` with every user outside ``users`` emptied (indices and length kept)."""
    keep = set(np.asarray(users).tolist())
    return Sequences([s if u in keep else s[:0] for u, s in enumerate(seqs.items)],
                     [s if u in keep else s[:0] for u, s in enumerate(seqs.signals)])
