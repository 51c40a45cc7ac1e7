"""The store's schema: one ordered list of migrations, and the version recorded in the file.

The database keeps its schema version in the key/value table ``edgerec_meta`` (key
``schema_version``; 0 when the table is absent, i.e. a new file). On open, every migration
newer than that version runs, in order, inside one ``BEGIN IMMEDIATE`` transaction, and the
version is bumped in the same transaction: a crash mid-upgrade leaves the old schema intact.
A file whose version is newer than the newest migration known here was written by a newer
edgerec and is refused (``SchemaVersionError``) rather than guessed at.

Adding a table (the privacy ledger, say) is one function and one line::

    def _v2_privacy_ledger(db: Database) -> None:
        db.table("privacy_ledger").create({...}, pk="id")

    MIGRATIONS = (..., Migration(2, "privacy ledger", _v2_privacy_ledger))

A migration receives the sqlite-utils ``Database`` of a connection that is already inside the
transaction (sqlite-utils nests its own writes as savepoints), must not COMMIT itself, and must
never be edited once released: devices in the field have already applied it.
"""

from __future__ import annotations

import sqlite3
from typing import Callable, NamedTuple, Sequence

from sqlite_utils import Database

from .._exceptions import ConfigError, SchemaVersionError, StoreError

if not hasattr(Database, "atomic"):
    # sqlite-utils 3.x commits on its own inside table.create() and friends, which would commit
    # a migration half-way through; 4.0 made its writes nest inside an open transaction.
    raise ImportError("edgerec.store needs sqlite-utils >= 4.0 (pip install -U sqlite-utils)")

__all__ = [
    "EVENT_ID_INDEX",
    "HIGH_WATER_SQL",
    "ID_FLOOR_KEY",
    "INSERT_SQL",
    "LEDGER_TABLE",
    "STATE_TABLE",
    "META_TABLE",
    "MIGRATIONS",
    "Migration",
    "PROFILE_INDEX",
    "TABLE",
    "TIME_INDEX",
    "check_migrations",
    "delete_meta",
    "get_meta",
    "migrate",
    "read_version",
    "set_meta",
]

META_TABLE = "edgerec_meta"
TABLE = "interactions"
PROFILE_INDEX = "interactions_by_user_time"
EVENT_ID_INDEX = "interactions_event_id"
TIME_INDEX = "interactions_by_time"
ID_FLOOR_TRIGGER = "interactions_id_floor"
#: Meta key of the largest interaction id deleted while it was the largest (see migration 5).
ID_FLOOR_KEY = "interactions_id_floor"
_FLOOR_SQL = f"coalesce((SELECT CAST(value AS INTEGER) FROM {META_TABLE} WHERE key = '{ID_FLOOR_KEY}'), 0)"
#: The largest interaction id ever assigned: never lower after a delete (migration 5).
HIGH_WATER_SQL = f"SELECT max(coalesce((SELECT max(id) FROM {TABLE}), 0), {_FLOOR_SQL})"
LEDGER_TABLE = "privacy_ledger"
STATE_TABLE = "device_state"
_VERSION_KEY = "schema_version"

# The hot-path insert. ON CONFLICT names the partial unique index on event_id, so a retried
# event is skipped (rowcount 0) while rows without an event_id never conflict. Unlike
# INSERT OR IGNORE it does not also swallow NOT NULL or CHECK violations. The id is one above
# the high-water mark, so ids of deleted rows are never handed out again (migration 5; before
# it, the floor is absent and this is SQLite's own max(id) + 1). It runs inside the write
# transaction, so two writers cannot compute the same id.
INSERT_SQL = (
    f"INSERT INTO {TABLE} (id, user, item, event, value, ts, event_id) "
    f"VALUES (({HIGH_WATER_SQL}) + 1, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (event_id) WHERE event_id IS NOT NULL DO NOTHING"
)


class Migration(NamedTuple):
    """One schema step: ``apply(db)`` brings a database at ``version - 1`` to ``version``."""

    version: int
    description: str
    apply: Callable[[Database], None]


