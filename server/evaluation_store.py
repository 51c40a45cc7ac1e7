"""The end of an evaluation round: the survivors' sum decoded, estimated and stored.

Nothing is built. The sum (not the mean) of the survivors' vectors is decoded from the secure
aggregate, the metrics and their confidence intervals are estimated from it
(``edgerec.fedeval.estimate``, with the known noise of the sum: the n discrete Gaussian shares
and the stochastic rounding), and the decoded sum, the estimate, the model versions, devices,
z, clip and the round's epsilon are stored with the round's completion in one transaction
(``StateBackend.complete_evaluation``). It runs outside the coordinator's lock, like a training
round's publication, and stores only while this replica's claim on the round holds.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from edgerec._exceptions import ConfigError
from edgerec.fedeval import EvalConfig, estimate
from edgerec.privacy import decode_sum, rounding_bound

from . import audit
from .active import ActiveRound
from .aggregation import AggregateError
from .config import ServerConfig
from .evaluation import eval_config, noise_std_of_sum
from .state import EvaluationRecord, StateBackend

__all__ = ["store_evaluation"]


def store_evaluation(state: StateBackend, active: ActiveRound, config: ServerConfig, now: float,
                     owner: str | None) -> EvaluationRecord:
    """Decode the finished round's sum, estimate its metrics, and store them with the round's
    completion (while ``owner``'s claim holds: ConflictError otherwise).

    Raises:
        AggregateError: a sum that does not decode (the round aborts).
    """
    result = active.machine.result
    devices, params = len(result.survivors), active.params
    fp = active.announcement().fixed_point()
    try:
        total = decode_sum(result.total, fp, devices)
    except ConfigError as exc:  # a contribution that privatize() cannot have made
        raise AggregateError(f"the aggregate does not decode: {exc}") from None
    layout = eval_config(params).layout
    noise_std = noise_std_of_sum(fp, devices)
    try:
        found = estimate(total, noise_std, devices, layout=layout,
                         rounding=rounding_bound(fp, devices))
    except ConfigError as exc:  # a sum of another length than the layout's: cannot be honest
        raise AggregateError(f"the aggregate does not fit layout {layout.key}: {exc}") from None
    done = [r for r in state.rounds("done")] + [active.record]
    # The round alone, and everything released so far (what the audit shows after it).
    alone = audit.cumulative_epsilon([audit.release_of(active.record)], config.dp_delta,
                                     config.accountant)
    cumulative = audit.cumulative_epsilon((audit.release_of(r) for r in done), config.dp_delta,
                                          config.accountant)
    record = EvaluationRecord(
        round_id=active.id, created_at=now, base_version=active.record.base_version,
        candidate_version=params.candidate, layout_key=layout.key, config=_config_dict(layout.config),
        devices=devices, noise_multiplier=float(params.noise_multiplier), clip=float(params.clip),
        epsilon=alone, cumulative_epsilon=cumulative, noise_std=noise_std,
        sum_vector=tuple(float(x) for x in np.asarray(total, np.float64)), estimate=found.to_dict())
    state.complete_evaluation(record, participants=len(active.advertised), owner=owner)
    return record


def _config_dict(config: EvalConfig) -> dict[str, Any]:
    out = asdict(config)
    out["models"] = list(config.models)
    return out
