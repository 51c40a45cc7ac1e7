"""report.png: the demo's quality and privacy per round, readable without the code.

Two panels (quality, privacy spent), each with its title, axis labels and a legend below the
axes (never over a line), the run in the figure's title, and under it what the terms mean.
matplotlib with the Agg backend: no display needed.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from edgerec.model.params import ITEM_TABLES

from .report import noise_multiplier

__all__ = ["EVALUATION_NOTE", "GLOSSARY", "plot_report"]

#: Under the figure when evaluation rounds ran.
EVALUATION_NOTE = (
    "Federated estimate: in an evaluation round each device ranks its held-out item with the "
    "published model and sends a bounded vector of its figures; the server sees only their "
    "noised secure-aggregation sum and states the mean with a 95% interval (device sampling and "
    "DP noise). Its ε is in the same budget as the training rounds'.")

#: What the figure's terms mean, printed under it (a reader may see the PNG alone).
GLOSSARY = (
    "LOO-full NDCG@10, HR@10: each device user's last interaction is held out, and the model ranks "
    "it among all the items that user has not interacted with. HR@10: the share of users whose "
    "held-out item lands in the top 10. NDCG@10 also rewards a higher place (1 at rank 1, "
    "1/log2(rank+1) down to rank 10, 0 below).",
    "Central model: the same model trained on every user's data in one place, the reference the "
    "federated model is measured against.",
    "C (clipping norm): the largest L2 norm a device's update may have; a larger one is scaled "
    "down to C.  z (noise multiplier): the noise added to the sum of the updates has standard "
    "deviation z x C.",
    "(ε, δ): the differential privacy of all the rounds so far: one device's data changes the "
    "probability of anything the server sees by a factor of at most e^ε, except with "
    "probability δ. A smaller ε is more private.",
)

_WRAP = 175  # characters per line of the notes at the figure's width and font size


def plot_report(path: Path, report: dict[str, Any]) -> Path:
    """Draw ``report`` (as ``run_demo`` returns it) into the PNG file ``path``; returns it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    notes = [line for note in _notes(report) for line in textwrap.wrap(note, width=_WRAP)]
    # Heights in inches, top to bottom: titles, the panels, their axis labels and legends
    # (under the axes), the notes. The figure grows with the notes, so nothing overlaps.
    title_h, panel_h, legend_h, notes_h = 0.9, 4.2, 1.25, 0.2 + 0.21 * len(notes)
    height = title_h + panel_h + legend_h + notes_h
    fig, (quality, privacy) = plt.subplots(1, 2, figsize=(13, height))
    rounds = len(report["rounds"]) - 1
    fig.suptitle(f"edgerec federated demo on {report['dataset']}: {report['devices']} devices, "
                 f"{rounds} round{'s' if rounds != 1 else ''} of secure aggregation",
                 fontsize=14, fontweight="bold")
    _quality(quality, report)
    _privacy(privacy, report)
    fig.text(0.03, 0.1 / height, "\n".join(notes), ha="left", va="bottom", fontsize=9,
             linespacing=1.45)
    fig.subplots_adjust(left=0.06, right=0.98, top=1 - title_h / height,
                        bottom=(legend_h + notes_h) / height, wspace=0.22)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _quality(ax: Any, report: dict[str, Any]) -> None:
    from matplotlib.ticker import MaxNLocator

    rows, central = report["rounds"], report["central"]
    x = [r["round"] for r in rows]
    ax.plot(x, [r["ndcg"] for r in rows], "o-", color="C0", label="federated model, NDCG@10")
    ax.plot(x, [r["hr"] for r in rows], "s-", color="C1", label="federated model, HR@10")
    fed = [(r["round"], r["federated"]["ndcg"]) for r in rows
           if (r.get("federated") or {}).get("ndcg") is not None]
    if fed:  # the devices' own estimate, with the interval the server states
        values = [f["value"] for _, f in fed]
        errors = [[v - f["low"] for v, (_, f) in zip(values, fed)],
                  [f["high"] - v for v, (_, f) in zip(values, fed)]]
        ax.errorbar([x + 0.08 for x, _ in fed], values, yerr=errors, fmt="D", color="C2", capsize=4,
                    label="federated NDCG@10 estimate (95% interval)")
    ax.axhline(central["ndcg"], color="C0", ls="--", label="central model, NDCG@10")
    ax.axhline(central["hr"], color="C1", ls="--", label="central model, HR@10")
    ax.set_title(f"Recommendation quality (LOO-full, {report['eval_users']} device users)")
    ax.set_xlabel("round (0 = the first model, before any round)")
    ax.set_ylabel("score on held-out items (higher is better)")
    ax.set_ylim(0, 1.15 * max([central["hr"], central["ndcg"]] + [r["hr"] for r in rows]
                              + [f["high"] for _, f in fed]))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    _legend_below(ax)


def _privacy(ax: Any, report: dict[str, Any]) -> None:
    from matplotlib.ticker import MaxNLocator

    z, clip, delta = noise_multiplier(report), report["config"]["clip"], report["delta"]
    ax.set_title(f"Privacy {'spent ' if z else ''}(z = {z:.4g}, C = {clip:g})")
    if z == 0:
        ax.text(0.5, 0.5, "no differential-privacy noise (z = 0): ε is infinite\n"
                f"updates clipped to C = {clip:g} and summed by secure aggregation",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    ax.set_xlabel("round")
    ax.set_ylabel(f"cumulative ε (at δ = {delta:g}; lower is more private)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    spent = [(r["round"], r["epsilon"]) for r in report["rounds"] if r.get("epsilon") is not None]
    ax.plot([s[0] for s in spent], [s[1] for s in spent], "o-", color="C3",
            label="ε spent after each round (the server's audit)")
    split = report.get("epsilon_by_kind")
    if split:  # what each kind of round cost on its own (the audit adds them up)
        for kind, colour in (("training", "C0"), ("evaluation", "C2")):
            eps = split.get(kind)
            ax.axhline(eps if eps is not None else 0.0, color=colour, ls=":",
                       label=f"{kind} rounds alone: ε = {'inf' if eps is None else f'{eps:.3g}'}")
    target = report.get("epsilon_target")
    if target is not None:
        ax.axhline(target, color="C3", ls="--", label=f"target ε = {target:g}, z chosen to meet it")
    alone = [e for e in (split or {}).values() if isinstance(e, (int, float))]
    ax.set_ylim(0, 1.15 * max([target or 0.0] + [s[1] for s in spent] + alone + [1e-9]))
    ax.grid(alpha=0.3)
    _legend_below(ax, columns=1)


def _legend_below(ax: Any, columns: int = 2) -> None:
    """The legend under the axes, outside them: it can never cover a line."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=columns, fontsize=9,
              frameon=False)


def _notes(report: dict[str, Any]) -> tuple[str, ...]:
    """The glossary, after what the rounds sent when some weights were frozen, the evaluation
    note and the canary's outcome when they ran."""
    notes: list[str] = []
    if report.get("frozen"):
        frozen = ("the item tables" if set(report["frozen"]) == set(ITEM_TABLES)
                  else ", ".join(report["frozen"]))
        notes.append(f"Each device sent {report['federated_weights']:,} of the model's "
                     f"{report['weights']:,} weights per round ({frozen} frozen at the first "
                     "model's values).")
    if report.get("epsilon_by_kind"):
        notes.append(EVALUATION_NOTE)
    if report.get("canary"):
        from .report_eval import canary_text

        notes.append(canary_text(report["canary"]))
    return (*notes, *GLOSSARY)
