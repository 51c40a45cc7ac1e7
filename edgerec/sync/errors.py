"""The protocol's errors, kept importable from here; they live in ``edgerec._exceptions`` (one
exceptions module for the package, its tree drawn in that docstring) and print as
``edgerec.sync.<Name>``. Import them from :mod:`edgerec.sync`.
"""

from __future__ import annotations

from .._exceptions import (
    ProtocolError,
    RoundRefusedError,
    ServerRejectedError,
    SyncError,
    TransportError,
)

__all__ = ["ProtocolError", "RoundRefusedError", "ServerRejectedError", "SyncError",
           "TransportError"]
