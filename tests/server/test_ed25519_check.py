"""Weak Ed25519 identity keys are refused at enrolment; real ones never are."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgerec.secagg import crypto
from edgerec_server.ed25519_check import is_strong_ed25519_key

SMALL_ORDER = [
    bytes(32),  # order 4
    b"\x01" + bytes(31),  # the neutral element
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # order 2
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),  # order 8
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),  # order 8
]


def test_small_order_and_non_canonical_keys_are_weak():
    assert not any(is_strong_ed25519_key(k) for k in SMALL_ORDER)
    assert not is_strong_ed25519_key(b"\xff" * 32)  # y >= p
    assert not is_strong_ed25519_key(bytes(31))


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_every_real_public_key_is_strong(seed):
    assert is_strong_ed25519_key(crypto.ed25519_public(seed))
