"""The embedded state backend: one SQLite file (WAL, synchronous=FULL), stdlib ``sqlite3``.

Every public method runs in its own transaction and commits before returning, so whatever the
server acknowledges survives a SIGKILL (and, with ``synchronous=FULL``, a power loss). Several
processes may open the file at once (the server and the operator's CLI); writers wait on a
busy timeout. Foreign errors become ``StateError`` / ``ConflictError`` / ``ForbiddenError``.
"""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .._exceptions import ConflictError, ForbiddenError, StateError
from .base import DeviceRecord, EventRecord, ModelRecord, RoundRecord, StageMessage, TokenRecord

__all__ = ["SCHEMA_VERSION", "SqliteBackend"]

SCHEMA_VERSION = 2  # 2: devices.certificate; secagg stages renumbered (consistency check)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT, token_hash BLOB NOT NULL UNIQUE, created_at REAL NOT NULL,
    expires_at REAL NOT NULL, max_uses INTEGER NOT NULL, uses INTEGER NOT NULL DEFAULT 0,
    revoked_at REAL, note TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS devices (
    id INTEGER PRIMARY KEY AUTOINCREMENT, identity_key BLOB NOT NULL UNIQUE,
    credential_hash BLOB NOT NULL, enrolled_at REAL NOT NULL, expires_at REAL, revoked_at REAL,
    token_id INTEGER REFERENCES tokens(id), certificate BLOB);
CREATE TABLE IF NOT EXISTS rounds (
    id INTEGER PRIMARY KEY AUTOINCREMENT, params TEXT NOT NULL, state TEXT NOT NULL,
    stage INTEGER NOT NULL, stage_started_at REAL NOT NULL, opened_at REAL NOT NULL,
    closed_at REAL, seed BLOB NOT NULL, base_version INTEGER NOT NULL, out_version INTEGER,
    vector_length INTEGER NOT NULL, population INTEGER NOT NULL, participants INTEGER,
    survivors INTEGER, epsilon REAL, reason TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS round_members (
    round_id INTEGER NOT NULL REFERENCES rounds(id), device_id INTEGER NOT NULL REFERENCES devices(id),
    PRIMARY KEY (round_id, device_id));
CREATE TABLE IF NOT EXISTS stage_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, round_id INTEGER NOT NULL REFERENCES rounds(id),
    device_id INTEGER NOT NULL, stage INTEGER NOT NULL, sha256 BLOB NOT NULL, size INTEGER NOT NULL,
    body BLOB, accepted_at REAL NOT NULL, UNIQUE (round_id, device_id, stage));
