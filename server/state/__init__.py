"""Server state: the ``StateBackend`` interface, the embedded SQLite backend and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from .base import (
    DeviceRecord,
    EvaluationRecord,
    EventRecord,
    ModelRecord,
    OperatorTokenRecord,
    RolloutRecord,
    RoundRecord,
    StageMessage,
    StateBackend,
    TokenRecord,
)
from .postgres import PostgresBackend, is_postgres_url
from .sqlite import SCHEMA_VERSION, SqliteBackend

__all__ = ["SCHEMA_VERSION", "DeviceRecord", "EvaluationRecord", "EventRecord", "ModelRecord",
           "OperatorTokenRecord", "PostgresBackend", "RolloutRecord", "RoundRecord", "SqliteBackend", "StageMessage",
           "StateBackend", "TokenRecord", "open_state"]


def open_state(database: str, sqlite_path: Path) -> StateBackend:
    """PostgreSQL when ``database`` is a ``postgresql://`` URL, else the SQLite file
    ``sqlite_path`` (the embedded default)."""
    if is_postgres_url(database):
        return PostgresBackend(database)
    return SqliteBackend(sqlite_path)
