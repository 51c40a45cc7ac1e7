"""The demo's results: LOO-full of a model on the device users, the final table, report.json
and report.png (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from ..data import Dataset
from ..evaluation import hr_at, ndcg_at, rank_users
from ..evaluation.ours import FloatModel
from ..model.config import ModelConfig
from ..model.params import ITEM_TABLES, Params
from .population import Population

__all__ = ["evaluator", "format_table", "write_report"]


def evaluator(pop: Population, dataset: Dataset, cfg: ModelConfig) -> Callable[[Params], tuple[float, float]]:
    """``params -> (HR@10, NDCG@10)``: LOO-full on the device users' test items, every model
    ranking all items each user did not interact with in training (ties count against)."""
    users, split = pop.eval_users(), pop.split

    def evaluate(params: Params) -> tuple[float, float]:
        model = FloatModel(params, cfg, dataset.catalogue.features)
        ranks = rank_users(model, split.train_val, users, split.test_item[users], dataset.n_items)
        return float(hr_at(ranks).mean()), float(ndcg_at(ranks).mean())

    return evaluate


def _eps(value: float | None) -> str:
    return "-" if value is None else ("inf" if math.isinf(value) else f"{value:.3g}")


def _z(report: dict[str, Any]) -> float | None:
    """The noise multiplier the rounds ran with (chosen for the target with ``--epsilon``)."""
    z = report.get("noise_multiplier")
    return report["config"].get("noise") if z is None else z


def _cell(row: dict[str, Any], key: str) -> str:
    """A count for the table; "-" when the round has none (e.g. an aborted round's survivors)."""
    value = row.get(key)
    return "-" if value is None else str(value)


def format_table(report: dict[str, Any]) -> str:
    """The per-round table (round 0 is the first model) and the central comparison."""
    head = f"{'round':>5} {'model':>5} {'NDCG@10':>8} {'HR@10':>7} {'drawn/N':>8} {'devices':>7} " \
           f"{'survived':>8} {'dropped':>7} {'epsilon':>8} {'wall s':>7}"
    lines = [head, "-" * len(head)]
    no_dp = _z(report) == 0  # epsilon is infinite, stored as null
    for row in report["rounds"]:
        eps = "inf" if no_dp and row["round"] > 0 else _eps(row.get("epsilon"))
        drawn = f"{row['cohort']}/{row['population']}" if "cohort" in row else "-"
        lines.append(f"{row['round']:>5} {row['model_version']:>5} {row['ndcg']:>8.4f} {row['hr']:>7.4f} "
                     f"{drawn:>8} {_cell(row, 'participants'):>7} {_cell(row, 'survivors'):>8} "
                     f"{_cell(row, 'dropouts'):>7} {eps:>8} "
                     f"{row.get('wall_s', 0.0):>7.1f}")
    central = report["central"]
    final = report["rounds"][-1]
    lines.append("-" * len(head))
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
                 f"at epsilon {'inf (no DP noise)' if no_dp else _eps(final.get('epsilon'))} "
                 f"(delta {report['delta']:g}; "
                 + ("every device drawn in every round: plain Gaussian releases" if everyone else
                    "each round's cohort drawn by the server, accounted as drawn: k of N without "
                    "replacement") + ", zero-out neighbours)")
    if report.get("epsilon_target") is not None:
        per_round, devices = report["config"]["per_round"], report["devices"]
        lines.append(f"target epsilon {report['epsilon_target']:g}: noise multiplier z = {_z(report):.4g}, "
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
        written.append(_plot(out / "report.png", report))
    except ImportError:  # matplotlib is in the 'all' extra; the JSON is the record either way
        pass
    return written


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _plot(path: Path, report: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rounds"]
    rounds = [r["round"] for r in rows]
    fig, (quality, privacy) = plt.subplots(1, 2, figsize=(10, 4))
    quality.plot(rounds, [r["ndcg"] for r in rows], "o-", label="federated NDCG@10")
    quality.plot(rounds, [r["hr"] for r in rows], "s-", label="federated HR@10")
    quality.axhline(report["central"]["ndcg"], color="C0", ls="--", label="central NDCG@10")
    quality.axhline(report["central"]["hr"], color="C1", ls="--", label="central HR@10")
    quality.set_xlabel("round (0 = the first model)")
    quality.set_title(f"LOO-full on {report['eval_users']} device users")
    quality.legend(fontsize=8)
    if _z(report) == 0:
        privacy.text(0.5, 0.5, "no DP noise (z = 0): epsilon is infinite\n"
                     f"deltas clipped to C = {report['config']['clip']}, summed by secure aggregation",
                     ha="center", va="center", transform=privacy.transAxes)
        privacy.set_axis_off()
    eps = [(r["round"], r["epsilon"]) for r in rows if r.get("epsilon") is not None]
    if eps and _z(report) != 0:
        privacy.plot([e[0] for e in eps], [e[1] for e in eps], "o-", color="C3")
    privacy.set_xlabel("round")
    privacy.set_ylabel(f"cumulative epsilon (delta {report['delta']:g})")
    target = report.get("epsilon_target")
    privacy.set_title(f"privacy: z={_z(report):.4g}, C={report['config']['clip']}"
                      + (f" (for epsilon {target:g})" if target is not None else ""), fontsize=10)
    if target is not None and _z(report) != 0:
        privacy.axhline(target, color="C3", ls="--", label=f"target epsilon {target:g}")
        privacy.legend(fontsize=8, loc="center right")
        privacy.set_ylim(0, 1.1 * max([target] + [e[1] for e in eps]))
    if report.get("frozen"):
        frozen = ("the item tables" if set(report["frozen"]) == set(ITEM_TABLES)
                  else ", ".join(report["frozen"]))
        privacy.text(0.98, 0.03, f"{report['federated_weights']:,} of {report['weights']:,} weights "
                     f"federated\n({frozen} frozen)", ha="right", va="bottom", fontsize=8,
                     transform=privacy.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
