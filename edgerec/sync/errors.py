"""Errors of the device <-> server protocol (``edgerec.sync``), all under ``EdgeRecError``.

::

    EdgeRecError
    └── SyncError                 talking to the coordinating server failed
        ├── ProtocolError         bytes that do not decode into a protocol message (either side)
        ├── TransportError        no HTTP answer at all: connection refused, timeout, reset
        └── ServerRejectedError   the server answered with an error status (``status``, ``code``)

A round the server aborted surfaces as :class:`edgerec.secagg.RoundAbortedError`, and a server
message the device refuses as a :class:`edgerec.secagg.MessageRejectedError` subclass.
(These could move into ``edgerec/_exceptions.py``; they live here to keep the package
self-contained.)
"""

from __future__ import annotations

from .._exceptions import EdgeRecError

__all__ = ["ProtocolError", "ServerRejectedError", "SyncError", "TransportError"]


class SyncError(EdgeRecError):
    """Base class of the protocol's errors."""


class ProtocolError(SyncError, ValueError):
    """A body does not decode into the protocol message it should be."""


class TransportError(SyncError):
    """The request got no HTTP answer (connection refused, timeout, reset). Safe to retry."""


class ServerRejectedError(SyncError):
    """The server answered with an error status.

    Attributes:
        status: the HTTP status (401 unknown/expired credentials, 403 revoked or not allowed,
            404, 409 conflict, 410 round gone, 413 too large, 4xx bad input, 5xx server side).
        code: the server's short machine-readable error code (e.g. ``"unauthorized"``).
        message: the server's human-readable explanation.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
