"""Evaluation rounds on the server: what they measure, and what is kept when they end.

An evaluation round is a round like any other (the same cohort draw, secure aggregation,
distributed noise, threshold and audit) whose devices send their ``edgerec.fedeval`` vector
instead of a model delta. The round measures the base model (the latest published, what the
devices run) and, if the operator names one, a candidate version beside it; its
``EvalConfig`` is stored spelled out in the round's parameters, so the layout devices are told
about is the one the sum is read with. The vector's length is the layout's, and the clip is its
L2 bound (a no-op for honest devices: every slot lies in [0, 1]), so the noise multiplier z
means for these vectors what it means for a delta, and the audit accounts the round as it
accounts a training round: one ``Release(N, k, z)`` in the same epsilon budget.

When the last stage closes nothing is built: ``evaluation_store.store_evaluation`` decodes
and estimates the sum and stores it with the round's completion.
"""

from __future__ import annotations

import math
from dataclasses import replace

from edgerec._exceptions import ConfigError
from edgerec.fedeval import EvalConfig
from edgerec.privacy import FixedPoint
from edgerec.sync import EVALUATION, EvalAnnouncement

from ._exceptions import BadRequestError
from .rounds import RoundParams
from .state import ModelRecord, StateBackend

__all__ = ["EVALUATION", "eval_announcement", "eval_config", "evaluation_round", "noise_std_of_sum"]

_SLOTS = ("installed", "candidate")
_SETTINGS = ("top_k", "max_held_out", "max_impressions", "attribution_s", "max_history", "metrics",
             "squares", "live")


def eval_config(params: RoundParams) -> EvalConfig:
    """The round's ``EvalConfig``: the base model, and the candidate if one is named, with the
    round's settings (BadRequestError: settings the config refuses)."""
    settings = dict(params.evaluation or {})
    unknown = sorted(set(settings) - set(_SETTINGS))
    if unknown:
        raise BadRequestError(f"unknown evaluation settings {unknown}; known: {list(_SETTINGS)}")
    models = _SLOTS if params.candidate is not None else _SLOTS[:1]
    if isinstance(settings.get("metrics"), list):  # stored as JSON: a list again
        settings["metrics"] = tuple(settings["metrics"])
    try:
        return EvalConfig(models=models, **settings)
    except ConfigError as exc:
        raise BadRequestError(f"evaluation settings: {exc}") from None


def evaluation_round(params: RoundParams, state: StateBackend, latest: ModelRecord) -> tuple[RoundParams, int]:
    """An evaluation round's parameters as stored (its clip the layout's L2 bound, its settings
    spelled out) and its vector length, checked against the published models.

    Raises:
        BadRequestError: frozen weights, bad settings, or a candidate that is not a published
            version other than the base (``latest``).
    """
    if params.frozen:
        raise BadRequestError("an evaluation round federates no weights: nothing to freeze")
    candidate = params.candidate
    if candidate is not None:
        if isinstance(candidate, bool) or not isinstance(candidate, int):
            raise BadRequestError("the candidate must be a model version (an integer)")
        if candidate == latest.version:
            raise BadRequestError(f"the candidate is the base model {candidate}: name another version")
        if state.model(candidate) is None:
            raise BadRequestError(f"no model version {candidate} to evaluate")
    config = eval_config(params)
    layout = config.layout
    settings = {name: getattr(config, name) for name in _SETTINGS}
    return replace(params, clip=layout.l2_bound, evaluation=settings), len(layout)


def eval_announcement(params: RoundParams, base_version: int) -> EvalAnnouncement:
    """What devices are told the round measures."""
    versions = (base_version,) if params.candidate is None else (base_version, params.candidate)
    return EvalAnnouncement.of(eval_config(params), versions)


def noise_std_of_sum(fp: FixedPoint, devices: int) -> float:
    """The std of the noise in each slot of a decoded sum of ``devices`` encodings: their
    discrete Gaussian shares and their stochastic rounding (at most 1/4 grid step squared)."""
    return math.sqrt(devices * (fp.grid_sigma ** 2 + 0.25)) / fp.scale
