"""Every bad input is an EdgeRecError naming the argument, and writes nothing.

Timestamps: seconds since the epoch in [0, now + 1 day]; milliseconds and the like are refused
with a hint, never converted. Ids: no control, bidirectional, invisible or surrogate character.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgerec import ConfigError, EdgeRecError, InvalidEventError, StoreError
from edgerec.events import MAX_FUTURE_S
from edgerec.store import InteractionStore, Retention

NOW = 1_700_000_000.0  # the conftest clock


@pytest.mark.parametrize("ts, message", [
    (1e300, r"ts 1e\+300 is more than 86400 s after"),
    (1.7e12, "looks like milliseconds"),
    (1_700_000_000_000, "looks like milliseconds"),
    (1.7e15, "looks like microseconds"),
    (1.7e18, "looks like nanoseconds"),
    (NOW + MAX_FUTURE_S + 1, "more than 86400 s after the store's clock"),
    (-1, r"ts must be seconds since the epoch \(>= 0\)"),
    (-1e-300, r"ts must be seconds since the epoch \(>= 0\)"),
    (math.nan, "ts must be finite"),
    (math.inf, "ts must be finite"),
    (10**400, "ts is too large"),
    ("2024-01-01", "ts must be a number"),
    (True, "ts must be a number"),
])
def test_bad_timestamps_are_refused_naming_ts(store: InteractionStore, ts: Any, message: str) -> None:
    with pytest.raises(InvalidEventError, match=message) as info:
        store.log("u", "i", ts=ts)
    assert str(info.value).startswith("ts ")  # the message names the argument first
    with pytest.raises(InvalidEventError, match=message) as info:
        store.log_many([{"user": "u", "item": "ok"}, {"user": "u", "item": "i", "ts": ts}])
    assert str(info.value).startswith("event 1 of the batch: ts ")
    assert store.count() == 0


@pytest.mark.parametrize("ts", [0, 0.0, 946_684_800, NOW - 1e-6, NOW, NOW + MAX_FUTURE_S])
def test_timestamps_from_the_epoch_to_one_day_ahead_are_kept_as_given(store: InteractionStore, ts: float) -> None:
    assert store.log("u", "i", ts=ts) and store.log_many([{"user": "v", "item": "i", "ts": ts}]) == 1
    assert store.history("u")[0].ts == store.history("v")[0].ts == float(ts)


_BAD_IDS = [
    ("lone surrogate", "a\ud800b", "U\\+D800"),
    ("NUL", "a\x00b", "U\\+0000"),
    ("escape", "\x1b[31mred", "U\\+001B"),
    ("tab inside", "a\tb", "U\\+0009"),
    ("C1 control", "a\x85b", "U\\+0085"),
    ("right-to-left override", "abc\u202etxt.exe", "U\\+202E"),
    ("bidi isolate", "a\u2066b", "U\\+2066"),
    ("right-to-left mark", "a\u200fb", "U\\+200F"),
    ("zero-width space", "ad\u200bmin", "U\\+200B"),
    ("BOM", "\ufeffid", "U\\+FEFF"),
    ("line separator", "a\u2028b", "U\\+2028"),
    ("empty", "", "non-empty"),
    ("padded", " a", "surrounding space"),
    ("too long", "x" * 257, "longer than 256"),
    ("huge int", 10**5000, "longer than 256"),
    ("float", 1.5, "must be a str or int"),
    ("bytes", b"u", "must be a str or int"),
]


@pytest.mark.parametrize("field", ["user", "item", "event_id"])
@pytest.mark.parametrize("label, bad, why", _BAD_IDS, ids=[b[0] for b in _BAD_IDS])
def test_bad_ids_are_refused_naming_the_field(store: InteractionStore, field: str, label: str, bad: Any,
                                              why: str) -> None:
    event = {"user": "u", "item": "i", "event_id": "e", field: bad}
    with pytest.raises(InvalidEventError, match=f"{field}.*{why}|{field} must be a str"):
        store.log(**event)
    with pytest.raises(InvalidEventError, match=f"event 0 of the batch: {field}"):
        store.log_many([event])
    assert store.count() == 0


@pytest.mark.parametrize("good", [
    "café", "Zoë", "漢字", "ユーザー", "사용자", "مستخدم", "उपयोगकर्ता",  # accents, CJK, RTL and Indic scripts
    "👍", "👨\u200d👩\u200d👧", "🏳\ufe0f\u200d🌈",  # emoji, ZWJ sequences, variation selector
    "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # flag with tag characters
    "می\u200cخواهم",  # Persian with ZWNJ
    "item 9", "a\u00a0b", 42,
])
def test_ordinary_unicode_ids_are_accepted_and_round_trip(store: InteractionStore, good: Any) -> None:
    assert store.log(good, good, event_id=good)
    assert store.export(good) == [
        {"user": str(good), "item": str(good), "event": "click", "value": 1.0, "ts": NOW, "event_id": str(good)}]
    assert store.forget(good) == 1


_READS: list[tuple[str, Callable[[InteractionStore, Any], Any]]] = [
    ("profile", lambda s, u: s.profile(u)),
    ("history", lambda s, u: s.history(u)),
    ("count", lambda s, u: s.count(u)),
    ("export", lambda s, u: s.export(u)),
    ("forget", lambda s, u: s.forget(u)),
]


@pytest.mark.parametrize("name, call", _READS, ids=[r[0] for r in _READS])
@pytest.mark.parametrize("bad, why", [("x\udc80", "lone surrogate U\\+DC80"), (None, "must be a str or int"),
                                      (2.5, "must be a str or int"), (10**300, "longer than 256")])
def test_reads_and_erasure_refuse_unusable_ids_naming_user(store: InteractionStore, name: str, call: Callable,
                                                           bad: Any, why: str) -> None:
    if name == "count" and bad is None:
        return  # count(None) counts everyone
    with pytest.raises(InvalidEventError, match=f"user.*{why}"):
        call(store, bad)


def test_an_id_stored_before_the_character_rules_stays_readable_and_erasable(store: InteractionStore) -> None:
    legacy = "old\u202eid\x07"
    store.db.execute("INSERT INTO interactions (user, item, event, value, ts) VALUES (?, 'i', 'click', 1, 5)",
                     [legacy])
    assert store.profile(legacy) == [("i", "click", 1.0)]
    assert [e["user"] for e in store.export(legacy)] == [legacy]
    assert store.forget(legacy) == 1 and store.count() == 0


@pytest.mark.parametrize("events", [None, 5, "u,i", b"ui", {"user": "u", "item": "i"}])
def test_log_many_refuses_what_is_not_a_list_of_events(store: InteractionStore, events: Any) -> None:
    with pytest.raises(InvalidEventError, match="events must be an iterable of events"):
        store.log_many(events)


@pytest.mark.parametrize("path", [None, 3, b"app.db", "a\x00b.db"])
def test_unusable_paths_raise_config_error_naming_path(path: Any) -> None:
    with pytest.raises(ConfigError, match="path"):
        InteractionStore(path)


@pytest.mark.parametrize("busy_timeout_ms", [2**40, -5])
def test_out_of_range_busy_timeout_raises_config_error(db_path: Path, busy_timeout_ms: int) -> None:
    with pytest.raises(ConfigError, match="busy_timeout_ms"):
        InteractionStore(db_path, busy_timeout_ms=busy_timeout_ms)


@pytest.mark.parametrize("kwargs", [{"max_rows": 2**70}, {"max_age_s": 10**400}, {"max_age_s": -0.5}])
def test_out_of_range_retention_raises_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match="Retention.max_"):
        Retention(**kwargs)


@pytest.mark.parametrize("garbage", ["garbage", "-1", "4.0", "", " 5", "٣", "9" * 30])
def test_a_garbage_schema_version_is_a_store_error(db_path: Path, garbage: str) -> None:
    InteractionStore(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE edgerec_meta SET value = ? WHERE key = 'schema_version'", [garbage])
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema_version .* not a version number"):
        InteractionStore(db_path)


@pytest.mark.parametrize("mark", [-1, 2**63, True, "3", 1.0, None])
def test_count_since_refuses_a_bad_mark(store: InteractionStore, mark: Any) -> None:
    with pytest.raises(ConfigError, match="mark"):
        store.count_since(mark)


@pytest.mark.parametrize("bad_now", [math.nan, "now", None, -1.0])
def test_a_broken_clock_is_reported_not_stored(db_path: Path, bad_now: Any) -> None:
    with InteractionStore(db_path, clock=lambda: 1.0) as s:
        s._clock = lambda: bad_now  # the clock breaks after opening
        with pytest.raises(InvalidEventError, match="ts"):
            s.log("u", "i")
        assert s.count() == 0


def test_a_broken_clock_makes_prune_a_config_error(db_path: Path) -> None:
    with InteractionStore(db_path, retention=Retention(max_rows=5)) as s:
        s._clock = lambda: "noon"
        with pytest.raises(ConfigError, match="clock"):
            s.prune()


_text = st.text(st.characters(), max_size=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=_text | st.integers(), item=_text, ts=st.none() | st.floats() | st.integers())
def test_any_input_is_stored_or_refused_with_an_edgerec_error(store: InteractionStore, user: Any, item: str,
                                                             ts: Any) -> None:
    before = store.count()
    try:
        written = store.log(user, item, ts=ts)
    except EdgeRecError:
        assert store.count() == before
        written = False
    for call in (store.profile, store.history, store.count, store.export):
        try:
            call(user)
        except EdgeRecError:
            pass
    if written:
        assert store.forget(user) >= 1
