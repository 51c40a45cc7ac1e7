"""log_many's fast validation path must agree with edgerec.events on every input.

The fast path may decline (None) anything; whatever it accepts, events.py must accept too and
normalise to the very same row.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edgerec import InvalidEventError
from edgerec.events import MAX_FUTURE_S, EventType, Interaction, interaction_from_mapping
from edgerec.store._batch import fast_row, rows_for_batch

NOW = 1_700_000_000.5

_weird_text = st.text(
    alphabet=st.sampled_from(["a", "Z", "7", " ", "\t", "\n", "\x00", "\x1f", "\u00a0", "é", "漢", "\u2028", "-"]),
    max_size=6,
)
_id_like = st.one_of(
    _weird_text,
    st.text(min_size=250, max_size=260, alphabet="xy"),  # around the 256-char limit
    st.integers(-5, 10**20),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True),
    st.binary(max_size=3),
)
_number_like = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**60), 2**60),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.sampled_from([0.0, -0.0, 10.0, 10.5, 2.0**53, -1e-300]),
)
_event_like = st.one_of(st.sampled_from([e.value for e in EventType]), st.sampled_from(list(EventType)), _weird_text, st.none())
_keys = st.sampled_from(["user", "item", "event", "value", "ts", "event_id", "colour"])
_field_value = {
    "user": _id_like, "item": _id_like, "event_id": _id_like, "event": _event_like,
    "value": _number_like, "ts": _number_like, "colour": st.just("red"),
}


_good_value = {
    "user": st.text(alphabet="ab-é漢 7", min_size=1, max_size=4),  # mostly plain, sometimes padded
    "item": st.text(alphabet="ab-é漢 7", min_size=1, max_size=4),
    "event_id": st.text(alphabet="xyz:", min_size=1, max_size=3),
    "event": st.sampled_from([e.value for e in EventType]),
    "value": st.floats(0.0, 10.0) | st.integers(0, 10),
    "ts": st.floats(0.0, 2e9) | st.integers(0, 2**31),
}


@st.composite
def _raw_event(draw: st.DrawFn) -> Any:
    # A plausible event, then up to two fields dropped or replaced by something odd: most draws
    # reach the fast path, and the odd ones probe its edges.
    raw = {"user": draw(_good_value["user"]), "item": draw(_good_value["item"])}
    for key in draw(st.sets(st.sampled_from(["event", "value", "ts", "event_id"]))):
        raw[key] = draw(_good_value[key])
    for key in draw(st.sets(_keys, max_size=2)):
        if draw(st.booleans()):
            raw.pop(key, None)
        else:
            raw[key] = draw(_field_value[key])
    return raw


def _slow(raw: Any, now: float) -> tuple[Any, ...] | None:
    try:
        e = interaction_from_mapping(raw, now=now, max_future_s=MAX_FUTURE_S)
    except (InvalidEventError, OverflowError):
        return None
    return (e.user, e.item, e.event, e.value, e.ts, e.event_id)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_raw_event())
@example(raw={"user": "u", "item": "i"})
@example(raw={"user": "u", "item": "i", "event": "rating", "value": 11})
@example(raw={"user": "u", "item": "i", "ts": -0.0, "event_id": "x" * 256})
@example(raw={"user": "u", "item": "i", "event_id": "x" * 257})
@example(raw={"user": " u", "item": "i"})
@example(raw={"user": "u", "item": "i", "value": True})
def test_fast_path_accepts_only_what_events_accepts_and_gives_the_same_row(raw: Any) -> None:
    fast = fast_row(raw, NOW)
    if fast is not None:
        slow = _slow(raw, NOW)
        assert slow is not None, f"fast path accepted an event events.py rejects: {raw!r}"
        assert fast == slow and [type(x) for x in fast] == [type(x) for x in slow]


def test_fast_path_takes_the_everyday_shape() -> None:
    # Guards the benchmark's assumption: the common event shape must not fall back.
    assert fast_row({"user": "u-1", "item": "item 9", "event": "purchase", "value": 2, "ts": 5}, NOW) == (
        "u-1", "item 9", "purchase", 2.0, 5.0, None)
    assert fast_row({"user": "u", "item": "i", "event_id": "e"}, NOW) == ("u", "i", "click", 1.0, NOW, "e")


def test_rows_for_batch_mixes_paths_and_names_the_bad_index() -> None:
    batch = [
        {"user": "u", "item": "a"},
        Interaction("u", "b", "rating", 4.0, 3.0, None),
        {"user": 5, "item": 6, "event": EventType.VIEW},
    ]
    assert rows_for_batch(batch, NOW) == [
        ("u", "a", "click", 1.0, NOW, None),
        ("u", "b", "rating", 4.0, 3.0, None),
        ("5", "6", "view", 1.0, NOW, None),
    ]
    with pytest.raises(InvalidEventError, match="event 3 of the batch") as info:
        rows_for_batch(batch + [{"user": "u", "item": "x", "value": math.nan}], NOW)
    assert isinstance(info.value.__cause__, InvalidEventError)


@pytest.mark.parametrize("now", [-1.0, 7])
def test_an_odd_clock_value_goes_through_events(now: float) -> None:
    raw = {"user": "u", "item": "i"}
    if now == 7:
        assert rows_for_batch([raw], now) == [("u", "i", "click", 1.0, 7, None)]
    else:
        with pytest.raises(InvalidEventError):
            rows_for_batch([raw], now)
