"""The privacy ledger: what it records, that the database keeps it append-only, and its upgrade path."""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgerec import ConfigError, StoreError
from edgerec.privacy.ledger import KINDS, LedgerEntry, LedgerSnapshot, PrivacyLedger, read_ledger
from edgerec.store import MIGRATIONS, InteractionStore, Retention

T0 = 1_700_000_000.0


class Clock:
    """A clock that moves one second per reading, so every row has its own time."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


class StoreV1(InteractionStore):
    """The schema the first release wrote: interactions only, no ledger."""

    migrations = MIGRATIONS[:1]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "app.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[InteractionStore]:
    with InteractionStore(db_path, clock=Clock()) as s:
        yield s


@pytest.fixture
def ledger(store: InteractionStore) -> PrivacyLedger:
    return PrivacyLedger(store, clock=Clock())


def _row(store: InteractionStore, seq: int) -> tuple:
    return store.db.execute("SELECT * FROM privacy_ledger WHERE seq = ?", [seq]).fetchone()


# -- recording -------------------------------------------------------------------------------

def test_record_then_entries_round_trip(ledger: PrivacyLedger) -> None:
    first = ledger.record(b"keys", kind="advertise_keys", round_id="r7", destination="https://srv/rounds/r7")
    second = ledger.record(b"\x00\x01" * 50, kind="masked_input", round_id="r7", clip=1.5,
                           noise_multiplier=0.9, epsilon=0.25, delta=1e-5,
                           destination="https://srv/rounds/r7", model_version=3)
    assert ledger.entries() == [first, second]
    assert second == LedgerEntry(seq=2, ts=T0 + 2, round_id="r7", kind="masked_input", n_bytes=100,
                                 sha256=hashlib.sha256(b"\x00\x01" * 50).hexdigest(), clip=1.5,
                                 noise_multiplier=0.9, epsilon=0.25, delta=1e-5,
                                 destination="https://srv/rounds/r7", model_version=3, note=None)
    assert first.clip is first.epsilon is first.model_version is None
    assert LedgerEntry(**second.to_dict()) == second == LedgerEntry.from_dict(second.to_dict())
    assert ledger.entries(since_seq=1) == [second] and ledger.entries(since_seq=2) == []


@pytest.mark.parametrize("payload", [b"", b"x", bytes(range(256)) * 40, bytearray(b"abc"), memoryview(b"mv")])
def test_size_and_sha256_are_those_of_the_exact_bytes(ledger: PrivacyLedger, payload) -> None:
    entry = ledger.record(payload, kind="status")
    raw = bytes(payload)
    assert (entry.n_bytes, entry.sha256) == (len(raw), hashlib.sha256(raw).hexdigest())
    assert ledger.verify(raw, entry.seq)
    assert not ledger.verify(raw + b"!", entry.seq)
    assert not ledger.verify(raw, entry.seq + 1)  # a seq the ledger does not have


def test_a_buffer_changed_after_record_does_not_change_the_row(ledger: PrivacyLedger) -> None:
    buf = bytearray(b"original")
    entry = ledger.record(buf, kind="unmask")
    buf[:] = b"tampered"
    assert ledger.verify(b"original", entry.seq) and not ledger.verify(buf, entry.seq)


def test_totals_and_the_latest_epsilon(ledger: PrivacyLedger) -> None:
    assert (ledger.total_bytes(), ledger.epsilon_charged()) == (0, None)
    ledger.record(b"a" * 10, kind="enrol")
    assert ledger.epsilon_charged() is None
    ledger.record(b"b" * 20, kind="masked_input", epsilon=0.5, delta=1e-5)
    ledger.record(b"c" * 30, kind="masked_input", epsilon=0.75, delta=1e-6)
    ledger.record(b"d" * 5, kind="status")  # no figure given: the latest one still stands
    assert ledger.total_bytes() == 65 and ledger.epsilon_charged() == 0.75
    snap = ledger.snapshot()
    assert (snap.total_bytes, snap.epsilon, snap.delta) == (65, 0.75, 1e-6)
    exported = snap.to_dict()
    assert set(exported) == {"entries", "total_bytes", "epsilon", "delta", "differentially_private"}
    assert exported["entries"][0]["time"] == "2023-11-14T22:13:21Z"
    assert exported["differentially_private"] is True


# -- infinity: a round without noise ---------------------------------------------------------

def test_a_round_without_noise_charges_inf_and_inf_stays(ledger: PrivacyLedger) -> None:
    ledger.record(b"a", kind="masked_input", round_id=1, noise_multiplier=1.0, epsilon=0.5, delta=1e-5)
    assert ledger.epsilon_charged() == 0.5
    ledger.record(b"b", kind="masked_input", round_id=2, noise_multiplier=0.0, epsilon=math.inf, delta=1e-5)
    assert ledger.epsilon_charged() == math.inf  # not the older 0.5
    ledger.record(b"c", kind="status")  # no charge: the inf still stands
    ledger.record(b"d", kind="masked_input", round_id=3, noise_multiplier=1.0, epsilon=math.inf, delta=1e-5)
    assert ledger.epsilon_charged() == math.inf
    snap = ledger.snapshot()
    assert snap.epsilon == math.inf and snap.differentially_private is False
    assert [e.epsilon for e in ledger.entries()] == [0.5, math.inf, None, math.inf]  # stored as REAL inf


def test_a_round_without_noise_charges_inf_even_without_a_figure(ledger: PrivacyLedger) -> None:
    # The caller gave no epsilon, but z == 0: no finite epsilon is true from here on.
    ledger.record(b"a", kind="masked_input", noise_multiplier=1.0, epsilon=0.5, delta=1e-5)
    ledger.record(b"b", kind="advertise_keys", noise_multiplier=0.0)
    assert ledger.epsilon_charged() == math.inf == ledger.snapshot().epsilon
    with pytest.raises(ConfigError, match="infinite"):
        ledger.record(b"c", kind="masked_input", noise_multiplier=0.0, epsilon=2.0)  # contradictory


def test_json_export_stays_valid_with_an_infinite_epsilon(ledger: PrivacyLedger) -> None:
    ledger.record(b"a", kind="masked_input", noise_multiplier=0.0, epsilon=math.inf, delta=1e-5)
    text = json.dumps(ledger.snapshot().to_dict(), allow_nan=False)  # raises on a bare Infinity
    exported = json.loads(text)
    assert exported["epsilon"] == "inf" and exported["differentially_private"] is False
    entry = exported["entries"][0]
    assert entry["epsilon"] == "inf"
    assert LedgerEntry.from_dict(entry) == ledger.entries()[0]
    assert json.loads(json.dumps(LedgerSnapshot(()).to_dict()))["differentially_private"] is None


# -- notes and refusals ----------------------------------------------------------------------

def test_a_refusal_is_recorded_with_its_reason(ledger: PrivacyLedger) -> None:
    entry = ledger.record(b"", kind="refusal", round_id=9, note="announced clip 5.0 exceeds the device's limit")
    assert (entry.kind, entry.n_bytes, entry.note) == ("refusal", 0, "announced clip 5.0 exceeds the device's limit")
    assert ledger.entries() == [entry] and ledger.epsilon_charged() is None
    with pytest.raises(ConfigError, match="note"):
        ledger.record(b"", kind="refusal")  # a refusal without its reason
    for bad in ("", "x" * 2000, "line\nbreak", 42):
        with pytest.raises(ConfigError):
            ledger.record(b"", kind="refusal", note=bad)
    assert ledger.record(b"c", kind="consistency", round_id=9).kind == "consistency"


def test_custom_kinds_need_the_x_prefix(ledger: PrivacyLedger) -> None:
    assert ledger.record(b"", kind="x_debug_dump").kind == "x_debug_dump"
    assert {"enrol", "advertise_keys", "share_keys", "masked_input", "consistency", "unmask", "status",
            "refusal"} <= KINDS
    with pytest.raises(ConfigError, match="kind"):
        ledger.record(b"", kind="masked_inptu")  # a typo is refused, not filed under a new kind


@pytest.mark.parametrize(
    "payload, kwargs",
    [
        ("text, not bytes", {"kind": "status"}),
        ([1, 2, 3], {"kind": "status"}),
        (b"ok", {"kind": "upload"}),
        (b"ok", {"kind": ""}),
        (b"ok", {"kind": None}),
        (b"ok", {"kind": "status", "clip": -1.0}),
        (b"ok", {"kind": "status", "clip": float("nan")}),
        (b"ok", {"kind": "status", "noise_multiplier": float("inf")}),
        (b"ok", {"kind": "status", "epsilon": float("nan")}),
        (b"ok", {"kind": "status", "epsilon": -float("inf")}),
        (b"ok", {"kind": "status", "delta": float("inf")}),
        (b"ok", {"kind": "status", "epsilon": -0.1}),
        (b"ok", {"kind": "status", "epsilon": "1.0"}),
        (b"ok", {"kind": "status", "epsilon": True}),
        (b"ok", {"kind": "status", "delta": 1.5}),
        (b"ok", {"kind": "status", "model_version": -1}),
        (b"ok", {"kind": "status", "model_version": 1.0}),
        (b"ok", {"kind": "status", "round_id": ""}),
        (b"ok", {"kind": "status", "round_id": "r\n1"}),
        (b"ok", {"kind": "status", "round_id": 1.5}),
        (b"ok", {"kind": "status", "destination": "x" * 5000}),
    ],
)
def test_bad_input_raises_config_error_and_writes_nothing(ledger: PrivacyLedger, payload, kwargs) -> None:
    with pytest.raises(ConfigError):
        ledger.record(payload, **kwargs)
    assert ledger.entries() == [] and ledger.total_bytes() == 0


def test_a_clock_that_returns_nonsense_writes_nothing(store: InteractionStore) -> None:
    ledger = PrivacyLedger(store, clock=lambda: float("nan"))
    with pytest.raises(ConfigError):
        ledger.record(b"x", kind="status")
    assert PrivacyLedger(store).entries() == []
    with pytest.raises(ConfigError):
        PrivacyLedger(store, clock=123)  # type: ignore[arg-type]


def test_an_integer_round_id_is_stored_as_text(ledger: PrivacyLedger) -> None:
    assert ledger.record(b"x", kind="masked_input", round_id=12).round_id == "12"


# -- append-only -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE privacy_ledger SET n_bytes = 0",
        "UPDATE privacy_ledger SET epsilon = 0.0 WHERE seq = 1",
        "DELETE FROM privacy_ledger",
        "DELETE FROM privacy_ledger WHERE seq = 1",
        "INSERT OR REPLACE INTO privacy_ledger (seq, ts, kind, n_bytes, sha256) VALUES (1, 0, 'status', 0, '"
        + "0" * 64 + "')",
        "INSERT INTO privacy_ledger (seq, ts, kind, n_bytes, sha256) VALUES (1, 0, 'status', 0, '" + "0" * 64
        + "') ON CONFLICT (seq) DO UPDATE SET n_bytes = 0",
    ],
)
def test_the_database_refuses_to_change_a_row(store: InteractionStore, ledger: PrivacyLedger, sql: str) -> None:
    ledger.record(b"sent", kind="masked_input", epsilon=1.0, delta=1e-5)
    before = _row(store, 1)
    with pytest.raises(sqlite3.IntegrityError, match="the privacy ledger is append-only"):
        store.db.execute(sql)
    assert _row(store, 1) == before
    assert ledger.verify(b"sent", 1) and ledger.epsilon_charged() == 1.0


def test_the_sdk_offers_no_way_to_change_a_row() -> None:
    public = {name for name in dir(PrivacyLedger) if not name.startswith("_")}
    # record() appends; nothing else writes.
    assert public == {"record", "entries", "snapshot", "total_bytes", "epsilon_charged", "verify"}


def test_a_ledger_whose_triggers_were_dropped_is_refused(store: InteractionStore) -> None:
    store.db.execute("DROP TRIGGER privacy_ledger_no_delete")
    with pytest.raises(StoreError, match="privacy_ledger_no_delete"):
        PrivacyLedger(store)


def test_forget_and_retention_leave_the_ledger_alone(db_path: Path) -> None:
    clock = Clock()
    with InteractionStore(db_path, clock=clock, retention=Retention(max_age_s=10, max_rows=10)) as store:
        ledger = PrivacyLedger(store, clock=clock)
        store.log_many([{"user": "u1", "item": f"i{i}", "ts": T0 + i} for i in range(3)])
        store.log("u2", "i9", ts=T0 + 3)
        sent = [ledger.record(b"x" * n, kind="masked_input", epsilon=0.1 * n, delta=1e-5) for n in (1, 2, 3)]
        assert store.forget("u1") > 0
        clock.now += 3600
        store.prune()
        assert store.count() == 0
        assert ledger.entries() == sent and ledger.total_bytes() == 6


# -- durability, threads, transactions, errors -----------------------------------------------

def test_entries_survive_reopening(db_path: Path) -> None:
    with InteractionStore(db_path) as store:
        written = [PrivacyLedger(store).record(bytes([n]) * n, kind="share_keys", round_id="r1") for n in range(1, 4)]
    with InteractionStore(db_path) as store:
        ledger = PrivacyLedger(store)
        assert ledger.entries() == written
        assert ledger.record(b"later", kind="status").seq == 4


def test_two_threads_recording_at_once_lose_nothing(ledger: PrivacyLedger) -> None:
    per_thread = 100
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                ledger.record(f"{t}:{i}".encode(), kind="masked_input", round_id=f"t{t}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    entries = ledger.entries()
    assert [e.seq for e in entries] == list(range(1, 2 * per_thread + 1))
    for t in range(2):
        mine = [e for e in entries if e.round_id == f"t{t}"]
        assert [e.sha256 for e in mine] == [hashlib.sha256(f"{t}:{i}".encode()).hexdigest() for i in range(per_thread)]


def test_record_inside_an_open_transaction_is_refused(store: InteractionStore, ledger: PrivacyLedger) -> None:
    # Its commit would wait for the outer one, i.e. until after the bytes were sent.
    with pytest.raises(StoreError):
        with store.transaction():
            ledger.record(b"x", kind="status")
    assert ledger.entries() == []


def test_sqlite_failures_become_store_errors(store: InteractionStore, ledger: PrivacyLedger) -> None:
    store.db.execute("DROP TABLE privacy_ledger")
    for call in (lambda: ledger.record(b"x", kind="status"), ledger.entries, ledger.total_bytes,
                 ledger.epsilon_charged, lambda: ledger.verify(b"x", 1)):
        with pytest.raises(StoreError) as info:
            call()
        assert isinstance(info.value.__cause__, sqlite3.Error)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        ledger.entries()


# -- schema: the upgrade from version 1 ------------------------------------------------------

def test_a_version_1_database_keeps_its_events_and_gains_the_ledger(db_path: Path) -> None:
    with StoreV1(db_path) as v1:
        v1.log_many([{"user": "u", "item": f"i{i}", "ts": T0 + i, "event_id": f"e{i}"} for i in range(5)])
        before = v1.export("u")
        assert not v1.db["privacy_ledger"].exists()
        with pytest.raises(StoreError, match="privacy_ledger"):
            PrivacyLedger(v1)
    assert read_ledger(db_path) == LedgerSnapshot(())  # an auditor can read it before the upgrade
    with InteractionStore(db_path) as store:
        assert store.schema_version == len(MIGRATIONS)
        assert store.export("u") == before
        assert store.log("u", "again", event_id="e0") is False
        ledger = PrivacyLedger(store)
        assert ledger.entries() == []
        assert ledger.record(b"first upload", kind="enrol").seq == 1


def test_a_version_3_ledger_gains_the_note_column_and_keeps_its_rows(db_path: Path) -> None:
    class StoreV3(InteractionStore):
        migrations = MIGRATIONS[:3]

    with StoreV3(db_path) as v3:
        v3.db.execute("INSERT INTO privacy_ledger (ts, kind, n_bytes, sha256, epsilon) VALUES (?, ?, ?, ?, ?)",
                      [T0, "masked_input", 3, "0" * 64, 0.25])
        with pytest.raises(StoreError, match="note"):
            PrivacyLedger(v3)  # no note column yet: not written to
    old = read_ledger(db_path)  # an auditor reads the old file as it is
    assert [(e.kind, e.epsilon, e.note) for e in old.entries] == [("masked_input", 0.25, None)]
    with InteractionStore(db_path) as store:
        ledger = PrivacyLedger(store)
        assert ledger.entries() == list(old.entries)
        assert ledger.record(b"", kind="refusal", note="why").note == "why"
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store.db.execute("UPDATE privacy_ledger SET note = 'x' WHERE seq = 1")


# -- read_ledger: the auditor's read-only view -----------------------------------------------

def test_read_ledger_sees_what_was_recorded_while_the_app_is_open(store: InteractionStore,
                                                                   ledger: PrivacyLedger, db_path: Path) -> None:
    ledger.record(b"abc", kind="masked_input", epsilon=0.3, delta=1e-5)
    assert read_ledger(db_path) == ledger.snapshot()
    ledger.record(b"defg", kind="unmask")  # the reader saw a snapshot; the app goes on writing
    assert read_ledger(db_path).total_bytes == 7


def test_read_ledger_refuses_missing_and_foreign_files(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    with pytest.raises(StoreError, match="no database"):
        read_ledger(missing)
    assert not missing.exists()  # not silently created
    with pytest.raises(StoreError, match="not a file"):
        read_ledger(tmp_path)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(StoreError, match="not an edgerec database"):
        read_ledger(other)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not sqlite at all" * 200)
    with pytest.raises(StoreError):
        read_ledger(garbage)


# -- property --------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.binary(max_size=300), st.sampled_from(sorted(KINDS))), max_size=12))
def test_any_sequence_of_payloads_is_kept_exactly(sent: list[tuple[bytes, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp, InteractionStore(Path(tmp) / "p.db") as store:
        ledger = PrivacyLedger(store)
        returned = [ledger.record(payload, kind=kind, note="reason" if kind == "refusal" else None)
                    for payload, kind in sent]
        entries = ledger.entries()
        assert entries == returned
        assert ledger.total_bytes() == sum(len(p) for p, _ in sent)
        seqs = [e.seq for e in entries]
        assert all(a < b for a, b in zip(seqs, seqs[1:]))
        assert all(ledger.verify(p, e.seq) for (p, _), e in zip(sent, entries))
        assert [e.kind for e in entries] == [k for _, k in sent]
