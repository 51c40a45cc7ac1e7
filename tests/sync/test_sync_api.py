"""ServerApi over a stub transport: routes, headers, the upload hook, error mapping."""

from __future__ import annotations

import httpx
import pytest

from edgerec.secagg import RoundAbortedError, Stage, crypto
from edgerec.sync import (
    EnrolResponse,
    ErrorBody,
    HttpxTransport,
    ProtocolError,
    RecordingTransport,
    Response,
    ServerApi,
    ServerRejectedError,
    TransportError,
    encode,
    enrol_proof_bytes,
    new_identity_key,
)
from edgerec.sync.codec import decode
from edgerec.sync.messages import EnrolRequest


class Stub:
    def __init__(self, *answers: Response) -> None:
        self.answers, self.seen = list(answers), []

    def request(self, method, path, *, body=None, headers=None):
        self.seen.append((method, path, body, dict(headers or {})))
        return self.answers.pop(0)


def test_enrol_signs_a_proof_and_records_the_upload_first():
    key = new_identity_key()
    uploads = []
    stub = Stub(Response(201, {}, encode(EnrolResponse(5, "d5.secret", bytes(32)))))
    identity = ServerApi(stub, on_upload=lambda kind, body: uploads.append((kind, body))).enrol("et_tok", key)
    assert identity.device_id == 5 and identity.credential == "d5.secret"
    method, path, body, headers = stub.seen[0]
    assert (method, path, headers["Content-Type"]) == ("POST", "/v1/enrol", "application/json")
    assert uploads == [("enrol", body)]
    request = decode(body, EnrolRequest)
    assert crypto.verify(request.identity_key, request.proof,
                         enrol_proof_bytes("et_tok", request.identity_key))


def test_a_hook_that_raises_sends_nothing():
    stub = Stub()

    def refuse(kind, body):
        raise RuntimeError("ledger full")

    with pytest.raises(RuntimeError):
        ServerApi(stub, on_upload=refuse).enrol("et_tok", new_identity_key())
    assert stub.seen == []


def test_errors_map_to_exceptions():
    api = ServerApi(Stub(Response(401, {}, encode(ErrorBody("unauthorized", "unknown credential"))),
                         Response(410, {}, encode(ErrorBody("round_aborted", "too few"))),
                         Response(502, {}, b"<html>bad gateway</html>"),
                         Response(204, {}, b""),
                         Response(200, {}, b"not a secagg message")), "d1.x")
    with pytest.raises(ServerRejectedError) as err:
        api.current_round()
    assert (err.value.status, err.value.code) == (401, "unauthorized")
    with pytest.raises(RoundAbortedError, match="too few"):
        api.download(3, Stage.SHARE_KEYS)
    with pytest.raises(ServerRejectedError) as gateway:
        api.round_status(3)
    assert gateway.value.status == 502 and "bad gateway" in gateway.value.message
    assert api.download(3, Stage.MASKED_INPUT) is None
    with pytest.raises(Exception):
        api.download(3, Stage.UNMASK)
    assert api.transport.seen[0][3]["Authorization"] == "Bearer d1.x"
    assert api.transport.seen[3][1] == "/v1/rounds/3/messages/forwarded_shares"


def test_httpx_transport_and_recording():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/down":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, headers={"ETag": '"x"'}, content=request.content[::-1])

    client = httpx.Client(transport=httpx.MockTransport(handler), base_url="http://test")
    recorder = RecordingTransport(HttpxTransport(client=client),
                                  tamper=lambda m, p, b: None if b is None else b.upper())
    answer = recorder.request("POST", "/echo", body=b"abc")
    assert (answer.status, answer.body, answer.headers["etag"]) == (200, b"CBA", '"x"')
    assert recorder.log[0][:3] == ("POST", "/echo", b"ABC")
    with pytest.raises(TransportError):
        recorder.request("GET", "/down")
    with pytest.raises(ProtocolError):
        ServerApi(Stub(Response(200, {}, b"{}"))).public_key()