CREATE TABLE IF NOT EXISTS models (
    version INTEGER PRIMARY KEY, parent INTEGER, created_at REAL NOT NULL, sha256 TEXT NOT NULL,
    round_id INTEGER, size INTEGER NOT NULL, archive BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS strategy_state (
    name TEXT PRIMARY KEY, step INTEGER NOT NULL, arrays BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
"""
_ROUND_COLS = ("id, params, state, stage, stage_started_at, opened_at, closed_at, seed, base_version,"
               " out_version, vector_length, population, participants, survivors, epsilon, reason")
_MSG_COLS = "seq, round_id, device_id, stage, sha256, size, body, accepted_at"
_MODEL_COLS = "version, parent, created_at, sha256, round_id, size"


class SqliteBackend:
    """:class:`~.base.StateBackend` over one SQLite file."""

    def __init__(self, path: str | Path, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), timeout=timeout_s, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            # Freed pages (message bodies purged after a round) are zeroed, not left behind.
            self._conn.execute("PRAGMA secure_delete=ON")
            self._migrate()
        except sqlite3.Error as exc:
            raise StateError(f"cannot open the state database {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        with self._tx() as c:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)
            row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise StateError(f"{self.path} has schema {row[0]}; this server knows {SCHEMA_VERSION}")
            elif int(row[0]) < 2:
                _to_v2(c)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"conflicts with the stored state: {exc}") from exc
            except sqlite3.Error as exc:
                raise StateError(f"state database error: {exc}") from exc

    def _one(self, sql: str, args: tuple = ()) -> Any:
        with self._tx() as c:
            return c.execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple = ()) -> list:
        with self._tx() as c:
            return c.execute(sql, args).fetchall()

    # -- tokens and devices ------------------------------------------------------------------
    def add_token(self, token_hash: bytes, now: float, expires_at: float, max_uses: int,
                  note: str) -> TokenRecord:
        with self._tx() as c:
            cur = c.execute("INSERT INTO tokens (token_hash, created_at, expires_at, max_uses, note)"
                            " VALUES (?, ?, ?, ?, ?)", (token_hash, now, expires_at, max_uses, note))
            return TokenRecord(cur.lastrowid, token_hash, now, expires_at, max_uses, 0, None, note)

    def find_token(self, token_hash: bytes) -> TokenRecord | None:
        row = self._one("SELECT * FROM tokens WHERE token_hash = ?", (token_hash,))
        return TokenRecord(*row) if row else None

    def revoke_token(self, token_id: int, now: float) -> bool:
        with self._tx() as c:
            return c.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                             (now, token_id)).rowcount == 1

    def tokens(self) -> list[TokenRecord]:
        return [TokenRecord(*row) for row in self._all("SELECT * FROM tokens ORDER BY id")]

    def enrol(self, token_id: int, identity_key: bytes, credential_hash: bytes, now: float,
              expires_at: float | None) -> DeviceRecord:
        with self._tx() as c:
            # Use the token and add the device in one transaction: a token is never over-used.
            used = c.execute("UPDATE tokens SET uses = uses + 1 WHERE id = ? AND uses < max_uses"
                             " AND revoked_at IS NULL AND expires_at > ?", (token_id, now)).rowcount
            if used != 1:
                raise ForbiddenError("the enrolment token is used up, revoked or expired")
            cur = c.execute("INSERT INTO devices (identity_key, credential_hash, enrolled_at,"
                            " expires_at, token_id) VALUES (?, ?, ?, ?, ?)",
                            (identity_key, credential_hash, now, expires_at, token_id))
            return DeviceRecord(cur.lastrowid, identity_key, credential_hash, now, expires_at, None,
                                token_id, None)

    def device(self, device_id: int) -> DeviceRecord | None:
        row = self._one("SELECT * FROM devices WHERE id = ?", (device_id,))
        return DeviceRecord(*row) if row else None

    def revoke_device(self, device_id: int, now: float) -> bool:
        with self._tx() as c:
            return c.execute("UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                             (now, device_id)).rowcount == 1

    def active_devices(self, now: float) -> list[DeviceRecord]:
        rows = self._all("SELECT * FROM devices WHERE revoked_at IS NULL AND (expires_at IS NULL"
                         " OR expires_at > ?) AND certificate IS NOT NULL ORDER BY id", (now,))
        return [DeviceRecord(*row) for row in rows]

    def set_certificate(self, device_id: int, certificate: bytes) -> bool:
        with self._tx() as c:
            return c.execute("UPDATE devices SET certificate = ? WHERE id = ?",
                             (certificate, device_id)).rowcount == 1

    def uncertified_devices(self) -> list[DeviceRecord]:
        rows = self._all("SELECT * FROM devices WHERE certificate IS NULL AND revoked_at IS NULL"
                         " ORDER BY id")
        return [DeviceRecord(*row) for row in rows]

    def certificates(self) -> list[tuple[int, bytes]]:
        rows = self._all("SELECT id, certificate FROM devices WHERE certificate IS NOT NULL ORDER BY id")
        return [(int(i), bytes(cert)) for i, cert in rows]

    # -- rounds ------------------------------------------------------------------------------
    def create_round(self, params: dict[str, Any], seed: bytes, now: float, base_version: int,
                     vector_length: int, members: Sequence[int],
                     population: int | None = None) -> RoundRecord:
        with self._tx() as c:
            if c.execute("SELECT 1 FROM rounds WHERE state = 'open'").fetchone():
                raise ConflictError("a round is already open; it must finish or abort first")
            cur = c.execute(
                "INSERT INTO rounds (params, state, stage, stage_started_at, opened_at, seed,"
                " base_version, vector_length, population) VALUES (?, 'open', 0, ?, ?, ?, ?, ?, ?)",
                (json.dumps(params), now, now, seed, base_version, vector_length,
                 len(members) if population is None else population))
            round_id = cur.lastrowid
            c.executemany("INSERT INTO round_members VALUES (?, ?)", [(round_id, d) for d in members])
            row = c.execute(f"SELECT {_ROUND_COLS} FROM rounds WHERE id = ?", (round_id,)).fetchone()
            return _round(row)

    def round(self, round_id: int) -> RoundRecord | None:
        row = self._one(f"SELECT {_ROUND_COLS} FROM rounds WHERE id = ?", (round_id,))
        return _round(row) if row else None

    def rounds(self, state: str | None = None) -> list[RoundRecord]:
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        return [_round(r) for r in self._all(f"SELECT {_ROUND_COLS} FROM rounds {where} ORDER BY id", args)]

    def members(self, round_id: int) -> dict[int, bytes]:
        rows = self._all("SELECT d.id, d.identity_key FROM round_members m JOIN devices d"
                         " ON d.id = m.device_id WHERE m.round_id = ? ORDER BY d.id", (round_id,))
        return {int(i): bytes(k) for i, k in rows}

    def set_stage(self, round_id: int, stage: int, started_at: float) -> None:
        with self._tx() as c:
            c.execute("UPDATE rounds SET stage = ?, stage_started_at = ? WHERE id = ? AND state = 'open'",
                      (stage, started_at, round_id))

    def add_message(self, round_id: int, device_id: int, stage: int, body: bytes, sha256: bytes,
                    now: float) -> StageMessage:
        with self._tx() as c:
            cur = c.execute("INSERT INTO stage_messages (round_id, device_id, stage, sha256, size,"
                            " body, accepted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (round_id, device_id, stage, sha256, len(body), body, now))
            return StageMessage(cur.lastrowid, round_id, device_id, stage, sha256, len(body), body, now)

    def message_digest(self, round_id: int, device_id: int, stage: int) -> bytes | None:
        row = self._one("SELECT sha256 FROM stage_messages WHERE round_id = ? AND device_id = ?"
                        " AND stage = ?", (round_id, device_id, stage))
        return bytes(row[0]) if row else None

    def messages(self, round_id: int) -> list[StageMessage]:
        rows = self._all(f"SELECT {_MSG_COLS} FROM stage_messages WHERE round_id = ? ORDER BY seq",
                         (round_id,))
        return [StageMessage(r[0], r[1], r[2], r[3], bytes(r[4]), r[5],
                             None if r[6] is None else bytes(r[6]), r[7]) for r in rows]

    def abort_round(self, round_id: int, now: float, reason: str, participants: int | None) -> None:
        with self._tx() as c:
            c.execute("UPDATE rounds SET state = 'aborted', closed_at = ?, reason = ?, participants = ?"
                      " WHERE id = ? AND state = 'open'", (now, reason, participants, round_id))
            _purge(c, round_id)

    def complete_round(self, round_id: int, now: float, *, participants: int, survivors: int,
                       epsilon: float, model_version: int, archive: bytes, sha256: str,
                       strategy: str, strategy_step: int,
                       strategy_arrays: dict[str, np.ndarray]) -> None:
        with self._tx() as c:
            base = c.execute("SELECT base_version FROM rounds WHERE id = ? AND state = 'open'",
                             (round_id,)).fetchone()
            if base is None:
                raise ConflictError(f"round {round_id} is not open")
            c.execute("INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (model_version, base[0], now, sha256, round_id, len(archive), archive))
            c.execute("INSERT INTO strategy_state VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE"
                      " SET step = excluded.step, arrays = excluded.arrays",
                      (strategy, strategy_step, _pack(strategy_arrays)))
            c.execute("UPDATE rounds SET state = 'done', stage = 4, closed_at = ?, out_version = ?,"
                      " participants = ?, survivors = ?, epsilon = ? WHERE id = ?",
                      (now, model_version, participants, survivors, epsilon, round_id))
            _purge(c, round_id)

    # -- models ------------------------------------------------------------------------------
    def add_model(self, version: int, parent: int | None, now: float, archive: bytes,
                  sha256: str, round_id: int | None) -> ModelRecord:
        with self._tx() as c:
            c.execute("INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (version, parent, now, sha256, round_id, len(archive), archive))
        return ModelRecord(version, parent, now, sha256, round_id, len(archive))

    def latest_model(self) -> ModelRecord | None:
        row = self._one(f"SELECT {_MODEL_COLS} FROM models ORDER BY version DESC LIMIT 1")
        return ModelRecord(*row) if row else None

    def model(self, version: int) -> ModelRecord | None:
        row = self._one(f"SELECT {_MODEL_COLS} FROM models WHERE version = ?", (version,))
        return ModelRecord(*row) if row else None

    def model_archive(self, version: int) -> bytes | None:
        row = self._one("SELECT archive FROM models WHERE version = ?", (version,))
        return bytes(row[0]) if row else None

    def strategy_state(self, name: str) -> tuple[int, dict[str, np.ndarray]] | None:
        row = self._one("SELECT step, arrays FROM strategy_state WHERE name = ?", (name,))
        if row is None:
            return None
        with np.load(io.BytesIO(row[1]), allow_pickle=False) as npz:
            return int(row[0]), {k: npz[k] for k in npz.files}

    # -- operations log ----------------------------------------------------------------------
    def log_event(self, kind: str, detail: dict[str, Any], now: float) -> None:
        with self._tx() as c:
            c.execute("INSERT INTO events (ts, kind, detail) VALUES (?, ?, ?)",
                      (now, kind, json.dumps(detail, sort_keys=True)))

    def events(self, limit: int = 1000) -> list[EventRecord]:
        rows = self._all("SELECT seq, ts, kind, detail FROM events ORDER BY seq DESC LIMIT ?", (limit,))
        return [EventRecord(s, t, k, json.loads(d)) for s, t, k, d in reversed(rows)]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _to_v2(c: sqlite3.Connection) -> None:
    """Schema 1 -> 2: devices get a certificate column (enrolled devices get one from the
    authority: the embedded one issues it when they ask, ``GET /v1/certificate``, which a
    device does before its next round; an offline one via ``edgerec-server certify``); rounds left open by a protocol-1 server cannot resume (their
    stages are numbered differently), so they abort, revealing nothing."""
    columns = {row[1] for row in c.execute("PRAGMA table_info(devices)")}
    if "certificate" not in columns:
        c.execute("ALTER TABLE devices ADD COLUMN certificate BLOB")
    # As abort_round does: closed now, and the message bodies (shares, masked vectors) purged.
    now, reason = time.time(), "opened by an older server (secure-aggregation protocol 1)"
    stale = [row[0] for row in c.execute("SELECT id FROM rounds WHERE state = 'open'")]
    for round_id in stale:
        c.execute("UPDATE rounds SET state = 'aborted', closed_at = ?, reason = ? WHERE id = ?",
                  (now, reason, round_id))
        _purge(c, round_id)
        c.execute("INSERT INTO events (ts, kind, detail) VALUES (?, 'round_aborted', ?)",
                  (now, json.dumps({"round_id": round_id, "reason": reason}, sort_keys=True)))
    c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def _round(row: tuple) -> RoundRecord:
    values = list(row)
    values[1] = json.loads(values[1])
    values[7] = bytes(values[7])
    return RoundRecord(*values)


def _purge(c: sqlite3.Connection, round_id: int) -> None:
    # A closed round needs no message bodies (masked vectors, shares): keep digests and sizes.
    c.execute("UPDATE stage_messages SET body = NULL WHERE round_id = ?", (round_id,))


def _pack(arrays: dict[str, np.ndarray]) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()
