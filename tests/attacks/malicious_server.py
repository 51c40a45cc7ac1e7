"""A lying coordinating server on 127.0.0.1, for the attack tests (``malicious_server``).

It speaks the device API over real HTTP (a threaded ``http.server``), so real devices
(``edgerec.open`` + ``SyncSession`` over ``HttpxTransport``) talk to it exactly as they would to
``edgerec-server``; what it answers is up to a :class:`Script`, which is where each test puts
its attack. Everything a device uploads is kept (decoded) in ``received``.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edgerec.secagg import Stage, crypto, decode, encode
from edgerec.secagg.messages import CLIENT_MESSAGE_STAGE
from edgerec.sync import (DOWNLOAD_NAMES, UPLOAD_KINDS, CertificateAnswer, EnrolRequest, EnrolResponse,
                          ErrorBody, RoundAnnouncement, RoundStatus, ServerKey, UploadAck)
from edgerec.sync import codec

_STAGE_OF = {name: stage for stage, name in DOWNLOAD_NAMES.items()}
_CREDENTIAL = re.compile(r"^Bearer d(\d+)\.(\w+)$")


@dataclass
class Script:
    """What the lying server answers. Subclass and override; the defaults are inert.

    ``certify(device_id, identity_key) -> bytes`` is how the server gets certificates for real
    devices (from the operator's authority, which the server does not hold when it is offline).
    """

    signing_key: bytes = field(default_factory=lambda: crypto.ed25519_private(__import__("os").urandom))
    certify: Any = None
    devices: dict[int, bytes] = field(default_factory=dict)  # device id -> identity key
    received: list[tuple[int, Any]] = field(default_factory=list)

    def enrol(self, request: EnrolRequest) -> EnrolResponse:
        device_id = len(self.devices) + 1
        self.devices[device_id] = request.identity_key
        cert = self.certify(device_id, request.identity_key) if self.certify else b""
        return EnrolResponse(device_id, f"d{device_id}.secretsecretsecretsecret",
                             crypto.ed25519_public(self.signing_key), None, cert)

    def announcement(self, device_id: int) -> RoundAnnouncement | None:
        return None

    def download(self, device_id: int, round_id: int, stage: Stage) -> bytes | None:
        return None

    def upload(self, device_id: int, round_id: int, message: Any) -> None:
        self.received.append((device_id, message))

    def status(self, device_id: int, round_id: int) -> RoundStatus:
        return RoundStatus(round_id, "aborted", "aborted", 0, reason="the attacker gave up")


def announcement(**overrides: Any) -> RoundAnnouncement:
    """A plausible announcement (5 devices, complete graph, t = 4, z = 1) with ``overrides``."""
    import time

    fields = dict(round_id=1, vector_length=0, min_participants=5, max_participants=5, threshold=4,
                  graph="complete", degree=None, clip=1.0, noise_multiplier=1.0, min_survivors=4,
                  base_model_version=1, stage="advertise_keys", stage_deadline=time.time() + 300,
                  sampling_rate=1.0, population=5)
    return RoundAnnouncement(**(fields | overrides))


class MaliciousServer:
    """``with MaliciousServer(script) as server: ... server.url``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        handler = type("Handler", (_Handler,), {"script": script})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> MaliciousServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    script: Script

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def _route(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        body = self.rfile.read(int(self.headers.get("content-length") or 0)) if method == "POST" else b""
        s = self.script
        if path == "/v1/enrol" and method == "POST":
            return self._json(201, s.enrol(codec.decode(body, EnrolRequest)))
        if path == "/v1/public-key":
            return self._json(200, ServerKey(crypto.ed25519_public(s.signing_key)))
        if path.startswith("/v1/models/"):
            return self._json(404, ErrorBody("not_found", "no model"))
        device = self._device()
        if device is None:
            return self._json(401, ErrorBody("unauthorized", "no credential"))
        if path == "/v1/certificate":
            cert = s.certify(device, s.devices[device]) if s.certify else b""
            return self._json(200, CertificateAnswer(cert))
        if path == "/v1/rounds/current":
            ann = s.announcement(device)
            return self._empty(204) if ann is None else self._json(200, ann)
        match = re.fullmatch(r"/v1/rounds/(\d+)(/messages(?:/(\w+))?)?", path)
        if match is None:
            return self._json(404, ErrorBody("not_found", path))
        round_id = int(match.group(1))
        if match.group(2) is None:
            return self._json(200, s.status(device, round_id))
        if method == "POST":
            message = decode(body)
            s.upload(device, round_id, message)
            kind = UPLOAD_KINDS[CLIENT_MESSAGE_STAGE[type(message)]]
            return self._json(202, UploadAck(round_id, kind))
        answer = s.download(device, round_id, _STAGE_OF[match.group(3)])
        if answer is None:
            return self._empty(204)
        self._send(200, answer, codec.OCTETS)

    def _device(self) -> int | None:
        match = _CREDENTIAL.match(self.headers.get("authorization", ""))
        return int(match.group(1)) if match else None

    def _json(self, status: int, message: Any) -> None:
        self._send(status, codec.encode(message), codec.JSON)

    def _empty(self, status: int) -> None:
        self._send(status, b"", codec.JSON)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


__all__ = ["MaliciousServer", "Script", "announcement", "encode"]
