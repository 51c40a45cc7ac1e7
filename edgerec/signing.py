"""Ed25519 signatures over bundle manifests (a recipe over ``cryptography``'s hazmat layer).

The server signs each manifest it publishes; devices pin the server's public key and refuse any
bundle whose manifest does not verify. Keys travel as 32 raw bytes (or their hex).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ._exceptions import BundleSignatureError

__all__ = ["generate_signing_key", "public_key_bytes", "sign_bytes", "verify_bytes"]


def generate_signing_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 key (from the OS's randomness, inside ``cryptography``)."""
    return Ed25519PrivateKey.generate()


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of the public half: what an app pins."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign_bytes(key: Ed25519PrivateKey, data: bytes) -> bytes:
    """A 64-byte Ed25519 signature of ``data``."""
    return key.sign(data)


def verify_bytes(public_key: bytes | str, data: bytes, signature: bytes) -> None:
    """Raise ``BundleSignatureError`` unless ``signature`` is ``public_key``'s over ``data``."""
    try:
        raw = bytes.fromhex(public_key) if isinstance(public_key, str) else bytes(public_key)
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, data)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise BundleSignatureError("the bundle's manifest signature does not verify") from exc
