"""Checks a client makes on what the server relays: peers' keys, signed mask sets and survivor
signatures. Pure functions; each raises a :class:`MessageRejectedError` subclass saying why."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Mapping

from .._exceptions import BadCertificateError, BadSignatureError, MalformedMessageError, UnsafeRequestError, WrongLengthError
from . import crypto, graph, statements, wire
from .certificate import check_certificate
from .messages import AdvertiseKeys, PeerKeys

__all__ = ["Trust", "View", "check_peer", "check_unmask_request", "distinct_identities"]


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

    @cached_property
    def digest(self) -> bytes:
        return statements.view_hash(self.round_id, self.participants, self.graph_seed,
                                    self.degree, self.threshold)

    @property
    def complete(self) -> bool:
        return self.degree >= len(self.participants) - 1

    @cached_property
    def _ring(self) -> tuple[list[int], dict[int, int]]:
        # The ring order costs a hash per participant: computed once per view, not per peer.
        order = graph.ring_order(sorted(self.participants), self.graph_seed)
        return order, {c: i for i, c in enumerate(order)}

    def neighbours(self, client: int) -> frozenset[int]:
        if self.complete:
            return frozenset(self.participants) - {client}
        order, index = self._ring
        return graph.ring_neighbours(order, index[client], self.degree)

    def slot(self, owner: int, member: int) -> tuple[int, int]:
        """(size of ``owner``'s neighbour list, ``member``'s index in it, sorted): where
        ``member``'s bit sits in ``owner``'s mask set. ``member`` must be a neighbour."""
        if self.complete:  # no need to build the list
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


def check_unmask_request(signatures: Iterable[tuple[int, bytes, bytes]],
                         mask_sets: Iterable[tuple[int, bytes, bytes]], *, me: int,
                         survivors: frozenset[int], neighbours: frozenset[int],
                         alive: frozenset[int], view: View, keys: Mapping[int, bytes]) -> int:
    """Check an unmask request's evidence; the number of neighbours that signed the survivor set.

    ``signatures`` are surviving ``neighbours``' signatures over (view, ``survivors`` -- the
    whole set I signed -- and their mask set); ``mask_sets`` the mask sets that ``alive`` neighbours (whose seed shares I would
    reveal) signed with their masked input, for those that did not sign the survivor set. Every
    alive neighbour must be covered by one or the other, and must have masked with me. One
    public-key verification per peer: the survivor signature carries the mask set too.
    Anything forged, repeated, foreign or missing refuses the whole request.
    """
    signers = _entries(signatures, (neighbours & survivors) - {me}, "survivor signature")
    statements_only = _entries(mask_sets, alive, "mask set")
    if signers.keys() & statements_only.keys():
        raise UnsafeRequestError("a peer listed both with a survivor signature and a mask set")
    if not alive <= signers.keys() | statements_only.keys():
        missing = sorted(alive - signers.keys() - statements_only.keys())
        raise UnsafeRequestError(f"no signed mask set from {missing}: cannot check they masked with me")
    digest, survived = view.digest, statements.survivors_digest(survivors)
    for peer, (bits, signature) in signers.items():
        statement = statements.survivors_statement(digest, view.round_id, survived, peer, bits)
        _verify(keys[peer], signature, statement, f"peer {peer}'s signature over the survivor set")
    for peer, (bits, signature) in statements_only.items():
        statement = statements.mask_statement(digest, view.round_id, peer, bits)
        _verify(keys[peer], signature, statement, f"peer {peer}'s mask set")
    for peer in alive:
        bits = (signers.get(peer) or statements_only[peer])[0]
        size, index = view.slot(peer, me)
        if not statements.bit_set(bits, size, index):
            raise UnsafeRequestError(f"peer {peer} did not mask with me: revealing its seed "
                                     "share could unmask a smaller group")
    return len(signers)


def _entries(items: Iterable[tuple[int, bytes, bytes]], allowed: frozenset[int],
             what: str) -> dict[int, tuple[bytes, bytes]]:
    out: dict[int, tuple[bytes, bytes]] = {}
    for peer, bits, signature in items:
        if peer in out or peer not in allowed:
            raise UnsafeRequestError(f"a {what} from {peer}, twice or from a peer it may not come from")
        out[peer] = (bits, signature)
    return out


def _verify(key: bytes, signature: bytes, statement: bytes, what: str) -> None:
    if len(signature) != crypto.SIGNATURE_BYTES or not crypto.verify(key, signature, statement):
        raise BadSignatureError(f"{what} does not verify in this view")
