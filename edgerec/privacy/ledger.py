"""The device's privacy ledger: every payload that left the device, and its privacy cost.

One append-only table in the device's SQLite file (created by store migration 2, ``note``
added by migration 4). A row is a payload's time, round, kind, size, SHA-256, clipping bound
C, noise multiplier z, the cumulative (epsilon, delta) charged so far and an optional note:
enough for an auditor to match each row against what the server received, without the ledger
holding any user data. A device that refuses a round records a ``"refusal"`` row (usually with
an empty payload) whose ``note`` says why.

The epsilon on the ledger is the device's own bound (``edgerec.privacy.device_epsilon``: the
rounds it contributed to, no amplification by sampling). It may be ``inf``: a round without
noise gives no differential privacy, and from then on no finite epsilon is true. ``inf`` is
stored as SQLite's REAL infinity, never as NULL (NULL means "no figure given"), and the
ledger's figure (``epsilon_charged()``, ``LedgerSnapshot.epsilon``) is that of the *latest*
row carrying a charge, so an ``inf`` stays ``inf`` and never falls back to an older finite
value. A row carries a charge if it records an epsilon, or a noise multiplier of 0 (a payload
of a round without noise charges ``inf`` even when the caller gave no figure); a row with
``z == 0`` and a finite epsilon is refused as contradictory.

JSON (``to_dict``, ``edgerec audit --json``): JSON has no infinity, so an infinite epsilon is
written as the string ``"inf"`` (a reader doing arithmetic on it fails loudly instead of
reading 0 or "no figure" into a null), and the snapshot adds ``"differentially_private"``:
``true`` for a finite charge, ``false`` for ``inf``, ``null`` when nothing was charged.

The contract with whoever sends bytes (the sync client)::

    entry = ledger.record(body, kind="masked_input", round_id=r, clip=C, noise_multiplier=z,
                          epsilon=eps_so_far, delta=delta, destination=url)
    transport.post(url, content=body)          # only after record() has returned

``record`` commits before it returns, so a payload is on the ledger before it can leave; if it
raises, the caller must not send. A crash between the two leaves a row for bytes that never
left: the ledger over-reports, never under-reports.

Append-only is enforced by the database (triggers refuse UPDATE, DELETE and a REPLACE of an
existing row), and the SDK offers no way to change a row. ``read_ledger`` opens a file
read-only, for auditors and ``edgerec audit``.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from .._exceptions import ConfigError, StoreError
from ..store._schema import LEDGER_TABLE, META_TABLE
from . import _ledger_checks as _c

if TYPE_CHECKING:
    import os

    from ..store import InteractionStore

__all__ = ["KINDS", "LedgerEntry", "LedgerSnapshot", "PrivacyLedger", "iso_utc", "read_ledger"]

#: The payload kinds of the protocol: enrolment, the secure-aggregation stages (DESIGN.md,
#: "Round": advertise keys, share keys, masked input, consistency check, unmask), status
#: reports, and a device's refusal to take part in a round (its reason in ``note``). In an
#: evaluation round the masked input carries the device's ``edgerec.fedeval`` vector instead of
#: a model delta, and is recorded as ``"evaluation"`` (clip, z and epsilon as for a delta: the
#: same budget; ``note`` names the models and the layout). Other kinds must start with ``x_``
#: (``x_debug``), so that a misspelt protocol kind is refused instead of filed under a new name.
KINDS = frozenset({"enrol", "advertise_keys", "share_keys", "masked_input", "consistency",
                   "unmask", "status", "refusal", "evaluation"})
_MAX_ROUND_ID = 128
_MAX_DESTINATION = 2048
_MAX_NOTE = 1024
_INF_JSON = "inf"  # how an infinite epsilon is written in JSON (module docstring)

_FIELDS = ("seq", "ts", "round_id", "kind", "n_bytes", "sha256", "clip", "noise_multiplier",
           "epsilon", "delta", "destination", "model_version", "note")
_INSERT_SQL = (f"INSERT INTO {LEDGER_TABLE} ({', '.join(_FIELDS[1:])}) "
               f"VALUES ({', '.join('?' * (len(_FIELDS) - 1))})")
_SELECT_SQL = f"SELECT {', '.join(_FIELDS)} FROM {LEDGER_TABLE} WHERE seq > ? ORDER BY seq"
# A file from before migration 4 has no note column (read_ledger reads it as it is).
_SELECT_SQL_NO_NOTE = _SELECT_SQL.replace(", note FROM", ", NULL FROM")
# The rows that carry a privacy charge (module docstring), latest first.
_CHARGED_SQL = (f"SELECT epsilon, noise_multiplier FROM {LEDGER_TABLE} "
                "WHERE epsilon IS NOT NULL OR noise_multiplier = 0 ORDER BY seq DESC LIMIT 1")
_TRIGGERS = tuple(f"{LEDGER_TABLE}_no_{op}" for op in ("update", "delete", "replace"))

Payload = bytes | bytearray | memoryview


def iso_utc(ts: float) -> str:
    """``ts`` (seconds since the epoch) as ISO-8601 UTC to the second, e.g. ``2024-05-01T12:00:00Z``."""
    try:
        return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):  # a clock far outside datetime's range
        return repr(ts)


@dataclass(frozen=True)
class LedgerEntry:
    """One payload that left the device.

    Attributes:
        seq: position in the ledger, strictly increasing, never reused.
        ts: when it was recorded (seconds since the epoch), just before it was sent.
        round_id: the federated round it belongs to, if any.
        kind: what it is (``KINDS``, or an ``x_`` custom kind).
        n_bytes: its exact size in bytes.
        sha256: hex SHA-256 of its exact bytes.
        clip: the L2 clipping bound C applied to the delta it carries, if any.
        noise_multiplier: the noise multiplier z of the aggregated sum, if any.
        epsilon: the cumulative epsilon charged to the device so far, as the caller computed it
            with ``edgerec.privacy.device_epsilon``; ``inf`` once a round had no noise;
            ``None`` when the caller gave no figure.
        delta: the delta that epsilon holds at.
        destination: where it went (e.g. the server URL).
        model_version: the model version the payload was computed from, if any.
        note: free text, e.g. why a device refused a round (``kind="refusal"``).
    """

    seq: int
    ts: float
    round_id: str | None
    kind: str
    n_bytes: int
    sha256: str
    clip: float | None = None
    noise_multiplier: float | None = None
    epsilon: float | None = None
    delta: float | None = None
    destination: str | None = None
    model_version: int | None = None
    note: str | None = None

    @property
    def charge(self) -> float | None:
        """The cumulative epsilon this row charges: ``epsilon``, else ``inf`` if ``z == 0``, else None."""
        if self.epsilon is not None:
            return self.epsilon
        return math.inf if self.noise_multiplier == 0 else None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict; an infinite epsilon is ``"inf"`` (``from_dict`` reads it)."""
        fields = asdict(self)
        fields["epsilon"] = _json_number(self.epsilon)
        return fields

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> LedgerEntry:
        """The entry ``to_dict`` exported (extra keys such as ``time`` are ignored)."""
        known = {k: fields[k] for k in _FIELDS if k in fields}
        if known.get("epsilon") == _INF_JSON:
            known["epsilon"] = math.inf
        return cls(**known)


