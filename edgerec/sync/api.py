"""Typed calls to the coordinating server over a :class:`~edgerec.sync.Transport`.

::

    api = ServerApi(HttpxTransport("http://127.0.0.1:8000"))
    identity = api.enrol(token, new_identity_key())          # once; keep identity in the app
    api = ServerApi(transport, identity.credential, on_upload=ledger_hook)
    announcement = api.current_round()                       # None: no round for this device

A waiting device uses the ``poll_*`` forms instead, which say "not yet" as a :class:`NotYet`
carrying the server's ``Retry-After`` (how long to wait before asking again; the server sizes
it so that a whole cohort's polls stay within its budget)::

    answer = api.poll_message(round_id, Stage.SHARE_KEYS)   # ServerMessage | NotYet

Every body that leaves the device goes through ``on_upload(kind, body)`` first (kinds are the
privacy ledger's: ``enrol``, ``advertise_keys``, ``share_keys``, ``masked_input``, ``unmask``);
if the hook raises, nothing is sent. Error answers raise :class:`ServerRejectedError` (with the
answer's ``Retry-After`` as ``retry_after``; 410 on a round raises
:class:`edgerec.secagg.RoundAbortedError`); no answer raises :class:`TransportError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar
from urllib.parse import quote

from .._exceptions import ProtocolError, RoundAbortedError, ServerRejectedError
from ..secagg import ClientMessage, ServerMessage, Stage, crypto
from ..secagg.messages import CLIENT_MESSAGE_STAGE, SERVER_MESSAGE_STAGE
from . import codec
from .messages import (
    DOWNLOAD_NAMES,
    OUTCOME,
    UPLOAD_KINDS,
    CertificateAnswer,
    EnrolRequest,
    EnrolResponse,
    ErrorBody,
    RolloutAnswer,
    RoundAnnouncement,
    RoundStatus,
    ServerKey,
    UploadAck,
    enrol_proof_bytes,
)
from .retry import parse_retry_after
from .transport import Response, Transport

__all__ = ["BundleDownload", "DeviceIdentity", "NotYet", "ServerApi", "UploadHook",
           "new_identity_key"]

UploadHook = Callable[[str, bytes], None]
T = TypeVar("T")


def new_identity_key(rng: Callable[[int], bytes] | None = None) -> bytes:
    """A fresh raw Ed25519 private key (32 bytes) for a device; ``rng`` defaults to the OS."""
    import os

    return crypto.ed25519_private(rng or os.urandom)


@dataclass(frozen=True)
class DeviceIdentity:
    """What an enrolled device keeps (secretly): its id, identity private key and credential,
    and its enrolment certificate (public; empty until the authority has signed it)."""

    device_id: int
    identity_key: bytes
    credential: str
    certificate: bytes = b""

    @property
    def public_key(self) -> bytes:
        """The raw Ed25519 public key the server registered."""
        return crypto.ed25519_public(self.identity_key)


@dataclass(frozen=True)
class BundleDownload:
    """A signed bundle archive as served, with its ETag and model version (verify before use)."""

    archive: bytes
    etag: str
    model_version: int


@dataclass(frozen=True)
class NotYet:
    """The server's "not yet": what was asked for is not ready; ask again later.

    ``retry_after`` is the server's ``Retry-After`` in seconds (None: it sent none), a hint a
    device follows with jitter (``SyncTimeouts.pause``).
    """

    retry_after: float | None = None


class ServerApi:
    """The server's HTTP API, one method per route a device uses."""

    def __init__(self, transport: Transport, credential: str | None = None, *,
                 on_upload: UploadHook | None = None, hold: float = 0.0) -> None:
        """``hold``: seconds a poll may be held open by the server until there is something to
        answer (``Prefer: wait``, RFC 7240; long polling). Keep it below the transport's
        request timeout; 0 asks for an immediate answer."""
        self.transport, self.credential, self.on_upload = transport, credential, on_upload
        self.hold = max(0.0, float(hold))

    # -- enrolment and keys ------------------------------------------------------------------
    def enrol(self, token: str, identity_key: bytes) -> DeviceIdentity:
        """Register ``identity_key``'s public half with an operator's token; returns the identity."""
        public = crypto.ed25519_public(identity_key)
        proof = crypto.sign(identity_key, enrol_proof_bytes(token, public))
        body = codec.encode(EnrolRequest(token, public, proof))
        answer = self._send("POST", "/v1/enrol", body, "enrol", {"Content-Type": codec.JSON})
        response = self._decode(answer, EnrolResponse)
        return DeviceIdentity(response.device_id, identity_key, response.credential,
                              response.certificate)

    def certificate(self) -> bytes:
        """This device's enrolment certificate (empty if the authority has not signed it yet)."""
        return self._decode(self._get("/v1/certificate"), CertificateAnswer).certificate

    def public_key(self) -> bytes:
        """The server's bundle-signing key as it says it is (pin the real one in the app)."""
        return self._decode(self._get("/v1/public-key"), ServerKey).public_key

    # -- rounds ------------------------------------------------------------------------------
    def current_round(self) -> RoundAnnouncement | None:
        """The round this device may take part in now, or None."""
        found = self.poll_round()
        return None if isinstance(found, NotYet) else found

    def poll_round(self) -> RoundAnnouncement | NotYet:
        """The round this device may take part in now (or is in: its stage and deadline are the
        current ones), or :class:`NotYet` with the server's hint for when to ask again."""
        answer = self._get("/v1/rounds/current")
        if answer.status == 204:
            return NotYet(parse_retry_after(answer.headers))
        return self._decode(answer, RoundAnnouncement)

    def round_status(self, round_id: int) -> RoundStatus:
        """Where round ``round_id`` is (open, done with a model version, or aborted)."""
        return self._decode(self._get(f"/v1/rounds/{int(round_id)}"), RoundStatus)

    def poll_outcome(self, round_id: int) -> RoundStatus | NotYet:
        """Round ``round_id``'s final status (done or aborted), or :class:`NotYet` while it is
        open (with the answer's ``Retry-After``, if the server sent one)."""
        answer = self._poll(f"/v1/rounds/{int(round_id)}")
        status = self._decode(answer, RoundStatus)
        return NotYet(parse_retry_after(answer.headers)) if status.state == "open" else status

    def upload(self, round_id: int, message: ClientMessage) -> UploadAck:
        """Send one signed secure-aggregation message (an exact resend is acknowledged again)."""
        return self._decode(self._upload(round_id, message, None), UploadAck)

    def upload_then(self, round_id: int, message: ClientMessage) -> ServerMessage | RoundStatus | None:
        """:meth:`upload`, asking the server to hold its answer (up to ``hold`` seconds) until
        what this device fetches next is ready, and to answer with that: the server message of
        the next stage, or after the last stage the round's final status. One request where an
        upload and a poll were two. None: the server answered with the ack (nothing ready in
        the hold, a server that does not hold uploads, or ``hold`` 0): poll as usual."""
        stage = CLIENT_MESSAGE_STAGE[type(message)]
        if int(self.hold) <= 0:
            self.upload(round_id, message)
            return None
        then = DOWNLOAD_NAMES.get(Stage(stage + 1), OUTCOME) if stage < Stage.UNMASK else OUTCOME
        answer = self._upload(round_id, message, then)
        if answer.status == 202:
            self._decode(answer, UploadAck)
            return None
        if then == OUTCOME:
            status = self._decode(answer, RoundStatus)
            if status.state == "open":
                raise ProtocolError("the held upload answered an open round's status")
            return status
        self._check(answer)
        found = codec.decode_secagg(answer.body)
        if SERVER_MESSAGE_STAGE.get(type(found)) != Stage(stage + 1):
            raise ProtocolError(f"the upload's answer is a {type(found).__name__}, not the "
                                f"{then} asked for")
        return found  # type: ignore[return-value]

    def _upload(self, round_id: int, message: ClientMessage, then: str | None) -> Response:
        kind = UPLOAD_KINDS[CLIENT_MESSAGE_STAGE[type(message)]]
        body = codec.encode_secagg(message)
        path, headers = f"/v1/rounds/{int(round_id)}/messages", {"Content-Type": codec.OCTETS}
        if then is not None:
            path, headers["Prefer"] = f"{path}?then={then}", f"wait={int(self.hold)}"
        return self._send("POST", path, body, kind, headers)

    def download(self, round_id: int, stage: Stage) -> ServerMessage | None:
        """The server's message that opens client ``stage`` for this device; None: not yet."""
        message = self.poll_message(round_id, stage)
        return None if isinstance(message, NotYet) else message

    def poll_message(self, round_id: int, stage: Stage) -> ServerMessage | NotYet:
        """The server's message that opens client ``stage`` for this device, or
        :class:`NotYet` (the stage before is still collected) with the server's hint."""
        path = f"/v1/rounds/{int(round_id)}/messages/{DOWNLOAD_NAMES[Stage(stage)]}"
        answer = self._poll(path)
        if answer.status == 204:
            return NotYet(parse_retry_after(answer.headers))
        self._check(answer)
        message = codec.decode_secagg(answer.body)
        if SERVER_MESSAGE_STAGE.get(type(message)) != stage:
            raise ProtocolError(f"{path} answered a {type(message).__name__}")
        return message  # type: ignore[return-value]

    # -- models ------------------------------------------------------------------------------
    def latest_bundle(self, etag: str | None = None) -> BundleDownload | None:
        """The newest signed bundle archive; None if it still has ``etag`` (not modified)."""
        headers = {"If-None-Match": etag} if etag else {}
        answer = self._request("GET", "/v1/models/latest", None, headers)
        if answer.status == 304:
            return None
        self._check(answer)
        try:
            version = int(answer.headers.get("x-edgerec-model-version", ""))
        except ValueError:
            raise ProtocolError("the bundle answer has no model version header") from None
        return BundleDownload(answer.body, answer.headers.get("etag", ""), version)

    def bundle(self, version: int) -> BundleDownload:
        """The signed bundle archive of model ``version`` (an evaluation round's candidate).

        ``model_version`` is the version asked for: the unsigned header is not read, and the
        caller verifies the archive's signed version itself."""
        answer = self._get(f"/v1/models/{int(version)}")
        self._check(answer)
        return BundleDownload(answer.body, answer.headers.get("etag", ""), int(version))

    def rollout(self) -> RolloutAnswer | None:
        """The server's newest signed rollout statement (verify it before use), or None when
        it has none (204; 404 from a server that predates rollouts)."""
        answer = self._get("/v1/rollout")
        if answer.status in (204, 404):
            return None
        return self._decode(answer, RolloutAnswer)

    # -- plumbing ----------------------------------------------------------------------------
    def _get(self, path: str) -> Response:
        return self._request("GET", path, None, {})

    def _poll(self, path: str) -> Response:
        # A server that long-polls answers as soon as the round moves on, within the hold.
        headers = {"Prefer": f"wait={int(self.hold)}"} if int(self.hold) > 0 else {}
        return self._request("GET", path, None, headers)

    def _send(self, method: str, path: str, body: bytes, kind: str, headers: dict) -> Response:
        if self.on_upload is not None:
            self.on_upload(kind, body)  # e.g. the privacy ledger; raising here sends nothing
        return self._request(method, path, body, headers)

    def _request(self, method: str, path: str, body: bytes | None, headers: dict) -> Response:
        if self.credential:
            headers = {**headers, "Authorization": f"Bearer {self.credential}"}
        where, _, query = path.partition("?")  # a query is ours: names and numbers, not quoted
        return self.transport.request(method, quote(where) + (f"?{query}" if query else ""),
                                      body=body, headers=headers)

    def _decode(self, answer: Response, cls: type[T]) -> T:
        self._check(answer)
        return codec.decode(answer.body, cls)

    @staticmethod
    def _check(answer: Response) -> None:
        if answer.status < 400:
            return
        try:
            error = codec.decode(answer.body, ErrorBody)
            code, message = error.code, error.message
        except ProtocolError:
            code, message = "http_error", answer.body[:200].decode("utf-8", "replace")
        if answer.status == 410:
            raise RoundAbortedError(message)
        raise ServerRejectedError(answer.status, code, message,
                                  retry_after=parse_retry_after(answer.headers))