def _v1_interactions(db: Database) -> None:
    """The interaction table, the covering index of ``profile()`` and the event-id index."""
    db.table(TABLE).create(
        {"id": int, "user": str, "item": str, "event": str, "value": float, "ts": float, "event_id": str},
        pk="id",
        not_null={"user", "item", "event", "value", "ts"},
    )
    # profile() asks "this user's events, newest first" and reads item, event, value: with
    # (user, ts, id) leading, the rows come out of the index already in order, and with the
    # remaining columns in it SQLite never touches the table (COVERING INDEX in the plan).
    # history(), count(user) and forget(user) use the same index.
    db.table(TABLE).create_index(["user", "ts", "id", "event", "item", "value"], index_name=PROFILE_INDEX)
    # Partial: most events carry no event_id and then cost nothing here. sqlite-utils'
    # create_index cannot express WHERE, hence the plain statement.
    db.execute(f"CREATE UNIQUE INDEX {EVENT_ID_INDEX} ON {TABLE} (event_id) WHERE event_id IS NOT NULL")
    # No index on ts alone here; migration 5 adds one, once retention runs while the app runs.


_APPEND_ONLY = "'the privacy ledger is append-only'"


def _v2_privacy_ledger(db: Database) -> None:
    """The privacy ledger (``edgerec.privacy.ledger``): one row per payload that left the device.

    Append-only by the database's own rules, whoever writes to the file: triggers refuse every
    UPDATE and DELETE, and an INSERT that reuses an existing ``seq`` (``INSERT OR REPLACE``
    deletes the old row *without* firing DELETE triggers unless recursive_triggers is on).
    It holds no user data (sizes, hashes, privacy parameters), so erasure and retention, which
    only touch ``interactions``, leave it alone.
    """
    # Plain SQL: sqlite-utils' create() cannot express AUTOINCREMENT or CHECK. AUTOINCREMENT so
    # that a seq is never handed out twice, even if the triggers were dropped and rows deleted:
    # auditors match seqs against what the server logged. CHECK (seq > 0) keeps explicit seqs
    # away from the value an auto-assigned seq has inside the BEFORE INSERT trigger (-1).
    db.execute(
        f"""CREATE TABLE {LEDGER_TABLE} (
            seq INTEGER PRIMARY KEY AUTOINCREMENT CHECK (seq > 0),
            ts REAL NOT NULL,
            round_id TEXT,
            kind TEXT NOT NULL,
            n_bytes INTEGER NOT NULL CHECK (n_bytes >= 0),
            sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
            clip REAL,
            noise_multiplier REAL,
            epsilon REAL,
            delta REAL,
            destination TEXT,
            model_version INTEGER
        )"""
    )
    for event in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER {LEDGER_TABLE}_no_{event.lower()} BEFORE {event} ON {LEDGER_TABLE} "
            f"BEGIN SELECT RAISE(ABORT, {_APPEND_ONLY}); END"
        )
    db.execute(
        f"CREATE TRIGGER {LEDGER_TABLE}_no_replace BEFORE INSERT ON {LEDGER_TABLE} "
        f"WHEN EXISTS (SELECT 1 FROM {LEDGER_TABLE} WHERE seq = NEW.seq) "
        f"BEGIN SELECT RAISE(ABORT, {_APPEND_ONLY}); END"
    )
    # No secondary index: a device sends a few payloads per round, so the table stays small, and
    # every read goes in seq order, which the primary key already is.


def _v3_device_state(db: Database) -> None:
    """Small device-level state under a key: the personal adapter, later sync credentials.

    ``model_version`` ties a value to the bundle it was computed for (an adapter only makes
    sense in the vector space of the model it was fitted against).
    """
    db.table(STATE_TABLE).create({"key": str, "value": bytes, "model_version": int, "updated": float},
                                 pk="key", not_null={"value", "updated"})


def _v4_ledger_note(db: Database) -> None:
    """A nullable ``note`` on every ledger row, e.g. why a device refused a round.

    ADD COLUMN rewrites no row and fires no trigger, so the append-only triggers (which refuse
    UPDATE, DELETE and REPLACE of rows) neither block it nor are weakened by it; older rows
    read ``note`` as NULL.
    """
    db.execute(f"ALTER TABLE {LEDGER_TABLE} ADD COLUMN note TEXT")


