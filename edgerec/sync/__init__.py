"""The device <-> server protocol: messages, their bytes, HTTP transport, a round participant,
and signed bundle transport. The device's sync (``client.py``'s :class:`SyncSession`:
fine-tuning, ledger, retries, conditions; ``rec.sync(...)``) is built on these pieces; the
server (``edgerec_server``) speaks the same messages. Its timing is one frozen
:class:`SyncTimeouts` (polling, waits, :class:`Backoff`), its clocks, sleep and randomness one
:class:`SyncRuntime`; its errors are edgerec's own (``edgerec._exceptions``), exported here.

A device's round, in short::

    from edgerec.sync import HttpxTransport, RoundParticipant, ServerApi, new_identity_key

    transport = HttpxTransport("http://127.0.0.1:8000")
    identity = ServerApi(transport).enrol(token, new_identity_key())      # once, then keep it
    api = ServerApi(transport, identity.credential, on_upload=record_in_ledger)
    announcement = api.current_round()                                     # or None
    if announcement:
        outcome = RoundParticipant(api, identity, announcement, delta).run()
    download = api.latest_bundle(etag=current_etag)                        # None: unchanged
    if download:
        install_bundle(download.archive, "model-bundle/", public_key=PINNED_KEY)

HTTP routes (all under the server's base URL; ``Authorization: Bearer <credential>``):
``POST /v1/enrol`` (JSON), ``GET /v1/rounds/current``, ``GET /v1/rounds/{id}``,
``POST /v1/rounds/{id}/messages`` (secagg wire bytes), ``GET /v1/rounds/{id}/messages/{name}``
(``key_list``, ``forwarded_shares``, ``consistency_request``, ``unmask_request``; 204 with
``Retry-After`` while not ready, 410 if aborted), ``GET /v1/certificate`` (the device's
enrolment certificate), ``GET /v1/models/latest`` (zip; ETag / If-None-Match),
``GET /v1/models/{version}`` (one version: an evaluation round's candidate),
``GET /v1/public-key``. "Not yet" answers and 429/503 may carry ``Retry-After`` (seconds),
which devices follow with jitter.
"""

from __future__ import annotations

from .._exceptions import (
    BundleRollbackError,
    ProtocolError,
    RolloutRefusedError,
    RoundRefusedError,
    ServerRejectedError,
    SyncError,
    TransportError,
)
from .api import BundleDownload, DeviceIdentity, NotYet, ServerApi, UploadHook, new_identity_key
from .bundles import install_bundle, pack_bundle, verify_archive
from .client import SyncConditions, SyncResult, SyncSession, SyncStatus
from .codec import decode, decode_secagg, encode, encode_secagg
from .messages import (
    DOWNLOAD_NAMES,
    EVALUATION,
    OUTCOME,
    PROTOCOL_VERSION,
    ROUND_KINDS,
    TRAINING,
    UPLOAD_KINDS,
    CertificateAnswer,
    EnrolRequest,
    EnrolResponse,
    ErrorBody,
    EvalAnnouncement,
    RolloutAnswer,
    RoundAnnouncement,
    RoundStatus,
    ServerKey,
    UploadAck,
    enrol_proof_bytes,
)
from .participant import ParticipationResult, RoundParticipant
from .policy import RoundPolicy
from .retry import Backoff
from .runtime import SyncRuntime
from .timeouts import SyncTimeouts
from .transport import HttpxTransport, RecordingTransport, Response, Transport

__all__ = [
    "DOWNLOAD_NAMES",
    "EVALUATION",
    "OUTCOME",
    "PROTOCOL_VERSION",
    "ROUND_KINDS",
    "TRAINING",
    "UPLOAD_KINDS",
    "Backoff",
    "BundleDownload",
    "BundleRollbackError",
    "CertificateAnswer",
    "DeviceIdentity",
    "EnrolRequest",
    "EnrolResponse",
    "ErrorBody",
    "EvalAnnouncement",
    "HttpxTransport",
    "NotYet",
    "ParticipationResult",
    "ProtocolError",
    "RecordingTransport",
    "Response",
    "RolloutAnswer",
    "RolloutRefusedError",
    "RoundAnnouncement",
    "RoundParticipant",
    "RoundPolicy",
    "RoundRefusedError",
    "RoundStatus",
    "ServerApi",
    "ServerKey",
    "ServerRejectedError",
    "SyncConditions",
    "SyncError",
    "SyncResult",
    "SyncRuntime",
    "SyncSession",
    "SyncStatus",
    "SyncTimeouts",
    "Transport",
    "TransportError",
    "UploadAck",
    "UploadHook",
    "decode",
    "decode_secagg",
    "encode",
    "encode_secagg",
    "enrol_proof_bytes",
    "install_bundle",
    "new_identity_key",
    "pack_bundle",
    "verify_archive",
]