@dataclass(frozen=True)
class LedgerSnapshot:
    """The whole ledger at one moment, with its totals: what an auditor exports."""

    entries: tuple[LedgerEntry, ...]

    @property
    def total_bytes(self) -> int:
        """Bytes that left the device, summed over every payload."""
        return sum(e.n_bytes for e in self.entries)

    @property
    def epsilon(self) -> float | None:
        """The charge of the latest entry that carries one (``inf`` stays ``inf``); None if none does."""
        latest = _latest_charged(self.entries)
        return None if latest is None else latest.charge

    @property
    def delta(self) -> float | None:
        """The delta recorded with that epsilon."""
        latest = _latest_charged(self.entries)
        return None if latest is None else latest.delta

    @property
    def differentially_private(self) -> bool | None:
        """True if the charge is finite, False if it is ``inf``, None if nothing was charged."""
        eps = self.epsilon
        return None if eps is None else math.isfinite(eps)

    def to_dict(self) -> dict[str, Any]:
        """``{"entries", "total_bytes", "epsilon", "delta", "differentially_private"}``, valid JSON.

        Each entry also has ``time``; an infinite epsilon is the string ``"inf"``.
        """
        return {
            "entries": [{**e.to_dict(), "time": iso_utc(e.ts)} for e in self.entries],
            "total_bytes": self.total_bytes,
            "epsilon": _json_number(self.epsilon),
            "delta": self.delta,
            "differentially_private": self.differentially_private,
        }


