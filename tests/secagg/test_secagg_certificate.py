"""Enrolment certificates and the signed statements: only what the authority signed, for exactly
that device and key, within its validity, passes; bitmaps say exactly who was named."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from edgerec.secagg import (
    BadCertificateError,
    check_certificate,
    crypto,
    decode_certificate,
    deterministic_rng,
    encode_certificate,
    issue_certificate,
)
from edgerec.secagg import statements
from edgerec.secagg.certificate import CERTIFICATE_BYTES, CLOCK_SKEW_S

AUTHORITY = crypto.ed25519_private(deterministic_rng(b"authority"))
AUTHORITY_PUBLIC = crypto.ed25519_public(AUTHORITY)
DEVICE_KEY = crypto.ed25519_public(crypto.ed25519_private(deterministic_rng(b"device")))


def _cert(**kw) -> bytes:
    args = dict(device_id=7, identity_key=DEVICE_KEY, issued_at=1000, expires_at=5000) | kw
    return encode_certificate(issue_certificate(AUTHORITY, **args))


def test_a_certificate_checks_for_its_device_key_and_time():
    data = _cert()
    assert len(data) == CERTIFICATE_BYTES
    cert = check_certificate(data, AUTHORITY_PUBLIC, device_id=7, identity_key=DEVICE_KEY, now=2000)
    assert (cert.device_id, cert.identity_key, cert.expires_at) == (7, DEVICE_KEY, 5000)
    assert decode_certificate(data) == cert
    # replaying checks at a server that accepted it already: no time window
    check_certificate(data, AUTHORITY_PUBLIC, device_id=7, identity_key=DEVICE_KEY, now=None)


@pytest.mark.parametrize("kwargs", [
    dict(device_id=8),  # another device's seat
    dict(identity_key=bytes(32)),  # another key
    dict(now=5000),  # expired (the end is exclusive)
    dict(now=1000 - CLOCK_SKEW_S - 1),  # not valid yet, beyond the clock skew allowed
])
def test_a_certificate_for_something_else_is_refused(kwargs):
    args = dict(device_id=7, identity_key=DEVICE_KEY, now=2000) | kwargs
    with pytest.raises(BadCertificateError):
        check_certificate(_cert(), AUTHORITY_PUBLIC, **args)


def test_forged_tampered_or_foreign_certificates_are_refused():
    data = _cert()
    other = crypto.ed25519_private(deterministic_rng(b"another authority"))
    foreign = encode_certificate(issue_certificate(other, 7, DEVICE_KEY, 1000, 5000))
    tampered = bytearray(data)
    tampered[10] ^= 1  # a time field: the signature no longer covers it
    for bad in (foreign, bytes(tampered), data[:-1], b"", b"XX" + data[2:]):
        with pytest.raises(BadCertificateError):
            check_certificate(bad, AUTHORITY_PUBLIC, device_id=7, identity_key=DEVICE_KEY, now=2000)
    # a foreign authority's certificate would pass only under that authority's key
    check_certificate(foreign, crypto.ed25519_public(other), device_id=7, identity_key=DEVICE_KEY, now=2000)


def test_issuing_refuses_nonsense():
    for kw in (dict(identity_key=b"short"), dict(expires_at=1000), dict(device_id=2**32)):
        with pytest.raises(BadCertificateError):
            _cert(**kw)


@settings(max_examples=100, deadline=None)
@given(universe=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=40, unique=True), data=st.data())
def test_bitmaps_name_exactly_their_members(universe, data):
    members = data.draw(st.lists(st.sampled_from(universe), unique=True))
    bits = statements.bitmap(members, universe)
    assert statements.bitmap_members(bits, universe) == frozenset(members)
    order = sorted(universe)
    for i, c in enumerate(order):
        assert statements.bit_set(bits, len(order), i) == (c in members)
    assert not statements.bit_set(bits + b"\0", len(order), 0)  # wrong length: not a bitmap
    if len(order) % 8:
        padded = bits[:-1] + bytes([bits[-1] | 1])  # a padding bit set
        assert statements.bitmap_members(padded, universe) is None
        assert not statements.bit_set(padded, len(order), 0)


def test_statements_are_bound_to_their_view_round_and_sender():
    view = statements.view_hash(1, (1, 2, 3), bytes(32), 2, 3)
    assert view != statements.view_hash(1, (1, 2, 4), bytes(32), 2, 3)
    assert view != statements.view_hash(1, (1, 2, 3), bytes([1]) * 32, 2, 3)
    assert view != statements.view_hash(2, (1, 2, 3), bytes(32), 2, 3)
    base = statements.mask_statement(view, 1, 2, b"\xc0")
    assert base != statements.mask_statement(view, 1, 3, b"\xc0")
    assert base != statements.mask_statement(view, 2, 2, b"\xc0")
    s = statements.survivors_statement(view, 1, (1, 2), 2, b"\xc0")
    assert s == statements.survivors_statement(view, 1, (2, 1), 2, b"\xc0")  # a set, in any order
    assert s != statements.survivors_statement(view, 1, (1, 2, 3), 2, b"\xc0")
    assert s != statements.survivors_statement(view, 1, (1, 2), 3, b"\xc0")  # another signer
    assert s != statements.survivors_statement(view, 1, (1, 2), 2, b"\x80")  # another mask set
    # each statement starts with its own NUL-terminated domain: none passes for another kind
    domains = {x.split(b"\0", 1)[0] for x in (s, base, b"edgerec/secagg/v2/signed-message\0")}
    assert len(domains) == 3
