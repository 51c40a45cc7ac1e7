"""The ``edgerec`` command: a thin layer over ``edgerec.workflows`` and the facade.

    edgerec train --data ../shared/data/ml-100k --out model-bundle
    edgerec eval --data ratings.csv --user-col userId --item-col movieId --time-col timestamp --json
    edgerec recommend --bundle model-bundle --db app.db --user u1
    edgerec audit --db app.db --json
    edgerec demo            # runs `edgerec-server demo` (the demo lives with the server)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Sequence

from ._exceptions import ConfigError, EdgeRecError, MissingDependencyError
from ._extras import as_missing_dependency, check_command
from .federated.strategies import STRATEGIES
from ._version import installed_version
from .events import EventType

__all__ = ["main"]


def _progress(enabled: bool):
    """tqdm when installed and wanted, else nothing (the library works without it)."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None

    def bar(iterable: Any, total: int | None = None, desc: str | None = None, **_: Any):
        return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr)

    return bar


_THREADS_HELP = ("BLAS threads for the numeric work (default: 1, the fastest on a quiet 2-core "
                 "machine and by far on a busy one; BENCHMARKS.md)")


def _threads(text: str) -> int:
    """``--threads``: a number of BLAS threads, 1 to 256."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"expected a number of threads from 1 to 256, got {text!r}")
    return value


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="synthetic",
                   help="'synthetic', a MovieLens-100K folder, or an interactions CSV (default: synthetic)")
    p.add_argument("--user-col", default="user", help="CSV column of user ids (default: user)")
    p.add_argument("--item-col", default="item", help="CSV column of item ids (default: item)")
    p.add_argument("--time-col", default="timestamp", help="CSV column of timestamps (default: timestamp)")
    p.add_argument("--value-col", default=None, help="CSV column of values, e.g. ratings (optional)")
    p.add_argument("--event-col", default=None, help="CSV column of event types (optional)")


def _spec(args: argparse.Namespace):
    from .workflows import DataSpec

    return DataSpec(args.data, args.user_col, args.item_col, args.time_col, args.value_col,
                    args.event_col)


def _cmd_train(args: argparse.Namespace) -> int:
    from .model.config import ModelConfig
    from .workflows import default_training, load_data, train_bundle

    dataset = load_data(_spec(args))
    model = ModelConfig(dim=args.dim, history=args.history, encoder=args.encoder, blocks=args.blocks)
    if args.epochs is not None and model.encoder == "mix":
        raise ConfigError("--epochs sets one encoder's training; a mix trains its towers for "
                          "their own defaults (pooled 16 epochs, attention 40)")
    training = default_training(model, seed=args.seed, threads=args.threads,
                                **({"epochs": args.epochs} if args.epochs is not None else {}))
    bar = _progress(not args.quiet)
    progress = (lambda it: bar(it, desc="training")) if bar else None
    start = time.perf_counter()
    manifest = train_bundle(dataset, args.out, model=model, training=training, progress=progress)
    print(f"wrote {args.out}: model version {manifest.model_version}, {manifest.n_items} items, "
          f"{len(dataset)} interactions, {time.perf_counter() - start:.1f}s")
    return 0


def _print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'method':<16}{'HR@10':>9}{'NDCG@10':>10}{'val NDCG':>10}  hyper-parameters")
    for r in rows:
        print(f"{r['method']:<16}{r['hr@10']:>9.4f}{r['ndcg@10']:>10.4f}{r['val_ndcg']:>10.4f}  {r['hparams']}")


def _say(line: str) -> None:
    """A line on stderr (stdout stays the result), above any progress bars."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        print(line, file=sys.stderr, flush=True)
    else:
        tqdm.write(line, file=sys.stderr)


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import EvalPlan, FitRecord, default_jobs
    from .evaluation.protocol import DEFAULT_SEEDS
    from .workflows import QUICK_SEEDS, compare, eval_methods, load_data, peer_notes, result_rows

    start = time.perf_counter()
    dataset = load_data(_spec(args))
    for note in peer_notes():
        _say(f"note: peer not run: {note}")
    seeds = args.seeds if args.seeds is not None else (QUICK_SEEDS if args.quick else len(DEFAULT_SEEDS))
    bar = _progress(not args.quiet)
    jobs = args.jobs if args.jobs is not None else default_jobs()
    methods = eval_methods(quick=args.quick, threads=args.threads, progress=bar, sasrec=args.sasrec,
                           jobs=jobs)
    plan = EvalPlan.of(methods, seeds)
    _say(f"LOO-full on {dataset.name}: {len(dataset)} interactions, {dataset.n_items} items"
         f"{' (--quick)' if args.quick else ''}; BLAS threads: {args.threads}; "
         f"training processes: {jobs}")
    for line in plan.describe():
        _say(line)
    estimated: set[str] = set()

    def on_fit(record: FitRecord) -> None:  # the first fit of each method gives its estimate
        line = None if record.method in estimated else plan.estimate_line(record)
        estimated.add(record.method)
        if line:
            _say(line)

    result = compare(dataset, seeds=tuple(range(seeds)), progress=bar, threads=args.threads,
                     methods=methods, on_fit=on_fit, jobs=jobs)
    _say(f"done in {(time.perf_counter() - start) / 60:.1f} min")
    rows = result_rows(result)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"LOO-full on {dataset.name}: {len(result.eval_users)} users, {dataset.n_items} items, "
              f"mean of {len(result.seeds)} seed{'s' if len(result.seeds) != 1 else ''}")
        _print_table(rows)
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    from .client import open as open_rec

    with open_rec(args.db, bundle=args.bundle) as rec:
        recs = rec.recommend(args.user, k=args.k)
    if args.json:
        print(json.dumps([r.__dict__ for r in recs], indent=1))
    else:
        for n, r in enumerate(recs, 1):
            print(f"{n:>3}. {r.title}  ({r.score:.3f}, {r.reason})")
    return 0


