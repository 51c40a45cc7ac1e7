"""Checks a client makes on what the server relays: peers' keys, signed mask sets and survivor
signatures. Pure functions; each raises a :class:`MessageRejectedError` subclass saying why."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterable, Mapping

from .._exceptions import BadCertificateError, BadSignatureError, MalformedMessageError, UnsafeRequestError, WrongLengthError
from . import crypto, graph, statements, wire
from .certificate import check_certificate
from .messages import AdvertiseKeys, PeerKeys

__all__ = ["Trust", "View", "check_mask_sets", "check_peer", "count_survivor_signatures"]


@dataclass(frozen=True)
class Trust:
    """What a client trusts peers' identity keys by.

    ``authority`` is the enrolment authority's raw Ed25519 public key: every peer must show a
    certificate it signed, valid at ``now``. ``pins`` optionally maps peer ids to identity keys
    from a directory the device trusts. With neither, the client believes the identity keys the
    server relays, which a lying server can substitute (only for tests and closed setups).
    """

    authority: bytes | None = None
    now: float | None = None
    pins: Mapping[int, bytes] | None = None


@dataclass(frozen=True)
class View:
    """The round as one key list presented it: what every statement of this client names."""

    round_id: int
    participants: tuple[int, ...]
    graph_seed: bytes
    degree: int
    threshold: int

    @property
    def digest(self) -> bytes:
        return statements.view_hash(self.round_id, self.participants, self.graph_seed,
                                    self.degree, self.threshold)

    def neighbours(self, client: int) -> frozenset[int]:
        return graph.neighbours_of(client, self.participants, self.graph_seed, self.degree)

    def slot(self, owner: int, member: int) -> tuple[int, int]:
        """(size of ``owner``'s neighbour list, ``member``'s index in it, sorted): where
        ``member``'s bit sits in ``owner``'s mask set. ``member`` must be a neighbour."""
        if self.degree >= len(self.participants) - 1:  # complete graph: no need to build the list
            index = bisect.bisect_left(self.participants, member)
            return len(self.participants) - 1, index - (owner < member)
        order = sorted(self.neighbours(owner))
        return len(order), order.index(member)


def check_peer(peer: PeerKeys, round_id: int, trust: Trust) -> None:
    """Refuse a neighbour whose keys are malformed, uncertified, unpinned or not signed by it."""
    sizes = (len(peer.identity_key), len(peer.enc_public_key), len(peer.mask_public_key))
    if sizes != (32, 32, 32) or len(peer.signature) != crypto.SIGNATURE_BYTES:
        raise WrongLengthError(f"peer {peer.client_id}: key or signature of the wrong size")
    if trust.authority is not None:
        if not peer.certificate:
            raise BadCertificateError(f"peer {peer.client_id} shows no enrolment certificate")
        assert trust.now is not None, "Trust with an authority needs the time"
        check_certificate(peer.certificate, trust.authority, device_id=peer.client_id,
                          identity_key=peer.identity_key, now=trust.now)
    if trust.pins is not None and trust.pins.get(peer.client_id) != peer.identity_key:
        raise BadSignatureError(f"peer {peer.client_id}: identity key is not the pinned one")
    advert = AdvertiseKeys(round_id, peer.client_id, peer.enc_public_key, peer.mask_public_key,
                           peer.certificate, peer.signature)
    if not wire.signature_ok(advert, peer.identity_key):
        raise BadSignatureError(f"peer {peer.client_id}: advertised keys are not signed by it")
    if not (crypto.is_usable_x25519(peer.enc_public_key) and crypto.is_usable_x25519(peer.mask_public_key)):
        raise MalformedMessageError(f"peer {peer.client_id}: unusable public key")


def distinct_identities(peers: Iterable[PeerKeys], own_key: bytes) -> None:
    """One device, one seat: the same identity key twice would let one device count twice."""
    keys = [p.identity_key for p in peers] + [own_key]
    if len(set(keys)) != len(keys):
        raise UnsafeRequestError("two participants of the key list share an identity key")


def count_survivor_signatures(signatures: Iterable[tuple[int, bytes]], statement: bytes,
                              allowed: frozenset[int], keys: Mapping[int, bytes]) -> int:
    """How many distinct ``allowed`` peers signed ``statement``; a bad or foreign one refuses all."""
    seen: set[int] = set()
    for peer, signature in signatures:
        if peer in seen or peer not in allowed:
            raise UnsafeRequestError(f"a survivor signature from {peer}, twice or not a surviving neighbour")
        if not crypto.verify(keys[peer], signature, statement):
            raise BadSignatureError(f"peer {peer}'s signature over the survivor set does not verify")
        seen.add(peer)
    return len(seen)


def check_mask_sets(mask_sets: Iterable[tuple[int, bytes, bytes]], needed: frozenset[int], me: int,
                    view: View, keys: Mapping[int, bytes]) -> None:
    """Every peer in ``needed`` (surviving neighbours whose seed shares I would reveal) must show
    a mask set signed in my view that includes me; anything else in the list is refused."""
    given: dict[int, tuple[bytes, bytes]] = {}
    for peer, bits, signature in mask_sets:
        if peer in given or peer not in needed:
            raise UnsafeRequestError(f"a mask set of {peer}, twice or not asked for")
        given[peer] = (bits, signature)
    if set(given) != needed:
        raise UnsafeRequestError(f"no signed mask set from {sorted(needed - set(given))}: "
                                 "cannot check they masked with me")
    digest = view.digest
    for peer, (bits, signature) in given.items():
        statement = statements.mask_statement(digest, view.round_id, peer, bits)
        if len(signature) != crypto.SIGNATURE_BYTES or not crypto.verify(keys[peer], signature, statement):
            raise BadSignatureError(f"peer {peer}'s mask set is not signed by it in this view")
        size, index = view.slot(peer, me)
        if not statements.bit_set(bits, size, index):
            raise UnsafeRequestError(f"peer {peer} did not mask with me: revealing its seed "
                                     "share could unmask a smaller group")
