"""The messages of one secure-aggregation round: frozen, versioned, hashable dataclasses.

Client -> server messages carry an Ed25519 ``signature`` by the sender's identity key over
their encoding (see :func:`edgerec.secagg.wire.signing_bytes`). Server -> client messages are
not signed: clients trust nothing in them that they cannot check (peer signatures, AEAD tags,
the graph and threshold recomputed from the configuration).

Vectors are held as raw little-endian uint32 ``bytes`` so the message is truly immutable and
compares cheaply; :attr:`MaskedInput.values` gives a read-only numpy view.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

import numpy as np

VERSION = 1


class Stage(enum.IntEnum):
    """The stages of a round, in order. A machine is in the stage whose messages it awaits."""

    ADVERTISE = 0
    SHARE_KEYS = 1
    MASKED_INPUT = 2
    UNMASK = 3
    DONE = 4
    ABORTED = 5


@dataclass(frozen=True)
class AdvertiseKeys:
    """Stage 0, client -> server: fresh X25519 public keys, signed by the identity key."""

    round_id: int
    sender: int
    enc_public_key: bytes
    mask_public_key: bytes
    signature: bytes = b""
    version: int = VERSION


@dataclass(frozen=True)
class PeerKeys:
    """One neighbour's advertised keys as relayed by the server, with its identity key."""

    client_id: int
    identity_key: bytes
    enc_public_key: bytes
    mask_public_key: bytes
    signature: bytes


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
    """Stage 2, client -> server: the masked vector as raw little-endian uint32 bytes."""

    round_id: int
    sender: int
    vector: bytes
    signature: bytes = b""
    version: int = VERSION

    @property
    def values(self) -> np.ndarray:
        """The vector as a read-only uint32 array (no copy)."""
        return np.frombuffer(self.vector, dtype="<u4").astype(np.uint32, copy=False)

    @classmethod
    def from_array(cls, round_id: int, sender: int, values: np.ndarray) -> MaskedInput:
        """An unsigned message holding ``values`` (uint32)."""
        return cls(round_id, sender, np.ascontiguousarray(values, dtype="<u4").tobytes())


@dataclass(frozen=True)
class UnmaskRequest:
    """Stage 2 -> 3, server -> one client: which of its neighbours survived, which dropped."""

    round_id: int
    recipient: int
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    version: int = VERSION


@dataclass(frozen=True)
class UnmaskResponse:
    """Stage 3, client -> server: self-mask seed shares of survivors (and of itself),
    mask-key shares of the dropped; each as (peer, field element)."""

    round_id: int
    sender: int
    seed_shares: tuple[tuple[int, int], ...]
    key_shares: tuple[tuple[int, int], ...]
    signature: bytes = b""
    version: int = VERSION


ClientMessage = Union[AdvertiseKeys, ShareKeys, MaskedInput, UnmaskResponse]
ServerMessage = Union[KeyList, ForwardedShares, UnmaskRequest]
Message = Union[ClientMessage, ServerMessage]

#: The stage in which each client message is accepted by the server.
CLIENT_MESSAGE_STAGE: dict[type, Stage] = {
    AdvertiseKeys: Stage.ADVERTISE,
    ShareKeys: Stage.SHARE_KEYS,
    MaskedInput: Stage.MASKED_INPUT,
    UnmaskResponse: Stage.UNMASK,
}

#: The client stage in which each server message is accepted.
SERVER_MESSAGE_STAGE: dict[type, Stage] = {
    KeyList: Stage.SHARE_KEYS,
    ForwardedShares: Stage.MASKED_INPUT,
    UnmaskRequest: Stage.UNMASK,
}
