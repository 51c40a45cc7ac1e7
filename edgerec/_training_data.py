"""What on-device fine-tuning reads from the store, and the mark of how far it has read.

``device_sequences`` turns every user's stored events into the model's rows; the newest event
timestamp it saw is kept in ``DeviceState`` (``trained_until``, never lowered), so federated
evaluation (``edgerec.sync.evaluation``) can hold out only events no fine-tune on this device
has read: neither a delta it sent nor its personal adapter has seen them.
"""

from __future__ import annotations

import numpy as np

from .events import signal_code
from .store import DeviceState, InteractionStore
from .types import Sequences

__all__ = ["TRAINED_KEY", "device_sequences", "mark_trained", "trained_until"]

TRAINED_KEY = "trained_until"


def device_sequences(store: InteractionStore, index: dict[str, int]) -> tuple[Sequences, float | None]:
    """Every user's consumption and dismissals on this device, oldest first, as model rows;
    and the newest timestamp among all the events read, impressions included (None: none)."""
    items, signals, newest = [], [], None
    for user in store.users():
        events = store.history(user)
        if events:
            latest = max(e.ts for e in events)
            newest = latest if newest is None else max(newest, latest)
        pairs = [(index[e.item], signal_code(e.event, e.value)) for e in events
                 if e.event != "impression" and e.item in index]
        items.append(np.array([p[0] for p in pairs], np.int64))
        signals.append(np.array([p[1] for p in pairs], np.int64))
    return Sequences(items, signals), newest


def trained_until(state: DeviceState) -> float | None:
    """The newest event timestamp any fine-tune on this device has read; None before any."""
    saved = state.get(TRAINED_KEY)
    return None if saved is None else float(saved.value.decode())


def mark_trained(state: DeviceState, newest: float | None, now: float) -> None:
    """Raise the mark to ``newest`` (never lower it: an older fine-tune read what it read)."""
    before = trained_until(state)
    if newest is not None and (before is None or newest > before):
        state.put(TRAINED_KEY, repr(float(newest)).encode(), model_version=None, now=now)
