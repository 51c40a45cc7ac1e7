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
    │   └── BundleSignatureError the manifest signature does not verify
    ├── ScoringError             onnxruntime failed to score (wraps its exception)
    ├── ConfigError              (also ValueError) an option is out of range or inconsistent
    ├── MissingDependencyError   (also ImportError) an optional dependency is not installed
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

Adapters translate foreign exceptions (sqlite3, onnxruntime, ...) into these, keeping the
original as ``__cause__``.

One warning (``warnings`` module), not an error: ``UnknownItemWarning`` (a UserWarning), an
event was stored for an item the installed model does not know.
"""

from __future__ import annotations


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
