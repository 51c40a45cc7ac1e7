"""``edgerec-server`` commands for federated evaluation (parsers and handlers; ``cli.py`` wires
them in)::

    edgerec-server round open --kind evaluation --candidate 7 --min 10 --noise 1
    edgerec-server round open --kind evaluation --min 10 --epsilon 2 --planned-rounds 10
    edgerec-server operator-token create --note dashboard     # shown once: op_...
    edgerec-server operator-token revoke 3
    edgerec-server analytics [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from edgerec.sync import EVALUATION, ROUND_KINDS, TRAINING

from ._exceptions import BadRequestError

if TYPE_CHECKING:
    from .cli import _Services

__all__ = ["add_evaluation_options", "add_parsers", "analytics_command", "operator_token_command",
           "round_kind_params"]

#: ``round open``'s clip when none is given (training rounds; evaluation rounds use the layout's).
DEFAULT_CLIP = 1.0
#: The settings ``--lean`` adds (``edgerec.fedeval.EvalConfig``'s lean options).
LEAN: dict[str, Any] = {"metrics": ["ndcg"], "squares": False, "live": False}
_SETTINGS = {"top_k": "--top-k", "max_held_out": "--max-held-out",
             "max_impressions": "--max-impressions"}


def add_evaluation_options(op: argparse.ArgumentParser) -> None:
    """The evaluation options of ``round open``."""
    op.add_argument("--kind", choices=ROUND_KINDS, default=TRAINING,
                    help="training (devices send model deltas; default) or evaluation (devices "
                         "send federated metrics of the latest model and --candidate; no model "
                         "comes out, the estimate is kept for 'edgerec-server analytics')")
    op.add_argument("--candidate", type=int, default=None, metavar="VERSION",
                    help="evaluation: a published model version measured beside the latest "
                         "(devices download and verify it, and do not install it)")
    op.add_argument("--top-k", type=int, default=None, metavar="K",
                    help="evaluation: the cut-off of HR@K and NDCG@K (default 10)")
    op.add_argument("--max-held-out", type=int, default=None, metavar="H",
                    help="evaluation: at most H newest untrained events ranked per device (default 5)")
    op.add_argument("--max-impressions", type=int, default=None, metavar="I",
                    help="evaluation: at most I impressions counted per device (default 100)")
    op.add_argument("--lean", action="store_true",
                    help="evaluation: a lean vector, NDCG@K alone with no square or live-feedback "
                         "slots (its L2 bound, hence its noise, is sqrt(2) instead of sqrt(17) "
                         "for the latest model alone; the intervals bound the sampling variance)")


def round_kind_params(args: argparse.Namespace) -> dict[str, Any]:
    """The ``RoundParams`` fields ``round open``'s kind options give, clip included."""
    settings: dict[str, Any] = {name: getattr(args, name) for name in _SETTINGS
                                if getattr(args, name) is not None}
    if args.kind != EVALUATION:
        given = [_SETTINGS[n] for n in settings] + (["--candidate"] if args.candidate is not None else [])
        given += ["--lean"] if args.lean else []
        if given:
            raise BadRequestError(f"{', '.join(given)} go with --kind evaluation")
        return {"clip": DEFAULT_CLIP if args.clip is None else args.clip}
    if args.clip is not None:
        raise BadRequestError("an evaluation round's clip is its layout's L2 bound (every slot is "
                              "in [0, 1]): leave --clip out")
    if args.lean:
        settings.update(LEAN)
    return {"kind": EVALUATION, "candidate": args.candidate, "evaluation": settings or None}


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """``analytics`` and ``operator-token``."""
    sub.add_parser("analytics", parents=[common],
                   help="federated evaluation per model version (metrics, intervals, devices, epsilon)"
                   ).add_argument("--json", action="store_true")
    op = sub.add_parser("operator-token", help="tokens of the operator routes (GET /v1/analytics)")
    actions = op.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", parents=[common])
    create.add_argument("--note", default="")
    create.add_argument("--json", action="store_true")
    actions.add_parser("revoke", parents=[common]).add_argument("token", help="the token or its id")


def analytics_command(s: _Services, args: argparse.Namespace) -> int:
    """``edgerec-server analytics [--json]``: what ``GET /v1/analytics`` answers."""
    from .analytics import analytics, analytics_table

    doc = analytics(s.state.evaluations(), s.config.dp_delta)
    print(json.dumps(doc, indent=1) if args.json else analytics_table(doc))
    return 0


def operator_token_command(s: _Services, args: argparse.Namespace) -> int:
    """``edgerec-server operator-token create|revoke``."""
    from .operators import create_operator_token, revoke_operator_token

    if args.action == "create":
        token, record = create_operator_token(s.state, time.time(), args.note)
        print(json.dumps({"token": token, "id": record.id}) if args.json else token)
        return 0
    if not revoke_operator_token(s.state, args.token, time.time()):
        print("error: no such active operator token", file=sys.stderr)
        return 2
    return 0
