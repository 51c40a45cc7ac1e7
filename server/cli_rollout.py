"""``edgerec-server rollout`` (parsers and handler; ``cli.py`` wires them in)::

    edgerec-server rollout set --version 3                  # promoted 3; new models are held
    edgerec-server rollout canary --candidate 4 --share 0.1 # 10% of devices install model 4
    edgerec-server rollout canary --bundle new-bundle/      # publish a bundle as the candidate
    edgerec-server round open --kind evaluation --candidate 4 --min 10 --noise 1
    edgerec-server rollout decide [--margin 0.01]           # promote, reject, or keep collecting
    edgerec-server rollout decide --reject                  # the operator's override
    edgerec-server rollout show [--json]

Each command signs with the server's bundle key (in the data dir) and writes the statement to
the database; a running server serves it on ``GET /v1/rollout`` at once.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import rollout

if TYPE_CHECKING:
    from .cli import _Services

__all__ = ["add_parser", "rollout_command"]


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``rollout set|canary|decide|show``."""
    parser = sub.add_parser("rollout", help="canary and rollback: signed rollout statements")
    actions = parser.add_subparsers(dest="action", required=True)
    set_ = actions.add_parser("set", parents=[common], help="name the promoted version")
    set_.add_argument("--version", type=int, required=True)
    canary = actions.add_parser("canary", parents=[common],
                                help="hold a model as the candidate for a share of the devices")
    which = canary.add_mutually_exclusive_group(required=True)
    which.add_argument("--candidate", type=int, metavar="VERSION", help="a published version")
    which.add_argument("--bundle", type=Path, help="a bundle folder, published (re-signed) as "
                       "the next version first")
    canary.add_argument("--share", type=float, default=rollout.DEFAULT_SHARE,
                        help=f"share of the devices on the canary, in (0, 1] "
                             f"(default {rollout.DEFAULT_SHARE})")
    canary.add_argument("--promoted", type=int, default=None, metavar="VERSION",
                        help="first statement only: the version the other devices run (default: "
                             "the newest published below the candidate)")
    decide = actions.add_parser("decide", parents=[common],
                                help=f"promote or reject the candidate by {rollout.METRIC}'s "
                                     "interval in the newest evaluation round of the pair")
    decide.add_argument("--margin", type=float, default=0.0,
                        help="promote when the interval's lower end is >= -MARGIN (default 0)")
    override = decide.add_mutually_exclusive_group()
    override.add_argument("--promote", action="store_const", const=rollout.PROMOTE,
                          dest="override", help="promote whatever the rule says")
    override.add_argument("--reject", action="store_const", const=rollout.REJECT,
                          dest="override", help="reject whatever the rule says")
    actions.add_parser("show", parents=[common], help="every signed statement and its reason"
                       ).add_argument("--json", action="store_true")


def rollout_command(s: _Services, args: argparse.Namespace) -> int:
    """Run ``rollout <action>``; prints JSON (``show`` a table unless ``--json``)."""
    now = time.time()
    if args.action == "set":
        _print(rollout.set_promoted(s.state, s.publisher, args.version, now))
    elif args.action == "canary":
        candidate = args.candidate
        if args.bundle is not None:
            candidate = s.publisher.import_bundle(args.bundle, now).version
        _print(rollout.start_canary(s.state, s.publisher, candidate, args.share, now,
                                    promoted=args.promoted))
    elif args.action == "decide":
        decision = rollout.decide(s.state, s.publisher, now, args.margin, args.override)
        print(json.dumps(decision.to_dict()))
    else:
        rows = rollout.rollout_rows(s.state)
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            for r in rows:
                cand = "-" if r["candidate"] is None else f"{r['candidate']} @ {r['share']:g}"
                print(f"{r['seq']:>4} {r['decision']:8} promoted {r['promoted']:<5} candidate "
                      f"{cand:<10} rejected {r['rejected']}  {r['reason']}")
    return 0


def _print(record: Any) -> None:
    print(json.dumps({"seq": record.seq, "decision": record.decision, "promoted": record.promoted,
                      "candidate": record.candidate, "share": record.share,
                      "rejected": list(record.rejected), "reason": record.reason}))
