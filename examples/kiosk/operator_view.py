"""What the operator page shows: the installed model, the kiosk's figures, and federated learning.

``FederationView`` is filled by the sync worker (``federation.py``) when a coordinating server is
configured; without one the kiosk's ``federation`` hook returns None and the page hides the
section. Ledger rows are read from ``rec.ledger`` (the device's append-only privacy ledger), never
from the worker's own bookkeeping, so the page shows what the SDK recorded before each send.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from edgerec import LedgerEntry, LedgerSnapshot
from edgerec.privacy.ledger import iso_utc

__all__ = ["FederationView", "LedgerRow", "OperatorView", "SyncRow", "ledger_rows", "LEDGER_ROWS_SHOWN"]

LEDGER_ROWS_SHOWN = 200  # the newest rows on the page and in the JSON; totals cover every row


@dataclass(frozen=True)
class LedgerRow:
    """One privacy-ledger entry: what left the device, when, under which protection."""

    seq: int
    time: str  # ISO-8601 UTC
    round: str | None
    kind: str
    bytes: int
    sha256: str
    clip: float | None  # C
    noise_multiplier: float | None  # z
    epsilon: float | None  # cumulative, at the entry's delta

    @classmethod
    def of(cls, e: LedgerEntry) -> "LedgerRow":
        return cls(e.seq, iso_utc(e.ts), e.round_id, e.kind, e.n_bytes, e.sha256, e.clip,
                   e.noise_multiplier, e.epsilon)


def ledger_rows(snapshot: LedgerSnapshot, shown: int = LEDGER_ROWS_SHOWN) -> tuple[LedgerRow, ...]:
    """The newest ``shown`` entries of ``snapshot``, oldest first."""
    entries: Sequence[LedgerEntry] = snapshot.entries[-shown:] if shown else ()
    return tuple(LedgerRow.of(e) for e in entries)


@dataclass(frozen=True)
class SyncRow:
    """One ``rec.sync()`` the worker ran, and how it ended."""

    at: str  # when it ended, ISO-8601 UTC
    status: str  # a SyncStatus value: offline, no_round, participated, bundle_installed, ...
    ok: bool
    message: str
    round: int | None
    bytes_sent: int
    model_before: int
    model_after: int
    seconds: float


@dataclass(frozen=True)
class FederationView:
    """The kiosk's part in federated rounds, once a coordinating server is configured."""

    server: str
    state: str  # "syncing" or "waiting"
    conditions: str  # what the kiosk tells rec.sync about itself, in words
    interval_s: float
    key_pinned: bool
    device_id: int | None
    model_version: int
    model_changed_at: str | None  # None: unchanged since the kiosk started
    last: SyncRow | None
    history: tuple[SyncRow, ...]  # newest first
    rounds_joined: int
    held_sessions: int  # ended sessions whose events wait for the next round
    held_events: int
    retention_s: float
    erased_after_rounds: int  # events erased once a completed round had used them
    erased_at_retention: int  # events erased because no round used them in time
    ledger_entries: int
    ledger_bytes: int
    ledger_epsilon: float | None
    ledger_delta: float | None
    ledger: tuple[LedgerRow, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class OperatorView:
    """Model, storage, sessions and latency figures of a running kiosk."""

    model_version: int
    parent_version: int | None
    dataset: str
    created_at: str | None
    n_items: int
    in_stock: int
    bundle_path: str
    db_path: str
    stored_events: int
    live_sessions: int
    visitors: int
    ended_sessions: int
    events_this_run: int
    forgotten_events: int
    forget_sessions: bool
    idle_timeout: float
    action_ms_p50: float | None
    action_ms_p95: float | None
    actions_timed: int
    hold_sessions: bool = False  # ended sessions wait for a federated round before erasure
    federation: FederationView | None = None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``/operator.json`` endpoint)."""
        return asdict(self)
