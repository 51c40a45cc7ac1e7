"""The interaction contract: event types, the validated ``Interaction`` record, signal codes.

Pure code: no I/O, no clock. The store passes the current time in when the caller gives none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping

from ._exceptions import InvalidEventError

__all__ = [
    "EventType",
    "Interaction",
    "CONSUMED_EVENTS",
    "N_SIGNALS",
    "PAD_SIGNAL",
    "signal_code",
    "validate_interaction",
]


class EventType(str, Enum):
    """What a person did with an item."""

    IMPRESSION = "impression"
    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"
    RATING = "rating"
    DISMISS = "dismiss"


# Events after which an item counts as "seen" and is not recommended again by default.
# Impressions are not consumption (the item was merely shown); dismissals are excluded separately.
CONSUMED_EVENTS: frozenset[str] = frozenset(
    e.value for e in EventType if e not in (EventType.IMPRESSION, EventType.DISMISS)
)

_VALID = frozenset(e.value for e in EventType)

# Signal codes feed the model: each history entry carries one, and the model learns a weight per
# code. Ratings get one code per star so that a 1-star rating can weigh differently from 5 stars.
PAD_SIGNAL = 0
_SIGNAL_OF_EVENT = {
    "impression": 1,
    "view": 2,
    "click": 3,
    "add_to_cart": 4,
    "purchase": 5,
    "dismiss": 6,
}
_RATING_BASE = 7  # codes 7..11 are ratings of 1..5 stars
N_SIGNALS = _RATING_BASE + 5


def signal_code(event: str, value: float) -> int:
    """The model's signal code for an event (ratings are bucketed to 1..5 stars)."""
    if event == "rating":
        stars = min(5, max(1, int(round(value))))
        return _RATING_BASE + stars - 1
    return _SIGNAL_OF_EVENT[event]


@dataclass(frozen=True)
class Interaction:
    """One validated event. ``ts`` is seconds since the epoch; ``event_id`` makes retries idempotent."""

    user: str
    item: str
    event: str
    value: float
    ts: float
    event_id: str | None = None


def check_id(name: str, raw: Any) -> str:
    # Ids may be given as str or int (many catalogues use integers); both are stored as text.
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise InvalidEventError(f"{name} must be a str or int, got {type(raw).__name__}")
    text = str(raw)
    if not text or text.strip() != text or "\x00" in text:
        raise InvalidEventError(f"{name} must be a non-empty id without surrounding space, got {raw!r}")
    if len(text) > 256:
        raise InvalidEventError(f"{name} is longer than 256 characters")
    return text


def _number(name: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise InvalidEventError(f"{name} must be a number, got {type(raw).__name__}")
    try:
        out = float(raw)
    except OverflowError:  # an int too large for a float
        raise InvalidEventError(f"{name} is too large for a float") from None
    if not math.isfinite(out):
        raise InvalidEventError(f"{name} must be finite, got {raw!r}")
    return out


def validate_interaction(
    *,
    user: Any,
    item: Any,
    event: Any = "click",
    value: Any = 1.0,
    ts: Any = None,
    event_id: Any = None,
    now: float,
) -> Interaction:
    """Check one event and return it normalised, or raise ``InvalidEventError`` saying what is wrong.

    ``now`` is the timestamp used when ``ts`` is None (the caller owns the clock).
    """
    if isinstance(event, EventType):
        event = event.value
    if not isinstance(event, str) or event not in _VALID:
        raise InvalidEventError(f"unknown event type {event!r}; expected one of {sorted(_VALID)}")
    value_f = _number("value", value)
    if event == "rating" and not 0.0 <= value_f <= 10.0:
        raise InvalidEventError(f"rating value must be within 0..10, got {value_f}")
    ts_f = now if ts is None else _number("ts", ts)
    if ts_f < 0:
        raise InvalidEventError(f"ts must be seconds since the epoch, got {ts_f}")
    eid = None if event_id is None else check_id("event_id", event_id)
    return Interaction(check_id("user", user), check_id("item", item), event, value_f, ts_f, eid)


def interaction_from_mapping(raw: Mapping[str, Any], *, now: float) -> Interaction:
    """Validate a dict such as ``{"user": "u1", "item": "i2", "event": "click"}``."""
    if not isinstance(raw, Mapping):
        raise InvalidEventError(f"an event must be a mapping, got {type(raw).__name__}")
    unknown = set(raw) - {"user", "item", "event", "value", "ts", "event_id"}
    if unknown:
        raise InvalidEventError(f"unknown event fields: {sorted(unknown)}")
    for key in ("user", "item"):
        if key not in raw:
            raise InvalidEventError(f"event is missing {key!r}")
    return validate_interaction(now=now, **raw)
