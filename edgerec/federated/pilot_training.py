"""The first model, trained on the pilot's events only, its epochs chosen on the pilot's own items.

A pilot is small (a fifth of MovieLens-100K's users is 189 people), and the central training
settings were chosen for a whole data set: 16 epochs over 189 users' events overfit (validation
NDCG@10 of the device users 0.071 after 16 epochs, 0.084 after 8: BENCHMARKS.md, "federated").
So the number of epochs is chosen the way every other hyper-parameter is (DESIGN.md), on held-out
items, but on the *pilot's own*: each pilot user's last ``HELD_OUT`` events are held out, one run
is trained on the rest and scored after each candidate count of epochs (each held-out event
ranked against every item not in the events before it, as in LOO-full), and
the first model is then trained on all the pilot's events for the count that scored best.

``train_pilot`` is given the pilot's sequences and nothing else, so no device's event can reach
the first model or the choice of its epochs (``tests/federated/test_pilot_training.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .._exceptions import ConfigError
from ..model.config import ModelConfig, TrainConfig
from ..model.params import Params
from ..training import TrainingRun, fit_params
from ..types import Sequences

__all__ = ["PILOT_EPOCHS", "PilotFit", "train_pilot"]

#: The epoch counts a pilot's training chooses from (one run, scored after each).
PILOT_EPOCHS: tuple[int, ...] = (2, 4, 6, 8, 12, 16)
#: Events held out at the end of each pilot user's sequence to score the candidates. One per
#: user is too few on a small pilot: on 189 users the choice swung between 2 and 6 epochs
#: with the seed; three per user triple the scored events.
HELD_OUT = 3
_MIN_FIT = 2  # events a scored user keeps to train on


@dataclass(frozen=True, eq=False)
class PilotFit:
    """The first model and how its epochs were chosen.

    Attributes:
        params: trained on every event of the pilot, for ``epochs`` epochs.
        epochs: the chosen count.
        scores: ``{epochs: NDCG@10}`` on the pilot users' held-out last events (empty when no
            pilot user had enough events to hold some out: then ``epochs`` is the training
            config's).
    """

    params: Params
    epochs: int
    scores: dict[int, float]


def train_pilot(pilot: Sequences, features: np.ndarray, cfg: ModelConfig, training: TrainConfig,
                *, candidates: tuple[int, ...] | None = None) -> PilotFit:
    """Train the first model on ``pilot`` (only the pilot users' events), choosing the epochs.

    ``training`` gives every other setting (seed, lr, l2, ...) and caps the epochs: the pilot
    never trains longer than the central setting would. ``candidates``: the counts tried, each
    > 0 (default: those of ``PILOT_EPOCHS`` up to ``training.epochs``, or ``training.epochs``
    alone if it is below them all). A pilot where no user has enough events to hold one out is
    trained for ``training.epochs``.
    """
    if candidates is None:
        candidates = tuple(e for e in PILOT_EPOCHS if e <= training.epochs) or (training.epochs,)
    if not candidates or min(candidates) < 1:
        raise ConfigError(f"pilot epoch candidates must be >= 1, got {candidates!r}")
    scores = _score_epochs(pilot, features, cfg, training, sorted(set(candidates)))
    epochs = max(scores, key=lambda e: (scores[e], -e)) if scores else training.epochs
    params = fit_params(pilot, features, cfg, replace(training, epochs=epochs))
    return PilotFit(params, epochs, scores)


def _score_epochs(pilot: Sequences, features: np.ndarray, cfg: ModelConfig, training: TrainConfig,
                  candidates: list[int]) -> dict[int, float]:
    """Mean NDCG@10 on each pilot user's last ``HELD_OUT`` events after each candidate count of
    epochs of one run on the rest (the weights after ``e`` epochs are a run of ``e`` epochs)."""
    from ..evaluation import ndcg_at, rank_users  # scoring, not needed on a device
    from ..evaluation.ours import FloatModel

    users = np.array([u for u, s in enumerate(pilot.items) if len(s) >= HELD_OUT + _MIN_FIT], np.int64)
    if len(users) == 0:
        return {}
    # The j-th last event of each scored user, with the events before it as the history.
    cut = [_truncate(pilot, users, j) for j in range(1, HELD_OUT + 1)]
    targets = [np.array([pilot.items[u][-j] for u in users], np.int64) for j in range(1, HELD_OUT + 1)]
    run = TrainingRun.fresh(cut[-1], features, cfg, training)
    scores: dict[int, float] = {}
    for epochs in candidates:
        run.advance(epochs - run.epochs)
        model = FloatModel(run.params, cfg, features)
        scores[epochs] = float(np.mean([ndcg_at(rank_users(model, h, users, t, features.shape[0])).mean()
                                        for h, t in zip(cut, targets)]))
    return scores


def _truncate(seqs: Sequences, users: np.ndarray, drop: int) -> Sequences:
    """``seqs`` with the last ``drop`` events of each of ``users`` left out."""
    chosen = set(users.tolist())
    return Sequences([s[:-drop] if u in chosen else s for u, s in enumerate(seqs.items)],
                     [g[:-drop] if u in chosen else g for u, g in enumerate(seqs.signals)])
