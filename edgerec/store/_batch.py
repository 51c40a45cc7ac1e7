"""Turning a batch of events into rows for ``log_many``, all validated before any is written.

``edgerec.events`` owns the rules. Running its full validation costs about as much per event
as SQLite's insert itself, which would halve ``log_many``'s throughput. So plain ``dict``
events of the everyday shape take a fast path that accepts a strict *subset* of what
``interaction_from_mapping`` accepts and produces the identical row; anything else (ratings,
enum members, ints as ids, odd strings, every error) goes through ``interaction_from_mapping``,
so rules and error messages stay in one place. tests/store/test_store_batch.py checks the two
paths agree on arbitrary input.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Optional, Tuple, TypeGuard

from .._exceptions import InvalidEventError
from ..events import MAX_FUTURE_S, MAX_ID_LENGTH, EventType, Interaction, interaction_from_mapping, validate_interaction

__all__ = ["Row", "fast_row", "rows_for_batch"]

Row = Tuple[str, str, str, float, float, Optional[str]]

_FIELDS = frozenset({"user", "item", "event", "value", "ts", "event_id"})
# Ratings carry an extra range rule; leave them (and anything else unusual) to events.py.
_FAST_EVENTS = frozenset(e.value for e in EventType if e is not EventType.RATING)
_MAX_ID = MAX_ID_LENGTH
_EXACT_INT = 2**53  # larger ints do not convert to float exactly (or at all)


def _plain_id(x: Any) -> TypeGuard[str]:
    # Subset of events.check_id: exactly str, 1..256 chars, no surrounding whitespace, and
    # printable: isprintable() is False for every control (Cc), format (Cf: bidi controls, zero
    # width characters, BOM), surrogate (Cs), unassigned (Cn) and separator (Zl, Zp, Zs but
    # space) character, so it covers all of check_id's forbidden characters, and more.
    return type(x) is str and 0 < len(x) <= _MAX_ID and x.isprintable() and x.strip() == x


def _plain_number(x: Any) -> bool:
    # Subset of events._number: exactly float and finite, or a small exact int (never bool).
    t = type(x)
    if t is float:
        return math.isfinite(x)
    return t is int and -_EXACT_INT <= x <= _EXACT_INT


def fast_row(raw: Any, now: float) -> Row | None:
    """The row ``interaction_from_mapping(raw, now=now, max_future_s=MAX_FUTURE_S)`` would give,
    or None if unsure.

    None never means "invalid": it means "ask events.py".
    """
    if type(raw) is not dict or not raw.keys() <= _FIELDS:
        return None
    user = raw.get("user")
    item = raw.get("item")
    event = raw.get("event", "click")
    value = raw.get("value", 1.0)
    ts = raw.get("ts")
    event_id = raw.get("event_id")
    if not (
        _plain_id(user)
        and _plain_id(item)
        and type(event) is str
        and event in _FAST_EVENTS
        and _plain_number(value)
        and (event_id is None or _plain_id(event_id))
    ):
        return None
    if ts is None:
        ts = now
    elif not (_plain_number(ts) and 0 <= ts <= now + MAX_FUTURE_S):
        return None
    return (user, item, event, float(value), float(ts), event_id)


def _slow_row(raw: Any, now: float) -> Row:
    if isinstance(raw, Interaction):
        # A hand-built Interaction skipped validation (dataclasses do not check); check it again.
        e = validate_interaction(
            user=raw.user, item=raw.item, event=raw.event, value=raw.value, ts=raw.ts, event_id=raw.event_id,
            now=now, max_future_s=MAX_FUTURE_S,
        )
    else:
        e = interaction_from_mapping(raw, now=now, max_future_s=MAX_FUTURE_S)
    return (e.user, e.item, e.event, e.value, e.ts, e.event_id)


def rows_for_batch(events: Iterable[Mapping[str, object] | Interaction], now: float) -> list[Row]:
    """Validate every event and return the rows; raise ``InvalidEventError`` naming the first bad index.

    ``events`` itself must be an iterable of events: None, a single mapping or a string raise
    ``InvalidEventError`` naming ``events``.
    """
    if isinstance(events, (Mapping, Interaction)):
        raise InvalidEventError(
            f"events must be an iterable of events, got a single {type(events).__name__} (use log() for one event)"
        )
    if isinstance(events, (str, bytes, bytearray)) or not isinstance(events, Iterable):
        raise InvalidEventError(f"events must be an iterable of events, got {type(events).__name__}")
    # The clock's "now" fills in missing timestamps; if it is itself unusable, let events.py say so.
    fast_now = type(now) is float and math.isfinite(now) and now >= 0
    rows: list[Row] = []
    append = rows.append
    for index, raw in enumerate(events):
        row = fast_row(raw, now) if fast_now else None
        if row is None:
            try:
                row = _slow_row(raw, now)
            except InvalidEventError as exc:
                raise InvalidEventError(f"event {index} of the batch: {exc}; nothing was written") from exc
        append(row)
    return rows
