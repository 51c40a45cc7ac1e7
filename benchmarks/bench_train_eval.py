"""How long `edgerec train` and `edgerec eval` take, where the time goes, and BLAS threads.

    python -m benchmarks.bench_train_eval [--only phases|threads|commands] [--seeds 5] [--no-baseline-eval]
        [--csv-users 3334 --csv-items 11000] [--skip-movielens | --skip-csv] [--repeat 3]

The whole run takes about two hours on 2 cores, half of it the baseline's `eval --seeds 1` on
the CSV (``--no-baseline-eval`` skips the baseline's evaluations); a small setting for a try:
``--skip-movielens --csv-users 100 --csv-items 300 --seeds 1 --devices 5 --repeat 1``.

Two sections of BENCHMARKS.md, on MovieLens-100K and on a synthetic interactions CSV of about
100k events over 10k items (``synthetic(3334, 11000)`` written as ``user,item,timestamp``):

- ``train-eval``: each phase of ``train`` (load, training, ONNX export, int8 quantization and
  the bundle) and of ``eval`` (load and split, each method's fits while tuning and for the final
  seeds, the int8 exports, the scoring of every user), timed in this process with this tree;
  then both commands end to end in fresh interpreters, this tree against the tree of commit
  ``--baseline`` (before the speed-up, extracted with ``git archive``), in the same run.
- ``threads``: training (2 epochs on MovieLens-100K, as in issue 15), on-device fine-tuning (one
  fine_tune() per device for 50 devices) and a small evaluation, each with BLAS's default
  threading and with 1 and 2 threads, on a quiet machine and while two busy processes (started
  by the benchmark) want both cores.

- ``train-eval-commands`` (``--only commands``): ``edgerec train``, ``eval --quick`` and
  ``eval`` (its default 5 seeds) of this tree end to end, no baseline: the training loss is
  the one ``TrainConfig.softmax="auto"`` picks for the catalogue (``edgerec.model.sampled``).

Don't set OPENBLAS_NUM_THREADS when running it: "default" is what BLAS does on its own.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks._report import table, write_section
from benchmarks._train_eval_data import (CSV_ITEMS, CSV_USERS, ML100K, ROOT, baseline_tree,
                                         busy_processes, timed_cli, write_synthetic_csv)
from edgerec.bundle import write_bundle
from edgerec.data import Dataset, Sequences
from edgerec.evaluation import ProtocolResult, loo_split, run_protocol
from edgerec.evaluation.ours import training_epochs
from edgerec.finetune import FineTuneConfig, fine_tune
from edgerec.model.config import ModelConfig, TrainConfig
from edgerec.model.export import export_onnx, quantize_int8
from edgerec.model.sampled import use_sampled
from edgerec.training import fit_params
from edgerec.workflows import DEFAULT_TRAINING, QUICK_SEEDS, DataSpec, eval_methods, load_data

#: The last commit before the training and evaluation speed-up (and before BLAS threads were set).
BASELINE = "15f4933"
SETTINGS: tuple[tuple[str, int | None], ...] = (("default", None), ("1 thread", 1), ("2 threads", 2))
CHOSEN = "1 thread"  # TrainConfig.threads, FineTuneConfig.threads and eval's --threads default


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def train_phases(data: Dataset, load_s: float, tmp: Path) -> list[list[Any]]:
    """Rows (phase, seconds, share) of what `edgerec train` does, in its order."""
    model, training = ModelConfig(), TrainConfig(**DEFAULT_TRAINING)
    t0 = time.perf_counter()
    params = fit_params(data.sequences(), data.catalogue.features, model, training)
    t1 = time.perf_counter()
    onnx = export_onnx(params, data.catalogue.features, model, tmp / "f.onnx")
    t2 = time.perf_counter()
    quantize_int8(onnx, tmp / "q.onnx")
    t3 = time.perf_counter()
    write_bundle(tmp / "bundle", params, data.catalogue, model)  # exports and quantizes again
    t4 = time.perf_counter()
    phases = [("load the data", load_s), (f"training ({training.epochs} epochs)", t1 - t0),
              ("ONNX export", t2 - t1), ("int8 quantization", t3 - t2),
              ("bundle written (export, quantization, hashes)", t4 - t3)]
    whole = load_s + (t1 - t0) + (t4 - t3)  # what the command does: load, train, write
    return [[name, f"{s:.1f}", _pct(s, whole) if i != 2 and i != 3 else f"({_pct(s, whole)})"]
            for i, (name, s) in enumerate(phases)] + [["**train, all**", f"**{whole:.1f}**", "100%"]]


def eval_phases(data: Dataset, load_s: float, seeds: int, quick: bool) -> tuple[list[list[Any]], float, ProtocolResult]:
    """Rows (phase, seconds, share) of `edgerec eval` (or --quick) and its wall time."""
    t0 = time.perf_counter()
    split = loo_split(data.sequences())
    split_s = time.perf_counter() - t0
    methods = eval_methods(quick=quick)
    result = run_protocol(split, methods, catalogue=data.catalogue, seeds=tuple(range(seeds)))
    wall = load_s + time.perf_counter() - t0
    rows: list[tuple[str, float]] = [("load the data and split it (LOO)", load_s + split_s)]
    for r in result:
        label = "int8 export + quantization" if r.name == "edgerec-int8" else "fits"
        for stage, what in (("tune", "tuning"), ("test", "final")):
            fits = [f for f in r.fits if f.stage == stage]
            work = ""
            if r.name == "edgerec":  # candidates that differ only in epochs share one run
                epochs = training_epochs([f.hparams for f in fits]) if stage == "tune" else \
                    sum(training_epochs([f.hparams]) for f in fits)
                work = f", {epochs:g} epochs of training"
            rows.append((f"{r.name}: {label}, {what} ({len(fits)}{work})", sum(f.fit_seconds for f in fits)))
    scoring = sum(f.score_seconds for r in result for f in r.fits)
    rows.append(("scoring: every user ranks all items (every fit, every method)", scoring))
    rows.append(("other", wall - sum(s for _, s in rows)))
    return ([[name, f"{s:.1f}", _pct(s, wall)] for name, s in rows]
            + [["**eval, all**", f"**{wall:.1f}**", "100%"]], wall, result)


def end_to_end(datasets: list[tuple[str, str]], seeds: int, baseline: str, with_eval: bool,
               tmp: Path) -> list[list[Any]]:
    """The commands in fresh interpreters: the baseline tree (as users ran it, BLAS default
    threading; and its training with one BLAS thread) against this tree."""
    old = baseline_tree(baseline, tmp / "baseline")
    rows = []
    for name, path in datasets:
        out = str(tmp / "cli-bundle")
        train = ["train", "--data", path, "--out", out, "--quiet"]
        old_s, new_s = timed_cli(old, train), timed_cli(ROOT, train)
        old_one = timed_cli(old, train, env={"OPENBLAS_NUM_THREADS": "1"})
        rows.append([f"`edgerec train`, {name}", f"{old_s:.0f}", f"{old_one:.0f}", f"{new_s:.0f}",
                     f"**{old_s / new_s:.1f}x**", f"{old_one / new_s:.1f}x"])
        if with_eval:
            run = ["eval", "--data", path, "--seeds", str(seeds), "--quiet", "--json"]
            old_s, new_s = timed_cli(old, run), timed_cli(ROOT, run)
            rows.append([f"`edgerec eval --seeds {seeds}`, {name}", f"{old_s:.0f}", "-", f"{new_s:.0f}",
                         f"**{old_s / new_s:.1f}x**", "-"])
            quick = timed_cli(ROOT, ["eval", "--data", path, "--quick", "--quiet", "--json"])
            rows.append([f"`edgerec eval --quick` ({QUICK_SEEDS} seed), {name}", "-", "-", f"{quick:.0f}",
                         f"{old_s / quick:.1f}x (vs --seeds {seeds} before)", "-"])
    return rows


def _timed(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def thread_workloads(data: Dataset, epochs: int, devices: int) -> dict[str, Callable[[int | None], Any]]:
    """train / fine-tune / eval, each a function of the BLAS threads setting."""
    seqs, features, model = data.sequences(), data.catalogue.features, ModelConfig()
    base = fit_params(seqs, features, model, TrainConfig(epochs=1))
    split = loo_split(seqs)
    device_seqs = [Sequences([split.train.items[u]], [split.train.signals[u]]) for u in range(devices)]
    small_grid = ({"epochs": 1, "l2": 1e-4}, {"epochs": 2, "l2": 1e-4})

    def train(threads: int | None) -> Any:
        return fit_params(seqs, features, model, TrainConfig(**{**DEFAULT_TRAINING, "epochs": epochs,
                                                                "threads": threads}))

    def tune(threads: int | None) -> Any:
        return [fine_tune(base, features, s, model, FineTuneConfig(threads=threads)) for s in device_seqs]

    def evaluate(threads: int | None) -> Any:
        methods = eval_methods(quick=True, grid=small_grid, threads=threads)
        return run_protocol(split, methods, catalogue=data.catalogue, seeds=(0,), threads=threads)

    return {f"train ({epochs} epoch{'s' if epochs != 1 else ''})": train, f"fine-tune ({devices} devices)": tune,
            "eval (quick grids, edgerec 2 epochs, 1 seed)": evaluate}


def threads_table(data: Dataset, epochs: int, devices: int, busy: int, repeat: int) -> list[list[Any]]:
    """Median seconds of each workload and setting, quiet and with ``busy`` busy processes."""
    workloads = thread_workloads(data, epochs, devices)
    seconds: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(repeat):
        for load, ctx in (("quiet", None), (f"{busy} busy processes", busy)):
            with busy_processes(ctx) if ctx else nullcontext():
                for work, run in workloads.items():
                    for setting, threads in SETTINGS:  # alternating: noise hits all settings
                        seconds.setdefault((work, load, setting), []).append(_timed(lambda: run(threads)))
    rows = []
    for work in workloads:
        for load in ("quiet", f"{busy} busy processes"):
            med = {s: float(np.median(seconds[(work, load, s)])) for s, _ in SETTINGS}
            rows.append([work, load, *(f"{med[s]:.1f}" for s, _ in SETTINGS),
                         f"**{med['default'] / med[CHOSEN]:.2f}x**"])
    return rows


def _blas_default() -> str:
    from threadpoolctl import threadpool_info

    found = [f"{i['internal_api']} {i['version']}, {i['num_threads']} threads" for i in threadpool_info()
             if i["user_api"] == "blas"]
    return "; ".join(found) or "no BLAS found"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["phases", "threads", "commands"], default=None)
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the phase-timed eval (default 5)")
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--baseline-seeds", type=int, default=1,
                        help="seeds of the end-to-end eval, baseline and this tree (default 1)")
    parser.add_argument("--no-baseline-eval", action="store_true", help="end to end: train only")
    parser.add_argument("--quick-only", action="store_true", help="commands: train and eval --quick only")
    parser.add_argument("--csv-users", type=int, default=CSV_USERS)
    parser.add_argument("--csv-items", type=int, default=CSV_ITEMS)
    parser.add_argument("--skip-movielens", action="store_true")
    parser.add_argument("--skip-csv", action="store_true", help="MovieLens-100K only")
    parser.add_argument("--threads-epochs", type=int, default=2)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--busy", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="threads: median of this many runs")
    args = parser.parse_args()
    command = "python -m benchmarks.bench_train_eval " + shlex.join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="edgerec-bench-") as name:
        tmp = Path(name)
        sources = [] if args.skip_movielens or not ML100K.is_dir() else [("MovieLens-100K", str(ML100K))]
        if not args.skip_csv or not sources:
            csv_path = tmp / "interactions.csv"
            write_synthetic_csv(csv_path, args.csv_users, args.csv_items)
            sources.append(("synthetic CSV", str(csv_path)))
        if args.only in (None, "phases"):
            phases_section(args, sources, tmp, command)
        if args.only in (None, "commands"):
            commands_section(sources, tmp, command, full_eval=not args.quick_only)
        if args.only in (None, "threads"):
            data = load_data(DataSpec(sources[0][1]))
            rows = threads_table(data, args.threads_epochs, args.devices, args.busy, args.repeat)
            body = (f"On {sources[0][0]} ({len(data):,} events, {data.n_items:,} items). BLAS here: "
                    f"{_blas_default()}. Seconds (median of {args.repeat}); the ratio is default "
                    f"threading over the chosen setting ({CHOSEN}: the default of TrainConfig.threads, "
                    f"FineTuneConfig.threads and `--threads`).\n\n"
                    + table(["workload", "machine", *(s for s, _ in SETTINGS), "default / chosen"], rows))
            write_section("threads", "BLAS threads: training, fine-tuning, evaluation, quiet and busy",
                          command, body)


def commands_section(sources: list[tuple[str, str]], tmp: Path, command: str,
                     full_eval: bool = True) -> None:
    """Wall seconds of this tree's train, eval --quick and (``full_eval``) eval (5 seeds) in
    fresh interpreters."""
    rows = []
    for name, path in sources:
        data = load_data(DataSpec(path))
        training = TrainConfig(**DEFAULT_TRAINING)
        loss = ("sampled softmax, ~%d negatives" % training.negatives
                if use_sampled(training.softmax, data.n_items, training.negatives) else "full softmax")
        label = f"{name} ({data.n_items:,} items, {len(data):,} events; {loss})"
        runs = [("`edgerec train`", ["train", "--data", path, "--out", str(tmp / "cli-bundle"), "--quiet"]),
                (f"`edgerec eval --quick` ({QUICK_SEEDS} seed)", ["eval", "--data", path, "--quick", "--quiet", "--json"]),
                ("`edgerec eval` (5 seeds)", ["eval", "--data", path, "--quiet", "--json"])][: 3 if full_eval else 2]
        for what, argv in runs:
            seconds = timed_cli(ROOT, argv)
            rows.append([what, label, f"{seconds:.0f}", f"{seconds / 60:.1f}"])
            print(rows[-1], file=sys.stderr, flush=True)
    body = ("Wall time of each command in a fresh interpreter (imports and loading included), this "
            "tree, defaults (training: 16 epochs; TrainConfig.softmax \"auto\"), eval with every "
            "installed peer.\n\n" + table(["command", "data", "s", "min"], rows))
    write_section("train-eval-commands", "Training and evaluation time: the commands end to end",
                  command, body)


def phases_section(args: argparse.Namespace, sources: list[tuple[str, str]], tmp: Path, command: str) -> None:
    parts = []
    for name, path in sources:
        start = time.perf_counter()
        data = load_data(DataSpec(path))
        load_s = time.perf_counter() - start
        head = f"### {name}: {len(data):,} events, {data.n_users:,} users, {data.n_items:,} items\n\n"
        train_rows = train_phases(data, load_s, tmp)
        eval_rows, wall, result = eval_phases(data, load_s, args.seeds, quick=False)
        chosen = result["edgerec"].hparams
        parts.append(head + table(["`edgerec train` phase", "s", "share"], train_rows) + "\n\n"
                     + table([f"`edgerec eval --seeds {args.seeds}` phase", "s", "share"], eval_rows)
                     + f"\n\nedgerec chose {chosen} on validation; NDCG@10 "
                     f"{result['edgerec'].ndcg:.4f} (int8 {result['edgerec-int8'].ndcg:.4f}); "
                     f"whole eval {wall / 60:.1f} min.")
    rows = end_to_end(sources, args.baseline_seeds, args.baseline, not args.no_baseline_eval, tmp)
    body = ("Phases timed in one process with this tree (1 BLAS thread, the default); shares are "
            "of the command's total (export and quantization in parentheses are inside the bundle "
            "row).\n\n" + "\n\n".join(parts)
            + f"\n\n### End to end, this tree against commit {args.baseline} (same run)\n\n"
            "Wall seconds of each command in a fresh interpreter (imports and loading included). "
            f"{args.baseline} ran with BLAS's default threading, as users ran it, and its training "
            "once more with one BLAS thread, to separate the faster code from the thread setting.\n\n"
            + table(["command", f"{args.baseline} s", f"{args.baseline}, 1 BLAS thread, s", "this tree s",
                     "speed-up", "speed-up vs 1 thread"], rows))
    write_section("train-eval", "Training and evaluation time (edgerec train, edgerec eval)", command, body)


if __name__ == "__main__":
    main()
