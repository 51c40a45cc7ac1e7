"""``ServerApi.upload_then``: the answer of a held upload is checked as a poll's would be. A
server (or a network) that answers with something else than what was asked for gets a
``ProtocolError``, never a message of another stage; the ack means "poll as usual". Unit
tests of the client code around a transport (a fake one: the real server is in
tests/server/test_long_poll.py)."""

from __future__ import annotations

import pytest

from edgerec.secagg.messages import AdvertiseKeys, UnmaskResponse
from edgerec import EdgeRecError
from edgerec.secagg import Stage
from edgerec.sync import ProtocolError, Response, RoundStatus, ServerApi, UploadAck, codec

ADVERT = AdvertiseKeys(7, 3, b"\x01" * 32, b"\x02" * 32, b"", b"\x00" * 64)
UNMASK = UnmaskResponse(7, 3, ((1, 5),), ((2, 6),), b"\x00" * 64)


class _Answering:
    """Answers every request with one canned response and keeps what was asked."""

    def __init__(self, answer: Response) -> None:
        self.answer, self.asked = answer, []

    def request(self, method, path, *, body=None, headers=None):  # type: ignore[no-untyped-def]
        self.asked.append((method, path, dict(headers or {})))
        return self.answer


def _ack() -> Response:
    return Response(202, {"content-type": codec.JSON}, codec.encode(UploadAck(7, "advertise_keys")))


def test_the_upload_asks_for_the_next_stage_and_an_ack_means_poll_as_usual():
    transport = _Answering(_ack())
    api = ServerApi(transport, "d3.secret", hold=20)
    assert api.upload_then(7, ADVERT) is None
    method, path, headers = transport.asked[-1]
    assert (method, path) == ("POST", "/v1/rounds/7/messages?then=key_list")
    assert headers["Prefer"] == "wait=20"


def test_without_a_hold_nothing_is_asked_for():
    transport = _Answering(_ack())
    assert ServerApi(transport, "d3.secret").upload_then(7, ADVERT) is None
    assert transport.asked[-1][1] == "/v1/rounds/7/messages"
    assert "Prefer" not in transport.asked[-1][2]


def test_an_answer_that_is_not_a_server_message_fails_as_the_same_poll_would():
    garbage = Response(200, {"content-type": codec.OCTETS}, b"\x00garbage")
    api = ServerApi(_Answering(garbage), "d3.secret", hold=20)
    with pytest.raises(EdgeRecError) as polled:
        api.poll_message(7, Stage.SHARE_KEYS)
    with pytest.raises(type(polled.value)):
        api.upload_then(7, ADVERT)


def test_an_open_status_for_the_outcome_is_a_protocol_error_and_a_final_one_is_returned():
    def status(state: str) -> Response:
        body = codec.encode(RoundStatus(7, state, "unmask" if state == "open" else "done", 4))
        return Response(200, {"content-type": codec.JSON}, body)

    api = ServerApi(_Answering(status("open")), "d3.secret", hold=20)
    with pytest.raises(ProtocolError, match="open round"):
        api.upload_then(7, UNMASK)
    transport = _Answering(status("done"))
    found = ServerApi(transport, "d3.secret", hold=20).upload_then(7, UNMASK)
    assert isinstance(found, RoundStatus) and found.state == "done"
    assert transport.asked[-1][1] == "/v1/rounds/7/messages?then=outcome"


def test_a_message_of_another_stage_than_the_one_asked_for_is_refused():
    """A lying server answers the advert's held upload (asking for the key list) with the
    survivor set of a later stage: refused, never handed to the next step."""
    from edgerec.secagg.messages import ConsistencyRequest
    from edgerec.sync import encode_secagg

    later = Response(200, {"content-type": codec.OCTETS},
                     encode_secagg(ConsistencyRequest(7, 3, (1, 2, 3))))
    with pytest.raises(ProtocolError, match="not the key_list asked for"):
        ServerApi(_Answering(later), "d3.secret", hold=20).upload_then(7, ADVERT)