def _cmd_log(args: argparse.Namespace) -> int:
    from .store import InteractionStore

    with InteractionStore(args.db) as store:
        written = store.log(args.user, args.item, args.event, args.value, event_id=args.event_id)
    print("logged" if written else "already logged (same event id)")
    return 0


def _print_ledger(snapshot: Any) -> None:
    from .privacy.ledger import iso_utc

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.4g}"  # an infinite epsilon prints as "inf"

    head = ("seq", "time (UTC)", "round", "kind", "bytes", "sha256", "C", "z", "eps", "destination", "note")
    rows = [(str(e.seq), iso_utc(e.ts), e.round_id or "-", e.kind, str(e.n_bytes), e.sha256[:12],
             num(e.clip), num(e.noise_multiplier), num(e.epsilon), e.destination or "-", e.note or "")
            for e in snapshot.entries]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    numeric = {0, 4, 6, 7, 8}
    for r in (head, *rows):
        print("  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    eps = "none recorded" if snapshot.epsilon is None else num(snapshot.epsilon)
    if snapshot.differentially_private is False:
        eps += " (no differential privacy: a payload left without noise)"
    elif snapshot.epsilon is not None and snapshot.delta is not None:
        eps += f" at delta {snapshot.delta:g}"
    n = len(snapshot.entries)
    print(f"total: {n} payload{'s' if n != 1 else ''}, {snapshot.total_bytes} bytes; "
          f"epsilon charged so far: {eps}")


def _cmd_audit(args: argparse.Namespace) -> int:
    from .privacy.ledger import read_ledger

    snapshot = read_ledger(args.db)  # read-only: a missing file is an error, never created
    if args.json:
        print(json.dumps(snapshot.to_dict(), indent=1))
    elif not snapshot.entries:
        print(f"no payload has left this device (the privacy ledger in {args.db} is empty)")
    else:
        _print_ledger(snapshot)
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from ._cli_simulate import run_simulate

    return run_simulate(args, _spec(args), _progress(not args.quiet))


def _cmd_demo(args: argparse.Namespace) -> int:
    """``edgerec demo`` runs ``edgerec-server demo`` with the same arguments, in a child process.

    The demo starts a server, so it lives with the server (``edgerec_server.demo``); the SDK
    never imports the server (DESIGN.md), it only checks that the package is there. The child
    shares the terminal: Ctrl-C reaches it too, and it stops its own server and workers.
    """
    import importlib.util
    import subprocess

    if importlib.util.find_spec("edgerec_server") is None:
        raise MissingDependencyError(
            "`edgerec demo` runs `edgerec-server demo`, and the server (edgerec_server) is not "
            "installed: pip install 'edgerec[all]', then run edgerec-server demo",
            module="edgerec_server", extra="all")
    with subprocess.Popen([sys.executable, "-m", "edgerec_server", "demo", *args.demo_args]) as child:
        try:
            code = child.wait()
        except KeyboardInterrupt:  # the child got it as well: let it clean up, then report it
            code = child.wait()
    return 128 - code if code < 0 else code  # killed by signal N: the shell's 128 + N


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgerec", description="On-device recommendations.")
    parser.add_argument("--version", action="version", version=f"edgerec {installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model on a dataset and write a bundle")
    _add_data_args(p)
    p.add_argument("--out", default="model-bundle", help="bundle folder to write (default: model-bundle)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--history", type=int, default=50)
    p.add_argument("--encoder", choices=("pooled", "attention", "mix"), default="pooled",
                   help="the user encoder: a weighted sum of the history (default), "
                        "self-attention blocks over it (slower to train), or both mixed (the "
                        "most accurate on MovieLens-100K; twice the model; BENCHMARKS.md)")
    p.add_argument("--blocks", type=int, default=2, help="attention blocks (attention or mix)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_threads, default=1, help=_THREADS_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_cmd_train)

    p = sub.add_parser("eval", help="LOO-full: edgerec (float, int8) against the peers",
                       description="LOO-full (DESIGN.md): every method is tuned on each user's "
                       "validation item with the first seed, refit on everything but the test "
                       "item once per seed, and scored on the test item. Says first what it will "
                       "run, then an estimate of each method's time after its first fit.")
    _add_data_args(p)
    p.add_argument("--seeds", type=int, default=None,
                   help="number of seeds to average (default: 5; 1 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="a quick look instead of the full protocol: 1 seed (unless --seeds), "
                        "edgerec validates 8 and 16 epochs of one pooled training run (not 7 "
                        "candidates: 2 pooled, 2 attention, 3 mixes of the two), item-knn, als and bpr 2 "
                        "candidates each (not 12, 12 and 8); about 4x faster")
    p.add_argument("--sasrec", action="store_true",
                   help="also run the SASRec peer (self-attention, full softmax, numpy): not in the "
                        "default set as it trains for minutes per fit (MovieLens-100K: 1.3-1.8 s an "
                        "epoch, 400 epochs of tuning, then 50-250 per seed: about 6 min per seed)")
    p.add_argument("--threads", type=_threads, default=1, help=_THREADS_HELP)
    p.add_argument("--jobs", type=_threads, default=None,
                   help="processes that train edgerec's runs side by side, the classic peers "
                        "evaluated meanwhile in one more (default: the cores this process may "
                        "use; 1: all in this process)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {method, hr@10, ndcg@10}")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_cmd_eval)

    p = sub.add_parser("recommend", help="recommend for a user from a bundle and a database")
    p.add_argument("--bundle", required=True,
                   help="model bundle folder (as `edgerec train --out` writes it) or bundle root")
    p.add_argument("--db", required=True,
                   help="the device's SQLite file with the user's events (created if missing)")
    p.add_argument("--user", required=True, help="user (or session) id whose history is scored")
    p.add_argument("-k", "--k", dest="k", type=int, default=10,
                   help="how many items to recommend (default: 10)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of {item, score, title, reason, because}")
    p.set_defaults(run=_cmd_recommend)

    events = ", ".join(e.value for e in EventType)
    p = sub.add_parser("log", help="log one event into a database")
    p.add_argument("--db", required=True, help="the device's SQLite file (created if missing)")
    p.add_argument("--user", required=True, help="user (or anonymous session) id")
    p.add_argument("--item", required=True, help="item id, as in the bundle's catalogue")
    p.add_argument("--event", default="click", metavar="TYPE",
                   help=f"event type: one of {events} (default: click)")
    p.add_argument("--value", type=float, default=1.0,
                   help="the stars of a rating (0..10); stored but unused for other types (default: 1.0)")
    p.add_argument("--event-id", default=None,
                   help="unique id of this event: logging the same id again does nothing, so "
                        "retries are safe (default: none)")
    p.set_defaults(run=_cmd_log)

    p = sub.add_parser("audit", help="print the privacy ledger: every payload that left this device")
    p.add_argument("--db", required=True)
    p.add_argument("--json", action="store_true",
                   help="print {entries, total_bytes, epsilon, delta, differentially_private} as JSON"
                        " for an auditor (an infinite epsilon is the string \"inf\")")
    p.set_defaults(run=_cmd_audit)

    p = sub.add_parser("simulate", help="federated learning simulated in one process, LOO-full per round")
    _add_data_args(p)
    p.add_argument("--rounds", type=int, default=120)
    p.add_argument("--clients", type=int, default=100,
                   help="devices per round (default: 100); as many as there are devices: everyone takes part")
    p.add_argument("--clip", type=float, default=1.0, help="L2 clip bound C of each delta")
    privacy = p.add_mutually_exclusive_group()
    privacy.add_argument("--noise", type=float, default=None, help="noise multiplier z of the sum (default: 0, none)")
    privacy.add_argument("--epsilon", type=float, default=None,
                         help="instead of --noise: the epsilon all --rounds may spend (at delta 1e-5); z is calibrated to it")
    p.add_argument("--pilot-share", type=float, default=0.0,
                   help="share of users who train the first model centrally, with consent (default: 0, a random first model)")
    p.add_argument("--frozen", default=None,
                   help="weights devices hold fixed and do not federate, comma-separated ('tables': the four item tables)")
    p.add_argument("--strategy", choices=sorted(STRATEGIES), default="fedadam")
    p.add_argument("--server-lr", type=float, default=None)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-central", action="store_true", help="skip training the central model to compare with")
    p.add_argument("--json", action="store_true",
                   help="JSON lines: each evaluated round, then a summary with epsilon, delta, ndcg@10, "
                        "central_ndcg@10 and pilot_ndcg@10 (null when not computed)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_cmd_simulate)

    # Every argument, --help included, goes to `edgerec-server demo` as typed: no prefix
    # character this parser knows, so it reads each one as a plain value.
    p = sub.add_parser("demo", help="the federated demo (runs `edgerec-server demo`; see its --help)",
                       add_help=False, prefix_chars="\0")
    p.add_argument("demo_args", nargs="*", help=argparse.SUPPRESS)
    p.set_defaults(run=_cmd_demo)
    return parser


def _run(args: argparse.Namespace) -> int:
    """Run the command; an optional dependency it lacks becomes one clear error (_extras.py)."""
    check_command(args.command)
    try:
        return args.run(args)
    except EdgeRecError:
        raise
    except ImportError as exc:
        missing = as_missing_dependency(args.command, exc)
        if missing is None:
            raise
        raise missing from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edgerec`` command. Errors print one clear line and exit 2, also when
    the command needs an extra that is not installed (``MissingDependencyError``)."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except EdgeRecError as exc:
        print(f"edgerec: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