def _latest_charged(entries: Sequence[LedgerEntry]) -> LedgerEntry | None:
    return next((e for e in reversed(entries) if e.charge is not None), None)


def _json_number(value: float | None) -> float | str | None:
    return _INF_JSON if value is not None and math.isinf(value) else value


class PrivacyLedger:
    """Append-only record of every payload that leaves the device, in the store's SQLite file.

    ``record(payload, ...)`` must be called with the exact bytes about to be sent, *before*
    sending them: it writes the row in its own transaction and commits before returning, so
    the row is as durable as the store's ``synchronous`` setting makes any commit ("NORMAL":
    survives an app crash; "FULL": also a power loss). If ``record`` raises, do not send.
    It cannot run inside a ``store.transaction()`` of the same thread (that would delay the
    commit past the send); it raises ``StoreError`` instead.

    Rows cannot be changed or removed: the SDK has no method for it and the database's
    triggers refuse any UPDATE, DELETE or REPLACE. ``store.forget()`` and retention never
    touch the ledger (it holds sizes, hashes and privacy parameters, no user data).

    Thread-safe like the store: each thread writes through its own connection, and concurrent
    ``record`` calls are serialised by SQLite. ``clock`` gives the time of each row.

    Raises ``ConfigError`` for bad arguments (nothing is written) and ``StoreError`` for any
    SQLite failure, including a database whose ledger table or triggers are missing.
    """

    def __init__(self, store: InteractionStore, *, clock: Callable[[], float] = time.time) -> None:
        if not callable(clock):
            raise ConfigError("clock must be a callable returning seconds since the epoch")
        self._store = store
        self._clock = clock
        self._check_schema()

    def _check_schema(self) -> None:
        # A store whose migrations stop before the ledger, or a file whose triggers someone
        # dropped, must not be written to as if it were append-only.
        with _translating(self._store.path, "opening the privacy ledger"):
            names = {name for (name,) in self._store.db.execute(
                "SELECT name FROM sqlite_master WHERE name = ? OR type = 'trigger'", [LEDGER_TABLE])}
            has_note = LEDGER_TABLE in names and _has_note(self._store.db.conn)
        missing = [n for n in (LEDGER_TABLE, *_TRIGGERS) if n not in names]
        if LEDGER_TABLE in names and not has_note:
            missing.append(f"{LEDGER_TABLE}.note (store migration 4)")
        if missing:
            raise StoreError(f"{self._store.path} has no intact privacy ledger (missing: {', '.join(missing)})")

    def record(
        self,
        payload: Payload,
        *,
        kind: str,
        round_id: str | int | None = None,
        clip: float | None = None,
        noise_multiplier: float | None = None,
        epsilon: float | None = None,
        delta: float | None = None,
        destination: str | None = None,
        model_version: int | None = None,
        note: str | None = None,
    ) -> LedgerEntry:
        """Write the payload's row and commit it; call this *before* sending ``payload``.

        ``payload`` is the exact bytes to be sent (``bytes``, ``bytearray`` or ``memoryview``;
        text must be encoded first). ``epsilon`` is the cumulative epsilon charged so far, at
        ``delta``: finite and >= 0, or ``math.inf`` (no differential privacy), and ``inf``
        whenever ``noise_multiplier`` is 0. Other numbers must be finite and >= 0 (``delta``
        at most 1). ``note`` is printable text; a ``"refusal"`` needs one (the reason).
        Returns the entry.
        """
        data = _c.payload_bytes(payload)
        entry = LedgerEntry(
            seq=0,  # assigned by the database below
            ts=_c.finite(self._clock(), "the clock's time", nonnegative=False),
            round_id=_c.optional_text(round_id, "round_id", _MAX_ROUND_ID, allow_int=True),
            kind=_c.kind(kind, KINDS),
            n_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            clip=_c.optional_number(clip, "clip"),
            noise_multiplier=_c.optional_number(noise_multiplier, "noise_multiplier"),
            epsilon=_c.optional_epsilon(epsilon),
            delta=_c.optional_delta(delta),
            destination=_c.optional_text(destination, "destination", _MAX_DESTINATION),
            model_version=_c.optional_version(model_version),
            note=_c.optional_text(note, "note", _MAX_NOTE),
        )
        if entry.noise_multiplier == 0 and entry.epsilon is not None and math.isfinite(entry.epsilon):
            raise ConfigError("a payload of a round without noise (noise_multiplier 0) charges an"
                              f" infinite epsilon, got {entry.epsilon!r}")
        if entry.kind == "refusal" and entry.note is None:
            raise ConfigError("a refusal needs a note saying why")
        values = tuple(getattr(entry, f) for f in _FIELDS[1:])
        with self._store.transaction() as db:
            seq = db.conn.execute(_INSERT_SQL, values).lastrowid
        assert seq is not None  # sqlite3 sets lastrowid on every successful INSERT
        return replace(entry, seq=int(seq))

    def entries(self, since_seq: int | None = None) -> list[LedgerEntry]:
        """Every entry in seq order, or only those with ``seq > since_seq``."""
        after = 0 if since_seq is None else _c.int_at_least(since_seq, 0, "since_seq")
        with _translating(self._store.path, "reading the privacy ledger"):
            return _select(self._store.db.conn, after)

    def snapshot(self) -> LedgerSnapshot:
        """Every entry and the totals, read at one moment (the ``--json`` export)."""
        return LedgerSnapshot(tuple(self.entries()))

    def total_bytes(self) -> int:
        """Bytes that left the device, summed over every payload (0 when none did)."""
        return int(self._scalar(f"SELECT coalesce(sum(n_bytes), 0) FROM {LEDGER_TABLE}"))

    def epsilon_charged(self) -> float | None:
        """The charge of the latest row carrying one (``inf`` stays ``inf``), None if none does."""
        with _translating(self._store.path, "reading the privacy ledger"):
            row = self._store.db.conn.execute(_CHARGED_SQL).fetchone()
        if row is None:
            return None
        return math.inf if row[0] is None else float(row[0])  # row[0] NULL only when z == 0

    def verify(self, payload: Payload, seq: int) -> bool:
        """True if ``payload`` is exactly the bytes recorded as entry ``seq`` (size and SHA-256).

        False for other bytes and for a ``seq`` the ledger does not have.
        """
        data = _c.payload_bytes(payload)
        seq = _c.int_at_least(seq, 1, "seq")
        with _translating(self._store.path, "reading the privacy ledger"):
            row = self._store.db.conn.execute(
                f"SELECT n_bytes, sha256 FROM {LEDGER_TABLE} WHERE seq = ?", (seq,)).fetchone()
        return row is not None and row[0] == len(data) and row[1] == hashlib.sha256(data).hexdigest()

    def _scalar(self, sql: str) -> Any:
        with _translating(self._store.path, "reading the privacy ledger"):
            row = self._store.db.conn.execute(sql).fetchone()
        return None if row is None else row[0]

    def __repr__(self) -> str:
        return f"PrivacyLedger({str(self._store.path)!r})"


