"""A state database written by a version-1 server (secure-aggregation protocol 1: no
certificates, four stages) opens under this server: the devices table gains its certificate
column, and a round left open comes back aborted (its stages are numbered differently, so it
cannot resume), revealing nothing: its message bodies are gone, and the model stays."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace

import pytest

from edgerec.secagg import RoundAbortedError, Stage
from edgerec.sync import HttpxTransport
from edgerec_server import RoundParams
from edgerec_server._exceptions import ConflictError
from edgerec_server.audit import audit_rows
from edgerec_server.state.sqlite import SCHEMA_VERSION

from srv_helpers import World

#: The schema of a version-1 server, as it created it (``server/state/sqlite.py`` at schema 1).
V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT, token_hash BLOB NOT NULL UNIQUE, created_at REAL NOT NULL,
    expires_at REAL NOT NULL, max_uses INTEGER NOT NULL, uses INTEGER NOT NULL DEFAULT 0,
    revoked_at REAL, note TEXT NOT NULL DEFAULT '');
CREATE TABLE devices (
    id INTEGER PRIMARY KEY AUTOINCREMENT, identity_key BLOB NOT NULL UNIQUE,
    credential_hash BLOB NOT NULL, enrolled_at REAL NOT NULL, expires_at REAL, revoked_at REAL,
    token_id INTEGER REFERENCES tokens(id));
CREATE TABLE rounds (
    id INTEGER PRIMARY KEY AUTOINCREMENT, params TEXT NOT NULL, state TEXT NOT NULL,
    stage INTEGER NOT NULL, stage_started_at REAL NOT NULL, opened_at REAL NOT NULL,
    closed_at REAL, seed BLOB NOT NULL, base_version INTEGER NOT NULL, out_version INTEGER,
    vector_length INTEGER NOT NULL, population INTEGER NOT NULL, participants INTEGER,
    survivors INTEGER, epsilon REAL, reason TEXT NOT NULL DEFAULT '');
CREATE TABLE round_members (
    round_id INTEGER NOT NULL REFERENCES rounds(id), device_id INTEGER NOT NULL REFERENCES devices(id),
    PRIMARY KEY (round_id, device_id));
CREATE TABLE stage_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, round_id INTEGER NOT NULL REFERENCES rounds(id),
    device_id INTEGER NOT NULL, stage INTEGER NOT NULL, sha256 BLOB NOT NULL, size INTEGER NOT NULL,
    body BLOB, accepted_at REAL NOT NULL, UNIQUE (round_id, device_id, stage));
CREATE TABLE models (
    version INTEGER PRIMARY KEY, parent INTEGER, created_at REAL NOT NULL, sha256 TEXT NOT NULL,
    round_id INTEGER, size INTEGER NOT NULL, archive BLOB NOT NULL);
CREATE TABLE strategy_state (
    name TEXT PRIMARY KEY, step INTEGER NOT NULL, arrays BLOB NOT NULL);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
"""
_V1_DEVICE_COLUMNS = "id, identity_key, credential_hash, enrolled_at, expires_at, revoked_at, token_id"
_V1_ROUND_COLUMNS = ("id, params, state, stage, stage_started_at, opened_at, closed_at, seed, base_version,"
                     " out_version, vector_length, population, participants, survivors, epsilon, reason")
_V1_COLUMNS = {"devices": _V1_DEVICE_COLUMNS, "rounds": _V1_ROUND_COLUMNS}
# Version 1 kept each message's body in stage_messages; today's schema keeps it in stage_bodies.
_V1_MESSAGES = ("SELECT m.seq, m.round_id, m.device_id, m.stage, m.sha256, m.size, b.body, m.accepted_at"
                " FROM new.stage_messages m LEFT JOIN new.stage_bodies b ON b.seq = m.seq")


