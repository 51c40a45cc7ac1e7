"""Every error edgerec raises on purpose. One base class so a host app can catch them all.

::

    EdgeRecError
    ├── InvalidEventError        (also ValueError) a logged event is malformed; nothing was written
    ├── StoreError               the on-device SQLite store failed or is unusable
    │   └── SchemaVersionError   the database was written by a newer edgerec
    ├── DatasetError             a dataset file is missing or malformed
    ├── BundleError              a model bundle cannot be used; the current one stays installed
    │   ├── BundleFormatError    unknown format version, missing file, malformed manifest
    │   ├── BundleIntegrityError a file's SHA-256 does not match the manifest
    │   ├── BundleSignatureError the manifest signature does not verify
    │   ├── BundleRollbackError  a validly signed bundle not newer than one installed (sync)
    │   └── RolloutRefusedError  a rollout statement that does not verify or is stale, or a
    │                            bundle version the newest statement rejects or does not allow
    ├── ScoringError             onnxruntime failed to score (wraps its exception)
    ├── ConfigError              (also ValueError) an option is out of range or inconsistent
    ├── MissingDependencyError   (also ImportError) an optional dependency is not installed
    ├── SyncError                talking to the coordinating server failed (edgerec.sync)
    │   ├── ProtocolError        (also ValueError) bytes that do not decode into a protocol message
    │   ├── TransportError       no HTTP answer at all: connection refused, timeout, reset
    │   ├── ServerRejectedError  the server answered with an error status (status, code, retry_after)
    │   └── RoundRefusedError    the device refuses a round outside the app's bounds or checks
    └── SecAggError              secure aggregation (edgerec.secagg)
        ├── RoundAbortedError    fewer than the threshold survived; nothing is revealed
        └── MessageRejectedError a protocol message was refused; the round goes on without it
            ├── BadSignatureError
            ├── WrongRoundError
            ├── ReplayError
            ├── WrongLengthError
            ├── DuplicateSenderError
            ├── OutOfStageError
            ├── UnknownSenderError     the sender is not enrolled (no identity key to check it by)
            ├── MalformedMessageError  bytes or fields that do not parse or do not fit the round
            ├── BadCiphertextError     an encrypted share fails authentication (tampered, redirected)
            ├── BadCertificateError    a peer's enrolment certificate is missing, expired or forged
            └── UnsafeRequestError     the server asked a device for more than the sum allows

Adapters translate foreign exceptions (sqlite3, onnxruntime, httpx, ...) into these, keeping
the original as ``__cause__``. Each prints as the public module an app imports it from
(``edgerec.ConfigError``, ``edgerec.sync.TransportError``, ``edgerec.secagg.ReplayError``), not
as this private module: see ``_PUBLIC_MODULES`` at the end.

One warning (``warnings`` module), not an error: ``UnknownItemWarning`` (a UserWarning), an
event was stored for an item the installed model does not know.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .bundle import Manifest


class EdgeRecError(Exception):
    """Base class of every error raised by edgerec."""


class InvalidEventError(EdgeRecError, ValueError):
    """A logged interaction is malformed. The whole call was rejected; nothing was written."""


class StoreError(EdgeRecError):
    """The interaction store could not complete an operation."""


class SchemaVersionError(StoreError):
    """The database schema is newer than this edgerec understands."""


class DatasetError(EdgeRecError):
    """A dataset could not be read: missing file, missing column, malformed row."""


class BundleError(EdgeRecError):
    """A model bundle cannot be used. Whatever bundle was installed before stays installed."""


class BundleFormatError(BundleError):
    """The bundle's format version is unknown, a file is missing, or the manifest is malformed."""


class BundleIntegrityError(BundleError):
    """A bundle file's SHA-256 does not match the manifest."""


class BundleSignatureError(BundleError):
    """The manifest's Ed25519 signature is missing or does not verify."""


class BundleRollbackError(BundleError):
    """A validly signed bundle that is not newer than the one this device has (a rollback).

    Attributes:
        manifest: the offered bundle's manifest (its signature verified).
        installed: the version it had to exceed (the highest this device ever installed).
    """

    def __init__(self, manifest: Manifest, installed: int) -> None:
        created = f", created {manifest.created_at}" if manifest.created_at else ""
        super().__init__(
            f"rollback refused: the server offered signed model {manifest.model_version}{created}, "
            f"which is not newer than model {installed} this device has installed")
        self.manifest, self.installed = manifest, installed


class RolloutRefusedError(BundleError):
    """The device refuses a rollout statement (unsigned, forged, malformed, older than one it
    has seen) or a bundle the newest valid statement does not allow for it (a rejected version,
    or not the version the statement assigns to this device). Nothing is installed."""


class ScoringError(EdgeRecError):
    """onnxruntime failed to score a request."""


class ConfigError(EdgeRecError, ValueError):
    """An option is out of range or inconsistent with the others."""


