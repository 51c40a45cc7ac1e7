"""The embedded state backend: one SQLite file (WAL, synchronous=FULL), stdlib ``sqlite3``.

Every public method runs in its own transaction and commits before returning, so whatever the
server acknowledges survives a SIGKILL (and, with ``synchronous=FULL``, a power loss). Several
processes may open the file at once (the server and the operator's CLI); writers wait on a
busy timeout. Foreign errors become ``StateError`` / ``ConflictError`` / ``ForbiddenError``.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


from .._exceptions import ConflictError, StateError
from ._sql import SqlBackend

__all__ = ["SCHEMA_VERSION", "SqliteBackend"]

_log = logging.getLogger("edgerec_server")

# 2: devices.certificate, secagg stages renumbered; 3: stage claims (replicas); 4: evaluations
# (federated evaluation rounds' results) and operator_tokens (the operator routes' credentials);
# 5: rollouts (signed rollout statements: canary, promotion, rejection)
SCHEMA_VERSION = 5
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
    survivors INTEGER, epsilon REAL, reason TEXT NOT NULL DEFAULT '',
    frozen INTEGER NOT NULL DEFAULT 0, lease_owner TEXT, lease_until REAL);
CREATE TABLE IF NOT EXISTS round_members (
    round_id INTEGER NOT NULL REFERENCES rounds(id), device_id INTEGER NOT NULL REFERENCES devices(id),
    PRIMARY KEY (round_id, device_id));
CREATE TABLE IF NOT EXISTS stage_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, round_id INTEGER NOT NULL REFERENCES rounds(id),
    device_id INTEGER NOT NULL, stage INTEGER NOT NULL, sha256 BLOB NOT NULL, size INTEGER NOT NULL,
    accepted_at REAL NOT NULL, UNIQUE (round_id, device_id, stage));
CREATE TABLE IF NOT EXISTS stage_bodies (
    seq INTEGER PRIMARY KEY REFERENCES stage_messages(seq), body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    version INTEGER PRIMARY KEY, parent INTEGER, created_at REAL NOT NULL, sha256 TEXT NOT NULL,
    round_id INTEGER, size INTEGER NOT NULL, archive BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS strategy_state (
    name TEXT PRIMARY KEY, step INTEGER NOT NULL, arrays BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evaluations (
    round_id INTEGER PRIMARY KEY REFERENCES rounds(id), created_at REAL NOT NULL,
    base_version INTEGER NOT NULL, candidate_version INTEGER, layout_key TEXT NOT NULL,
    config TEXT NOT NULL, devices INTEGER NOT NULL, noise_multiplier REAL NOT NULL, clip REAL NOT NULL,
    epsilon REAL NOT NULL, cumulative_epsilon REAL NOT NULL, noise_std REAL NOT NULL,
    sum_vector TEXT NOT NULL, estimate TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS operator_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT, token_hash BLOB NOT NULL UNIQUE, created_at REAL NOT NULL,
    revoked_at REAL, note TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS rollouts (
    seq INTEGER PRIMARY KEY, created_at REAL NOT NULL, promoted INTEGER NOT NULL,
    candidate INTEGER, share REAL NOT NULL, rejected TEXT NOT NULL, decision TEXT NOT NULL,
    reason TEXT NOT NULL, round_id INTEGER, statement BLOB NOT NULL, signature BLOB NOT NULL);
"""


