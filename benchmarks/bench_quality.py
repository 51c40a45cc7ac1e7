"""Quality on LOO-full (DESIGN.md): edgerec float and int8 against the peers, same split, same run.

    python -m benchmarks.bench_quality [--data ../shared/data/ml-100k] [--seeds 5] [--no-sasrec]

Every method's hyper-parameters are chosen on the validation item only, then refit on everything
but the test item, once per seed. The paired bootstrap over users gives the 95% interval of
edgerec's NDCG@10 minus the best classic peer's, and minus SASRec's. The peers include SASRec
(opt-in in `edgerec eval`, always here unless --no-sasrec: it is the sequential baseline
edgerec must be measured against).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the peers' BLAS too: comparable, no spinning

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks._report import table, write_section  # noqa: E402
from edgerec.evaluation import default_jobs  # noqa: E402
from edgerec.workflows import DataSpec, compare, eval_methods, load_data, peer_notes  # noqa: E402

ML100K = Path(os.environ.get("EDGEREC_ML100K", Path(__file__).resolve().parents[2] / "shared/data/ml-100k"))


def _rows(result, ours: str) -> list[list[object]]:
    return [[r.name, f"{r.hr:.4f}", f"{r.ndcg:.4f}", f"{r.ndcg / result[ours].ndcg:.2f}",
             f"{r.val_ndcg:.4f}", r.hparams or "-", f"{r.fit_seconds:.1f}"] for r in result]


def _versus(result, peer: str, bar: str | None, ours: str = "edgerec") -> str:
    """One line: ``ours``'s NDCG@10 over ``peer``'s, with the paired bootstrap interval."""
    diff, lo, hi = result.compare(ours, peer, metric="ndcg", n_boot=5000)
    ratio = result[ours].ndcg / result[peer].ndcg
    goal = f" (bar: >= {bar})" if bar else ""
    return (f"- {ours} float NDCG@10 / {peer}: **{ratio:.2f}x**{goal}; paired bootstrap "
            f"over users, 5,000 resamples: difference {diff:+.4f}, 95% interval [{lo:+.4f}, {hi:+.4f}].")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ML100K))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--no-sasrec", action="store_true", help="leave out the SASRec peer (slow)")
    args = parser.parse_args()
    dataset = load_data(DataSpec(args.data))
    start = time.perf_counter()
    methods = eval_methods(progress=True, sasrec=not args.no_sasrec, encoders=True,
                           jobs=default_jobs())  # edgerec's runs side by side, as edgerec eval
    result = compare(dataset, seeds=tuple(range(args.seeds)), progress=True, methods=methods)
    wall = time.perf_counter() - start
    peers = [r for r in result if not r.name.startswith("edgerec")]
    classic = max((r for r in peers if r.name != "sasrec"), key=lambda r: r.ndcg)
    ours, int8 = result["edgerec"], result["edgerec-int8"]
    lines = [_versus(result, classic.name, "1.2x, the best classic peer")]
    if any(r.name == "sasrec" for r in peers):
        lines.append(_versus(result, "sasrec", "1.10x, the sequential baseline (issue 17)"))
        lines += [_versus(result, "sasrec", None, ours=f"edgerec-{encoder}")
                  for encoder in ("pooled", "attention")]
    lines.append(_versus(result, "edgerec-attention", None))
    notes = "".join(f"\n- peer not run: {n}" for n in peer_notes())
    body = (
        f"LOO-full on {dataset.name}: {len(result.eval_users)} users, {dataset.n_items} items, "
        f"mean of {len(result.seeds)} seeds; whole run {wall / 60:.1f} min on this machine.\n\n"
        + table(["method", "HR@10", "NDCG@10", "NDCG vs edgerec", "val NDCG@10", "chosen on validation",
                 "fit s"], _rows(result, "edgerec"))
        + "\n\n" + "\n".join(lines)
        + f"\n- int8 bundle NDCG@10 / float: **{int8.ndcg / ours.ndcg:.1%}** (bar: >= 98%)."
        f"\n- edgerec per-seed NDCG@10: {', '.join(f'{v:.4f}' for v in ours.ndcg_per_seed)}."
        + notes
    )
    shown = "../shared/data/ml-100k" if Path(args.data).resolve() == ML100K.resolve() else args.data
    flags = " --no-sasrec" if args.no_sasrec else ""
    write_section(f"quality-{dataset.name}", f"Quality, LOO-full, {dataset.name}",
                  f"python -m benchmarks.bench_quality --data {shown} --seeds {args.seeds}{flags}", body)


if __name__ == "__main__":
    main()
