"""The one place messages become bytes and back.

Frame: ``b"SA" | version u8 | type u8 | round_id u64`` then the body, big-endian integers,
byte strings prefixed by a u16 length, lists by a u32 count, vectors as a u32 element count and
raw little-endian uint32 data (4 bytes per entry, no text encoding). Client messages end with
their signature, so :func:`signing_bytes` is simply the frame without it.

:func:`decode` never lets a ``struct``/``Index``/``Value`` error escape: truncated or overlong
input raises :class:`WrongLengthError`, anything else unparsable :class:`MalformedMessageError`.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import replace
from typing import Callable

from .._exceptions import MalformedMessageError, MessageRejectedError, WrongLengthError
from . import crypto
from .messages import (
    VERSION,
    AdvertiseKeys,
    ClientMessage,
    ClientMessageT,
    ConsistencyCheck,
    ConsistencyRequest,
    ForwardedShares,
    KeyList,
    MaskedInput,
    Message,
    PeerKeys,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from .shamir import SHARE_BYTES

MAGIC = b"SA"
_HEADER = struct.Struct(">2sBBQ")
_SIGN_DOMAIN = b"edgerec/secagg/v2/signed-message\x00"
_TYPE_CODES: dict[type, int] = {
    AdvertiseKeys: 1,
    ShareKeys: 2,
    MaskedInput: 3,
    UnmaskResponse: 4,
    KeyList: 5,
    ForwardedShares: 6,
    UnmaskRequest: 7,
    ConsistencyRequest: 8,
    ConsistencyCheck: 9,
}


class _Writer:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u32(self, value: int) -> None:
        self.parts.append(struct.pack(">I", value))

    def blob(self, data: bytes) -> None:
        self.parts.append(struct.pack(">H", len(data)))
        self.parts.append(bytes(data))

    def ids(self, values: tuple[int, ...]) -> None:
        self.u32(len(values))
        self.parts.append(struct.pack(f">{len(values)}I", *values))

    def id_blobs(self, items: tuple[tuple[int, bytes], ...]) -> None:
        self.u32(len(items))
        for peer, data in items:
            self.u32(peer)
            self.blob(data)

    def id_shares(self, items: tuple[tuple[int, int], ...]) -> None:
        self.u32(len(items))
        for peer, value in items:
            self.u32(peer)
            self.parts.append(value.to_bytes(SHARE_BYTES, "big"))

    def id_blob_pairs(self, items: tuple[tuple[int, bytes, bytes], ...]) -> None:
        self.u32(len(items))
        for peer, first, second in items:
            self.u32(peer)
            self.blob(first)
            self.blob(second)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.view = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n > len(self.view) - self.pos:
            raise WrongLengthError(f"message truncated: {n} bytes wanted at offset {self.pos}")
        out = bytes(self.view[self.pos : self.pos + n])
        self.pos += n
        return out

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def blob(self) -> bytes:
        return self.take(struct.unpack(">H", self.take(2))[0])

    def count(self, min_item_bytes: int) -> int:
        n = self.u32()
        # Refuse impossible counts before looping, so a forged count cannot cost memory or time.
        if n * min_item_bytes > len(self.view) - self.pos:
            raise WrongLengthError(f"list of {n} items cannot fit in the remaining bytes")
        return n

    def ids(self) -> tuple[int, ...]:
        n = self.count(4)
        return struct.unpack(f">{n}I", self.take(4 * n))

    def id_blobs(self) -> tuple[tuple[int, bytes], ...]:
        return tuple((self.u32(), self.blob()) for _ in range(self.count(6)))

    def id_shares(self) -> tuple[tuple[int, int], ...]:
        n = self.count(4 + SHARE_BYTES)
        return tuple((self.u32(), int.from_bytes(self.take(SHARE_BYTES), "big")) for _ in range(n))

    def id_blob_pairs(self) -> tuple[tuple[int, bytes, bytes], ...]:
        return tuple((self.u32(), self.blob(), self.blob()) for _ in range(self.count(8)))

    def end(self) -> None:
        if self.pos != len(self.view):
            raise WrongLengthError(f"{len(self.view) - self.pos} unexpected trailing bytes")


def _body(msg: Message, w: _Writer) -> None:
    if isinstance(msg, AdvertiseKeys):
        w.u32(msg.sender)
        w.blob(msg.enc_public_key)
        w.blob(msg.mask_public_key)
        w.blob(msg.certificate)
    elif isinstance(msg, ShareKeys):
        w.u32(msg.sender)
        w.id_blobs(msg.ciphertexts)
    elif isinstance(msg, MaskedInput):
        if len(msg.vector) % 4:
            raise WrongLengthError("vector bytes are not a whole number of uint32")
        w.u32(msg.sender)
        w.blob(msg.mask_set)
        w.blob(msg.mask_signature)
        w.u32(len(msg.vector) // 4)
        w.parts.append(msg.vector)
    elif isinstance(msg, ConsistencyCheck):
        w.u32(msg.sender)
        w.blob(msg.survivors_signature)
    elif isinstance(msg, UnmaskResponse):
        w.u32(msg.sender)
        w.id_shares(msg.seed_shares)
        w.id_shares(msg.key_shares)
    elif isinstance(msg, KeyList):
        w.u32(msg.recipient)
        w.blob(msg.graph_seed)
        w.u32(msg.degree)
        w.u32(msg.threshold)
        w.ids(msg.participants)
        w.u32(len(msg.neighbours))
        for p in msg.neighbours:
            w.u32(p.client_id)
            for field in (p.identity_key, p.enc_public_key, p.mask_public_key, p.signature,
                          p.certificate):
                w.blob(field)
    elif isinstance(msg, ForwardedShares):
        w.u32(msg.recipient)
        w.id_blobs(msg.ciphertexts)
    elif isinstance(msg, ConsistencyRequest):
        w.u32(msg.recipient)
        w.ids(msg.survivors)
    elif isinstance(msg, UnmaskRequest):
        w.u32(msg.recipient)
        w.id_blob_pairs(msg.signatures)
        w.id_blob_pairs(msg.mask_sets)


def _unsigned(msg: Message) -> list[bytes]:
    code = _TYPE_CODES.get(type(msg))
    if code is None:
        raise MalformedMessageError(f"not a secagg message: {type(msg).__name__}")
    w = _Writer()
    try:
        w.parts.append(_HEADER.pack(MAGIC, msg.version, code, msg.round_id))
        _body(msg, w)
    except (struct.error, OverflowError, TypeError) as exc:
        raise MalformedMessageError(f"cannot encode {type(msg).__name__}: {exc}") from exc
    return w.parts


def encode(msg: Message) -> bytes:
    """The wire bytes of ``msg``."""
    parts = _unsigned(msg)
    if hasattr(msg, "signature"):
        signature = msg.signature
        parts += [struct.pack(">H", len(signature)), bytes(signature)]
    return b"".join(parts)


def signing_bytes(msg: ClientMessage) -> bytes:
    """What a client message's signature covers: a digest of its frame minus the signature."""
    digest = hashlib.sha256()
    for part in _unsigned(msg):
        digest.update(part)
    return _SIGN_DOMAIN + digest.digest()


