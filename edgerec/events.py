"""The interaction contract: event types, the validated ``Interaction`` record, signal codes.

Pure code: no I/O, no clock. The store passes the current time in when the caller gives none.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping, TypedDict

from ._exceptions import InvalidEventError

__all__ = [
    "EventRecord",
    "EventType",
    "Interaction",
    "CONSUMED_EVENTS",
    "MAX_FUTURE_S",
    "MAX_ID_LENGTH",
    "N_SIGNALS",
    "PAD_SIGNAL",
    "check_id",
    "check_lookup_id",
    "check_ts",
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


class EventRecord(TypedDict):
    """One stored event as ``export()`` gives it: the ``log()`` arguments, JSON-ready (so
    ``log_many(export(user))`` re-imports them)."""

    user: str
    item: str
    event: str
    value: float
    ts: float
    event_id: str | None


# -- ids ---------------------------------------------------------------------------------------

MAX_ID_LENGTH = 256

# Characters an id may not contain anywhere (surrounding whitespace is refused separately):
# - C0 controls, DEL and C1 controls (U+0000-001F, U+007F-009F): NUL truncates C strings, the
#   rest corrupt logs, terminals and CSV exports;
# - bidirectional controls: ALM U+061C, LRM/RLM U+200E-200F, embeddings and overrides
#   U+202A-202E, isolates U+2066-2069 ("Trojan Source": they make an id display as another);
# - invisible characters that only serve to make two ids look identical: soft hyphen U+00AD,
#   Mongolian vowel separator U+180E, zero-width space U+200B, word joiner and invisible
#   operators U+2060-2064, BOM / zero-width no-break space U+FEFF, interlinear annotation
#   U+FFF9-FFFB;
# - line and paragraph separators U+2028-2029 (they break line-oriented logs and exports);
# - lone surrogates U+D800-DFFF (a Python str can hold them, UTF-8 and so SQLite cannot) and
#   the noncharacters U+FFFE-FFFF.
# Kept on purpose: ZWJ / ZWNJ (U+200C-200D, needed by emoji sequences and by Persian and Indic
# scripts), variation selectors and emoji tag characters (flags), every letter, mark and symbol.
_FORBIDDEN_IN_ID = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u061c\u180e\u200b\u200e\u200f\u2028-\u202e"
    "\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb\ufffe\uffff\ud800-\udfff]"
)
_SURROGATE = re.compile("[\ud800-\udfff]")
# str() of an int over 4300 digits raises ValueError (CPython's int_max_str_digits); an id that
# long is refused anyway, so refuse it before converting.
_MAX_INT_ID = 10**MAX_ID_LENGTH


def _id_text(name: str, raw: Any) -> str:
    # Ids may be given as str or int (many catalogues use integers); both are stored as text.
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise InvalidEventError(f"{name} must be a str or int, got {type(raw).__name__}")
    if isinstance(raw, int) and abs(raw) >= _MAX_INT_ID:
        raise InvalidEventError(f"{name} is longer than {MAX_ID_LENGTH} characters")
    return str(raw)  # an int, or a str subclass, becomes a plain str


def _describe(char: str) -> str:
    return f"U+{ord(char):04X}"


def check_id(name: str, raw: Any) -> str:
    """``raw`` as a stored id (str or int -> str), or ``InvalidEventError`` naming ``name``.

    An id is 1..256 characters, without surrounding whitespace, and without the control,
    bidirectional, invisible and surrogate characters listed in ``_FORBIDDEN_IN_ID``. Any other
    Unicode (accents, CJK, emoji, ZWJ sequences) is accepted as is (no normalisation).
    """
    text = _id_text(name, raw)
    if not text or text.strip() != text:
        raise InvalidEventError(f"{name} must be a non-empty id without surrounding space, got {raw!r}")
    if len(text) > MAX_ID_LENGTH:
        raise InvalidEventError(f"{name} is longer than {MAX_ID_LENGTH} characters")
    bad = _FORBIDDEN_IN_ID.search(text)
    if bad is not None:
        raise InvalidEventError(
            f"{name} contains the control, bidirectional, invisible or surrogate character "
            f"{_describe(bad.group())} at index {bad.start()}, which ids may not contain"
        )
    return text


def check_lookup_id(name: str, raw: Any) -> str:
    """``raw`` as the text key to look an id up by (read, export, erase): str or int, and
    encodable (no lone surrogate), else ``InvalidEventError`` naming ``name``.

    Deliberately more lenient than ``check_id``: an id stored by an older edgerec, before the
    character rules above existed, must stay readable and erasable.
    """
    text = _id_text(name, raw)
    bad = _SURROGATE.search(text)
    if bad is not None:
        raise InvalidEventError(
            f"{name} contains the lone surrogate {_describe(bad.group())} at index {bad.start()}: "
            "it is not valid Unicode text, so nothing can be stored under it"
        )
    return text


# -- numbers and timestamps ----------------------------------------------------------------------

#: How far after the store's clock an event's ``ts`` may be (the store passes it as
#: ``max_future_s``; offline dataset loaders need not): one day absorbs clock skew between
#: the app's and the store's clocks and any time-zone mistake (at most 14 h), while a timestamp
#: in another unit (milliseconds are ~1000 times larger) or a garbage value is refused instead
#: of staying "most recent" and never expiring.
MAX_FUTURE_S = 86_400.0
# Unit hints are given only when the value, converted, lands in this century: a plausible date.
_Y2000 = 946_684_800.0
_UNITS = (("milliseconds", 1e3), ("microseconds", 1e6), ("nanoseconds", 1e9))


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


def check_ts(raw: Any, *, now: Any, max_future_s: float | None = None) -> float:
    """A timestamp in seconds since the epoch: finite, >= 0, and (with ``max_future_s``) at most
    ``now + max_future_s``. ``raw`` None means ``now``.

    The store passes ``max_future_s=MAX_FUTURE_S``. Values in milliseconds, microseconds or
    nanoseconds are then refused, never converted: a value between now + 1 day and 1000 x now
    is in no unit at all, so any conversion rule guesses somewhere, and a wrong guess silently
    reorders a user's history. The error says which unit the value looks like.
    """
    now_f = _number("ts (the store's clock)", now)
    ts = now_f if raw is None else _number("ts", raw)
    if ts < 0:
        raise InvalidEventError(f"ts must be seconds since the epoch (>= 0), got {ts!r}")
    if max_future_s is not None and ts > now_f + max_future_s:
        limit = now_f + max_future_s
        hint = ""
        for unit, factor in _UNITS:
            if _Y2000 <= ts / factor <= limit:
                hint = f"; it looks like {unit} since the epoch: divide it by {factor:.0f}"
                break
        raise InvalidEventError(
            f"ts {ts!r} is more than {max_future_s:.0f} s after the store's clock ({now_f!r}): "
            f"timestamps are seconds since the epoch{hint}"
        )
    return ts


def validate_interaction(
    *,
    user: Any,
    item: Any,
    event: Any = "click",
    value: Any = 1.0,
    ts: Any = None,
    event_id: Any = None,
    now: float,
    max_future_s: float | None = None,
) -> Interaction:
    """Check one event and return it normalised, or raise ``InvalidEventError`` naming the field.

    ``now`` is the timestamp used when ``ts`` is None; with ``max_future_s`` (the store passes
    ``MAX_FUTURE_S``) it is also the reference of the future bound (``check_ts``). Ids follow
    ``check_id``.
    """
    if isinstance(event, EventType):
        event = event.value
    if not isinstance(event, str) or event not in _VALID:
        raise InvalidEventError(f"unknown event type {event!r} (argument event); expected one of {sorted(_VALID)}")
    value_f = _number("value", value)
    if event == "rating" and not 0.0 <= value_f <= 10.0:
        raise InvalidEventError(f"rating value must be within 0..10, got {value_f}")
    ts_f = check_ts(ts, now=now, max_future_s=max_future_s)
    eid = None if event_id is None else check_id("event_id", event_id)
    return Interaction(check_id("user", user), check_id("item", item), event, value_f, ts_f, eid)


def interaction_from_mapping(
    raw: Mapping[str, Any], *, now: float, max_future_s: float | None = None
) -> Interaction:
    """Validate a dict such as ``{"user": "u1", "item": "i2", "event": "click"}`` (see
    ``validate_interaction`` for ``now`` and ``max_future_s``)."""
    if not isinstance(raw, Mapping):
        raise InvalidEventError(f"an event must be a mapping, got {type(raw).__name__}")
    unknown = set(raw) - {"user", "item", "event", "value", "ts", "event_id"}
    if unknown:
        raise InvalidEventError(f"unknown event fields: {sorted(unknown)}")
    for key in ("user", "item"):
        if key not in raw:
            raise InvalidEventError(f"event is missing {key!r}")
    return validate_interaction(now=now, max_future_s=max_future_s, **raw)