def _v5_id_floor_and_time_index(db: Database) -> None:
    """Interaction ids that are never handed out twice, and an index on ``ts`` for retention.

    Never twice: sync counts new interactions as rows whose ``id`` is above a high-water mark,
    so an id freed by ``forget()`` or retention must not be assigned again (SQLite gives a new
    row ``max(id) + 1``, which reuses the ids of the newest rows once they are deleted). The
    trigger records, in the meta table, the largest id ever deleted while it was the largest in
    the table (so retention, which deletes the oldest rows, never fires it); ``INSERT_SQL``
    assigns ``max(max(id), that floor) + 1``. Any DELETE, even one made outside the store,
    keeps the rule. (AUTOINCREMENT would do the same but writes its sqlite_sequence page in
    every commit: measured +8..15 us per log(); the floor costs no measurable time.)

    The time index: retention deletes the oldest rows in small chunks while the app logs
    (``_retention``); with ``(ts, rowid)`` in an index each chunk is O(chunk * log n), ~1-2 ms
    per 256 rows at any size, instead of a scan and sort of the whole table (10 ms per chunk at
    100k rows). Its price is one more WAL page per commit: log() measured ~4 us slower per
    insert and ~15 us slower on average once checkpoints are counted (about 40 -> 58 us).
    """
    db.execute(f"CREATE INDEX {TIME_INDEX} ON {TABLE} (ts)")  # (ts, rowid): oldest first, ties by id
    db.execute(
        f"""CREATE TRIGGER {ID_FLOOR_TRIGGER} AFTER DELETE ON {TABLE}
        WHEN OLD.id > coalesce((SELECT max(id) FROM {TABLE}), 0)
        BEGIN
            INSERT OR REPLACE INTO {META_TABLE} (key, value)
            VALUES ('{ID_FLOOR_KEY}', max(OLD.id, {_FLOOR_SQL}));
        END"""
    )


# Ordered, contiguous from 1. Append only.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "interactions table, covering profile index, unique event_id", _v1_interactions),
    Migration(2, "privacy ledger", _v2_privacy_ledger),
    Migration(3, "device state (personal adapter, credentials)", _v3_device_state),
    Migration(4, "privacy ledger note column", _v4_ledger_note),
    Migration(5, "interaction ids never reused, time index for retention", _v5_id_floor_and_time_index),
)


def check_migrations(migrations: Sequence[Migration]) -> int:
    """Check the list is numbered 1, 2, ... n and return n (the version it produces)."""
    for expected, migration in enumerate(migrations, start=1):
        if not isinstance(migration, Migration) or migration.version != expected:
            raise ConfigError(f"migration #{expected} must be Migration(version={expected}, ...), got {migration!r}")
    return len(migrations)


def read_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the file (0 for a file edgerec has never set up)."""
    # fetchall, not fetchone: a statement left unfinished would keep a read snapshot open.
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (META_TABLE,)
    ).fetchall()
    if not has_meta:
        return 0
    rows = conn.execute(f"SELECT value FROM {META_TABLE} WHERE key = ?", (_VERSION_KEY,)).fetchall()
    if not rows:
        return 0
    raw = rows[0][0]
    # Written by edgerec as decimal text; anything else is damage (or another program's table).
    text = raw if isinstance(raw, str) else str(raw) if isinstance(raw, int) else None
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 9:
        raise StoreError(
            f"the database's {META_TABLE}.{_VERSION_KEY} is {raw!r}, not a version number: "
            "the file is damaged or was not written by edgerec"
        )
    return int(text)


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    """The value stored under ``key`` in the meta table, None if absent."""
    rows = conn.execute(f"SELECT value FROM {META_TABLE} WHERE key = ?", (key,)).fetchall()
    return None if not rows else str(rows[0][0])


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    """Store ``value`` under ``key`` in the meta table (in the caller's transaction, if any)."""
    conn.execute(
        f"INSERT INTO {META_TABLE} (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def delete_meta(conn: sqlite3.Connection, key: str) -> None:
    """Remove ``key`` from the meta table."""
    conn.execute(f"DELETE FROM {META_TABLE} WHERE key = ?", (key,))


def _refuse_newer(found: int, latest: int) -> None:
    if found > latest:
        raise SchemaVersionError(
            f"the database has schema version {found} but this edgerec knows versions up to {latest}; "
            "it was written by a newer edgerec, upgrade edgerec to open it"
        )


def migrate(db: Database, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the database up to the newest version in ``migrations`` and return that version.

    Raises ``SchemaVersionError`` if the file is newer. sqlite3 errors propagate (the caller
    translates them); the transaction is rolled back, so the file keeps its previous version.
    """
    latest = check_migrations(migrations)
    conn = db.conn
    # Cheap check first, without the write lock: on almost every open there is nothing to do,
    # and several processes opening the same file should not queue behind each other.
    found = read_version(conn)
    _refuse_newer(found, latest)
    if found == latest:
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read under the write lock: another process may have migrated in the meantime.
        found = read_version(conn)
        _refuse_newer(found, latest)
        db.execute(f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for migration in migrations[found:]:
            migration.apply(db)
        db.execute(
            f"INSERT INTO {META_TABLE} (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_VERSION_KEY, str(latest)),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return latest
