"""Federated metrics from the (noised) sum of device vectors, with confidence intervals (pure).

The server sees one vector: ``S = sum_d v_d + noise``, where ``v_d`` is device ``d``'s encoded
vector (``layout.py``) and the noise per slot is Gaussian-like with a known std (the distributed
discrete Gaussian of the round, ``DistributedNoise.sum_std(survivors)``, plus, if the caller
wants it counted, the fixed-point rounding). ``devices`` (n) is exact: the server knows how many
vectors were summed. For a round through ``edgerec.privacy`` (clip ``layout.l2_bound``, a
no-op; ``FixedPoint`` code ``fp``; the sum decoded with ``decode_sum``, not the mean) the std per
slot is ``sqrt(n * (fp.grid_sigma**2 + 1/4)) / fp.scale``: the n discrete Gaussian shares and
the stochastic rounding (variance at most 1/4 grid step squared per device).

Every rate is a ratio of two sums over devices, ``R = sum y_d / sum x_d``:

* HR@K, NDCG@K of a model: ``x_d`` = 1 if device ``d`` ranked held-out events (else 0), ``y_d``
  its mean metric: R is the mean over devices with held-out events (DESIGN.md averages over
  users; here over devices).
* candidate - installed: the same with ``y_d = y_d(candidate) - y_d(installed)`` (paired: both
  models ranked the same held-out events on each device).
* CTR, purchase rate, dismiss rate: ``x_d`` = the device's impressions, ``y_d`` its clicked
  (bought, dismissed) impressions: pooled over impressions, the usual CTR.

Interval: the normal interval of the ratio estimator with the delta method, whose variance has
two independent parts::

    Var(R^) ~= [ n/(n-1) * sum_d (y_d - R x_d)^2  +  s_y^2 + R^2 s_x^2 ] / (sum_d x_d)^2

The first is the sampling variance across devices (devices treated as i.i.d. draws from the
population; ``sum (y - R x)^2 = Syy - 2 R Sxy + R^2 Sxx`` is read from the square and cross
product slots, so it needs no device-level data; a lean layout without a model's ``.sq`` slot
bounds ``Syy`` by ``Sy``, as ``y_d^2 <= y_d`` for ``y_d`` in [0, 1]: the Bernoulli bound
``R (1 - R) Sx``, never below the true spread, so the interval only widens); the second is the DP noise of the numerator
and denominator sums (std ``s_y``, ``s_x``; independent per slot). All sums are the noised ones
(the noise has mean zero, so the plug-in variance is unbiased up to the delta method's order).
A paired difference's interval is also widened by the worst-case fixed-point rounding of its
two sums (``rounding``, per slot: ``edgerec.privacy.rounding_bound``), ``2 * rounding / sum x``:
the Gaussian term counts rounding by its variance, so with no DP noise and devices that do not
vary (two models that rank alike: every paired difference 0) it alone would exclude the true 0
in about 2 rounds in 100 and call an identical candidate "worse beyond the interval"; the bound
makes that impossible, at a width of about two grid steps per device (~1e-6 of NDCG).
The interval ``R^ +- z * sqrt(Var)`` is finally intersected with the range the rate can take
([0, 1], or [-1, 1] for a difference): that never lowers its coverage. Without at least two
devices, or with a noised denominator <= 0, the rate is undefined: value NaN, interval the
whole range.

Device and event totals (devices with held-out events, impressions, ...) are reported as the
noised sum with a noise-only interval: they are totals of the devices that took part, with no
sampling error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from collections.abc import Mapping

import numpy as np

from .._exceptions import ConfigError
from .layout import LIVE_COUNTS, EvalLayout

__all__ = ["FederatedEval", "MetricEstimate", "estimate"]

_RATES = {"clicks": "live.ctr", "purchases": "live.purchase_rate", "dismissals": "live.dismiss_rate"}


@dataclass(frozen=True)
class MetricEstimate:
    """One federated figure and its confidence interval.

    Attributes:
        name: e.g. ``installed.hr@10``, ``candidate-installed.ndcg@10``, ``live.ctr``,
            ``live.impressions``.
        value: the point estimate (NaN when undefined), within ``[low, high]``.
        low, high: the confidence interval (the rate's whole range when undefined).
        std_error: ``sqrt(sampling_std_error^2 + noise_std_error^2)`` (inf when undefined).
        sampling_std_error: the part from drawing devices (0 for totals).
        noise_std_error: the part from the DP noise.
        denominator: the noised sum the rate divides by (devices with held-out events, or
            impressions); for a total, the number of devices summed.
        defined: False when there was nothing to divide by (see the module docstring).
    """

    name: str
    value: float
    low: float
    high: float
    std_error: float
    sampling_std_error: float
    noise_std_error: float
    denominator: float
    defined: bool

    def to_dict(self) -> dict[str, object]:
        """JSON-ready (NaN and infinities become None)."""
        out: dict[str, object] = {"name": self.name, "defined": self.defined}
        for field in ("value", "low", "high", "std_error", "sampling_std_error", "noise_std_error",
                      "denominator"):
            x = getattr(self, field)
            out[field] = x if math.isfinite(x) else None
        return out


@dataclass(frozen=True, eq=False)
class FederatedEval:
    """The operator's view of one evaluation round: every figure the layout yields.

    ``metrics`` maps names to estimates: per model ``<m>.hr@K`` and ``<m>.ndcg@K``; per
    candidate ``<m>-<installed>.hr@K`` and ``.ndcg@K`` (paired differences); ``live.ctr``,
    ``live.purchase_rate``, ``live.dismiss_rate``; the totals ``loo.devices``,
    ``live.devices``, ``live.impressions``, ``live.clicks``, ``live.purchases``,
    ``live.dismissals`` (a lean layout yields the subset its slots carry: its ``metrics``,
    and nothing ``live.`` without the live slots).
    """

    layout_key: str
    devices: int
    confidence: float
    metrics: Mapping[str, MetricEstimate]

    def __getitem__(self, name: str) -> MetricEstimate:
        return self.metrics[name]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready, for the analytics endpoint."""
        return {"layout": self.layout_key, "devices": self.devices, "confidence": self.confidence,
                "metrics": {name: m.to_dict() for name, m in self.metrics.items()}}


def estimate(sum_vector: np.ndarray, noise_std_of_sum: float | np.ndarray, devices: int, *,
             layout: EvalLayout, confidence: float = 0.95, rounding: float = 0.0) -> FederatedEval:
    """Point estimates and ``confidence`` intervals from the sum of ``devices`` device vectors.

    ``noise_std_of_sum`` is the std of the noise in each slot of the sum: one number for all
    slots, or one per slot (0 for a sum without noise). ``rounding`` is the largest fixed-point
    rounding error of one slot of the sum (``edgerec.privacy.rounding_bound``; 0 for a sum of
    exact floats): paired differences' intervals are widened by it (module docstring).

    Raises:
        ConfigError: a sum of another length or not finite, a negative or non-finite noise std,
            ``devices`` not an int >= 0, ``confidence`` outside (0, 1), ``rounding`` negative
            or not finite.
    """
    if not isinstance(layout, EvalLayout):
        raise ConfigError(f"layout must be an EvalLayout, got {type(layout).__name__}")
    sums = layout.decode(sum_vector)
    if isinstance(devices, bool) or not isinstance(devices, (int, np.integer)) or devices < 0:
        raise ConfigError(f"devices must be an int >= 0, got {devices!r}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be a float in (0, 1), got {confidence!r}")
    if (isinstance(rounding, bool) or not isinstance(rounding, (int, float))
            or not (math.isfinite(rounding) and rounding >= 0)):
        raise ConfigError(f"rounding must be a finite number >= 0, got {rounding!r}")
    var = {name: s * s for name, s in zip(layout.names, _noise_std(noise_std_of_sum, len(layout)))}
    est = _Estimator(int(devices), NormalDist().inv_cdf(0.5 + confidence / 2.0))
    cfg, out = layout.config, {}
    base = cfg.models[0]
    for metric in cfg.metrics:
        for m in cfg.models:
            y = layout.metric_name(m, metric)
            out[y] = est.ratio(y, x=sums["loo.devices"], y=sums[y], xx=sums["loo.devices"],
                               yy=sums.get(y + ".sq", sums[y]), xy=sums[y],
                               var_x=var["loo.devices"], var_y=var[y])
        y0 = layout.metric_name(base, metric)
        for m in cfg.models[1:]:
            y, name = layout.metric_name(m, metric), layout.metric_name(f"{m}-{base}", metric)
            diff = sums[y] - sums[y0]
            out[name] = est.ratio(name, x=sums["loo.devices"], y=diff, xx=sums["loo.devices"],
                                  yy=sums[name + ".sq"], xy=diff, var_x=var["loo.devices"],
                                  var_y=var[y] + var[y0], low=-1.0, slack=2.0 * rounding)
    out["loo.devices"] = est.total("loo.devices", sums["loo.devices"], var["loo.devices"], 1.0)
    if cfg.live:
        out.update(_live(est, sums, var, float(cfg.max_impressions)))
    return FederatedEval(layout.key, int(devices), float(confidence), out)


def _live(est: "_Estimator", sums: Mapping[str, float], var: Mapping[str, float],
          scale: float) -> dict[str, MetricEstimate]:
    """The live-feedback rates and totals."""
    out = {}
    for c, name in _RATES.items():
        out[name] = est.ratio(name, x=sums["live.impressions"], y=sums[f"live.{c}"],
                              xx=sums["live.impressions.sq"], yy=sums[f"live.{c}.sq"],
                              xy=sums[f"live.impressions*{c}"], var_x=var["live.impressions"],
                              var_y=var[f"live.{c}"])
    out["live.devices"] = est.total("live.devices", sums["live.devices"], var["live.devices"], 1.0)
    for c in LIVE_COUNTS:
        out[f"live.{c}"] = est.total(f"live.{c}", sums[f"live.{c}"] * scale,
                                     var[f"live.{c}"] * scale * scale, scale)
    return out


def _noise_std(noise: float | np.ndarray, size: int) -> np.ndarray:
    try:
        arr = np.broadcast_to(np.asarray(noise, dtype=np.float64), (size,))
    except (TypeError, ValueError):
        raise ConfigError(f"noise_std_of_sum must be a number or {size} numbers") from None
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ConfigError("noise_std_of_sum must be finite and >= 0")
    return arr


class _Estimator:
    def __init__(self, n: int, z: float) -> None:
        self.n, self.z = n, z

    def ratio(self, name: str, *, x: float, y: float, xx: float, yy: float, xy: float,
              var_x: float, var_y: float, low: float = 0.0, high: float = 1.0,
              slack: float = 0.0) -> MetricEstimate:
        """``sum y / sum x`` with its delta-method interval, widened by ``slack / sum x`` (a
        worst-case error of ``sum y``; module docstring)."""
        n = self.n
        if n < 2 or not x > 0.0:
            return MetricEstimate(name, math.nan, low, high, math.inf, math.inf, math.inf, x, False)
        r = y / x
        spread = max(0.0, yy - 2.0 * r * xy + r * r * xx)  # sum_d (y_d - r x_d)^2
        sampling = math.sqrt(n / (n - 1.0) * spread) / x
        noise = math.sqrt(var_y + r * r * var_x) / x
        se = math.hypot(sampling, noise)
        half = self.z * se + slack / x
        return MetricEstimate(name, _clip(r, low, high), _clip(r - half, low, high),
                              _clip(r + half, low, high), se, sampling, noise, x, True)

    def total(self, name: str, value: float, var: float, per_device: float) -> MetricEstimate:
        """A noised total of the devices summed: at most ``per_device`` each."""
        top = self.n * per_device
        se = math.sqrt(var)
        return MetricEstimate(name, _clip(value, 0.0, top), _clip(value - self.z * se, 0.0, top),
                              _clip(value + self.z * se, 0.0, top), se, 0.0, se, float(self.n), True)


def _clip(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)
