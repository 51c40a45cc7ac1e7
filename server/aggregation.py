"""The end of a round: the survivors' sum decoded to a mean, the server optimizer applied to the
federated weights, and the new model built and signed (not yet stored: the coordinator stores
it with the round's closing, in one transaction). It runs outside the coordinator's lock: it
reads the round's finished machine, the base model and the optimizer state, and writes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edgerec._exceptions import ConfigError
from edgerec.federated import StrategyState, apply_federated
from edgerec.model.params import param_names, unflatten
from edgerec.privacy import aggregate_decode

from ._exceptions import BadRequestError
from .active import ActiveRound
from .publisher import Publisher, flat_weights
from .state import StateBackend

__all__ = ["AggregateError", "BUILT_KEY", "NewModel", "build_model"]

#: The entry of the stored optimizer state that names the model version it produced. The state
#: (FedAdam's moments and step) carries on only from that version: after a rejected candidate
#: the next round builds on the promoted version, and moments built along the rejected line
#: would push it back the way the rule just refused (likewise for an imported bundle).
BUILT_KEY = "__model_version__"


class AggregateError(Exception):
    """The round's aggregate cannot make a model (the round aborts; the message says why)."""


@dataclass(frozen=True)
class NewModel:
    """A signed model archive made from a finished round, and the optimizer state after it."""

    version: int
    archive: bytes
    sha256: str
    strategy: str
    state: StrategyState
    survivors: int
    aggregate_s: float  # decoding and the optimizer (publishing not included)


def build_model(state: StateBackend, publisher: Publisher, active: ActiveRound) -> NewModel:
    """The next model version from ``active``'s finished secure aggregation."""
    started = time.perf_counter()
    result = active.machine.result
    survivors, params = len(result.survivors), active.params
    try:
        mean = aggregate_decode(result.total, active.announcement().fixed_point(), survivors)
    except ConfigError as exc:  # a contribution that encode() cannot have made
        raise AggregateError(f"the aggregate does not decode: {exc}") from None
    base = publisher.load(active.record.base_version)
    names = param_names(base.config)
    weights = flat_weights(base)
    try:
        _, federated = params.federated(base.params, names)
    except BadRequestError as exc:  # checked at opening: the base model cannot have changed
        raise AggregateError(f"the frozen weights do not fit the base model: {exc}") from None
    if int(federated.sum()) != mean.size:
        raise AggregateError(f"the aggregate has {mean.size} entries, the round federates "
                             f"{int(federated.sum())}")
    strategy = params.make_strategy()
    prior = _prior(state, strategy.name, active.record.base_version, weights.shape)
    new_weights, new_state = apply_federated(strategy, weights, mean, federated, prior)
    aggregate_s = time.perf_counter() - started
    version = publisher.latest().version + 1
    new_state = StrategyState({**new_state.arrays, BUILT_KEY: np.array(version, np.int64)},
                              new_state.step)
    hyper = {"round_id": active.id, "strategy": strategy.name, "survivors": survivors,
             "clip": params.clip, "noise_multiplier": params.noise_multiplier,
             **({"frozen": list(params.frozen)} if params.frozen else {})}
    archive, sha = publisher.build(unflatten(new_weights, base.params, names), base.catalogue,
                                   base.config, version, active.record.base_version, hyper)
    return NewModel(version, archive, sha, strategy.name, new_state, survivors, aggregate_s)


def _prior(state: StateBackend, name: str, base_version: int, shape: tuple[int, ...]) -> StrategyState:
    """The optimizer state a round on ``base_version`` continues: the stored one when it was
    produced by that version's own round and fits the model, else a fresh one."""
    stored = state.strategy_state(name)
    if stored is None:
        return StrategyState()
    step, arrays = stored[0], dict(stored[1])
    built = arrays.pop(BUILT_KEY, None)  # absent in states stored before it was kept
    if built is not None and int(built) != base_version:
        return StrategyState()  # the round builds on another line of models
    if any(a.shape != shape for a in arrays.values()):
        return StrategyState()  # the model's shape changed: optimizer state starts afresh
    return StrategyState(arrays, step)
