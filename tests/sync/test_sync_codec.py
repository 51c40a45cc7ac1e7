"""Protocol messages: every control message survives encode/decode; garbage is a ProtocolError."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgerec.sync import (
    CertificateAnswer,
    EnrolRequest,
    EnrolResponse,
    ErrorBody,
    ProtocolError,
    RoundAnnouncement,
    RoundStatus,
    ServerKey,
    UploadAck,
    decode,
    encode,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ints = st.integers(0, 2**53)
floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
text = st.text(max_size=40)
blobs = st.binary(max_size=64)

MESSAGES = st.one_of(
    st.builds(EnrolRequest, text, blobs, blobs),
    st.builds(EnrolResponse, ints, text, blobs, st.none() | floats, blobs),
    st.builds(RoundAnnouncement, ints, ints, ints, ints, ints, text, st.none() | ints, floats, floats,
              ints, ints, text, floats, floats, ints, ints, ints, floats),
    st.builds(CertificateAnswer, blobs),
    st.builds(RoundStatus, ints, text, text, ints, st.none() | ints, st.none() | ints,
              st.none() | ints, text),
    st.builds(UploadAck, ints, text, st.booleans()),
    st.builds(ServerKey, blobs, text),
    st.builds(ErrorBody, text, text),
)


@SETTINGS
@given(MESSAGES)
def test_every_message_round_trips(msg):
    assert decode(encode(msg), type(msg)) == msg


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_anything_but_protocol_error(data):
    for cls in (EnrolRequest, RoundAnnouncement, ErrorBody):
        try:
            decode(data, cls)
        except ProtocolError:
            pass


@SETTINGS
@given(st.dictionaries(st.sampled_from(["type", "token", "identity_key", "proof", "version", "x"]),
                       st.one_of(st.none(), st.integers(), st.text(max_size=5), st.booleans(), floats)))
def test_arbitrary_json_objects_are_refused_cleanly(obj):
    try:
        decode(json.dumps(obj).encode(), EnrolRequest)
    except ProtocolError:
        pass


def test_errors_say_what_is_wrong():
    good = json.loads(encode(ErrorBody("c", "m")))
    cases = {
        b"[1]": "JSON object",
        json.dumps({**good, "type": "upload_ack"}).encode(): "expected a message of type",
        json.dumps({**good, "version": 1}).encode(): "version 1 is not supported",
        json.dumps({**good, "extra": 1}).encode(): "unknown fields ['extra']",
        json.dumps({"type": "error", "code": "c"}).encode(): "missing field 'message'",
        json.dumps({**good, "code": 5}).encode(): "expected str",
    }
    for body, words in cases.items():
        with pytest.raises(ProtocolError, match=words.replace("[", r"\[").replace("]", r"\]")):
            decode(body, ErrorBody)
    with pytest.raises(ProtocolError, match="hex"):
        decode(json.dumps({"type": "server_key", "public_key": "zz"}).encode(), ServerKey)
    with pytest.raises(ProtocolError):
        encode(object())


def test_the_announcement_builds_the_same_parameters_on_both_sides():
    ann = RoundAnnouncement(7, 100, 4, 10, 6, "complete", None, 1.0, 0.5, 6, 3, "advertise_keys", 1e9,
                            colluders=1)
    config = ann.secagg_config()
    assert (config.threshold, config.round_id, config.colluders) == (6, 7, 1)
    assert ann.noise().per_client_std == pytest.approx(0.5 / 6**0.5)
    fp = ann.fixed_point()
    assert (fp.max_clients, fp.dimension, fp.noise_multiplier, fp.min_survivors) == (10, 100, 0.5, 6)
