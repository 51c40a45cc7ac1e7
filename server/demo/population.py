"""Who is who in the demo: pilot users (train the first model centrally, not devices), device
users (each becomes a device holding all of its interactions but the held-out test item).

Pure: a dataset and a seed in, index arrays and event dicts out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgerec.data import Dataset, Sequences
from edgerec.evaluation import LOOSplit, loo_split
from edgerec.evaluation.split import MIN_INTERACTIONS
from edgerec.federated.pilot import draw_pilot, only_users

__all__ = ["Population", "device_events", "held_out_event", "plan_population"]

_EVENT_OF_SIGNAL = {1: "impression", 2: "view", 3: "click", 4: "add_to_cart", 5: "purchase", 6: "dismiss"}
_RATING_BASE = 7


@dataclass(frozen=True, eq=False)
class Population:
    """The LOO split and the users' roles (indices into the dataset's users)."""

    split: LOOSplit
    pilot: np.ndarray
    devices: np.ndarray

    def pilot_sequences(self) -> Sequences:
        """The pilot users' train+validation sequences (everyone else empty)."""
        return only_users(self.split.train_val, self.pilot)

    def eval_users(self) -> np.ndarray:
        """The device users with a held-out test item: whom quality is measured on."""
        return np.intersect1d(self.devices, self.split.eval_users)


def plan_population(dataset: Dataset, *, pilot_share: float, devices: int | None,
                    seed: int) -> Population:
    """Draw ``pilot_share`` of the users as pilot users and up to ``devices`` of the rest."""
    split = loo_split(dataset.sequences())
    pilot, rest = draw_pilot(dataset.n_users, pilot_share, seed)
    if devices is not None:  # a random subset of the others, the same for a given seed
        rest = np.sort(np.random.default_rng(seed).permutation(rest)[:devices])
    return Population(split, pilot, rest)


def device_events(dataset: Dataset, user: int) -> list[dict[str, Any]]:
    """``user``'s interactions as ``log_many`` dicts, oldest first, without the test item
    (the last one in (timestamp, item id) order, when the user has enough to hold one out)."""
    rows = _rows(dataset, user)
    if len(rows) >= MIN_INTERACTIONS:
        rows = rows[:-1]
    return [_event(dataset, user, r) for r in rows.tolist()]


def held_out_event(dataset: Dataset, user: int) -> dict[str, Any] | None:
    """``user``'s test item (the one LOO-full ranks, never in the device's store while it
    trains) as a ``log_many`` dict; None for a user with too few interactions to hold one out.

    Its timestamp is moved 1 s past the user's newest other interaction when they tie (as in
    MovieLens): a device holds out only events newer than the newest it trained on, and the
    order of the user's history (the LOO split's) stays the same.
    """
    rows = _rows(dataset, user)
    if len(rows) < MIN_INTERACTIONS:
        return None
    event = _event(dataset, user, int(rows[-1]))
    newest = float(dataset.ts[rows[:-1]].max())
    if event["ts"] <= newest:
        event["ts"] = newest + 1.0
    return event


def _rows(dataset: Dataset, user: int) -> np.ndarray:
    """``user``'s rows in (timestamp, item id) order: the LOO split's."""
    rows = np.flatnonzero(dataset.user == user)
    return rows[np.lexsort((dataset.item[rows], dataset.ts[rows]))]


def _event(dataset: Dataset, user: int, r: int) -> dict[str, Any]:
    uid, ids = dataset.user_ids[user], dataset.catalogue.item_ids
    code = int(dataset.signal[r])
    event = "rating" if code >= _RATING_BASE else _EVENT_OF_SIGNAL[code]
    value = float(code - _RATING_BASE + 1) if event == "rating" else float(dataset.value[r])
    return {"user": uid, "item": ids[int(dataset.item[r])], "event": event, "value": value,
            "ts": float(dataset.ts[r]), "event_id": f"{uid}:{r}"}