def sign_message(msg: ClientMessageT, identity_private_key: bytes) -> ClientMessageT:
    """``msg`` with its signature set by the sender's raw Ed25519 private key."""
    return replace(msg, signature=crypto.sign(identity_private_key, signing_bytes(msg)))


def signature_ok(msg: ClientMessage, identity_public_key: bytes) -> bool:
    """True if ``msg.signature`` verifies under ``identity_public_key``."""
    return crypto.verify(identity_public_key, msg.signature, signing_bytes(msg))


def _dec_advertise(r: _Reader, round_id: int) -> AdvertiseKeys:
    sender, enc, mask, certificate = r.u32(), r.blob(), r.blob(), r.blob()
    return AdvertiseKeys(round_id, sender, enc, mask, certificate, r.blob())


def _dec_share_keys(r: _Reader, round_id: int) -> ShareKeys:
    sender, cts = r.u32(), r.id_blobs()
    return ShareKeys(round_id, sender, cts, r.blob())


def _dec_masked(r: _Reader, round_id: int) -> MaskedInput:
    sender, mask_set, mask_signature, n = r.u32(), r.blob(), r.blob(), r.u32()
    vector = r.take(4 * n)
    return MaskedInput(round_id, sender, vector, mask_set, mask_signature, r.blob())


def _dec_consistency_check(r: _Reader, round_id: int) -> ConsistencyCheck:
    sender, statement = r.u32(), r.blob()
    return ConsistencyCheck(round_id, sender, statement, r.blob())


def _dec_unmask_response(r: _Reader, round_id: int) -> UnmaskResponse:
    sender, seeds, keys = r.u32(), r.id_shares(), r.id_shares()
    return UnmaskResponse(round_id, sender, seeds, keys, r.blob())


def _dec_key_list(r: _Reader, round_id: int) -> KeyList:
    recipient, seed, degree, threshold = r.u32(), r.blob(), r.u32(), r.u32()
    participants = r.ids()
    peers = tuple(
        PeerKeys(r.u32(), r.blob(), r.blob(), r.blob(), r.blob(), r.blob())
        for _ in range(r.count(14))
    )
    return KeyList(round_id, recipient, seed, degree, threshold, participants, peers)


def _dec_forwarded(r: _Reader, round_id: int) -> ForwardedShares:
    return ForwardedShares(round_id, r.u32(), r.id_blobs())


def _dec_consistency_request(r: _Reader, round_id: int) -> ConsistencyRequest:
    return ConsistencyRequest(round_id, r.u32(), r.ids())


def _dec_unmask_request(r: _Reader, round_id: int) -> UnmaskRequest:
    return UnmaskRequest(round_id, r.u32(), r.id_blob_pairs(), r.id_blob_pairs())


_DECODERS: dict[int, Callable[[_Reader, int], Message]] = {
    1: _dec_advertise,
    2: _dec_share_keys,
    3: _dec_masked,
    4: _dec_unmask_response,
    5: _dec_key_list,
    6: _dec_forwarded,
    7: _dec_unmask_request,
    8: _dec_consistency_request,
    9: _dec_consistency_check,
}


def decode(data: bytes) -> Message:
    """The message encoded in ``data``; raises a :class:`MessageRejectedError` subclass."""
    r = _Reader(data)
    try:
        magic, version, code, round_id = _HEADER.unpack(r.take(_HEADER.size))
        if magic != MAGIC:
            raise MalformedMessageError("not a secagg message (bad magic)")
        if version != VERSION:
            raise MalformedMessageError(f"unsupported message version {version}")
        decoder = _DECODERS.get(code)
        if decoder is None:
            raise MalformedMessageError(f"unknown message type {code}")
        msg = decoder(r, round_id)
        r.end()
    except MessageRejectedError:
        raise
    except (struct.error, ValueError, IndexError, OverflowError) as exc:  # defence in depth
        raise MalformedMessageError(f"unparsable message: {exc}") from exc
    return msg