class MissingDependencyError(EdgeRecError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it.

    ``module`` is the import name that is missing (``"scipy"``), ``extra`` the edgerec extra to
    install (``"eval"`` for ``pip install 'edgerec[eval]'``).
    """

    def __init__(self, message: str, *, module: str, extra: str) -> None:
        super().__init__(message, name=module)
        self.module = module
        self.extra = extra


class UnknownItemWarning(UserWarning):
    """An event was logged for an item that is not in the installed bundle's catalogue.

    The event is stored (offline-first: a later bundle may know the item) and ``recommend()``
    ignores it until then. Issued once per item id and installed bundle.
    """


class SyncError(EdgeRecError):
    """Base class of the device <-> server protocol's errors (``edgerec.sync``)."""


class ProtocolError(SyncError, ValueError):
    """A body does not decode into the protocol message it should be."""


class TransportError(SyncError):
    """The request got no HTTP answer (connection refused, timeout, reset). Safe to retry."""


class ServerRejectedError(SyncError):
    """The server answered with an error status.

    Attributes:
        status: the HTTP status (401 unknown/expired credentials, 403 revoked or not allowed,
            404, 409 conflict, 410 round gone, 413 too large, 429 busy, 4xx bad input, 5xx
            server side).
        code: the server's short machine-readable error code (e.g. ``"unauthorized"``).
        message: the server's human-readable explanation.
        retry_after: the answer's ``Retry-After`` in seconds (None without one): how long the
            server asks to be left alone, mostly with 429 and 503.
    """

    def __init__(self, status: int, code: str, message: str, *,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after


class RoundRefusedError(SyncError):
    """The device refuses a round: its announcement or a server message breaks the app's bounds
    or the protocol's safety checks. Nothing more of this round leaves the device."""


class SecAggError(EdgeRecError):
    """Base class of secure-aggregation errors."""


class RoundAbortedError(SecAggError):
    """Fewer than the threshold of participants survived; the round ends revealing nothing."""


class MessageRejectedError(SecAggError):
    """A protocol message was refused. The round continues for everyone else."""


class BadSignatureError(MessageRejectedError):
    """A message's signature does not verify under the sender's identity key."""


class WrongRoundError(MessageRejectedError):
    """A message belongs to another round."""


class ReplayError(MessageRejectedError):
    """A message was already received once."""


class WrongLengthError(MessageRejectedError):
    """A vector or field has the wrong length."""


class DuplicateSenderError(MessageRejectedError):
    """Two different messages claim the same sender in one stage."""


class OutOfStageError(MessageRejectedError):
    """A message arrived in a stage that does not accept it."""


class UnknownSenderError(MessageRejectedError):
    """The sender is not enrolled, so there is no identity key to check its message by."""


class MalformedMessageError(MessageRejectedError):
    """The bytes do not parse (bad magic, version, type), or a field does not fit the round
    (unknown recipient, missing or extra share, a value out of range)."""


class BadCiphertextError(MessageRejectedError):
    """An encrypted share fails AEAD authentication: tampered, or redirected to another recipient."""


class BadCertificateError(MessageRejectedError):
    """A peer's enrolment certificate is missing, malformed, expired, for another device or key,
    or not signed by the enrolment authority the device pins: its keys cannot be trusted."""


class UnsafeRequestError(MessageRejectedError):
    """The server asked a device for something that could reveal more than the sum: both shares
    of one peer, too few survivors, a weaker graph or threshold than configured, or a view of the
    round that contradicts what the device has seen. The device refuses and answers nothing."""


# Tracebacks and reprs name a class by ``__module__``: set it to the public module each class is
# imported from (as httpx does), so users see ``edgerec.sync.TransportError`` and can import
# what they read. tests/test_exceptions.py checks that every path here imports the class itself.
_PUBLIC_MODULES: dict[str, tuple[type[BaseException], ...]] = {
    "edgerec": (EdgeRecError, InvalidEventError, StoreError, SchemaVersionError, DatasetError,
                BundleError, BundleFormatError, BundleIntegrityError, BundleSignatureError,
                ScoringError, ConfigError, MissingDependencyError, UnknownItemWarning),
    "edgerec.sync": (SyncError, ProtocolError, TransportError, ServerRejectedError,
                     RoundRefusedError, BundleRollbackError, RolloutRefusedError),
    "edgerec.secagg": (SecAggError, RoundAbortedError, MessageRejectedError, BadSignatureError,
                       WrongRoundError, ReplayError, WrongLengthError, DuplicateSenderError,
                       OutOfStageError, UnknownSenderError, MalformedMessageError,
                       BadCiphertextError, BadCertificateError, UnsafeRequestError),
}
for _module, _classes in _PUBLIC_MODULES.items():
    for _class in _classes:
        _class.__module__ = _module
del _module, _classes, _class
