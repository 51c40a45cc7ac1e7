"""``edgerec-server demo``: the command line of the federated demo.

``server/cli.py`` only registers it (``add_parser``); everything about its options lives here.
The demo starts its own server on a temporary data dir, so it takes none of the operator
commands' ``--data-dir``/``--config`` and needs no state of theirs. ``edgerec demo`` (the
device SDK's command) runs this command in a child process with the same arguments.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgerec import EdgeRecError
from edgerec.federated.strategies import STRATEGIES
from edgerec.model.params import ITEM_TABLES

from .config import DEFAULT_OUT, EVERY_DEVICE, PRESETS, DemoConfig

__all__ = ["add_parser", "run"]

_NO_DP = PRESETS["movielens_no_dp"]


def _per_round(text: str) -> int:
    """``--per-round``: a number of devices, or ``all`` (every device, every round)."""
    if text.strip().lower() == "all":
        return EVERY_DEVICE
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of devices or 'all', got {text!r}") from None


def _frozen(text: str) -> tuple[str, ...]:
    """``--frozen``: comma-separated weight names ('tables': the four item tables; 'none')."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    return () if names == ("none",) else names


def _show(name: str, value: Any) -> str:
    """A setting as its command-line spelling."""
    if name == "per_round" and value == EVERY_DEVICE:
        return "all"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return "tables" if value == ITEM_TABLES else ",".join(value) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _preset(name: str) -> str:
    """A preset field's values for the help text, read from ``PRESETS`` (defined once there)."""
    synthetic, private = PRESETS["synthetic"][name], PRESETS["movielens"][name]
    return f"preset: {_show(name, synthetic)} synthetic, {_show(name, private)} MovieLens"


def _default(name: str) -> str:
    """A plain field's default for the help text, read from ``DemoConfig``."""
    return f"default: {_show(name, DemoConfig.__dataclass_fields__[name].default)}"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``demo`` to ``edgerec-server``'s subcommands (``sub``: its subparsers action)."""
    p = sub.add_parser("demo", help="the federated demo: a server, devices, rounds, a report",
                       description="The federated demo, end to end on this machine: a real "
                       "edgerec-server on 127.0.0.1, devices in worker processes, rounds of "
                       "secure aggregation with differential privacy, LOO-full after each round, "
                       "a table and a report folder (report.json, report.png).")
    p.add_argument("--data", default=None, help="'synthetic' (default) or a MovieLens-100K folder")
    p.add_argument("--out", default=None,
                   help=f"report folder (default: ./{DEFAULT_OUT} in the current folder)")
    p.add_argument("--devices", type=int, default=None, help="devices (default: every non-pilot user)")
    p.add_argument("--rounds", type=int, default=None, help=f"federated rounds ({_preset('rounds')})")
    p.add_argument("--per-round", type=_per_round, default=None,
                   help=f"devices sampled per round, or 'all' ({_preset('per_round')})")
    privacy = p.add_mutually_exclusive_group()
    privacy.add_argument("--noise", type=float, default=None,
                         help="noise multiplier z of the sum (preset: "
                              f"{PRESETS['synthetic']['noise']:g} synthetic)")
    privacy.add_argument("--epsilon", type=float, default=None,
                         help="instead of --noise: the epsilon (delta 1e-5) all the rounds may "
                              "spend; z is chosen to meet it for --rounds rounds of --per-round of "
                              "the devices, plus the evaluation and canary rounds at the same z "
                              f"(preset: {PRESETS['movielens']['epsilon']:g} MovieLens)")
    privacy.add_argument("--no-dp", action="store_true", default=None,
                         help="no DP noise, with the no-noise preset (MovieLens: every user a "
                              f"device, {_NO_DP['rounds']} rounds of {_NO_DP['per_round']}, "
                              "nothing frozen)")
    p.add_argument("--frozen", type=_frozen, default=None,
                   help="comma-separated weights every round leaves out, 'tables' for "
                        f"emb_in,emb_out,feat_in,feat_out, or 'none' ({_preset('frozen')})")
    p.add_argument("--clip", type=float, default=None, help=f"L2 clip C of each delta ({_default('clip')})")
    p.add_argument("--workers", type=int, default=None, help=f"device worker processes ({_default('workers')})")
    p.add_argument("--port", type=int, default=None, help="server port on 127.0.0.1 (default: a free one)")
    p.add_argument("--dropout", type=float, default=None,
                   help=f"share of a round's devices that drop ({_default('dropout')})")
    p.add_argument("--pilot-share", type=float, default=None,
                   help=f"users who train the first model centrally, not devices ({_preset('pilot_share')})")
    p.add_argument("--strategy", choices=sorted(STRATEGIES), default=None,
                   help=f"server optimizer ({_preset('strategy')})")
    p.add_argument("--server-lr", type=float, default=None,
                   help=f"server lr, cosine-decayed ({_preset('server_lr')})")
    p.add_argument("--graph", choices=["complete", "harary"], default=None,
                   help=f"secure aggregation graph ({_preset('graph')})")
    p.add_argument("--stage-deadline", type=float, default=None,
                   help=f"seconds per later stage ({_preset('stage_deadline')})")
    p.add_argument("--quiet-close", type=float, default=None,
                   help="close a stage after this many silent seconds once enough answered "
                        f"({_default('quiet_close')})")
    p.add_argument("--dim", type=int, default=None, help=f"model width ({_preset('dim')})")
    p.add_argument("--central-epochs", type=int, default=None,
                   help="epochs of central training (default: edgerec train's)")
    p.add_argument("--synthetic-users", type=int, default=None,
                   help=f"users of the synthetic set ({_default('synthetic_users')})")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the data, the pilot draw and who drops out; never of the DP "
                        f"noise ({_default('seed')})")
    p.add_argument("--evaluate-every", type=int, default=None, metavar="K",
                   help="an evaluation round of the published model after every K-th round and "
                        f"the last (devices' federated NDCG@10 beside central; 0: none; "
                        f"{_preset('evaluate_every')})")
    p.add_argument("--evaluation-noise", type=float, default=None,
                   help="noise multiplier z of evaluation rounds (default: the training rounds')")
    p.add_argument("--canary", action=argparse.BooleanOptionalAction, default=None,
                   help="at the end, a bad candidate (item embeddings shuffled) on a canary share, "
                        f"measured and rolled back ({_preset('canary')})")
    p.add_argument("--canary-share", type=float, default=None,
                   help=f"share of the devices on the canary ({_default('canary_share')})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the demo with the parsed options; a bad setting prints one line and returns 2."""
    from . import DemoConfig, run_demo  # looked up at call time: tests replace run_demo

    options = {k: v for k, v in vars(args).items()
               if k not in ("command", "run", "quiet") and v is not None}
    try:
        run_demo(DemoConfig(**options), progress=not args.quiet)
    except EdgeRecError as exc:
        print(f"edgerec-server: error: {exc}", file=sys.stderr)
        return 2
    return 0
