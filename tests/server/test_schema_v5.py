"""Schema 4 -> 5 on both backends: a database written by a schema-4 server (no rollouts table)
opens under this server, gains the empty rollouts table and version 5, keeps every row it had
(so devices keep installing the newest model until an operator signs a first statement), and
stores rollout statements from then on."""

from __future__ import annotations

import sqlite3

from edgerec_server.state import PostgresBackend, RolloutRecord, SqliteBackend

NOW = 1_000_000.0


def _as_schema_4(execute) -> None:
    execute("DROP TABLE rollouts")
    execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")


def _check(state) -> None:
    assert state.latest_model().version == 1 and state.rollout() is None
    record = RolloutRecord(1, NOW, 1, None, 0.0, (), "set", "first", None, b"{}", b"s" * 64)
    state.add_rollout(record)
    assert state.rollouts() == [record]


def test_a_schema_4_sqlite_file_migrates_to_5(tmp_path):
    path = tmp_path / "state.sqlite3"
    old = SqliteBackend(path)
    old.add_model(1, None, NOW, b"archive", "sha", None)
    old.close()
    conn = sqlite3.connect(path)
    _as_schema_4(conn.execute)
    conn.commit()
    conn.close()
    state = SqliteBackend(path)
    try:
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("5",)
        conn.close()
        _check(state)
    finally:
        state.close()


def test_a_schema_4_postgresql_database_migrates_to_5(pg_url):
    import psycopg

    old = PostgresBackend(pg_url)
    old.add_model(1, None, NOW, b"archive", "sha", None)
    old.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _as_schema_4(conn.execute)
    state = PostgresBackend(pg_url)
    try:
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("5",)
        _check(state)
    finally:
        state.close()
