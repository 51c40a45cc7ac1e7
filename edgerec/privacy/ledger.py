"""The device's privacy ledger: every payload that left the device, and its privacy cost.

One append-only table in the device's SQLite file (created by store migration 2). A row is a
payload's time, round, kind, size, SHA-256, clipping bound C, noise multiplier z and the
cumulative (epsilon, delta) charged so far: enough for an auditor to match each row against
what the server received, without the ledger holding any user data.

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
import re
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from .._exceptions import ConfigError, StoreError
from ..store._schema import LEDGER_TABLE, META_TABLE

if TYPE_CHECKING:
    import os

    from ..store import InteractionStore

__all__ = ["KINDS", "LedgerEntry", "LedgerSnapshot", "PrivacyLedger", "iso_utc", "read_ledger"]

#: The payload kinds of the protocol: enrolment, the four secure-aggregation stages
#: (DESIGN.md, "Round") and status reports. Other kinds must start with ``x_`` (``x_debug``),
#: so that a misspelt protocol kind is refused instead of filed under a new name.
KINDS = frozenset({"enrol", "advertise_keys", "share_keys", "masked_input", "unmask", "status"})
_CUSTOM_KIND = re.compile(r"x_[a-z0-9_]{1,30}")
_MAX_ROUND_ID = 128
_MAX_DESTINATION = 2048

_FIELDS = ("seq", "ts", "round_id", "kind", "n_bytes", "sha256", "clip", "noise_multiplier",
           "epsilon", "delta", "destination", "model_version")
_INSERT_SQL = (f"INSERT INTO {LEDGER_TABLE} ({', '.join(_FIELDS[1:])}) "
               f"VALUES ({', '.join('?' * (len(_FIELDS) - 1))})")
_SELECT_SQL = f"SELECT {', '.join(_FIELDS)} FROM {LEDGER_TABLE} WHERE seq > ? ORDER BY seq"
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
            with ``edgerec.privacy``'s accountant; ``None`` when the caller gave no figure.
        delta: the delta that epsilon holds at.
        destination: where it went (e.g. the server URL).
        model_version: the model version the payload was computed from, if any.
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

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (``LedgerEntry(**d)`` rebuilds the entry)."""
        return asdict(self)


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
        """The latest cumulative epsilon recorded (``None`` if no entry carries one)."""
        latest = _latest_charged(self.entries)
        return None if latest is None else latest.epsilon

    @property
    def delta(self) -> float | None:
        """The delta recorded with that epsilon."""
        latest = _latest_charged(self.entries)
        return None if latest is None else latest.delta

    def to_dict(self) -> dict[str, Any]:
        """``{"entries": [...], "total_bytes", "epsilon", "delta"}``; each entry also has ``time``."""
        return {
            "entries": [{**e.to_dict(), "time": iso_utc(e.ts)} for e in self.entries],
            "total_bytes": self.total_bytes,
            "epsilon": self.epsilon,
            "delta": self.delta,
        }


