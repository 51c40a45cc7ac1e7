"""Ed25519 signatures over bundle manifests (a recipe over ``cryptography``'s hazmat layer).

The server signs each manifest it publishes; devices pin the server's public key and refuse any
bundle whose manifest does not verify. Keys travel as 32 raw bytes (or their hex).

A pinned key that is not an Ed25519 public key at all (wrong length, not hex, wrong type) is
the app's mistake, not the bundle's: it raises ``ConfigError`` before any bundle is looked at.
A well-formed key that did not sign the manifest raises ``BundleSignatureError``.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ._exceptions import BundleSignatureError, ConfigError

__all__ = ["generate_signing_key", "load_public_key", "public_key_bytes", "sign_bytes",
           "verify_bytes"]

_KEY_BYTES = 32


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


def load_public_key(public_key: bytes | str | Ed25519PublicKey) -> Ed25519PublicKey:
    """A pinned public key (32 raw bytes, their hex, or a key object) as a key object.

    Raises ``ConfigError`` saying it is "not a valid Ed25519 public key" for anything else.
    """
    if isinstance(public_key, Ed25519PublicKey):
        return public_key
    if isinstance(public_key, str):
        try:
            raw = bytes.fromhex(public_key)
        except ValueError:
            raise ConfigError("the pinned key is not a valid Ed25519 public key: not hex") from None
    elif isinstance(public_key, (bytes, bytearray, memoryview)):
        raw = bytes(public_key)
    else:
        raise ConfigError(f"the pinned key is not a valid Ed25519 public key: a "
                          f"{type(public_key).__name__}, not bytes or hex")
    if len(raw) != _KEY_BYTES:
        raise ConfigError(f"the pinned key is not a valid Ed25519 public key: {len(raw)} bytes, "
                          f"not {_KEY_BYTES} (raw) or {2 * _KEY_BYTES} hex characters")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ConfigError(f"the pinned key is not a valid Ed25519 public key: {exc}") from exc


def verify_bytes(public_key: bytes | str | Ed25519PublicKey, data: bytes, signature: bytes) -> None:
    """Raise ``BundleSignatureError`` unless ``signature`` is ``public_key``'s over ``data``.

    A malformed ``public_key`` raises ``ConfigError`` (see :func:`load_public_key`).
    """
    key = load_public_key(public_key)
    try:
        key.verify(signature, data)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise BundleSignatureError("the bundle's manifest signature does not verify") from exc
