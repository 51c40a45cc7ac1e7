"""Opening a round: draw the cohort, check the parameters against the latest model, store it.

Usable without a server: the operator's CLI opens rounds on the database directly, and any
replica's scheduler does the same (the database keeps at most one round open).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Callable

from edgerec.model.params import param_names

from ._exceptions import BadRequestError, ConflictError
from .authority import eligible_devices
from .evaluation import EVALUATION, evaluation_round
from .publisher import Publisher
from .rollout import current, serving_base
from .rounds import CohortTooSmallError, RoundParams, draw_cohort
from .state import RoundRecord, StateBackend

__all__ = ["open_round"]


def open_round(state: StateBackend, publisher: Publisher, params: RoundParams, now: float,
               seed: bytes | None = None, *,
               noise_for: Callable[[int, int], float] | None = None) -> RoundRecord:
    """Open a round on the latest model for a Poisson sample of the active devices.

    Once there is a rollout statement (``rollout.py``) the round builds on (or measures) the
    promoted version instead, and only devices the statement assigns it to are drawn.

    Each active device is drawn independently with probability ``params.sampling_rate``; the
    drawn cohort is the round's members and its size its ``max_participants``. A draw smaller
    than ``min_participants`` opens nothing (ConflictError): no member list, no announcement.
    Usable without a server (the CLI opens rounds on the database directly).

    ``noise_for``: the round's noise multiplier is ``noise_for(population, cohort)`` of this
    draw (active devices, drawn devices: the audit's ``Release`` of the round) instead of
    ``params.noise_multiplier``; how ``round open --epsilon`` calibrates z to the draw.

    ``params.frozen`` is checked against the latest model's weights (BadRequestError: a name it
    does not have, or every weight frozen) and stored spelled out; the round's vector length
    is the number of entries it federates. An evaluation round (``params.kind``) measures the
    latest model (and ``params.candidate``, a published version) instead: its vector length is
    its layout's and its clip the layout's L2 bound (``evaluation.evaluation_round``); the draw
    and the noise (``noise_for`` included) are a training round's.
    """
    params.check()  # a mistake in the parameters is reported before anything is drawn
    latest = serving_base(state, publisher)  # the promoted version once a rollout statement is
    if params.kind == EVALUATION:  # devices send evaluation vectors: the layout's length
        params, vector_length = evaluation_round(params, state, latest)
    else:
        base = publisher.load(latest.version)
        params, mask = params.federated(base.params, param_names(base.config))
        vector_length = int(mask.sum())
    statement = current(state)  # a canary device runs the candidate: it cannot take part
    active = [d.id for d in eligible_devices(state, now)
              if statement is None or statement.version_for(d.id) == latest.version]
    members = draw_cohort(active, params.sampling_rate)
    if len(members) < params.min_participants:
        raise ConflictError(
            f"drew {len(members)} of {len(active)} active devices at sampling rate "
            f"{params.sampling_rate:g}; the round needs at least {params.min_participants} "
            "(nothing was opened: raise the sampling rate or lower the minimum, then try again)")
    try:
        params = params.for_cohort(len(members))
    except BadRequestError as exc:
        # The parameters passed check(): it is this draw that does not fit (a conflict, so
        # that a schedule simply draws again on its next tick; nothing was opened).
        few = isinstance(exc, CohortTooSmallError)
        raise ConflictError(
            f"drew {len(members)} of {len(active)} active devices, too {'few' if few else 'many'} "
            f"for a minimum of {params.min_participants}: {exc} (nothing was opened; a "
            f"{'higher' if few else 'lower'} sampling rate draws {'more' if few else 'fewer'})"
        ) from None
    if noise_for is not None:  # after every check of the draw: calibrating takes seconds
        params = replace(params, noise_multiplier=float(noise_for(len(active), len(members))))
    record = state.create_round(params.to_dict(), seed or os.urandom(32), now, latest.version,
                                vector_length, members, population=len(active))
    state.log_event("round_opened", {"round_id": record.id, "members": len(members),
                                     "population": len(active), **params.to_dict()}, now)
    return record
