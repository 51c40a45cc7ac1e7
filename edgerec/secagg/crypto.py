"""Thin recipes over ``cryptography`` (hazmat): the only module that touches primitives.

X25519 for key agreement, HKDF-SHA256 to turn shared secrets into keys, AES-256-GCM for the
shares routed through the server, Ed25519 for identity signatures. Every key derivation binds
the round id and both client ids, so material from one round or pair is useless in another.
"""

from __future__ import annotations

import struct
from typing import Callable, Union

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .._exceptions import BadCiphertextError

KEY_BYTES = 32
SIGNATURE_BYTES = 64
AEAD_TAG_BYTES = 16
_SHARE_INFO = b"edgerec/secagg/v1/share-key"
_MASK_INFO = b"edgerec/secagg/v1/pairwise-mask"
# Each share key encrypts exactly one message (it is unique to round, sender, recipient and
# fresh ephemeral keys), so a constant nonce is safe and saves 12 bytes per share.
_NONCE = bytes(12)
# A fixed probe scalar: a low-order X25519 point gives an all-zero secret with every scalar.
_PROBE = X25519PrivateKey.from_private_bytes(bytes([0x42] * KEY_BYTES))

Rng = Callable[[int], bytes]


def x25519_keypair(rng: Rng) -> tuple[bytes, bytes]:
    """A fresh (private, public) X25519 pair, raw 32 bytes each, from ``rng``."""
    private = X25519PrivateKey.from_private_bytes(_take(rng, KEY_BYTES))
    return _raw_private(private), x25519_public(_raw_private(private))


def x25519_public(private: bytes) -> bytes:
    """The raw public key of a raw X25519 private key."""
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def is_usable_x25519(public: bytes) -> bool:
    """False for a malformed or low-order point (it would make every shared secret zero)."""
    if len(public) != KEY_BYTES:
        return False
    try:
        _PROBE.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        return False
    return True


PrivateKey = Union[bytes, X25519PrivateKey]


def x25519_key(private: bytes) -> X25519PrivateKey:
    """The key object of raw private bytes: load it once when it is used with many peers
    (loading costs as much as an exchange)."""
    return X25519PrivateKey.from_private_bytes(private)


def _agree(private: PrivateKey, peer_public: bytes) -> bytes:
    own = private if isinstance(private, X25519PrivateKey) else X25519PrivateKey.from_private_bytes(private)
    return own.exchange(X25519PublicKey.from_public_bytes(peer_public))


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(secret)


def share_key(private: PrivateKey, peer_public: bytes, round_id: int, sender: int, recipient: int) -> bytes:
    """The AES-256-GCM key for shares from ``sender`` to ``recipient`` (one key per direction)."""
    info = _SHARE_INFO + struct.pack(">QII", round_id, sender, recipient)
    return _hkdf(_agree(private, peer_public), info)


def mask_seed(private: PrivateKey, peer_public: bytes, round_id: int, a: int, b: int) -> bytes:
    """The pairwise mask seed of clients ``a`` and ``b``; both ends derive the same one."""
    low, high = sorted((a, b))
    info = _MASK_INFO + struct.pack(">QII", round_id, low, high)
    return _hkdf(_agree(private, peer_public), info)


def share_aad(round_id: int, sender: int, recipient: int) -> bytes:
    """Associated data binding a share ciphertext to its round, sender and recipient."""
    return b"edgerec/secagg/v1/share" + struct.pack(">QII", round_id, sender, recipient)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM encryption (ciphertext || tag)."""
    return AESGCM(key).encrypt(_NONCE, plaintext, aad)


def open_sealed(key: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    """Inverse of :func:`seal`; raises :class:`BadCiphertextError` if authentication fails."""
    try:
        return AESGCM(key).decrypt(_NONCE, ciphertext, aad)
    except InvalidTag as exc:
        raise BadCiphertextError("share ciphertext failed authentication") from exc


def ed25519_public(private: bytes) -> bytes:
    """The raw Ed25519 public key of a raw 32-byte private key."""
    return Ed25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def ed25519_private(rng: Rng) -> bytes:
    """A raw Ed25519 private key from ``rng`` (identity keys are made once, at enrolment)."""
    return _take(rng, KEY_BYTES)


def sign(private: bytes, data: bytes) -> bytes:
    """Ed25519 signature of ``data``."""
    return Ed25519PrivateKey.from_private_bytes(private).sign(data)


def verify(public: bytes, signature: bytes, data: bytes) -> bool:
    """True if ``signature`` is a valid Ed25519 signature of ``data`` under ``public``."""
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def _raw_private(key: X25519PrivateKey) -> bytes:
    return key.private_bytes_raw()


def _take(rng: Rng, n: int) -> bytes:
    data = rng(n)
    if len(data) != n:
        raise ValueError(f"rng returned {len(data)} bytes, {n} asked")
    return bytes(data)
