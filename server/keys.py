"""The server's Ed25519 bundle-signing key: one PEM file in the data dir, made on first start.

The key stays out of the database on purpose: backups and copies of the state then never
carry the ability to sign models. Apps pin the public half (``edgerec-server public-key``).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from edgerec.signing import generate_signing_key

from ._exceptions import StateError

__all__ = ["load_or_create_key"]


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The signing key at ``path``, generated (mode 0600) if the file does not exist yet."""
    if not path.exists():
        key = generate_signing_key()
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return load_or_create_key(path)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        return key
    try:
        loaded = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise StateError(f"cannot read the signing key {path}: {exc}") from exc
    if not isinstance(loaded, Ed25519PrivateKey):
        raise StateError(f"{path} does not hold an Ed25519 key")
    return loaded
