"""What the operator page shows: the installed model and the kiosk's figures.

Federated learning (issue 7, part 2) is not here yet: it needs the sync client. ``FederationView``
is the shape its status will take; the kiosk's ``federation`` hook returns None until a
coordinating server is configured, and the page hides the section then. Nothing here is faked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["FederationView", "LedgerRow", "OperatorView"]


@dataclass(frozen=True)
class LedgerRow:
    """One privacy-ledger entry: what left the device, when, under which protection."""

    at: str
    round: int
    bytes_sent: int
    protection: str  # e.g. "clip 1.0, noise σ=0.8, SecAgg+"
    epsilon: float | None


@dataclass(frozen=True)
class FederationView:
    """The kiosk's part in federated rounds, once a coordinating server is configured."""

    server: str
    state: str  # "idle", "in round 12", "offline", ...
    rounds_joined: int
    last_round: str | None
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
    federation: FederationView | None = None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``/operator.json`` endpoint)."""
        from dataclasses import asdict

        return asdict(self)
