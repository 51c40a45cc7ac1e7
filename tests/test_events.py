"""The interaction contract: what is accepted, what is refused and how."""

from __future__ import annotations


import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgerec import EventType, InvalidEventError
from edgerec.events import (
    CONSUMED_EVENTS,
    N_SIGNALS,
    PAD_SIGNAL,
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
