"""The messages of one secure-aggregation round: frozen, versioned, hashable dataclasses.

Client -> server messages carry an Ed25519 ``signature`` by the sender's identity key over
their encoding (see :func:`edgerec.secagg.wire.signing_bytes`). Server -> client messages are
not signed: clients trust nothing in them that they cannot check (peer certificates and
signatures, AEAD tags, the graph and threshold recomputed from the configuration, the
survivor set signed by enough peers). Two statements inside client messages carry signatures
of their own, so that the server can show them to other clients (``statements.py``): the set
of peers a client masked with (in :class:`MaskedInput`) and the survivor set it was given
(in :class:`ConsistencyCheck`).

Vectors are held as raw little-endian uint32 ``bytes`` so the message is truly immutable and
compares cheaply; :attr:`MaskedInput.values` gives a read-only numpy view.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeVar, Union

import numpy as np

VERSION = 2  # 2: enrolment certificates, signed mask sets, the consistency stage


class Stage(enum.IntEnum):
    """The stages of a round, in order. A machine is in the stage whose messages it awaits."""

    ADVERTISE = 0
    SHARE_KEYS = 1
    MASKED_INPUT = 2
    CONSISTENCY = 3
    UNMASK = 4
    DONE = 5
    ABORTED = 6


@dataclass(frozen=True)
class AdvertiseKeys:
    """Stage 0, client -> server: fresh X25519 public keys, signed by the identity key, and the
    sender's enrolment certificate (``certificate.py``; empty in rounds without an authority)."""

    round_id: int
    sender: int
    enc_public_key: bytes
    mask_public_key: bytes
    certificate: bytes = b""
    signature: bytes = b""
    version: int = VERSION


@dataclass(frozen=True)
class PeerKeys:
    """One neighbour's advertised keys as relayed by the server, with its identity key and
    enrolment certificate (``signature`` is the neighbour's, over its :class:`AdvertiseKeys`)."""

    client_id: int
    identity_key: bytes
    enc_public_key: bytes
    mask_public_key: bytes
    signature: bytes
    certificate: bytes = b""


@dataclass(frozen=True)
class KeyList:
    """Stage 0 -> 1, server -> one client: the round's participants and graph, and the
    recipient's neighbours' signed keys."""

    round_id: int
    recipient: int
    graph_seed: bytes
    degree: int
    threshold: int
    participants: tuple[int, ...]
    neighbours: tuple[PeerKeys, ...]
    version: int = VERSION


@dataclass(frozen=True)
class ShareKeys:
    """Stage 1, client -> server: one AEAD ciphertext of shares per neighbour (recipient, ct)."""

    round_id: int
    sender: int
    ciphertexts: tuple[tuple[int, bytes], ...]
    signature: bytes = b""
    version: int = VERSION


@dataclass(frozen=True)
class ForwardedShares:
    """Stage 1 -> 2, server -> one client: the ciphertexts addressed to it (sender, ct)."""

    round_id: int
    recipient: int
    ciphertexts: tuple[tuple[int, bytes], ...]
    version: int = VERSION


@dataclass(frozen=True)
class MaskedInput:
    """Stage 2, client -> server: the masked vector as raw little-endian uint32 bytes, and the
    sender's signed statement of which neighbours it masked with (a bitmap over its sorted
    neighbour list; ``statements.mask_statement``)."""

    round_id: int
    sender: int
    vector: bytes
    mask_set: bytes = b""
    mask_signature: bytes = b""
    signature: bytes = b""
    version: int = VERSION

    @property
    def values(self) -> np.ndarray:
        """The vector as a read-only uint32 array (no copy)."""
        return np.frombuffer(self.vector, dtype="<u4").astype(np.uint32, copy=False)

    @classmethod
    def from_array(cls, round_id: int, sender: int, values: np.ndarray, mask_set: bytes = b"",
                   mask_signature: bytes = b"") -> MaskedInput:
        """An unsigned message holding ``values`` (uint32)."""
        return cls(round_id, sender, np.ascontiguousarray(values, dtype="<u4").tobytes(),
                   mask_set, mask_signature)


@dataclass(frozen=True)
class ConsistencyRequest:
    """Stage 2 -> 3, server -> one client: the round's survivors (every client whose masked
    input arrived), the set the client is asked to sign."""

    round_id: int
    recipient: int
    survivors: tuple[int, ...]
    version: int = VERSION


@dataclass(frozen=True)
class ConsistencyCheck:
    """Stage 3, client -> server: the sender's signature over the survivor set it was given
    (``statements.survivors_statement``)."""

    round_id: int
    sender: int
    survivors_signature: bytes
    signature: bytes = b""
    version: int = VERSION


@dataclass(frozen=True)
class UnmaskRequest:
    """Stage 3 -> 4, server -> one client: its neighbours' signatures over the survivor set,
    each with the signer's mask set ``(peer, bitmap, signature)``; and, for surviving neighbours
    whose self-mask seeds it is asked to reveal but which did not sign, the mask set they signed
    with their masked input ``(peer, bitmap, signature)``."""

    round_id: int
    recipient: int
    signatures: tuple[tuple[int, bytes, bytes], ...]
    mask_sets: tuple[tuple[int, bytes, bytes], ...]
    version: int = VERSION


@dataclass(frozen=True)
class UnmaskResponse:
    """Stage 4, client -> server: self-mask seed shares of the surviving neighbours it holds
    shares of (and of itself), mask-key shares of the dropped ones; each (peer, field element)."""

    round_id: int
    sender: int
    seed_shares: tuple[tuple[int, int], ...]
    key_shares: tuple[tuple[int, int], ...]
    signature: bytes = b""
    version: int = VERSION


ClientMessage = Union[AdvertiseKeys, ShareKeys, MaskedInput, ConsistencyCheck, UnmaskResponse]
#: One client message type, kept through a function (signing returns what it was given).
ClientMessageT = TypeVar("ClientMessageT", AdvertiseKeys, ShareKeys, MaskedInput, ConsistencyCheck,
                         UnmaskResponse)
ServerMessage = Union[KeyList, ForwardedShares, ConsistencyRequest, UnmaskRequest]
Message = Union[ClientMessage, ServerMessage]

#: The stage in which each client message is accepted by the server.
CLIENT_MESSAGE_STAGE: dict[type, Stage] = {
    AdvertiseKeys: Stage.ADVERTISE,
    ShareKeys: Stage.SHARE_KEYS,
    MaskedInput: Stage.MASKED_INPUT,
    ConsistencyCheck: Stage.CONSISTENCY,
    UnmaskResponse: Stage.UNMASK,
}

#: The client stage in which each server message is accepted.
SERVER_MESSAGE_STAGE: dict[type, Stage] = {
    KeyList: Stage.SHARE_KEYS,
    ForwardedShares: Stage.MASKED_INPUT,
    ConsistencyRequest: Stage.CONSISTENCY,
    UnmaskRequest: Stage.UNMASK,
}
