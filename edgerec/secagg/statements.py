"""What clients sign besides their messages, so the server can show it to other clients.

Against a server that lies (Bonawitz et al. 2017, the active-adversary variant), a client must
not reveal shares on the server's word alone. Two signed statements let each client check what
its neighbours saw:

* the **view**: the round's participants, graph seed, degree and threshold as one client's
  key list gave them (:func:`view_hash`); every statement names it, so statements made in two
  different views of the round never count together;
* the **mask set**: the neighbours a client masked its input with (those whose shares it
  received), a bitmap over its sorted neighbour list (:func:`mask_statement`). A client reveals
  its share of a neighbour's self-mask seed only if that neighbour's signed mask set includes
  it: a server that forwarded a victim's keys selectively, to isolate a small group whose
  masks it can remove, is refused;
* the **survivor set**: the clients whose masked inputs the server says it has
  (:func:`survivors_statement`, which restates the signer's mask set, so one signature per peer
  serves both checks). A client reveals anything only after ``t`` of its neighbourhood signed
  the same set: a server that told different clients different survivor sets (to collect both
  shares of someone, or to unmask a small sum) is refused.

Every byte string here starts with its own domain, so no statement can be replayed as another.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Iterable, Sequence

__all__ = ["bit_set", "bitmap", "bitmap_members", "mask_statement", "survivors_digest",
           "survivors_statement", "view_hash"]

_VIEW = b"edgerec/secagg/v2/view\x00"
_MASK = b"edgerec/secagg/v2/mask-set\x00"
_SURVIVORS = b"edgerec/secagg/v2/survivors\x00"


def _ids(values: Iterable[int]) -> bytes:
    ordered = sorted(values)
    return struct.pack(f">I{len(ordered)}I", len(ordered), *ordered)


def view_hash(round_id: int, participants: Sequence[int], graph_seed: bytes, degree: int,
              threshold: int) -> bytes:
    """SHA-256 of what a key list tells every client alike (not its recipient-specific part)."""
    head = struct.pack(">QII", round_id, degree, threshold)
    return hashlib.sha256(_VIEW + head + bytes(graph_seed) + _ids(participants)).digest()


def bitmap(members: Iterable[int], universe: Sequence[int]) -> bytes:
    """``members`` (a subset of ``universe``) as bits over ``sorted(universe)``, MSB first."""
    order = sorted(universe)
    index = {c: i for i, c in enumerate(order)}
    bits = bytearray((len(order) + 7) // 8)
    for c in members:
        i = index[c]  # KeyError: not in the universe (a programming error, not input)
        bits[i // 8] |= 0x80 >> (i % 8)
    return bytes(bits)


def bitmap_members(bits: bytes, universe: Sequence[int]) -> frozenset[int] | None:
    """The members a bitmap over ``sorted(universe)`` names; None if its length or padding is off."""
    order = sorted(universe)
    if len(bits) != (len(order) + 7) // 8:
        return None
    if len(order) % 8 and bits and bits[-1] & (0xFF >> (len(order) % 8)):
        return None  # padding bits set: not a bitmap this code would make
    return frozenset(c for i, c in enumerate(order) if bits[i // 8] & (0x80 >> (i % 8)))


def bit_set(bits: bytes, size: int, index: int) -> bool:
    """True if bit ``index`` of a well-formed ``size``-bit bitmap is set (False if malformed)."""
    if len(bits) != (size + 7) // 8 or not 0 <= index < size:
        return False
    if size % 8 and bits[-1] & (0xFF >> (size % 8)):
        return False
    return bool(bits[index // 8] & (0x80 >> (index % 8)))


def mask_statement(view: bytes, round_id: int, sender: int, bits: bytes) -> bytes:
    """The bytes a client signs for "in this view, I masked with exactly these neighbours"."""
    return _MASK + view + struct.pack(">QI", round_id, sender) + bytes(bits)


def survivors_statement(view: bytes, round_id: int, survivors: Iterable[int] | bytes, sender: int,
                        bits: bytes) -> bytes:
    """The bytes a client signs for "in this view, these clients survived the masked input, and
    I masked with exactly these neighbours" (the same mask set it signed with its input).
    ``survivors`` may be given as its :func:`survivors_digest`: one set, checked against every
    neighbour's signature, is hashed once."""
    digest = survivors if isinstance(survivors, bytes) else survivors_digest(survivors)
    return _SURVIVORS + view + struct.pack(">QI", round_id, sender) + digest + bytes(bits)


def survivors_digest(survivors: Iterable[int]) -> bytes:
    """SHA-256 of the survivor set, as :func:`survivors_statement` binds it."""
    return hashlib.sha256(_ids(survivors)).digest()
