"""Randomness for privacy noise: a keyed AES-256-CTR stream, and the one place that reads the OS.

Why not ``numpy.random``? Its generators (PCG64 and friends) are statistical, not
cryptographic: their state can be recovered from outputs, so noise drawn from them gives an
observer a way to predict, and subtract, the noise. Differential privacy assumes the noise is
unknown to the adversary; that needs a cryptographically secure generator.

``SecureRandom(key)`` is the keystream of AES-256 in counter mode under a 32-byte key (the
``cryptography`` package, i.e. OpenSSL): a deterministic, pure function of the key and the
sequence of calls, indistinguishable from uniform bytes to anyone without the key. Pure code
takes a ``RandomSource`` as an argument (DESIGN.md: randomness is passed in). Only
``SecureRandom.from_os()`` does I/O (``os.urandom`` for the key), and it lives here so the rest
of ``edgerec.privacy`` never touches the OS.

``SecureRandom.reproducible(seed)`` derives the key from a public seed: same seed, same
stream. That is what tests and simulations want and exactly what private noise must never be
(anyone who knows the seed knows the noise), so it reports ``private = False``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from numbers import Integral
from typing import Protocol, runtime_checkable

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .._exceptions import ConfigError

__all__ = ["RandomSource", "SecureRandom"]

_KEY_BYTES = 32  # AES-256
_REPRODUCIBLE_TAG = b"edgerec.privacy.SecureRandom.reproducible/v1\x00"
# 53 random bits per float64 in [0, 1): every value k / 2^53 equally likely.
_FLOAT_SHIFT = np.uint64(11)
_FLOAT_UNIT = 2.0**-53


@runtime_checkable
class RandomSource(Protocol):
    """Where privacy noise and stochastic rounding take their randomness from.

    ``private`` says whether the stream is secret (a CSPRNG under a secret key). Noise from a
    source with ``private = False`` gives no differential privacy, whatever its parameters.
    """

    @property
    def private(self) -> bool:
        """True only if nobody but this source can predict its output."""
        ...

    def bytes(self, n: int) -> bytes:
        """The next ``n`` bytes of the stream."""
        ...

    def uint64(self, n: int) -> np.ndarray:
        """The next ``n`` uniform 64-bit unsigned integers (``uint64`` array)."""
        ...

    def uniform(self, n: int) -> np.ndarray:
        """The next ``n`` uniform float64 values in ``[0, 1)``, 53 random bits each."""
        ...


class SecureRandom:
    """AES-256-CTR keystream under a 32-byte key: a ``RandomSource``, pure given the key.

    Consecutive calls continue one stream (``bytes(8)`` then ``bytes(8)`` equals
    ``bytes(16)``). Safe to share between threads (calls are serialised), though the order of
    draws then depends on scheduling. Use one key for one stream only: two sources with the
    same key produce the same bytes.

    Raises:
        ConfigError: ``key`` is not exactly 32 bytes.
    """

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray)) or len(key) != _KEY_BYTES:
            raise ConfigError(f"SecureRandom needs a {_KEY_BYTES}-byte key")
        # A zero nonce is fine: the key is used for this one stream only, and the 128-bit
        # counter cannot wrap within any realistic amount of output.
        self._stream = Cipher(algorithms.AES(bytes(key)), modes.CTR(bytes(16))).encryptor()
        self._private = True
        self._lock = threading.Lock()

    @classmethod
    def from_os(cls) -> SecureRandom:
        """A private source under a fresh key from ``os.urandom`` (the only I/O of the package)."""
        return cls(os.urandom(_KEY_BYTES))

    @classmethod
    def reproducible(cls, seed: int | bytes) -> SecureRandom:
        """A source whose stream is fixed by ``seed``: for tests and simulations.

        NOT PRIVATE: the key is a public function of the seed, so whoever knows the seed can
        recompute every noise draw. ``private`` is False.

        Raises:
            ConfigError: ``seed`` is neither an int nor bytes.
        """
        if isinstance(seed, (bytes, bytearray)):
            material = b"bytes:" + bytes(seed)
        elif isinstance(seed, Integral) and not isinstance(seed, bool):
            material = b"int:" + str(int(seed)).encode()
        else:
            raise ConfigError(f"seed must be an int or bytes, got {type(seed).__name__}")
        source = cls(hashlib.sha256(_REPRODUCIBLE_TAG + material).digest())
        source._private = False
        return source

    @property
    def private(self) -> bool:
        """True unless built by ``reproducible``."""
        return self._private

    def bytes(self, n: int) -> bytes:
        """The next ``n`` bytes of the keystream."""
        count = _count(n)
        with self._lock:
            # Encrypting zeros yields the bare keystream.
            return self._stream.update(b"\x00" * count)

    def uint64(self, n: int) -> np.ndarray:
        """The next ``n`` uniform ``uint64`` values (little-endian words of the keystream)."""
        count = _count(n)
        return np.frombuffer(self.bytes(8 * count), dtype="<u8").astype(np.uint64)

    def uniform(self, n: int) -> np.ndarray:
        """The next ``n`` uniform float64 values in ``[0, 1)``: the top 53 bits of each word."""
        return (self.uint64(n) >> _FLOAT_SHIFT).astype(np.float64) * _FLOAT_UNIT

    def __repr__(self) -> str:
        return f"SecureRandom(private={self._private})"  # never the key


def _count(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
        raise ConfigError(f"a draw count must be an int >= 0, got {n!r}")
    return int(n)
