"""Schema 3 -> 4 on both backends: a database written by a schema-3 server (no evaluations, no
operator tokens) opens under this server, gains the two empty tables and today's version (4,
then 5 with the rollouts table: ``test_schema_v5.py``), keeps every
row it had, and stores evaluations and operator tokens from then on. A database of a newer
schema than this server knows is refused, not guessed at."""

from __future__ import annotations

import math
import sqlite3

import pytest

from edgerec_server._exceptions import StateError
from edgerec_server.state import EvaluationRecord, PostgresBackend, SqliteBackend

NOW = 1_000_000.0


def _as_schema_3(execute) -> None:
    """Turn a schema-4 database into what a schema-3 server left: no new tables, version 3."""
    execute("DROP TABLE evaluations")
    execute("DROP TABLE operator_tokens")
    execute("DROP TABLE rollouts")
    execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")


def _fill(state) -> tuple[int, int]:
    """A schema-3 server's rows: a token, a device, a model and a finished training round."""
    token = state.add_token(b"tok", NOW, NOW + 60, 1, "")
    device = state.enrol(token.id, b"k" * 32, b"cred", NOW, None)
    state.add_model(1, None, NOW, b"archive", "sha", None)
    record = state.create_round({"clip": 1.0}, b"s" * 32, NOW, 1, 10, [device.id], population=1)
    state.abort_round(record.id, NOW + 1, "too few", 1)
    return record.id, device.id


def _check_migrated(state, round_id: int, device_id: int) -> None:
    assert state.round(round_id).reason == "too few" and state.latest_model().version == 1
    assert state.evaluations() == [] and state.find_operator_token(b"x") is None
    state.add_operator_token(b"x", NOW, "")
    evaluated = state.create_round({"clip": 4.0, "kind": "evaluation"}, b"t" * 32, NOW, 1, 17,
                                   [device_id], population=1)
    record = EvaluationRecord(evaluated.id, NOW, 1, None, "key", {}, 1, 1.0, 4.0, 2.0, 2.0, 0.5,
                              (1.0,) * 17, {"metrics": {}})
    state.complete_evaluation(record, participants=1)
    assert state.evaluations() == [record] and not math.isinf(state.round(evaluated.id).epsilon)


def test_a_schema_3_sqlite_file_migrates_to_4(tmp_path):
    path = tmp_path / "state.sqlite3"
    old = SqliteBackend(path)
    round_id, device_id = _fill(old)
    old.close()
    conn = sqlite3.connect(path)
    _as_schema_3(conn.execute)
    conn.commit()
    conn.close()

    state = SqliteBackend(path)
    try:
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("5",)
        conn.close()
        _check_migrated(state, round_id, device_id)
    finally:
        state.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StateError, match="schema 6"):
        SqliteBackend(path)


def test_a_schema_3_postgresql_database_migrates_to_4(pg_url):
    import psycopg

    old = PostgresBackend(pg_url)
    round_id, device_id = _fill(old)
    old.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _as_schema_3(conn.execute)

    state = PostgresBackend(pg_url)
    try:
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("5",)
        _check_migrated(state, round_id, device_id)
    finally:
        state.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with pytest.raises(StateError, match="schema 2"):
        PostgresBackend(pg_url)
