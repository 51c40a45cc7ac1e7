"""The interaction contract: what is accepted, what is refused and how."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgerec import EventType, InvalidEventError
from edgerec.events import (
    CONSUMED_EVENTS,
    MAX_FUTURE_S,
    N_SIGNALS,
    PAD_SIGNAL,
    check_id,
    check_lookup_id,
    check_ts,
    interaction_from_mapping,
    signal_code,
    validate_interaction,
)


def test_defaults_and_normalisation():
    e = validate_interaction(user=7, item="i1", now=123.0)
    assert (e.user, e.item, e.event, e.value, e.ts, e.event_id) == ("7", "i1", "click", 1.0, 123.0, None)
    assert validate_interaction(user="u", item="i", event=EventType.PURCHASE, now=0).event == "purchase"


@pytest.mark.parametrize("kwargs, message", [
    ({"event": "teleport"}, "unknown event type"),
    ({"event": None}, "unknown event type"),
    ({"user": ""}, "user must be a non-empty id"),
    ({"user": None}, "user must be a str or int"),
    ({"user": True}, "user must be a str or int"),
    ({"item": 1.5}, "item must be a str or int"),
    ({"item": " padded"}, "without surrounding space"),
    ({"value": float("nan")}, "value must be finite"),
    ({"value": "3"}, "value must be a number"),
    ({"value": 10**400}, "too large"),
    ({"ts": -1}, "seconds since the epoch"),
    ({"ts": float("inf")}, "ts must be finite"),
    ({"event": "rating", "value": 11}, "rating value"),
    ({"event_id": ""}, "event_id"),
])
def test_bad_events_say_what_is_wrong(kwargs, message):
    base = {"user": "u", "item": "i", "now": 1.0}
    with pytest.raises(InvalidEventError, match=message):
        validate_interaction(**{**base, **kwargs})


def test_mapping_form_rejects_unknown_and_missing_fields():
    with pytest.raises(InvalidEventError, match="unknown event fields"):
        interaction_from_mapping({"user": "u", "item": "i", "colour": "red"}, now=0)
    with pytest.raises(InvalidEventError, match="missing 'item'"):
        interaction_from_mapping({"user": "u"}, now=0)
    with pytest.raises(InvalidEventError, match="mapping"):
        interaction_from_mapping(["u", "i"], now=0)


def test_consumption_excludes_impressions_and_dismissals():
    assert "impression" not in CONSUMED_EVENTS and "dismiss" not in CONSUMED_EVENTS
    assert {"view", "click", "add_to_cart", "purchase", "rating"} <= CONSUMED_EVENTS


@given(st.sampled_from([e.value for e in EventType]), st.floats(0, 10, allow_nan=False))
def test_signal_codes_are_in_range_and_never_padding(event, value):
    code = signal_code(event, value)
    assert 0 <= code < N_SIGNALS and code != PAD_SIGNAL


def test_each_star_has_its_own_signal():
    codes = {signal_code("rating", s) for s in (1, 2, 3, 4, 5)}
    assert len(codes) == 5
    assert signal_code("rating", 0.2) == signal_code("rating", 1)
    assert signal_code("rating", 9) == signal_code("rating", 5)


# -- timestamps ----------------------------------------------------------------------------------

NOW = 1_700_000_000.0


@pytest.mark.parametrize("ts, message", [
    (1.7e12, "looks like milliseconds since the epoch: divide it by 1000"),
    (1.7e15, "looks like microseconds"),
    (1.7e18, "looks like nanoseconds"),
    (1e300, "more than 86400 s after the store's clock"),
    (NOW + 86_400.5, "more than 86400 s after"),
])
def test_timestamps_beyond_one_day_ahead_are_refused_with_a_unit_hint(ts, message):
    with pytest.raises(InvalidEventError, match=message):
        validate_interaction(user="u", item="i", ts=ts, now=NOW, max_future_s=MAX_FUTURE_S)


def test_the_future_bound_is_the_callers_choice():
    # Offline loaders (CSV, MovieLens) validate past data without a clock: no bound by default.
    assert validate_interaction(user="u", item="i", ts=1.7e12, now=0.0).ts == 1.7e12
    assert check_ts(None, now=NOW, max_future_s=MAX_FUTURE_S) == NOW
    assert check_ts(NOW + MAX_FUTURE_S, now=NOW, max_future_s=MAX_FUTURE_S) == NOW + MAX_FUTURE_S


def test_an_implausible_unit_gets_no_hint():
    with pytest.raises(InvalidEventError) as info:
        check_ts(5e9, now=1_000.0, max_future_s=MAX_FUTURE_S)  # an odd clock: no unit makes 5e9 a date
    assert "looks like" not in str(info.value)


@pytest.mark.parametrize("now", [float("nan"), "now", None, True])
def test_an_unusable_clock_is_reported_as_such(now):
    with pytest.raises(InvalidEventError, match=r"ts \(the store's clock\)"):
        validate_interaction(user="u", item="i", now=now)


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.none())
def test_check_ts_returns_a_bounded_float_or_refuses(ts):
    try:
        out = check_ts(ts, now=NOW, max_future_s=MAX_FUTURE_S)
    except InvalidEventError as exc:
        assert str(exc).startswith("ts")
    else:
        assert isinstance(out, float) and 0.0 <= out <= NOW + MAX_FUTURE_S


# -- ids -----------------------------------------------------------------------------------------

_FORBIDDEN = ["\x00", "\x1b", "\t", "\x7f", "\x85", "\x9f", "\u00ad", "\u061c", "\u180e", "\u200b", "\u200e",
              "\u200f", "\u2028", "\u2029", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2060", "\u2064",
              "\u2066", "\u2067", "\u2068", "\u2069", "\ufeff", "\ufff9", "\ufffe", "\uffff", "\ud800", "\udfff"]


@pytest.mark.parametrize("char", _FORBIDDEN, ids=[f"U+{ord(c):04X}" for c in _FORBIDDEN])
def test_ids_refuse_control_bidi_invisible_and_surrogate_characters(char):
    with pytest.raises(InvalidEventError, match=f"item contains .* U\\+{ord(char):04X} at index 1"):
        check_id("item", f"a{char}b")


@pytest.mark.parametrize("text", ["café", "漢字", "👨\u200d👩\u200d👧", "می\u200cخواهم", "❤\ufe0f", "a b", "x" * 256])
def test_ids_keep_ordinary_unicode_as_given(text):
    assert check_id("user", text) == text


def test_lookup_ids_are_lenient_except_for_surrogates():
    assert check_lookup_id("user", "legacy\u202e\x07") == "legacy\u202e\x07"
    assert check_lookup_id("user", 12) == "12"
    with pytest.raises(InvalidEventError, match="user contains the lone surrogate U\\+D83D"):
        check_lookup_id("user", "\ud83d")
    with pytest.raises(InvalidEventError, match="user is longer than 256"):
        check_lookup_id("user", -(10**400))


@given(st.text(st.characters(), max_size=10) | st.integers())
def test_an_accepted_id_is_valid_utf8_text_without_forbidden_characters(raw):
    try:
        text = check_id("user", raw)
    except InvalidEventError as exc:
        assert str(exc).startswith("user")
        return
    text.encode("utf-8")  # never raises for an accepted id
    assert text == str(raw) and text.strip() == text and not set(text) & set(_FORBIDDEN)
