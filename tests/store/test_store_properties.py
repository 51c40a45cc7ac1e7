"""Property tests: any valid batch goes in and comes back out exactly, in the documented orders."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgerec.events import EventType, check_id
from edgerec.store import InteractionStore


def _valid_id(text: str) -> bool:
    try:
        check_id("id", text)
    except ValueError:
        return False
    return True


_ids = st.one_of(
    st.text(min_size=1, max_size=12).filter(_valid_id),
    st.integers(min_value=0, max_value=10**12),
)
_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@st.composite
def _event(draw: st.DrawFn) -> dict[str, Any]:
    event = draw(st.sampled_from([e.value for e in EventType]))
    value = draw(st.floats(0.0, 10.0) if event == "rating" else _finite)
    out: dict[str, Any] = {
        "user": draw(st.sampled_from(["ann", "bo", 3, "ünï"])),  # few users, so they interleave
        "item": draw(_ids),
        "event": event,
        "value": value,
    }
    if draw(st.booleans()):
        out["ts"] = draw(st.floats(0.0, 2e9) | st.sampled_from([5.0, 6.0]))  # collisions test tie order
    if draw(st.booleans()):
        out["event_id"] = draw(st.sampled_from(["a", "b", "c"]) | _ids)  # some repeat within the batch
    return out


def _expected(batch: list[dict[str, Any]], now: float) -> dict[str, list[dict[str, Any]]]:
    """What the store should hold: first occurrence of each event_id, per user by (ts, arrival)."""
    seen: set[str] = set()
    kept = []
    for raw in batch:
        eid = None if raw.get("event_id") is None else str(raw["event_id"])
        if eid is not None:
            if eid in seen:
                continue
            seen.add(eid)
        kept.append({
            "user": str(raw["user"]), "item": str(raw["item"]), "event": raw["event"],
            "value": float(raw["value"]), "ts": float(raw.get("ts", now)), "event_id": eid,
        })
    by_user: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(kept, key=lambda r: r["ts"]):  # stable: arrival order breaks ts ties
        by_user.setdefault(row["user"], []).append(row)
    return by_user


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(_event(), max_size=40), split=st.integers(0, 40))
def test_batches_round_trip_through_export_and_profile(batch: list[dict[str, Any]], split: int) -> None:
    now = 2_100_000_000.0  # after every generated ts: none is in the future
    expected = _expected(batch, now)
    with tempfile.TemporaryDirectory() as tmp, InteractionStore(Path(tmp) / "p.db", clock=lambda: now) as store:
        # Two batches: idempotency must hold across calls as well as within one.
        written = store.log_many(batch[:split]) + store.log_many(batch[split:])
        assert written == sum(len(rows) for rows in expected.values()) == store.count()
        assert store.users() == sorted(expected)
        for user, rows in expected.items():
            assert store.export(user) == rows
            assert store.profile(user) == [
                (r["item"], r["event"], r["value"]) for r in reversed(rows) if r["event"] != "impression"
            ]
        assert store.log_many(batch) == sum(1 for raw in batch if raw.get("event_id") is None)
