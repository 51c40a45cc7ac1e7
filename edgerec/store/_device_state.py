"""Device-level key/value state in the store's SQLite file (the personal adapter, credentials)."""

from __future__ import annotations

import sqlite3
from typing import NamedTuple

from .._exceptions import ConfigError, StoreError
from ._schema import STATE_TABLE
from ._store import InteractionStore

__all__ = ["DeviceState", "StateValue"]


class StateValue(NamedTuple):
    value: bytes
    model_version: int | None
    updated: float


def _check_key(key: object) -> str:
    # Keys are the SDK's own constants; refuse anything SQLite could not bind (lone surrogates).
    if not isinstance(key, str) or not key or not key.isprintable():
        raise ConfigError(f"a device state key must be a non-empty printable str, got {key!r}")
    return key


class DeviceState:
    """Named blobs that belong to the device, not to a user; each write is its own transaction.

    Writes queue on the store's write lock like every other write (inside ``transaction()``
    they join it); reads take no lock.
    """

    def __init__(self, store: InteractionStore):
        self._store = store

    def get(self, key: str) -> StateValue | None:
        """The value stored under ``key``, None if there is none."""
        _check_key(key)
        try:
            rows = self._store.db.execute(
                f"SELECT value, model_version, updated FROM {STATE_TABLE} WHERE key = ?", [key]).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"reading device state {key!r} failed: {exc}") from exc
        return None if not rows else StateValue(bytes(rows[0][0]), rows[0][1], rows[0][2])

    def put(self, key: str, value: bytes, *, model_version: int | None, now: float) -> None:
        """Store ``value`` under ``key`` (replacing any), tagged with the model it fits."""
        _check_key(key)
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise ConfigError(f"a device state value must be bytes, got {type(value).__name__}")
        # _writing translates sqlite3 errors into StoreError naming what failed.
        with self._store._writing(f"writing device state {key!r}") as conn:
            conn.execute(
                f"INSERT INTO {STATE_TABLE} (key, value, model_version, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "model_version = excluded.model_version, updated = excluded.updated",
                [key, bytes(value), model_version, now])

    def delete(self, key: str) -> bool:
        """Remove ``key``; True if it was there."""
        _check_key(key)
        with self._store._writing(f"deleting device state {key!r}") as conn:
            return conn.execute(f"DELETE FROM {STATE_TABLE} WHERE key = ?", [key]).rowcount > 0
