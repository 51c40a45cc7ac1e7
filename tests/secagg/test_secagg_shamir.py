"""Shamir sharing: any t shares rebuild the secret, t-1 are consistent with every secret."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from edgerec.secagg import deterministic_rng, shamir

SETTINGS = settings(max_examples=40, deadline=None)
secrets_ = st.integers(0, 2**256 - 1)


def _miller_rabin(n: int, rounds: int = 40) -> bool:
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    rnd = random.Random(1)
    for _ in range(rounds):
        x = pow(rnd.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def test_prime_is_prime_and_holds_32_byte_secrets():
    assert shamir.PRIME > 2**256
    assert _miller_rabin(shamir.PRIME)
    assert shamir.PRIME.bit_length() <= 8 * shamir.SHARE_BYTES


@SETTINGS
@given(secret=secrets_, t=st.integers(1, 8), extra=st.integers(0, 6), seed=st.binary(max_size=8), data=st.data())
def test_any_t_shares_reconstruct(secret, t, extra, seed, data):
    ids = data.draw(st.lists(st.integers(0, 2**32 - 2), min_size=t + extra, max_size=t + extra, unique=True))
    xs = [shamir.x_of(c) for c in ids]
    shares = dict(zip(xs, shamir.split(secret, xs, t, deterministic_rng(seed))))
    subset = data.draw(st.lists(st.sampled_from(xs), min_size=t, max_size=len(xs), unique=True))
    assert shamir.reconstruct({x: shares[x] for x in subset}, t) == secret


def _coefficients_through(points: dict[int, int]) -> list[int]:
    """Coefficients (constant first) of the polynomial of degree < len(points) through points."""
    p, xs = shamir.PRIME, list(points)
    coeffs = [0] * len(xs)
    for i, xi in enumerate(xs):
        basis, denom = [1], 1  # prod_{j != i} (x - xj), built up coefficient by coefficient
        for j, xj in enumerate(xs):
            if j != i:
                basis = [(a - xj * b) % p for a, b in zip([0] + basis, basis + [0])]
                denom = denom * (xi - xj) % p
        scale = points[xi] * pow(denom, -1, p) % p
        coeffs = [(c + scale * b) % p for c, b in zip(coeffs, basis)]
    return coeffs


@SETTINGS
@given(secret=secrets_, other=secrets_, t=st.integers(2, 7), seed=st.binary(max_size=8))
def test_t_minus_1_shares_are_consistent_with_every_secret(secret, other, t, seed):
    xs = [shamir.x_of(c) for c in range(3, 3 + t - 1)]  # the t-1 shares an adversary holds
    shares = shamir.evaluate(shamir.random_coefficients(secret, t, deterministic_rng(seed)), xs)
    # For any other secret there are coefficients giving exactly the same t-1 shares; the
    # coefficients are uniform, so the shares are distributed identically for both secrets.
    coeffs = _coefficients_through({0: other, **dict(zip(xs, shares))})
    assert coeffs[0] == other
    rigged = b"".join(c.to_bytes(48, "big") for c in coeffs[1:])
    assert shamir.evaluate(shamir.random_coefficients(other, t, lambda n: rigged[:n]), xs) == shares


def test_spare_share_catches_a_corrupted_share():
    xs = [shamir.x_of(c) for c in range(6)]
    shares = dict(zip(xs, shamir.split(1234, xs, 3, deterministic_rng(b"s"))))
    shares[xs[1]] = (shares[xs[1]] + 1) % shamir.PRIME
    with pytest.raises(ValueError, match="inconsistent"):
        shamir.reconstruct(shares, 3)


def test_too_few_shares_and_bad_inputs_raise():
    xs = [1, 2, 3]
    shares = dict(zip(xs, shamir.split(5, xs, 3, deterministic_rng(b"x"))))
    with pytest.raises(ValueError):
        shamir.reconstruct({1: shares[1], 2: shares[2]}, 3)
    with pytest.raises(ValueError):
        shamir.split(5, [1, 1, 2], 2, deterministic_rng(b"x"))
    with pytest.raises(ValueError):
        shamir.split(5, [0, 1, 2], 2, deterministic_rng(b"x"))
    with pytest.raises(ValueError):
        shamir.split(shamir.PRIME, [1, 2], 2, deterministic_rng(b"x"))
    with pytest.raises(ValueError):
        shamir.from_bytes(shamir.PRIME.to_bytes(shamir.SHARE_BYTES, "big"))
    assert shamir.from_bytes(shamir.to_bytes(shamir.PRIME - 1)) == shamir.PRIME - 1
