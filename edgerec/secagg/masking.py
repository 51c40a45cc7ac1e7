"""Mask expansion: a 32-byte seed becomes a uniform uint32 vector (AES-256-CTR keystream).

Vectors live in Z_(2^32); numpy's uint32 arithmetic wraps, which is exactly addition mod 2^32.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SEED_BYTES = 32
# Every seed is used for exactly one stream, so a zero counter block is safe.
_COUNTER0 = bytes(16)


def expand(seed: bytes, length: int) -> np.ndarray:
    """``length`` uniform uint32 values from ``seed`` (a read-only array over the keystream)."""
    if len(seed) != SEED_BYTES:
        raise ValueError("mask seed must be 32 bytes")
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(_COUNTER0)).encryptor()
    # The keystream is the encryption of zeros.
    stream = encryptor.update(bytes(4 * length))
    return np.frombuffer(stream, dtype="<u4").astype(np.uint32, copy=False)


def pairwise_sign(me: int, peer: int) -> int:
    """+1 if ``me`` adds the pair's mask, -1 if it subtracts it, so the two cancel in the sum."""
    return 1 if me < peer else -1


def apply(acc: np.ndarray, seed: bytes, sign: int) -> None:
    """``acc += sign * expand(seed)`` in place, mod 2^32."""
    mask = expand(seed, acc.shape[0])
    if sign > 0:
        np.add(acc, mask, out=acc)
    else:
        np.subtract(acc, mask, out=acc)
