"""The operator's view of federated evaluation: ``GET /v1/analytics``, ``edgerec-server analytics``.

Two views of the stored evaluations (``StateBackend.evaluations``), both JSON-ready:

* ``evaluations``: one row per evaluation round, oldest first, with every figure its layout
  yields (``edgerec.fedeval.FederatedEval``: value, interval, standard errors, denominator), the
  model version of each slot, devices counted, z, clip, and epsilon: the round alone and
  cumulative over every completed round up to it (training rounds included: one budget).
* ``models``: per model version, the latest evaluation round that measured it, with that
  model's own figures under plain names: ``hr@10``, ``ndcg@10``; for the model devices ran
  (the installed slot) also the live feedback (``live.ctr``, ``live.dismiss_rate``, ...,
  ``live.impressions``) and ``loo.devices``; for a candidate also its paired difference from the
  installed model, named ``"ndcg@10 - v<installed>"``.

An infinite epsilon (a round without noise) is ``null`` with ``differentially_private: false``.
Pure: the caller reads the state and serializes.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from .state import EvaluationRecord

__all__ = ["analytics", "analytics_table", "evaluation_row", "model_rows"]


def _number(x: float) -> float | None:
    return x if math.isfinite(x) else None


def evaluation_row(e: EvaluationRecord) -> dict[str, Any]:
    """One evaluation round, as ``GET /v1/analytics`` lists it."""
    slots = list(e.config.get("models", ["installed"]))
    versions = [e.base_version] + ([e.candidate_version] if e.candidate_version is not None else [])
    return {
        "round_id": e.round_id, "closed_at": e.created_at, "layout": e.layout_key,
        "models": dict(zip(slots, versions)), "devices": e.devices,
        "noise_multiplier": e.noise_multiplier, "clip": e.clip, "noise_std_of_sum": e.noise_std,
        "epsilon": _number(e.epsilon), "cumulative_epsilon": _number(e.cumulative_epsilon),
        "differentially_private": math.isfinite(e.cumulative_epsilon),
        "confidence": e.estimate.get("confidence"), "metrics": dict(e.estimate.get("metrics", {})),
    }


def model_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model version (ascending), its figures from the latest evaluation that measured it."""
    latest: dict[int, dict[str, Any]] = {}
    for row in rows:
        slots = list(row["models"].items())
        base_slot, base_version = slots[0]
        for slot, version in slots:
            metrics = {name[len(slot) + 1:]: m for name, m in row["metrics"].items()
                       if name.startswith(slot + ".")}
            if slot == base_slot:  # what the devices ran: its live feedback is its own
                metrics.update({name: m for name, m in row["metrics"].items()
                                if name.startswith(("live.", "loo."))})
            else:
                paired = f"{slot}-{base_slot}."
                metrics.update({f"{name[len(paired):]} - v{base_version}": m
                                for name, m in row["metrics"].items() if name.startswith(paired)})
            latest[version] = {
                "model_version": version, "role": slot, "round_id": row["round_id"],
                "closed_at": row["closed_at"],
                "compared_with": None if slot == base_slot else base_version,
                "devices": row["devices"], "noise_multiplier": row["noise_multiplier"],
                "epsilon": row["epsilon"], "cumulative_epsilon": row["cumulative_epsilon"],
                "differentially_private": row["differentially_private"],
                "confidence": row["confidence"], "metrics": metrics}
    return [latest[v] for v in sorted(latest)]


def analytics(evaluations: Iterable[EvaluationRecord], delta: float) -> dict[str, Any]:
    """The whole document of ``GET /v1/analytics`` (and ``edgerec-server analytics --json``)."""
    rows = [evaluation_row(e) for e in evaluations]
    return {"delta": delta, "models": model_rows(rows), "evaluations": rows}


def _fmt(x: object, spec: str = ".4f") -> str:
    return "-" if not isinstance(x, (int, float)) else format(x, spec)


def analytics_table(doc: dict[str, Any]) -> str:
    """The ``models`` view as a text table: one line per model version and metric."""
    lines = [f"{'model':>5} {'role':9} {'round':>5} {'devices':>7} {'epsilon':>9}  "
             f"{'metric':22} {'value':>9}  interval"]
    for m in doc["models"]:
        eps = "inf" if not m["differentially_private"] else _fmt(m["epsilon"], ".3f")
        head = f"{m['model_version']:>5} {m['role']:9} {m['round_id']:>5} {m['devices']:>7} {eps:>9}"
        for name, est in m["metrics"].items():
            interval = f"[{_fmt(est.get('low'))}, {_fmt(est.get('high'))}]"
            lines.append(f"{head}  {name:22} {_fmt(est.get('value')):>9}  {interval}")
    if len(lines) == 1:
        lines.append("(no evaluation round has completed yet)")
    confidence = {m["confidence"] for m in doc["models"]} or {0.95}
    shown = ", ".join(f"{c:.0%}" for c in sorted(c for c in confidence if c is not None))
    lines.append(f"(latest evaluation round per model version; {shown} intervals count device "
                 f"sampling and the DP noise; epsilon: that round alone, at delta={doc['delta']:g})")
    return "\n".join(lines)
