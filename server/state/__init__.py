"""Server state: the ``StateBackend`` interface and the embedded SQLite backend."""

from __future__ import annotations

from .base import (
    DeviceRecord,
    EventRecord,
    ModelRecord,
    RoundRecord,
    StageMessage,
    StateBackend,
    TokenRecord,
)
from .sqlite import SCHEMA_VERSION, SqliteBackend

__all__ = ["SCHEMA_VERSION", "DeviceRecord", "EventRecord", "ModelRecord", "RoundRecord",
           "SqliteBackend", "StageMessage", "StateBackend", "TokenRecord"]
