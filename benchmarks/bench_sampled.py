"""Full vs sampled softmax (logQ correction): quality under LOO-full and training time.

    python -m benchmarks.bench_sampled [--seeds 1] [--settings full sampled:1024:0.2 ...]
        [--skip-movielens] [--skip-csv] [--csv-users 3334 --csv-items 11000]

For MovieLens-100K (1,682 items) and the synthetic 10k-item interactions CSV of
``bench_train_eval`` (``synthetic(3334, 11000)``): edgerec (float) alone under the LOO-full
protocol, the quick grid (8 and 16 epochs at L2 1e-4, one training run) for each softmax
setting, the same split and seeds. A setting is ``full`` or ``sampled:NEGATIVES:UNIFORM_MIX`` (``parse_setting``).
Reported: validation and test NDCG@10, test NDCG@10 relative to full softmax, and the training
seconds of all the fits (tuning run and final refits) relative to full softmax. The numbers set
``sampled.SAMPLED_FROM_ITEMS`` and the defaults of ``TrainConfig.negatives``/``uniform_mix``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import table, write_section
from benchmarks._train_eval_data import CSV_ITEMS, CSV_USERS, ML100K, write_synthetic_csv
from edgerec.evaluation import loo_split, run_protocol
from edgerec.evaluation.ours import QUICK_GRID, edgerec_methods
from edgerec.model.config import ModelConfig, TrainConfig
from edgerec.training import TrainingRun
from edgerec.workflows import DataSpec, load_data

DEFAULT_SETTINGS = ("full", "sampled:256:1.0", "sampled:1024:1.0", "sampled:256:0.2",
                    "sampled:1024:0.2")  # the default (TrainConfig) first after full


def parse_setting(text: str) -> dict[str, Any]:
    """``full`` or ``sampled:NEGATIVES:UNIFORM_MIX`` as TrainConfig options, either followed by
    ``:KEY=VALUE`` options of TrainConfig, e.g. ``sampled:1024:0.2:batch_size=512`` or
    ``sampled:256:1.0:table_updates=dense``."""
    head, *rest = text.split(":")
    options: dict[str, Any] = {"softmax": head}
    if head == "sampled":
        options.update(negatives=int(rest[0]), uniform_mix=float(rest[1]))
        rest = rest[2:]
    elif head != "full":
        raise ValueError(f"not a setting: {text}")
    for item in rest:
        key, value = item.split("=")
        options[key] = _value(value)
    return options


def _value(text: str) -> Any:
    """A setting's option value: an int, a float, or else the word (``table_updates=lazy``)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def measure(path: str, settings: list[str], seeds: int) -> tuple[str, list[list[Any]]]:
    """(heading, rows) for one dataset: every setting on the same LOO split."""
    data = load_data(DataSpec(path))
    split = loo_split(data.sequences())
    results = []
    for setting in settings:
        grid = tuple({**hp, **parse_setting(setting)} for hp in QUICK_GRID)
        result = run_protocol(split, edgerec_methods(grid, int8=False), catalogue=data.catalogue,
                              seeds=tuple(range(seeds)))["edgerec"]
        seconds = sum(f.fit_seconds for f in result.fits)
        results.append((setting, result, seconds))
        print(f"{path}: {setting} val {result.val_ndcg:.4f} test {result.ndcg:.4f} "
              f"train {seconds:.0f}s", file=sys.stderr, flush=True)
    base = {s: (r, t) for s, r, t in results}.get("full")
    rows = []
    for setting, r, seconds in results:
        rel = f"{r.ndcg / base[0].ndcg:.3f}" if base else "-"
        speed = f"{seconds / base[1]:.2f}" if base else "-"
        rows.append([setting, r.hparams.get("epochs"), f"{r.val_ndcg:.4f}", f"{r.ndcg:.4f}",
                     " / ".join(f"{v:.4f}" for v in r.ndcg_per_seed), rel, f"{seconds:.0f}", speed])
    head = f"{data.n_items:,} items, {len(data):,} events, {data.n_users:,} users"
    return head, rows