def _latest_charged(entries: Sequence[LedgerEntry]) -> LedgerEntry | None:
    return next((e for e in reversed(entries) if e.epsilon is not None), None)


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
        missing = [n for n in (LEDGER_TABLE, *_TRIGGERS) if n not in names]
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
    ) -> LedgerEntry:
        """Write the payload's row and commit it; call this *before* sending ``payload``.

        ``payload`` is the exact bytes to be sent (``bytes``, ``bytearray`` or ``memoryview``;
        text must be encoded first). ``epsilon`` is the cumulative epsilon charged so far, at
        ``delta``. Numbers must be finite and >= 0 (``delta`` at most 1). Returns the entry.
        """
        data = _payload_bytes(payload)
        entry = LedgerEntry(
            seq=0,  # assigned by the database below
            ts=_finite(self._clock(), "the clock's time", nonnegative=False),
            round_id=_optional_text(round_id, "round_id", _MAX_ROUND_ID, allow_int=True),
            kind=_kind(kind),
            n_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            clip=_optional_number(clip, "clip"),
            noise_multiplier=_optional_number(noise_multiplier, "noise_multiplier"),
            epsilon=_optional_number(epsilon, "epsilon"),
            delta=_optional_delta(delta),
            destination=_optional_text(destination, "destination", _MAX_DESTINATION),
            model_version=_optional_version(model_version),
        )
        values = tuple(getattr(entry, f) for f in _FIELDS[1:])
        with self._store.transaction() as db:
            seq = db.conn.execute(_INSERT_SQL, values).lastrowid
        return replace(entry, seq=int(seq))

    def entries(self, since_seq: int | None = None) -> list[LedgerEntry]:
        """Every entry in seq order, or only those with ``seq > since_seq``."""
        after = 0 if since_seq is None else _int_at_least(since_seq, 0, "since_seq")
        with _translating(self._store.path, "reading the privacy ledger"):
            return _select(self._store.db.conn, after)

    def snapshot(self) -> LedgerSnapshot:
        """Every entry and the totals, read at one moment (the ``--json`` export)."""
        return LedgerSnapshot(tuple(self.entries()))

    def total_bytes(self) -> int:
        """Bytes that left the device, summed over every payload (0 when none did)."""
        return int(self._scalar(f"SELECT coalesce(sum(n_bytes), 0) FROM {LEDGER_TABLE}"))

    def epsilon_charged(self) -> float | None:
        """The latest cumulative epsilon recorded, ``None`` if no payload carried one."""
        return self._scalar(
            f"SELECT epsilon FROM {LEDGER_TABLE} WHERE epsilon IS NOT NULL ORDER BY seq DESC LIMIT 1")

    def verify(self, payload: Payload, seq: int) -> bool:
        """True if ``payload`` is exactly the bytes recorded as entry ``seq`` (size and SHA-256).

        False for other bytes and for a ``seq`` the ledger does not have.
        """
        data = _payload_bytes(payload)
        seq = _int_at_least(seq, 1, "seq")
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
    return [LedgerEntry(*row) for row in conn.execute(_SELECT_SQL, (after,))]


@contextmanager
def _translating(path: Path, what: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{what} failed on {path}: {exc}") from exc


# -- validating arguments (every failure is a ConfigError, raised before anything is written) ----

def _payload_bytes(payload: object) -> bytes:
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ConfigError(f"payload must be the exact bytes sent (bytes), got {type(payload).__name__}")
    # A copy: the hash must be of these bytes even if the caller's buffer changes afterwards.
    return bytes(payload)


def _kind(kind: object) -> str:
    if not isinstance(kind, str) or not (kind in KINDS or _CUSTOM_KIND.fullmatch(kind)):
        raise ConfigError(f"kind must be one of {sorted(KINDS)} or match 'x_[a-z0-9_]+', got {kind!r}")
    return kind


def _finite(value: object, name: str, *, nonnegative: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    result = float(value)
    if not math.isfinite(result) or (nonnegative and result < 0.0):
        raise ConfigError(f"{name} must be a finite number{' >= 0' if nonnegative else ''}, got {value!r}")
    return result


def _optional_number(value: object, name: str) -> float | None:
    return None if value is None else _finite(value, name)


def _optional_delta(value: object) -> float | None:
    result = _optional_number(value, "delta")
    if result is not None and result > 1.0:
        raise ConfigError(f"delta must be at most 1, got {value!r}")
    return result


def _int_at_least(value: object, minimum: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _optional_version(value: object) -> int | None:
    return None if value is None else _int_at_least(value, 0, "model_version")


def _optional_text(value: object, name: str, max_len: int, *, allow_int: bool = False) -> str | None:
    if value is None:
        return None
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not 0 < len(value) <= max_len or not value.isprintable():
        raise ConfigError(f"{name} must be a printable, non-empty str of at most {max_len} characters, "
                          f"got {value!r}")
    return value
