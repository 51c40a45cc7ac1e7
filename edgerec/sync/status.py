"""What a sync reports: its status, the app's conditions for taking part, the result."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .._exceptions import ConfigError

__all__ = ["SyncConditions", "SyncResult", "SyncStatus"]


class SyncStatus(str, Enum):
    """How a sync ended."""

    OFFLINE = "offline"  # no answer from the server (after retries); nothing lost, try later
    NOT_ENROLLED = "not_enrolled"  # no identity yet and no enrolment token given (or refused)
    NO_ROUND = "no_round"  # enrolled, model up to date, no round open for this device
    CONDITIONS_NOT_MET = "conditions_not_met"  # the app's flags or too few new interactions
    MODEL_OUT_OF_DATE = "model_out_of_date"  # a round needs another base model than installed
    PARTICIPATED = "participated"  # sent a delta to a round that completed
    ROUND_ABORTED = "round_aborted"  # the round ended without a result (too few survivors)
    BUNDLE_INSTALLED = "bundle_installed"  # a newer signed bundle was installed
    # A downloaded bundle failed its checks, or is validly signed but its signed model_version
    # is not above the highest this device installed (the message then starts "rollback
    # refused"); the old one is kept. One status for both: either way the server sent a bundle
    # this device will not run, and the app's reaction (keep serving, report) is the same.
    BUNDLE_REJECTED = "bundle_rejected"
    SERVER_ERROR = "server_error"  # the server refused a request or answered garbage
    DEVICE_ERROR = "device_error"  # this device failed (its database, disk); nothing sent
    # The device refused a round: its announcement is outside the app's RoundPolicy, no
    # enrolment authority is pinned, or a server message failed the device's checks (a peer
    # without a valid certificate, a survivor set too few signed, ...). A "refusal" row with
    # the reason is on the ledger; nothing more of that round left the device.
    ROUND_REFUSED = "round_refused"


_OK = frozenset({SyncStatus.NO_ROUND, SyncStatus.CONDITIONS_NOT_MET, SyncStatus.PARTICIPATED,
                 SyncStatus.BUNDLE_INSTALLED})


@dataclass(frozen=True)
class SyncConditions:
    """What the app says about the device right now. Bundles download only on an unmetered
    network; a round also needs charging, idle and ``min_new_interactions`` events stored
    since the device last took part."""

    unmetered: bool = True
    charging: bool = True
    idle: bool = True
    min_new_interactions: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.min_new_interactions, bool) or not isinstance(self.min_new_interactions, int) \
                or self.min_new_interactions < 0:
            raise ConfigError("min_new_interactions must be an int >= 0")

    def refusal(self, new_interactions: int) -> str | None:
        """Why a round may not run now, or None when it may."""
        missing = [name for name in ("unmetered", "charging", "idle") if not getattr(self, name)]
        if missing:
            return "device is not " + ", ".join(missing)
        if new_interactions < self.min_new_interactions:
            return (f"{new_interactions} new interaction(s) since the last round; "
                    f"{self.min_new_interactions} needed")
        return None


@dataclass(frozen=True)
class SyncResult:
    """What one sync did. ``ok`` is False for the statuses that report a problem.

    ``retry_after`` is the server's hint, in seconds, for when to ask again (its
    ``Retry-After`` with "no round" or an error; None without one): an app that syncs on a timer
    may wait at least that long, so a large fleet's idle polls stay within the server's budget.
    """

    status: SyncStatus
    message: str
    model_version_before: int
    model_version_after: int
    round_id: int | None = None
    participated: bool = False
    bytes_sent: int = 0
    device_id: int | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status in _OK