def epoch_seconds(path: str, settings: list[str], repeat: int) -> tuple[str, list[list[Any]]]:
    """(heading, rows): seconds of one training epoch per setting, the settings interleaved
    (one epoch of each in turn, ``repeat`` rounds, median) so a busy machine's swings hit all
    alike; the ratio to full softmax is the figure to read."""
    data = load_data(DataSpec(path))
    seqs, features, model = data.sequences(), data.catalogue.features, ModelConfig()
    seconds: dict[str, list[float]] = {s: [] for s in settings}
    for _ in range(repeat):
        for setting in settings:
            tcfg = TrainConfig(**{"l2": 1e-4, **parse_setting(setting)})
            run = TrainingRun.fresh(seqs, features, model, tcfg)
            start = time.perf_counter()
            run.advance(1)
            seconds[setting].append(time.perf_counter() - start)
    med = {s: float(np.median(v)) for s, v in seconds.items()}
    full = med.get("full")
    rows = [[s, f"{med[s]:.2f}", f"{med[s] / full:.2f}" if full else "-"] for s in settings]
    return f"{data.n_items:,} items, {len(data):,} events", rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS))
    parser.add_argument("--skip-movielens", action="store_true")
    parser.add_argument("--skip-csv", action="store_true")
    parser.add_argument("--csv-users", type=int, default=CSV_USERS)
    parser.add_argument("--csv-items", type=int, default=CSV_ITEMS)
    parser.add_argument("--no-write", action="store_true", help="print the tables, leave BENCHMARKS.md")
    parser.add_argument("--epochs-only", type=int, default=0, metavar="REPEAT",
                        help="only time one epoch per setting, interleaved, REPEAT rounds (section "
                             "sampled-speed)")
    args = parser.parse_args()
    for setting in args.settings:
        parse_setting(setting)  # fail before hours of training, not after
    command = "python -m benchmarks.bench_sampled " + shlex.join(sys.argv[1:])
    parts = []
    with tempfile.TemporaryDirectory(prefix="edgerec-bench-") as name:
        sources = []
        if not args.skip_movielens and ML100K.is_dir():
            sources.append(("MovieLens-100K", str(ML100K)))
        if not args.skip_csv:
            csv_path = Path(name) / "interactions.csv"
            write_synthetic_csv(csv_path, args.csv_users, args.csv_items)
            sources.append(("synthetic CSV", str(csv_path)))
        if args.epochs_only:
            speed_section(sources, args, command)
            return
        for label, path in sources:
            head, rows = measure(path, args.settings, args.seeds)
            parts.append(f"### {label}: {head}\n\n" + table(
                ["softmax", "epochs chosen", "val NDCG@10", "test NDCG@10", "per seed",
                 "test / full", "training s", "time / full"], rows))
    body = ("edgerec (float) under LOO-full, quick grid (8 and 16 epochs at L2 1e-4, one run), "
            f"{args.seeds} seed(s); `sampled:N:m` is sampled softmax with logQ correction, about N "
            "shared negatives per batch drawn from (1 - m) * popularity + m * uniform. Training "
            "seconds are all the fits' (tuning run and final refits), 1 BLAS thread.\n\n"
            + "\n\n".join(parts))
    if args.no_write:
        print(body)
        return
    write_section("sampled", "Sampled softmax: quality and training time", command, body)


def speed_section(sources: list[tuple[str, str]], args: argparse.Namespace, command: str) -> None:
    parts = []
    for label, path in sources:
        head, rows = epoch_seconds(path, args.settings, args.epochs_only)
        parts.append(f"### {label}: {head}\n\n" + table(["softmax", "s per epoch", "time / full"], rows))
    body = (f"One training epoch (batch 256, L2 1e-4, 1 BLAS thread) per setting, interleaved, median "
            f"of {args.epochs_only} rounds.\n\n" + "\n\n".join(parts))
    if args.no_write:
        print(body)
        return
    write_section("sampled-speed", "Sampled softmax: time per training epoch", command, body)


if __name__ == "__main__":
    main()
