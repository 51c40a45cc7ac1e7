"""The wire format: every message round-trips; malformed bytes raise a specific error only."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgerec.secagg import (
    AdvertiseKeys,
    ConsistencyCheck,
    ConsistencyRequest,
    MalformedMessageError,
    MessageRejectedError,
    WrongLengthError,
    ForwardedShares,
    KeyList,
    MaskedInput,
    PeerKeys,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
    decode,
    encode,
    sign_message,
    signature_ok,
)
from edgerec.secagg import crypto, shamir

SETTINGS = settings(max_examples=40, deadline=None)
ids = st.integers(0, 2**32 - 1)
rounds = st.integers(0, 2**64 - 1)
blob32 = st.binary(min_size=32, max_size=32)
sig = st.binary(min_size=0, max_size=64)
field = st.integers(0, shamir.PRIME - 1)
pairs_blob = st.lists(st.tuples(ids, st.binary(max_size=100)), max_size=6).map(tuple)
pairs_share = st.lists(st.tuples(ids, field), max_size=6).map(tuple)
id_tuple = st.lists(ids, max_size=20).map(tuple)
certificate = st.binary(max_size=127)
peer = st.builds(PeerKeys, ids, blob32, blob32, blob32, st.binary(min_size=64, max_size=64), certificate)
triples = st.lists(st.tuples(ids, st.binary(max_size=20), st.binary(max_size=64)), max_size=6).map(tuple)

messages = st.one_of(
    st.builds(AdvertiseKeys, rounds, ids, blob32, blob32, certificate, sig),
    st.builds(ShareKeys, rounds, ids, pairs_blob, sig),
    st.builds(
        lambda r, s, v, b, m, g: MaskedInput(r, s, np.asarray(v, dtype=np.uint32).tobytes(), b, m, g),
        rounds, ids, st.lists(st.integers(0, 2**32 - 1), max_size=50), st.binary(max_size=20), sig, sig,
    ),
    st.builds(ConsistencyCheck, rounds, ids, sig, sig),
    st.builds(UnmaskResponse, rounds, ids, pairs_share, pairs_share, sig),
    st.builds(KeyList, rounds, ids, blob32, st.integers(0, 500), st.integers(0, 500), id_tuple,
              st.lists(peer, max_size=4).map(tuple)),
    st.builds(ForwardedShares, rounds, ids, pairs_blob),
    st.builds(ConsistencyRequest, rounds, ids, id_tuple),
    st.builds(UnmaskRequest, rounds, ids, triples, triples),
)


@SETTINGS
@given(msg=messages)
def test_every_message_round_trips(msg):
    data = encode(msg)
    assert decode(data) == msg
    assert encode(decode(data)) == data


@SETTINGS
@given(msg=messages, data=st.data())
def test_truncation_raises_wrong_length(msg, data):
    raw = encode(msg)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(WrongLengthError):
        decode(raw[:cut])


@SETTINGS
@given(msg=messages, extra=st.binary(min_size=1, max_size=8))
def test_trailing_bytes_raise_wrong_length(msg, extra):
    with pytest.raises(WrongLengthError):
        decode(encode(msg) + extra)


@settings(max_examples=200, deadline=None)
@given(junk=st.binary(max_size=200), keep_header=st.booleans())
def test_arbitrary_bytes_raise_only_message_rejected(junk, keep_header):
    # With a valid header, the body parser itself gets fuzzed.
    data = (b"SA\x02" + bytes([junk[0] % 10]) + bytes(8) + junk[1:]) if keep_header and junk else junk
    try:
        decode(data)
    except MessageRejectedError:
        pass


def test_vector_is_raw_little_endian_uint32():
    values = np.array([1, 2**32 - 1, 0x01020304], dtype=np.uint32)
    raw = encode(MaskedInput.from_array(5, 6, values))
    assert values.astype("<u4").tobytes() in raw
    # header 12 + sender 4 + empty mask set 2 + empty mask signature 2 + count 4 + data
    # + empty signature 2
    assert len(raw) == 12 + 4 + 2 + 2 + 4 + 4 * len(values) + 2
    assert decode(raw).values.tolist() == values.tolist()


def test_bad_magic_version_and_type_are_malformed():
    raw = encode(ConsistencyRequest(1, 2, (3, 4)))
    for bad in (b"XX" + raw[2:], raw[:2] + b"\x09" + raw[3:], raw[:3] + b"\x63" + raw[4:]):
        with pytest.raises(MalformedMessageError):
            decode(bad)


def test_forged_huge_count_is_refused_before_allocation():
    header = b"SA\x02\x08" + bytes(8)
    data = header + struct.pack(">II", 1, 2**32 - 1)  # recipient 1, then 4 billion survivors
    with pytest.raises(WrongLengthError):
        decode(data)


def test_unencodable_fields_are_malformed():
    with pytest.raises(MalformedMessageError):
        encode(ConsistencyRequest(1, 2**32, ()))
    with pytest.raises(MalformedMessageError):
        encode(AdvertiseKeys(1, 2, b"x" * 70000, b""))


def test_signature_covers_every_field():
    key = crypto.ed25519_private(lambda n: b"\x05" * n)
    public = crypto.ed25519_public(key)
    msg = sign_message(AdvertiseKeys(1, 2, b"a" * 32, b"b" * 32), key)
    assert signature_ok(msg, public)
    for changed in (
        AdvertiseKeys(2, 2, b"a" * 32, b"b" * 32, signature=msg.signature),
        AdvertiseKeys(1, 3, b"a" * 32, b"b" * 32, signature=msg.signature),
        AdvertiseKeys(1, 2, b"b" * 32, b"a" * 32, signature=msg.signature),
        AdvertiseKeys(1, 2, b"a" * 32, b"b" * 32, b"cert", msg.signature),
        ShareKeys(1, 2, (), msg.signature),
    ):
        assert not signature_ok(changed, public)
