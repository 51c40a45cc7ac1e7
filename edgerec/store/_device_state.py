"""Device-level key/value state in the store's SQLite file (the personal adapter, credentials)."""

from __future__ import annotations

import sqlite3
from typing import NamedTuple

from .._exceptions import StoreError
from ._schema import STATE_TABLE
from ._store import InteractionStore

__all__ = ["DeviceState", "StateValue"]


class StateValue(NamedTuple):
    value: bytes
    model_version: int | None
    updated: float


class DeviceState:
    """Named blobs that belong to the device, not to a user; each write is its own transaction."""

    def __init__(self, store: InteractionStore):
        self._store = store

    def get(self, key: str) -> StateValue | None:
        try:
            row = self._store.db.execute(
                f"SELECT value, model_version, updated FROM {STATE_TABLE} WHERE key = ?", [key]).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"reading device state {key!r} failed: {exc}") from exc
        return None if row is None else StateValue(bytes(row[0]), row[1], row[2])

    def put(self, key: str, value: bytes, *, model_version: int | None, now: float) -> None:
        try:
            self._store.db.execute(
                f"INSERT INTO {STATE_TABLE} (key, value, model_version, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "model_version = excluded.model_version, updated = excluded.updated",
                [key, bytes(value), model_version, now])
        except sqlite3.Error as exc:
            raise StoreError(f"writing device state {key!r} failed: {exc}") from exc

    def delete(self, key: str) -> bool:
        try:
            return self._store.db.execute(f"DELETE FROM {STATE_TABLE} WHERE key = ?", [key]).rowcount > 0
        except sqlite3.Error as exc:
            raise StoreError(f"deleting device state {key!r} failed: {exc}") from exc
