"""The server's last step: remove the masks from the sum of masked inputs (pure)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .._exceptions import RoundAbortedError
from . import crypto, masking, shamir
from .messages import AdvertiseKeys, UnmaskResponse

__all__ = ["unmask_sum"]


def unmask_sum(total: np.ndarray, responses: Mapping[int, UnmaskResponse], survivors: frozenset[int],
               dropped: frozenset[int], masked_with: Mapping[int, frozenset[int]],
               adverts: Mapping[int, AdvertiseKeys], threshold: int, round_id: int) -> None:
    """Subtract every survivor's self mask and the pairwise masks survivors added for dropped
    neighbours, in place. ``masked_with[w]`` is the set of peers ``w`` masked with."""
    seed_points: dict[int, dict[int, int]] = {u: {} for u in survivors}
    key_points: dict[int, dict[int, int]] = {v: {} for v in dropped}
    for responder, response in responses.items():
        x = shamir.x_of(responder)
        for peer, value in response.seed_shares:
            seed_points[peer][x] = value
        for peer, value in response.key_shares:
            key_points[peer][x] = value
    for u in sorted(seed_points):
        masking.apply(total, _rebuild(seed_points[u], u, threshold), -1)
    for v in sorted(key_points):
        raw = _rebuild(key_points[v], v, threshold)
        if crypto.x25519_public(raw) != adverts[v].mask_public_key:
            raise RoundAbortedError(f"rebuilt mask key of client {v} does not match its advertised key")
        private = crypto.x25519_key(raw)
        # Every survivor w that masked with v added a pairwise mask that v's own (missing)
        # masked vector would have cancelled.
        for w in sorted(w for w in survivors if v in masked_with[w]):
            seed = crypto.mask_seed(private, adverts[w].mask_public_key, round_id, v, w)
            masking.apply(total, seed, -masking.pairwise_sign(w, v))


def _rebuild(points: dict[int, int], owner: int, threshold: int) -> bytes:
    try:
        return shamir.reconstruct(points, threshold).to_bytes(32, "big")
    except (ValueError, OverflowError) as exc:
        raise RoundAbortedError(f"shares of client {owner}'s secret are inconsistent") from exc
