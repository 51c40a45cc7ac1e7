"""Shamir secret sharing over the prime field GF(2^256 + 297).

The prime is the smallest above 2^256, so any 32-byte secret (a seed or an X25519 private key)
is one field element and one share is :data:`SHARE_BYTES` bytes. Any ``threshold`` shares
reconstruct the secret; fewer are uniformly distributed whatever the secret (perfect secrecy).

Share x-coordinates are ``client_id + 1`` (never 0, where the secret sits). Randomness comes
from the caller's ``rng``; this module does no I/O.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Mapping, Sequence

PRIME = 2**256 + 297
SHARE_BYTES = 33
SECRET_BYTES = 32
# Coefficients are drawn 48 bytes wide and reduced mod PRIME: the bias is below 2^-127.
_COEFF_BYTES = 48

Rng = Callable[[int], bytes]


def x_of(client_id: int) -> int:
    """The x-coordinate of ``client_id``'s share (ids start at 0; x = 0 holds the secret)."""
    return client_id + 1


def random_coefficients(secret: int, threshold: int, rng: Rng) -> list[int]:
    """``[secret, a_1, ..., a_{t-1}]``: a random polynomial of degree t-1 through (0, secret)."""
    if not 0 <= secret < PRIME:
        raise ValueError("secret out of field range")
    if threshold < 1:
        raise ValueError("threshold must be at least 1")
    raw = rng(_COEFF_BYTES * (threshold - 1))
    if len(raw) != _COEFF_BYTES * (threshold - 1):
        raise ValueError("rng returned the wrong number of bytes")
    wide = (raw[i : i + _COEFF_BYTES] for i in range(0, len(raw), _COEFF_BYTES))
    return [secret] + [int.from_bytes(chunk, "big") % PRIME for chunk in wide]


def evaluate(coefficients: Sequence[int], xs: Sequence[int]) -> list[int]:
    """The polynomial with ``coefficients`` (constant first) at each of ``xs`` (Horner)."""
    reversed_coeffs = list(reversed(coefficients))
    out = []
    for x in xs:
        acc = 0
        for c in reversed_coeffs:
            acc = (acc * x + c) % PRIME
        out.append(acc)
    return out


def split(secret: int, xs: Sequence[int], threshold: int, rng: Rng) -> list[int]:
    """Shares of ``secret`` at the distinct non-zero ``xs``; any ``threshold`` of them rebuild it."""
    if len(set(xs)) != len(xs) or any(not 0 < x < PRIME for x in xs):
        raise ValueError("share x-coordinates must be distinct and non-zero")
    if threshold > len(xs):
        raise ValueError("threshold exceeds the number of shares")
    return evaluate(random_coefficients(secret, threshold, rng), xs)


@lru_cache(maxsize=64)
def lagrange_at(xs: tuple[int, ...], at: int = 0) -> tuple[int, ...]:
    """Weights w_i with P(at) = sum w_i P(x_i) for any polynomial of degree < len(xs).

    Cached: with the complete graph every secret is rebuilt from the same responders' xs.
    """
    weights = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * (at - xj) % PRIME
                den = den * (xi - xj) % PRIME
        weights.append(num * pow(den, -1, PRIME) % PRIME)
    return tuple(weights)


def interpolate(points: Mapping[int, int], at: int = 0) -> int:
    """The value at ``at`` of the polynomial of degree < len(points) through ``points`` {x: y}."""
    xs = tuple(sorted(points))
    if len(xs) == 0:
        raise ValueError("no shares")
    weights = lagrange_at(xs, at)
    return sum(w * points[x] for w, x in zip(weights, xs)) % PRIME


def reconstruct(shares: Mapping[int, int], threshold: int) -> int:
    """The secret from ``shares`` {x: y}, using the ``threshold`` smallest xs.

    If one more share is available it is checked against the rebuilt polynomial; a mismatch
    (a corrupted or forged share) raises ``ValueError`` rather than returning a wrong secret.
    """
    if len(shares) < threshold:
        raise ValueError(f"{len(shares)} shares, {threshold} needed")
    xs = sorted(shares)
    used = {x: shares[x] for x in xs[:threshold]}
    if len(xs) > threshold:
        spare = xs[threshold]
        if interpolate(used, at=spare) != shares[spare]:
            raise ValueError("shares are inconsistent")
    return interpolate(used, at=0)


def to_bytes(value: int) -> bytes:
    """A field element as :data:`SHARE_BYTES` big-endian bytes."""
    return value.to_bytes(SHARE_BYTES, "big")


def from_bytes(data: bytes) -> int:
    """Inverse of :func:`to_bytes`; raises ``ValueError`` outside the field."""
    value = int.from_bytes(data, "big")
    if len(data) != SHARE_BYTES or value >= PRIME:
        raise ValueError("not a field element")
    return value
