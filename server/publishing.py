"""The end of a round, outside the coordinator's lock: unmask, make the outcome, store it.

The coordinator closes a round's last stage under its lock only as far as freezing and claiming
it, and hands it over as a ``Publication``; ``Publishing.publish`` then unmasks the survivors'
sum and, for a training round, applies the server optimizer and builds and signs the new model
(``aggregation.build_model``), or, for an evaluation round, decodes and estimates the sum
(``evaluation_store.py``), and stores the outcome with the round's completion in one
transaction (which also erases the round's message bodies). Devices are answered meanwhile.

The database decides who publishes: the completion writes only while this replica's claim
holds. Killed here, this replica leaves the round open and frozen; once the claim lapses another
replica (or this one restarted) closes the stage again from the stored messages.

This module never takes the coordinator's lock: whatever way a publication ends, it tells the
coordinator through the ``PublicationHooks`` it was given, which take the lock themselves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from edgerec._exceptions import RoundAbortedError
from edgerec.secagg import Stage

from . import audit, rollout
from ._exceptions import BadRequestError, ConflictError
from .active import ActiveRound
from .aggregation import AggregateError, NewModel
from .config import ServerConfig
from .evaluation import EVALUATION
from .evaluation_store import store_evaluation
from .logs import log_event
from .metrics import Metrics
from .publisher import Publisher
from .state import RoundRecord, StateBackend

__all__ = ["PUBLISHING", "BuildModel", "Publication", "PublicationHooks", "Publishing"]

#: What a round's status says while its last stage is closed and its model is being made.
PUBLISHING = "publishing"

#: Makes a finished round's model: ``build_model`` (tests pass a slower one).
BuildModel = Callable[[StateBackend, Publisher, ActiveRound], NewModel]


@dataclass(frozen=True)
class Publication:
    """A round whose last stage this replica froze and claimed, to be unmasked and published
    outside the lock. ``now`` is when its close began (``clock``), ``started`` the same on
    ``perf_counter`` (for the metrics)."""

    active: ActiveRound
    now: float
    started: float


@dataclass(frozen=True)
class PublicationHooks:
    """What the coordinator does as a publication ends; each takes the coordinator's lock
    itself when it needs it."""

    #: abort the round: its record, the reason, how many devices took part
    abort: Callable[[RoundRecord, str, int | None], None]
    #: the publication is over (the database says how): forget the round
    published: Callable[[ActiveRound], None]
    #: the publication failed with an unexpected error: rebuild the round from the database
    failed: Callable[[ActiveRound, Exception], None]
    #: an open round moved on (long polls wake)
    changed: Callable[[], None]


class Publishing:
    """Publishes the rounds one coordinator hands over (``publish``), as replica ``owner``."""

    def __init__(self, state: StateBackend, publisher: Publisher, config: ServerConfig, *,
                 clock: Callable[[], float], metrics: Metrics, owner: str, build: BuildModel,
                 hooks: PublicationHooks) -> None:
        self.state, self.publisher, self.config, self.clock = state, publisher, config, clock
        self.metrics, self.owner, self._build, self._hooks = metrics, owner, build, hooks

    def publish(self, publication: Publication) -> None:
        """Unmask the sum, apply the server optimizer, build and sign the model, then store it
        and complete the round (one transaction, which also erases the round's message bodies),
        all without the lock: devices are answered meanwhile. The database decides who
        publishes: ``complete_round`` writes only while this replica's claim holds. Killed
        here, this replica leaves the round open and frozen; once the claim lapses another
        replica (or this one restarted) closes the stage again from the stored messages."""
        active, now, started = publication.active, publication.now, publication.started
        if active.params.kind == EVALUATION:
            self._publish_evaluation(publication)
            return
        hooks = self._hooks
        try:
            try:
                active.machine.advance()  # the unmasking: the survivors' sum, nothing else
                new = self._build(self.state, self.publisher, active)
            except (RoundAbortedError, AggregateError) as exc:
                hooks.abort(active.record, str(exc), len(active.advertised))
                hooks.published(active)
                return
            done = [r for r in self.state.rounds("done")] + [active.record]
            eps = audit.cumulative_epsilon((audit.release_of(r) for r in done),
                                           self.config.dp_delta, self.config.accountant)
            try:
                self.state.complete_round(
                    active.id, self.clock(), participants=len(active.advertised),
                    survivors=new.survivors, epsilon=eps, model_version=new.version,
                    archive=new.archive, sha256=new.sha256, strategy=new.strategy,
                    strategy_step=new.state.step, strategy_arrays=new.state.arrays,
                    owner=self.owner)
            except ConflictError:
                hooks.published(active)  # this replica's claim lapsed: another one finished it
                return
        except Exception as exc:
            hooks.failed(active, exc)
            raise
        hooks.published(active)
        self.state.log_event("model_published", {"version": new.version, "round_id": active.id,
                                                  "sha256": new.sha256}, now)
        self._hold_as_canary(new.version, active.id)
        aggregate_s, m = new.aggregate_s, self.metrics
        m.aggregate.observe(aggregate_s)
        m.publish.observe(time.perf_counter() - started - aggregate_s)
        m.stage_close.labels(Stage.UNMASK.name).observe(time.perf_counter() - started)
        m.rounds.labels("done").inc()
        hooks.changed()
        m.participants.set(len(active.advertised))
        m.survivors.set(new.survivors)
        m.model_version.set(new.version)
        log_event("round_done", round_id=active.id, survivors=new.survivors,
                  model_version=new.version, epsilon=eps)

    def _hold_as_canary(self, version: int, round_id: int) -> None:
        """With ``canary_share`` set and statements in use, put the new model on canary
        (``rollout.start_canary``). Any failure (another candidate undecided, a newer version
        already named, the database) is logged, never fatal: the round is already stored, and
        the model stays published and held, served to no device until a statement names it."""
        share = self.config.canary_share
        if share <= 0 or rollout.current(self.state) is None:
            return
        now = self.clock()
        try:
            rollout.start_canary(self.state, self.publisher, version, share, now)
        except Exception as exc:  # noqa: BLE001 - the model is published; only its canary failed
            refused = isinstance(exc, (BadRequestError, ConflictError))
            reason = str(exc) if refused else repr(exc)
            log_event("canary_not_started", version=version, reason=reason)
            if refused:  # the rule's refusals go to the operations log; a failing state cannot
                self.state.log_event("canary_not_started", {"version": version,
                                                            "round_id": round_id,
                                                            "reason": reason}, now)

    def _publish_evaluation(self, publication: Publication) -> None:
        """The end of an evaluation round: no model; the survivors' sum decoded, its metrics
        estimated and stored with the round's completion (``evaluation_store``), under the
        same claim, outside the lock, with the same failures as a model's publication."""
        active, now, started = publication.active, publication.now, publication.started
        hooks = self._hooks
        try:
            try:
                active.machine.advance()  # the unmasking: the survivors' sum, nothing else
                stored = store_evaluation(self.state, active, self.config, self.clock(), self.owner)
            except (RoundAbortedError, AggregateError) as exc:
                hooks.abort(active.record, str(exc), len(active.advertised))
                hooks.published(active)
                return
            except ConflictError:
                hooks.published(active)  # this replica's claim lapsed: another one finished it
                return
        except Exception as exc:
            hooks.failed(active, exc)
            raise
        hooks.published(active)
        self.state.log_event("evaluation_stored", {"round_id": active.id, "devices": stored.devices,
                                                   "models": [stored.base_version, stored.candidate_version]},
                             now)
        self.metrics.stage_close.labels(Stage.UNMASK.name).observe(time.perf_counter() - started)
        self.metrics.rounds.labels("done").inc()
        self.metrics.participants.set(len(active.advertised))
        self.metrics.survivors.set(stored.devices)
        hooks.changed()
        log_event("round_done", round_id=active.id, kind=EVALUATION, survivors=stored.devices,
                  epsilon=stored.cumulative_epsilon)
