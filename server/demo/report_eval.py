"""The demo's evaluation figures in words, under its table: each evaluation round's federated
estimate beside central LOO-full on the same held-out events, the epsilon each kind of round
cost, and the canary's outcome (``evaluation.py`` makes the figures)."""

from __future__ import annotations

import math
import textwrap
from typing import Any

__all__ = ["EVALUATION_NOTES", "evaluation_lines"]

#: What the "federated" columns are (printed under the table when evaluation rounds ran).
EVALUATION_NOTES = (
    "federated, 95%-interval: NDCG@10 of the round's model as the devices measured it in an "
    "evaluation round after the round (each drawn device ranks its held-out item on its own "
    "and sends a bounded vector; the server sees only the noised secure-aggregation sum), with "
    "the interval the server states (device sampling and DP noise); '-': no evaluation round. "
    "The held-out item is the one central LOO-full ranks, logged on the device only for "
    "evaluation rounds, so no fine-tune reads it. epsilon counts the evaluation rounds before "
    "it too (one budget)")


def _num(x: float | None, spec: str = ".4f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _eps(x: float | None) -> str:
    return "inf" if x is None else f"{x:.3g}"


def _interval(est: dict[str, Any] | None) -> str:
    if not est or est.get("value") is None:
        return "- (not estimated)"
    return f"{est['value']:.4f} [{_num(est['low'], '.4f')}, {_num(est['high'], '.4f')}]"


def evaluation_lines(report: dict[str, Any], width: int = 80) -> list[str]:
    """The lines under the table about evaluation rounds and the canary."""
    lines = textwrap.wrap(EVALUATION_NOTES, width=width)
    for row in report["rounds"]:
        fed = row.get("federated")
        if fed:
            lines += textwrap.wrap(_round_line(row["round"], fed), width=width)
    split = report.get("epsilon_by_kind")
    if split:
        lines.append(f"epsilon (delta {report['delta']:g}) of the training rounds alone "
                     f"{_eps(split.get('training'))}, of the evaluation rounds alone "
                     f"{_eps(split.get('evaluation'))}; together (the audit, one budget) "
                     f"{_eps(split.get('together'))}")
    canary = report.get("canary")
    if canary:
        lines += textwrap.wrap(canary_text(canary), width=width)
    return lines


def _round_line(r: int, fed: dict[str, Any]) -> str:
    head = f"evaluation round {fed['round_id']} after round {r} (model {fed['model_version']})"
    if fed.get("ndcg") is None:
        return f"{head}: {fed.get('state', 'aborted')}, nothing estimated"
    same = fed.get("central_same_events")
    central = (f"central LOO-full {same['ndcg']:.4f} on the same {same['users']} users' held-out "
               f"items ({fed['ndcg']['value'] - same['ndcg']:+.4f})") if same else "no held-out items"
    return (f"{head}: {fed['devices']} devices summed of {fed['cohort']} drawn, "
            f"{_num(fed['held_out_devices']['value'], '.0f')} with a held-out item; NDCG@10 "
            f"{_interval(fed['ndcg'])} vs {central}{_own(fed)}; z = {fed['noise_multiplier']:g}, "
            f"epsilon of this round alone {_eps(fed.get('epsilon_round'))}")


def _own(fed: dict[str, Any]) -> str:
    own = fed.get("devices_own") or {}
    if own.get("ndcg") is None:
        return ""
    return (f" and {own['ndcg']:.4f} as the mean of the {own['devices']} devices' own figures "
            "(computed in the clear: only a simulation can)")


def canary_text(canary: dict[str, Any]) -> str:
    """The canary's story in one paragraph: what was offered, measured, decided, undone."""
    v, p = canary["candidate"], canary["promoted"]
    parts = [f"canary: model {v} (model {p} with its item embedding rows shuffled; central "
             f"LOO-full NDCG@10 {canary['central_candidate']['ndcg']:.4f}) went to "
             f"{canary['canary_devices']} devices (share {canary['share']:g}); "
             f"{canary['on_candidate']} installed it."]
    for row in canary["evaluation_rounds"]:
        if row.get("paired_ndcg") is None:
            parts.append(f"evaluation round {row['round_id']}: {row.get('state')}, nothing estimated.")
            continue
        parts.append(f"evaluation round {row['round_id']} on {row['devices']} other devices: "
                     f"NDCG@10 candidate {_interval(row['candidate_ndcg'])}, promoted "
                     f"{_interval(row['ndcg'])}; paired difference {_interval(row['paired_ndcg'])}.")
    low, high = canary["interval"]
    parts.append(f"rollout decide: {canary['decision']} (interval of the difference "
                 f"[{_num(low)}, {_num(high)}]): {canary['reason']}.")
    if canary["decision"] == "reject":
        parts.append(f"the canary devices went back: {canary['back_on_promoted']} of "
                     f"{canary['canary_devices']} run model {p} again.")
    else:
        parts.append(f"after it, the canary devices run model(s) {canary['versions_after']}.")
    return " ".join(parts)
