"""Schema version, migrations, journal mode, the covering index, and error translation."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from edgerec import ConfigError, SchemaVersionError, StoreError
from edgerec.store import MIGRATIONS, InteractionStore, Migration
from edgerec.store._schema import META_TABLE, check_migrations


def _add_source_column(db: Database) -> None:
    db["interactions"].add_column("source", str)


def _create_ledger(db: Database) -> None:
    db["ledger"].create({"id": int, "payload": str}, pk="id")
    db["ledger"].insert({"payload": "first"})


# Versions relative to today's newest, so these tests keep working as migrations are appended.
LATEST = len(MIGRATIONS)


class StoreV1(InteractionStore):
    """What the first released edgerec wrote."""

    migrations = MIGRATIONS[:1]


class StoreV3(InteractionStore):
    """What a later edgerec looks like: two more migrations appended."""

    migrations = MIGRATIONS + (
        Migration(LATEST + 1, "interactions.source", _add_source_column),
        Migration(LATEST + 2, "ledger table", _create_ledger),
    )


def _fail(db: Database) -> None:
    db["half_done"].create({"id": int}, pk="id")
    raise RuntimeError("migration bug")


class BrokenUpgrade(InteractionStore):
    migrations = MIGRATIONS + (Migration(LATEST + 1, "creates a table then fails", _fail),)


def test_new_file_gets_the_latest_version_in_a_meta_table(store: InteractionStore) -> None:
    assert store.schema_version == len(MIGRATIONS) == 5
    assert store.db[META_TABLE].exists()


def test_database_is_in_wal_mode(store: InteractionStore, db_path: Path) -> None:
    assert store.db.journal_mode == "wal"
    # WAL is a property of the file: a plain sqlite3 connection sees it too.
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_upgrade_from_version_1_preserves_data(db_path: Path) -> None:
    with StoreV1(db_path) as v1:
        v1.log_many([{"user": "u", "item": str(i), "ts": i, "event_id": f"e{i}"} for i in range(5)])
        before = v1.export("u")
    with StoreV3(db_path) as v3:
        assert v3.schema_version == LATEST + 2
        assert v3.export("u") == before
        assert v3.profile("u")[0] == ("4", "click", 1.0)
        assert "source" in v3.db["interactions"].columns_dict
        assert [r["payload"] for r in v3.db["ledger"].rows] == ["first"]
        assert v3.log("u", "new", event_id="e1") is False
    with StoreV3(db_path) as again:  # nothing left to apply: the ledger row is not inserted twice
        assert again.db["ledger"].count == 1


def test_a_file_from_a_newer_edgerec_is_refused(db_path: Path) -> None:
    StoreV3(db_path).close()
    with pytest.raises(SchemaVersionError, match=f"version {LATEST + 2}"):
        InteractionStore(db_path)


def test_a_failing_migration_leaves_the_old_schema_and_data(db_path: Path) -> None:
    with InteractionStore(db_path) as v1:
        v1.log("u", "i")
    with pytest.raises(RuntimeError, match="migration bug"):
        BrokenUpgrade(db_path)
    with InteractionStore(db_path) as s:
        assert s.schema_version == LATEST
        assert not s.db["half_done"].exists()
        assert s.count() == 1


@pytest.mark.parametrize(
    "migrations",
    [
        (Migration(2, "skips 1", _create_ledger),),
        MIGRATIONS + (Migration(LATEST + 2, "skips one", _create_ledger),),
        MIGRATIONS + ((LATEST + 1, "not a Migration", _create_ledger),),
    ],
)
def test_migration_lists_must_be_numbered_from_one_without_gaps(migrations) -> None:
    with pytest.raises(ConfigError):
        check_migrations(migrations)


def test_profile_reads_only_the_covering_index(store: InteractionStore) -> None:
    from edgerec.store._store import _PROFILE_SQL

    plan = " ".join(row[3] for row in store.db.execute("EXPLAIN QUERY PLAN " + _PROFILE_SQL, ["u"]).fetchall())
    assert "COVERING INDEX" in plan
    assert "TEMP B-TREE" not in plan  # the index order already is the ORDER BY


def test_event_id_index_is_unique_and_partial(store: InteractionStore) -> None:
    sql = store.db.execute("SELECT sql FROM sqlite_master WHERE name = 'interactions_event_id'").fetchone()[0]
    assert "UNIQUE" in sql and "WHERE event_id IS NOT NULL" in sql


def test_a_file_that_is_not_a_database_raises_store_error(db_path: Path) -> None:
    db_path.write_bytes(b"this is not an sqlite database, just some bytes" * 100)
    with pytest.raises(StoreError) as info:
        InteractionStore(db_path)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


def test_sqlite_errors_during_use_become_store_errors(store: InteractionStore) -> None:
    # Another program damaging the schema under us must surface as StoreError, not sqlite3's.
    store.db.execute("DROP TABLE interactions")
    with pytest.raises(StoreError) as info:
        store.log("u", "i")
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    with pytest.raises(StoreError):
        store.log_many([{"user": "u", "item": "i"}])
    with pytest.raises(StoreError):
        store.profile("u")
    with pytest.raises(StoreError):
        store.history("u")
