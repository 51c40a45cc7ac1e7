"""Refuse weak Ed25519 identity keys: non-canonical encodings, points off the curve, and points
of small order (8A = 0), under which some forged signatures verify for any message.

``cryptography`` (OpenSSL) verifies such keys without complaint, so a device could register one
and make its proof of possession meaningless. Pure integer arithmetic on the twisted Edwards
curve (RFC 8032 parameters); run once per enrolment, so speed does not matter.
"""

from __future__ import annotations

__all__ = ["is_strong_ed25519_key"]

_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decode(key: bytes) -> tuple[int, int] | None:
    """The affine point of a 32-byte encoding, or None if it is not a canonical curve point."""
    if len(key) != 32:
        return None
    y = int.from_bytes(key, "little") & ((1 << 255) - 1)
    sign = key[31] >> 7
    if y >= _P:
        return None
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = (u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P)) % _P
    if (v * x * x - u) % _P != 0:
        x = (x * _SQRT_M1) % _P
        if (v * x * x - u) % _P != 0:
            return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    # The complete addition law of -x^2 + y^2 = 1 + d x^2 y^2: no exceptional cases.
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2 % _P
    x3 = (x1 * y2 + y1 * x2) * pow(1 + t, _P - 2, _P) % _P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P
    return x3, y3


def is_strong_ed25519_key(key: bytes) -> bool:
    """True if ``key`` encodes a canonical curve point whose order is not small."""
    point = _decode(bytes(key))
    if point is None:
        return False
    for _ in range(3):
        point = _add(point, point)
    return point != (0, 1)