def _as_version_1(source, target) -> None:
    """Write ``target``: the rows of the database ``source``, in the version-1 schema."""
    conn = sqlite3.connect(target)
    try:
        conn.executescript(V1_SCHEMA)
        conn.execute("ATTACH DATABASE ? AS new", (str(source),))
        for table in ("tokens", "devices", "models", "rounds", "round_members", "stage_messages",
                      "strategy_state", "events"):
            source = (_V1_MESSAGES if table == "stage_messages"
                      else f"SELECT {_V1_COLUMNS.get(table, '*')} FROM new.{table}")
            conn.execute(f"INSERT INTO {table} {source}")
        conn.commit()
        conn.execute("DETACH DATABASE new")
    finally:
        conn.close()


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def test_a_version_1_database_migrates_and_its_open_round_comes_back_aborted(tmp_path, bundle_dir):
    # The old server's state: enrolled devices and a round in the middle of its stages (three
    # stages' messages stored, bodies included, as an open round keeps them).
    old = World(tmp_path / "old", bundle_dir)
    apis = old.devices(4)
    record = old.co.open_round(RoundParams(min_participants=4))
    parts = [old.participant(a) for a in apis]
    for step in ("advertise", "share_keys", "masked_input"):
        for p in parts:
            getattr(p, step)()
    assert old.state.round(record.id).stage == 3
    old.close()
    data_dir = tmp_path / "migrated"
    data_dir.mkdir()
    shutil.copy(old.config.signing_key_path, data_dir / old.config.signing_key_file)
    db = data_dir / old.config.database_file
    _as_version_1(old.config.database_path, db)
    conn = sqlite3.connect(db)
    assert "certificate" not in _columns(conn, "devices")
    assert conn.execute("SELECT COUNT(body) FROM stage_messages").fetchone()[0] == 12
    conn.close()

    w = World(data_dir, None)  # this server opens it
    try:
        conn = sqlite3.connect(db)
        assert "certificate" in _columns(conn, "devices")
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == \
            str(SCHEMA_VERSION) == "5"
        count, bodies = conn.execute("SELECT COUNT(*), COUNT(body) FROM stage_messages").fetchone()
        moved = conn.execute("SELECT COUNT(*) FROM stage_bodies").fetchone()[0]
        conn.close()
        assert (count, bodies, moved) == (12, 0, 0)  # digests and sizes stay; no share or vector does

        round_ = w.state.round(record.id)
        assert round_.state == "aborted" and "protocol 1" in round_.reason
        assert round_.closed_at is not None
        assert {"round_id": record.id, "reason": round_.reason} in [
            e.detail for e in w.state.events() if e.kind == "round_aborted"]
        status = w.co.status(record.id)
        assert status.state == "aborted" and "protocol 1" in status.reason
        for a in apis:
            a.transport = HttpxTransport(client=w.client)
        assert apis[0].current_round() is None
        with pytest.raises(RoundAbortedError, match="protocol 1"):  # 410 Gone
            apis[0].download(record.id, Stage.CONSISTENCY)
        (row,) = audit_rows(w.state, 1e-5)
        assert row["state"] == "aborted" and row["cumulative_epsilon"] is None
        assert w.publisher.latest().version == 1

        # The devices are still enrolled, without certificates: never drawn until they have one.
        ids = [a.identity.device_id for a in apis]  # type: ignore[attr-defined]
        assert [d.id for d in w.state.uncertified_devices()] == ids
        assert w.state.active_devices(w.clock()) == []
        with pytest.raises(ConflictError, match="drew 0 of 0 active devices"):
            w.co.open_round(RoundParams(min_participants=4))
        for a in apis:  # the embedded authority issues each one at its next GET /v1/certificate
            cert = a.certificate()
            assert cert and w.state.device(a.identity.device_id).certificate == cert  # type: ignore[attr-defined]
            a.identity = replace(a.identity, certificate=cert)  # type: ignore[attr-defined]

        # A new round runs on the migrated state, and a restart does not migrate it again.
        again = w.co.open_round(RoundParams(min_participants=4))
        w.restart()
        for a in apis:
            a.transport = HttpxTransport(client=w.client)
        assert w.state.round(again.id).state == "open"
        parts = [w.participant(a) for a in apis]
        for step in ("advertise", "share_keys", "masked_input", "consistency", "unmask"):
            for p in parts:
                getattr(p, step)()
        assert {p.result().status.model_version_out for p in parts} == {2}
    finally:
        w.close()
