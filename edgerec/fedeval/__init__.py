"""Federated evaluation: devices measure models on their own events, the server sees a sum.

Pure code, part of the device runtime (it never loads ``edgerec.evaluation``, the off-device
protocol tooling): no I/O, no clock, no randomness.

* ``layout``: ``EvalConfig`` and the versioned ``EvalLayout`` of named, bounded slots; its
  ``l2_bound`` is the sensitivity the round's noise is calibrated to.
* ``device``: ``device_eval`` / ``device_eval_vector``, a device's LOO metrics (installed and
  candidate models) on events no model trained on, and its live feedback (CTR, dismissals).
* ``estimation``: ``estimate``, means with confidence intervals from the noised sum, accounting
  for both the sampling of devices and the known DP noise; paired candidate - installed
  differences.
* ``scorers``: ``ScoreFn`` adapters over the int8 ONNX ``Scorer`` and the numpy float model.
"""

from .device import DeviceEval, device_eval, device_eval_vector
from .estimation import FederatedEval, MetricEstimate, estimate
from .layout import LAYOUT_VERSION, LIVE_COUNTS, EvalConfig, EvalLayout, Slot
from .scorers import BatchScorer, ScoreFn, params_score_fn, scorer_score_fn

__all__ = [
    "LAYOUT_VERSION",
    "LIVE_COUNTS",
    "BatchScorer",
    "DeviceEval",
    "EvalConfig",
    "EvalLayout",
    "FederatedEval",
    "MetricEstimate",
    "ScoreFn",
    "Slot",
    "device_eval",
    "device_eval_vector",
    "estimate",
    "params_score_fn",
    "scorer_score_fn",
]
