"""The demo's results: LOO-full of a model on the device users, the final table, report.json
(and report.png, drawn by ``plot.py``)."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgerec.data import Dataset
from edgerec.evaluation import hr_at, ndcg_at, rank_users
from edgerec.evaluation.ours import FloatModel
from edgerec.model.config import ModelConfig
from edgerec.model.params import Params

from .population import Population

__all__ = ["COLUMN_NOTES", "evaluator", "format_table", "noise_multiplier", "round_counts",
           "write_report"]


def evaluator(pop: Population, dataset: Dataset, cfg: ModelConfig) -> Callable[..., tuple[float, float]]:
    """``(params, users=None) -> (HR@10, NDCG@10)``: LOO-full on the device users' test items
    (or on ``users``' only), every model ranking all items each user did not interact with in
    training (ties count against)."""
    every, split = pop.eval_users(), pop.split

    def evaluate(params: Params, users: np.ndarray | None = None) -> tuple[float, float]:
        users = every if users is None else np.intersect1d(users, every)
        model = FloatModel(params, cfg, dataset.catalogue.features)
        ranks = rank_users(model, split.train_val, users, split.test_item[users], dataset.n_items)
        return float(hr_at(ranks).mean()), float(ndcg_at(ranks).mean())

    return evaluate


def _eps(value: float | None) -> str:
    return "-" if value is None else ("inf" if math.isinf(value) else f"{value:.3g}")


def noise_multiplier(report: dict[str, Any]) -> float | None:
    """The noise multiplier the rounds ran with (chosen for the target with ``--epsilon``)."""
    z = report.get("noise_multiplier")
    return report["config"].get("noise") if z is None else z


def round_counts(row: dict[str, Any]) -> dict[str, int | None]:
    """A round's devices, counted so that the figures add up (None: not known, e.g. round 0, or
    an aborted round's sum).

    ``drawn`` of ``population`` were drawn by the server; ``joined`` sent their keys; of them,
    ``dropped`` vanished before their masked update reached the server and ``summed`` are in
    the aggregate, so joined = dropped + summed (both from the server's audit). ``left_late``
    vanished after their update was in (the demo's own record): it still counts, because the
    other devices' shares let the server remove their masks.
    """
    joined, summed = row.get("participants"), row.get("survivors")
    vanished, early = row.get("dropouts"), row.get("dropouts_before_sum")
    return {"drawn": row.get("cohort"), "population": row.get("population"), "joined": joined,
            "dropped": None if joined is None or summed is None else joined - summed,
            "summed": summed, "left_late": None if vanished is None or early is None else vanished - early}


#: The table's columns after the quality figures, and what each one counts (printed under it).
_COUNT_COLUMNS = (("joined", "joined"), ("dropped", "dropped"), ("summed", "summed"),
                  ("left_late", "left-late"))
COLUMN_NOTES = (
    "drawn/N: devices the server drew for the round, of N enrolled; joined: drawn devices that "
    "sent their keys; dropped: joined but vanished before their update reached the sum; summed: "
    "devices whose clipped, noised update is in the aggregate (joined = dropped + summed); "
    "left-late: vanished after their update was in (it still counts: the others' key shares "
    "remove its mask); epsilon: privacy spent by the rounds so far (at the delta below); NDCG@10, "
    "HR@10: LOO-full on the device users' held-out items (round 0: the first model)")


def _cell(value: int | None) -> str:
    """A count for the table; "-" when the round has none (round 0, an aborted round's sum)."""
    return "-" if value is None else str(value)


def _final_eps(final: dict[str, Any]) -> str:
    """The epsilon after the last round: infinite (None in the audit) once any completed round
    had no noise, e.g. an evaluation round at z = 0."""
    eps = final.get("epsilon")
    return "inf" if eps is None and final.get("state") == "done" else _eps(eps)


def _federated_cells(fed: dict[str, Any] | None) -> str:
    """The federated estimate of NDCG@10 and its interval (the "federated" columns)."""
    if not fed or fed.get("ndcg") is None or fed["ndcg"].get("value") is None:
        return f"{'-':>9} {'-':>13}"
    est = fed["ndcg"]
    interval = f"{est['low']:.3f}-{est['high']:.3f}"
    return f"{est['value']:>9.4f} {interval:>13}"


def format_table(report: dict[str, Any]) -> str:
    """The per-round table (round 0 is the first model), what its columns count, and the
    central comparison."""
    counts = "".join(f" {label:>{max(len(label), 7)}}" for _, label in _COUNT_COLUMNS)
    evaluated = any("federated" in row for row in report["rounds"])
    fed = f" {'federated':>9} {'95%-interval':>13}" if evaluated else ""
    head = f"{'round':>5} {'model':>5} {'NDCG@10':>8}{fed} {'HR@10':>7} {'drawn/N':>9}{counts} " \
           f"{'epsilon':>8} {'wall s':>7}"
    lines = [head, "-" * len(head)]
    no_dp = noise_multiplier(report) == 0  # epsilon is infinite, stored as null
    for row in report["rounds"]:
        # None in the audit: infinite (a round without noise, this one or an earlier one), or
        # an aborted round (nothing released)
        done = row["round"] > 0 and row.get("state") == "done"
        eps = "inf" if done and (no_dp or row.get("epsilon") is None) else _eps(row.get("epsilon"))
        n = round_counts(row)
        drawn = f"{n['drawn']}/{n['population']}" if n["drawn"] is not None else "-"
        cells = "".join(f" {_cell(n[key]):>{max(len(label), 7)}}" for key, label in _COUNT_COLUMNS)
        fed = f" {_federated_cells(row.get('federated'))}" if evaluated else ""
        lines.append(f"{row['round']:>5} {row['model_version']:>5} {row['ndcg']:>8.4f}{fed} {row['hr']:>7.4f} "
                     f"{drawn:>9}{cells} {eps:>8} {row.get('wall_s', 0.0):>7.1f}")
    lines.append("-" * len(head))
    lines += textwrap.wrap(COLUMN_NOTES, width=max(len(head), 80))
    if evaluated or report.get("canary"):
        from .report_eval import evaluation_lines

        lines += evaluation_lines(report, width=max(len(head), 80))
    central = report["central"]
    final = report["rounds"][-1]
    aborted = [str(row["round"]) for row in report["rounds"] if row.get("state") == "aborted"]
    if aborted:
        lines.append(f"rounds aborted (fewer survivors than the threshold, or a stage missed its "
                     f"deadline), the model unchanged: {', '.join(aborted)}")
    if report.get("frozen"):
        lines.append(f"each device sent {report['federated_weights']:,} of the model's {report['weights']:,} "
                     f"weights per round; frozen at the first model's values: {', '.join(report['frozen'])}")
    lines.append(f"central (trained on every user's data in one place): NDCG@10 {central['ndcg']:.4f}, "
                 f"HR@10 {central['hr']:.4f}")
    first = report["rounds"][0]
    if report.get("pilot_users"):
        lines.append(f"the first model alone (trained on {report['pilot_users']} pilot users): NDCG@10 "
                     f"{first['ndcg']:.4f}; after the rounds {final['ndcg']:.4f} "
                     f"({final['ndcg'] - first['ndcg']:+.4f})")
    cohorts = [row for row in report["rounds"] if "cohort" in row]
    everyone = bool(cohorts) and all(row["cohort"] >= row["population"] for row in cohorts)
    lines.append(f"federated / central NDCG@10: {final['ndcg'] / central['ndcg']:.1%} "
                 f"at epsilon {'inf (no DP noise)' if no_dp else _final_eps(final)} "
                 f"(delta {report['delta']:g}; "
                 + ("every device drawn in every round: plain Gaussian releases" if everyone else
                    "each round's cohort drawn by the server, accounted as drawn: k of N without "
                    "replacement") + ", zero-out neighbours)")
    if report.get("epsilon_target") is not None:
        per_round, devices = report["config"]["per_round"], report["devices"]
        z = noise_multiplier(report)
        lines.append(f"target epsilon {report['epsilon_target']:g}: noise multiplier z = {z:.4g}, "
                     f"chosen for {report['config']['rounds']} rounds of "
                     + (f"all {devices} devices (every device in every round: each round a plain "
                        "Gaussian release, no amplification by sampling)" if per_round >= devices else
                        f"{per_round} of {devices} devices (the server's draws vary around "
                        f"{per_round}, and the audit accounts each as drawn)"))
    return "\n".join(lines)


def write_report(out: Path, report: dict[str, Any]) -> list[Path]:
    """Write ``report.json`` and ``report.png`` under ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_text(json.dumps(report, indent=1, default=_json_default))
    written = [path]
    try:
        from .plot import plot_report

        written.append(plot_report(out / "report.png", report))
    except ImportError:  # matplotlib is in the 'all' extra; the JSON is the record either way
        pass
    return written


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