class SqliteBackend(SqlBackend):
    """:class:`~.base.StateBackend` over one SQLite file."""

    def __init__(self, path: str | Path, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(self.path)
            self._conn = sqlite3.connect(str(self.path), timeout=timeout_s, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            # Freed pages (message bodies purged after a round) are zeroed, not left behind.
            self._conn.execute("PRAGMA secure_delete=ON")
            _incremental_vacuum(self._conn)
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
            else:
                if int(row[0]) < 2:
                    _to_v2(c)
                if int(row[0]) < 3:
                    _to_v3(c)
                if int(row[0]) < 4:
                    _to_v4(c)
                if int(row[0]) < 5:
                    _to_v5(c)

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
            # The messages reach HTTP clients: they never carry SQL or schema text (that goes
            # to the server's log, for the operator).
            except sqlite3.IntegrityError as exc:
                _log.warning("state_conflict", extra={"fields": {"error": str(exc)}})
                raise ConflictError("the request conflicts with the stored state") from exc
            except sqlite3.Error as exc:
                _log.error("state_error", extra={"fields": {"error": str(exc)}})
                raise StateError("state database error (details in the server log)") from exc

    def _reclaim(self) -> None:
        # The purged bodies' pages go back to the file system: a round leaves no megabytes per
        # device behind in the file (auto_vacuum=INCREMENTAL, set when the file was opened).
        with self._lock:
            try:
                # executescript steps the pragma to the end (execute() frees one page per step);
                # then the write-ahead log, which held the bodies too, is emptied.
                self._conn.executescript("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")
            except sqlite3.Error as exc:  # space stays allocated (and is reused): not an error
                _log.warning("incremental_vacuum_failed", extra={"fields": {"error": str(exc)}})

    def _insert(self, c: sqlite3.Connection, sql: str, args: tuple, key: str) -> int:
        # lastrowid, not RETURNING: RETURNING needs SQLite 3.35, older than some Pythons ship.
        return int(c.execute(sql, args).lastrowid)  # type: ignore[arg-type]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _incremental_vacuum(conn: sqlite3.Connection) -> None:
    """Make the file give freed pages back on ``PRAGMA incremental_vacuum``. The setting only
    takes without a rebuild before the file has a header; otherwise the file is rebuilt once
    (VACUUM), on the first open by a server that knows this."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
        return
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # the file had a header already
        conn.execute("VACUUM")


def _create_private(path: Path) -> None:
    """Create the state file readable by its owner only (0600): it holds credential hashes,
    round seeds and masked uploads. SQLite gives the -wal and -shm files it creates the mode
    of the database file, so they are 0600 too. An existing file keeps its mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:  # it exists (and keeps its mode), or cannot be made: connect() says why
        pass


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
        c.execute("UPDATE stage_messages SET body = NULL WHERE round_id = ?", (round_id,))  # v1-2 column
        c.execute("INSERT INTO events (ts, kind, detail) VALUES (?, 'round_aborted', ?)",
                  (now, json.dumps({"round_id": round_id, "reason": reason}, sort_keys=True)))
    c.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")


def _to_v3(c: sqlite3.Connection) -> None:
    """Schema 2 -> 3: a round's stage can be claimed by the replica closing it (frozen, lease);
    open rounds carry on unclaimed. Message bodies move to stage_bodies (the old column stays,
    empty: dropping a column needs SQLite 3.35)."""
    c.execute("INSERT INTO stage_bodies (seq, body) SELECT seq, body FROM stage_messages"
              " WHERE body IS NOT NULL")
    c.execute("UPDATE stage_messages SET body = NULL")
    columns = {row[1] for row in c.execute("PRAGMA table_info(rounds)")}
    for name, kind in (("frozen", "INTEGER NOT NULL DEFAULT 0"), ("lease_owner", "TEXT"),
                       ("lease_until", "REAL")):
        if name not in columns:
            c.execute(f"ALTER TABLE rounds ADD COLUMN {name} {kind}")
    c.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")


def _to_v4(c: sqlite3.Connection) -> None:
    """Schema 3 -> 4: the evaluations and operator_tokens tables (made by the schema script,
    which runs first: ``CREATE TABLE IF NOT EXISTS``), empty; nothing else changes, and every
    round of a schema-3 server was a training round."""
    c.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")


def _to_v5(c: sqlite3.Connection) -> None:
    """Schema 4 -> 5: the rollouts table (made by the schema script), empty: until an operator
    starts a canary, every published model is what devices install, as before."""
    c.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