def read_ledger(path: str | os.PathLike[str]) -> LedgerSnapshot:
    """The ledger of the database file at ``path``, opened read-only (for auditors).

    The database is never written: no migration runs, and a missing file is not created
    (SQLite may still add the empty ``-wal``/``-shm`` files a WAL database reads through). A
    database from before the ledger existed has an empty ledger. Raises ``StoreError`` if the file is missing, is not an
    SQLite database, or is not an edgerec database.
    """
    file = Path(path)
    if not file.is_file():
        raise StoreError(f"no database at {file}" if not file.exists() else f"{file} is not a file")
    with _translating(file, "reading the privacy ledger"):
        # mode=ro: an auditor's read must never modify the evidence, nor create a database.
        conn = sqlite3.connect(file.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if META_TABLE not in tables:
                raise StoreError(f"{file} is not an edgerec database")
            return LedgerSnapshot(tuple(_select(conn, 0)) if LEDGER_TABLE in tables else ())
        finally:
            conn.close()


# -- reading rows --------------------------------------------------------------------------------

def _select(conn: sqlite3.Connection, after: int) -> list[LedgerEntry]:
    sql = _SELECT_SQL if _has_note(conn) else _SELECT_SQL_NO_NOTE
    return [LedgerEntry(*row) for row in conn.execute(sql, (after,))]


def _has_note(conn: sqlite3.Connection) -> bool:
    return any(row[1] == "note" for row in conn.execute(f"PRAGMA table_info({LEDGER_TABLE})"))


@contextmanager
def _translating(path: Path, what: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{what} failed on {path}: {exc}") from exc
