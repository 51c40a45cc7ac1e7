"""``edgerec-server``: serve, and the operator's commands (they work on the data dir directly,
also while the server runs; it picks up new rounds within one tick).

::

    edgerec-server init --synthetic | --data ../shared/data/ml-100k | --bundle model-bundle/
    edgerec-server token create --ttl 86400 --uses 10
    edgerec-server round open --min 10 --expected 40 --clip 1 --noise 1 --deadline 300
    edgerec-server round open --min 10 --expected 40 --epsilon 8 --planned-rounds 20
    edgerec-server round open --min 10 --expected 40 --noise 3 --frozen tables
    edgerec-server round open --kind evaluation --candidate 7 --min 10 --noise 1
    edgerec-server operator-token create                   # for GET /v1/analytics
    edgerec-server analytics [--json]
    edgerec-server rollout canary --candidate 4 --share 0.1   # then: rollout decide
    edgerec-server --data-dir ./state --port 8000          # serve (the default command)
    edgerec-server audit --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from edgerec._exceptions import MissingDependencyError
from edgerec._version import installed_version
from edgerec.federated.strategies import STRATEGIES

from ._exceptions import ServerError
from .cli_evaluation import (DEFAULT_CLIP, add_evaluation_options, analytics_command,
                             operator_token_command, round_kind_params)
from .cli_evaluation import add_parsers as add_evaluation_parsers
from .cli_rollout import add_parser as add_rollout_parser
from .cli_rollout import rollout_command
from .config import ServerConfig, load_config
from .epsilon_target import epsilon_target
from .demo.command import add_parser as add_demo_parser
from .keys import load_or_create_key
from .publisher import Publisher
from .serving_lock import ServingLock
from .state import StateBackend, open_state

__all__ = ["main"]


@dataclass
class _Services:
    config: ServerConfig
    state: StateBackend
    publisher: Publisher


def _services(args: argparse.Namespace) -> _Services:
    config = load_config(args.config, data_dir=args.data_dir, database=args.database,
                         host=getattr(args, "host", None),
                         port=getattr(args, "port", None), log_level=getattr(args, "log_level", None))
    state = open_state(config.database, config.database_path)
    return _Services(config, state, Publisher(state, load_or_create_key(config.signing_key_path)))


def _serve(s: _Services, args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app
    from .coordinator import Coordinator
    from .logs import log_event, setup_logging

    setup_logging(s.config.log_level, s.config.log_json)
    lock = ServingLock(s.config.data_dir)
    if not s.config.database:  # SQLite: this process alone serves the data dir, until it ends
        lock.acquire()
    coordinator = Coordinator(s.state, s.publisher, s.config)
    # The end of every round exports and quantizes its model: load onnx and onnxruntime's
    # quantization now (about 0.7 s), not while the first round's devices wait for its outcome.
    import onnx  # noqa: F401
    import onnxruntime.quantization  # noqa: F401
    log_event("starting", host=s.config.host, port=s.config.port, data_dir=str(s.config.data_dir),
              public_key=s.publisher.public_key.hex())
    try:
        uvicorn.run(create_app(coordinator), host=s.config.host, port=s.config.port,
                    log_config=None, access_log=False, log_level=s.config.log_level, lifespan="on",
                    timeout_keep_alive=int(s.config.keep_alive_s))
    finally:
        lock.release()
    return 0


def _init(s: _Services, args: argparse.Namespace) -> int:
    if s.state.latest_model() is not None:
        print("error: this data dir already has a model (init makes the first one)", file=sys.stderr)
        return 2
    now = time.time()
    if args.bundle:
        record = s.publisher.import_bundle(args.bundle, now)
    else:
        import tempfile

        from edgerec.model.config import ModelConfig, TrainConfig
        from edgerec.workflows import DEFAULT_TRAINING, DataSpec, load_data, train_bundle

        spec = DataSpec("synthetic" if args.synthetic else args.data,
                        synthetic_users=args.synthetic_users, synthetic_items=args.synthetic_items)
        with tempfile.TemporaryDirectory() as tmp:
            train_bundle(load_data(spec), Path(tmp) / "b",
                         model=ModelConfig(dim=args.dim, history=args.history),
                         # the same training as `edgerec train` (only --epochs may differ)
                         training=TrainConfig(**{**DEFAULT_TRAINING, **(
                             {"epochs": args.epochs} if args.epochs is not None else {})}))
            record = s.publisher.import_bundle(Path(tmp) / "b", now)
    print(json.dumps({"model_version": record.version, "sha256": record.sha256}))
    return 0


def _token(s: _Services, args: argparse.Namespace) -> int:
    from . import auth

    if args.action == "create":
        token, record = auth.create_token(s.state, time.time(), args.ttl, args.uses, args.note)
        print(token if not args.json else json.dumps({"token": token, "id": record.id,
                                                      "expires_at": record.expires_at}))
        return 0
    if not auth.revoke_token(s.state, args.token, time.time()):
        print("error: no such active token", file=sys.stderr)
        return 2
    return 0


def _device(s: _Services, args: argparse.Namespace) -> int:
    if not s.state.revoke_device(args.device_id, time.time()):
        print("error: no such active device", file=sys.stderr)
        return 2
    s.state.log_event("device_revoked", {"device_id": args.device_id}, time.time())
    return 0


def _round(s: _Services, args: argparse.Namespace) -> int:
    from .coordinator import open_round
    from .rounds import RoundParams, parse_frozen, rate_for_expected

    if args.action == "list":
        for r in s.state.rounds():
            print(json.dumps({"round_id": r.id, "kind": r.params.get("kind", "training"),
                              "state": r.state, "stage": r.stage,
                              "participants": r.participants, "survivors": r.survivors,
                              "federated_weights": r.vector_length,
                              "frozen": list(r.params.get("frozen", [])),
                              "model_version_out": r.out_version, "reason": r.reason}))
        return 0
    calibrated = epsilon_target(args, s.config)
    if args.max is not None:
        # A cap on a Poisson draw would make the cohort something the audit cannot account.
        print("warning: --max is ignored: every device drawn into the cohort may take part "
              "(set the cohort with --sample-rate or --expected)", file=sys.stderr)
    now = time.time()
    rate = args.sample_rate
    if args.expected is not None:
        from .authority import eligible_devices

        rate = rate_for_expected(args.expected, len(eligible_devices(s.state, now)))
    deadlines = [float(v) for v in args.deadlines.split(",")] if args.deadlines else args.deadline
    noise = 0.0 if args.noise is None else args.noise  # with --epsilon: chosen for the draw
    params = RoundParams.from_dict({
        **round_kind_params(args), "min_participants": args.min, "sampling_rate": rate,
        "noise_multiplier": noise, "threshold": args.threshold, "colluders": args.colluders,
        "graph": args.graph, "degree": args.degree, "deadlines": deadlines,
        "strategy": args.strategy, "server_lr": args.server_lr, "quiet_close": args.quiet_close,
        "tolerate_dropouts": args.tolerate_dropouts, "frozen": parse_frozen(args.frozen)})
    record = open_round(s.state, s.publisher, params, now,
                        noise_for=calibrated.noise_for if calibrated else None)
    members = sorted(s.state.members(record.id))
    z = float(record.params["noise_multiplier"])
    if calibrated:
        print(calibrated.describe(record.population, len(members), z), file=sys.stderr)
    kind = {"kind": record.params["kind"], "candidate": record.params["candidate"],
            "clip": record.params["clip"], "evaluation": record.params["evaluation"]} \
        if "kind" in record.params else {}  # training rounds read as they did
    print(json.dumps({"round_id": record.id, **kind, "members": members, "cohort": len(members),
                      "population": record.population, "sampling_rate": rate,
                      "threshold": record.params["threshold"], "noise_multiplier": z,
                      "federated_weights": record.vector_length,
                      "frozen": list(record.params.get("frozen", [])),
                      **(calibrated.to_dict() if calibrated else {})}))
    return 0


def _audit(s: _Services, args: argparse.Namespace) -> int:
    from .audit import NEIGHBOURING_RELATION, audit_rows

    rows = audit_rows(s.state, s.config.dp_delta, s.config.accountant)
    if args.json:
        from .audit import certificate_rows
        from .authority import load_authority
        from .rollout import rollout_rows

        authority = load_authority(s.config)
        print(json.dumps({"delta": s.config.dp_delta, "accountant": s.config.accountant,
                          "authority": {"public_key": authority.public_key.hex(), "mode": authority.mode},
                          "certificates": certificate_rows(s.state), "rounds": rows,
                          "rollouts": rollout_rows(s.state)}, indent=1))
        return 0
    print(f"{'round':>5} {'state':8} {'q':>6} {'cohort/N':>11} {'part':>4} {'surv':>4} {'clip':>6} "
          f"{'z':>5} {'epsilon':>9} {'weights':>8}  versions")
    for r in rows:
        eps = "-" if r["cumulative_epsilon"] is None else f"{r['cumulative_epsilon']:.3f}"
        if r["state"] == "done" and not r["differentially_private"]:
            eps = "inf"
        drawn = f"{r['cohort']}/{r['population']}"
        print(f"{r['round_id']:>5} {r['state']:8} {r['sampling_rate']:>6.3g} {drawn:>11} "
              f"{r['participants'] or 0:>4} {r['survivors'] or 0:>4} {r['clip']:>6g} "
              f"{r['noise_multiplier']:>5g} {eps:>9} {r['federated_weights']:>8}  "
              f"{r['model_version_in']} -> {r['model_version_out'] or '-'}"
              + (f"  frozen: {','.join(r['frozen'])}" if r["frozen"] else ""))
    print(f"(epsilon at delta={s.config.dp_delta:g}, cumulative over completed rounds, each one "
          f"a cohort drawn from N devices; {NEIGHBOURING_RELATION} neighbouring relation; weights: "
          "how many each device sent, the frozen ones left out)")
    return 0


def _public_key(s: _Services, args: argparse.Namespace) -> int:
    print(s.publisher.public_key.hex())
    return 0


def _authority_key(s: _Services, args: argparse.Namespace) -> int:
    from .authority import load_authority

    authority = load_authority(s.config)
    print(authority.public_key.hex() if not args.json else json.dumps(
        {"public_key": authority.public_key.hex(), "mode": authority.mode}))
    return 0


def _certify(s: _Services, args: argparse.Namespace) -> int:
    """Sign the pending devices' certificates with the offline authority key (a PEM file)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from .authority import certify_pending, load_authority

    try:
        key = load_pem_private_key(Path(args.authority_key).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        print(f"error: cannot read the authority key {args.authority_key}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(key, Ed25519PrivateKey):
        print(f"error: {args.authority_key} is not an Ed25519 key", file=sys.stderr)
        return 2
    done = certify_pending(s.state, key, load_authority(s.config), time.time())
    print(json.dumps({"certified": done}))
    return 0


def _export(s: _Services, args: argparse.Namespace) -> int:
    from edgerec.sync import install_bundle

    version = args.version or s.publisher.latest().version
    archive = s.state.model_archive(version)
    if archive is None:
        print(f"error: no model version {version}", file=sys.stderr)
        return 2
    install_bundle(archive, args.out, s.publisher.public_key)
    print(json.dumps({"model_version": version, "out": str(args.out)}))
    return 0


def _plain(doc: str) -> str:
    """A reST docstring as plain text for ``--help``: no literal-block or inline-code markers."""
    return doc.replace("``", "").replace("\n::\n", "\nexamples:\n")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=None,
                        help=f"state folder (default: {ServerConfig.data_dir})")
    common.add_argument("--database", default=None, metavar="URL",
                        help="postgresql://user@host/db: keep the state in PostgreSQL, shared by "
                             "replicas (default: a SQLite file in --data-dir, one server)")
    common.add_argument("--config", type=Path, default=None,
                        help="TOML or JSON settings file (default: none; EDGEREC_SERVER_* variables "
                             "and flags override it)")
    p = argparse.ArgumentParser(prog="edgerec-server", description=_plain(__doc__ or ""),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"edgerec-server {installed_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", parents=[common], help="run the HTTP server (default)")
    # None, not the value, as argparse default: the config file and environment come first.
    serve.add_argument("--host", help=f"address to listen on (default: {ServerConfig.host}, loopback)")
    serve.add_argument("--port", type=int, help=f"TCP port (default: {ServerConfig.port})")
    serve.add_argument("--log-level", help=f"uvicorn and server log level (default: {ServerConfig.log_level})")
    init = sub.add_parser("init", parents=[common], help="make the first global model")
    src = init.add_mutually_exclusive_group(required=True)
    src.add_argument("--synthetic", action="store_true")
    src.add_argument("--data", help="MovieLens-100K folder or interactions CSV")
    src.add_argument("--bundle", type=Path, help="an existing bundle folder")
    for flag, default in (("--dim", 64), ("--history", 50),
                          ("--synthetic-users", 500), ("--synthetic-items", 300)):
        init.add_argument(flag, type=int, default=default, help=f"(default: {default})")
    init.add_argument("--epochs", type=int, default=None,
                      help="training epochs (default: edgerec train's; the rest of the training "
                           "settings are edgerec train's too)")
    token = sub.add_parser("token", help="enrolment tokens").add_subparsers(dest="action", required=True)
    create = token.add_parser("create", parents=[common])
    create.add_argument("--ttl", type=float, default=7 * 24 * 3600.0, help="seconds (default 7 days)")
    create.add_argument("--uses", type=int, default=1, help="devices that may enrol with it")
    create.add_argument("--note", default="")
    create.add_argument("--json", action="store_true")
    token.add_parser("revoke", parents=[common]).add_argument("token", help="the token or its id")
    device = sub.add_parser("device", help="devices").add_subparsers(dest="action", required=True)
    device.add_parser("revoke", parents=[common]).add_argument("device_id", type=int)
    rnd = sub.add_parser("round", help="rounds").add_subparsers(dest="action", required=True)
    rnd.add_parser("list", parents=[common])
    op = rnd.add_parser("open", parents=[common])
    op.add_argument("--min", type=int, default=3, help="fewest drawn devices the round needs")
    draw = op.add_mutually_exclusive_group()
    draw.add_argument("--sample-rate", type=float, default=1.0, metavar="Q",
                      help="draw each active device with probability Q, in (0, 1] (default 1: all)")
    draw.add_argument("--expected", type=int, default=None, metavar="K",
                      help="Q = K / active devices (at most 1): K drawn on average")
    op.add_argument("--max", type=int, default=None, help=argparse.SUPPRESS)  # ignored, warns
    op.add_argument("--clip", type=float, default=None,
                    help=f"L2 clip of each delta (default {DEFAULT_CLIP}; evaluation rounds: the "
                         "layout's bound)")
    privacy = op.add_mutually_exclusive_group()
    privacy.add_argument("--noise", type=float, default=None,
                         help="noise multiplier z of the sum (default 0: no differential privacy)")
    privacy.add_argument("--epsilon", type=float, default=None, metavar="E",
                         help="choose z for a target epsilon instead: the least z with which "
                              "--planned-rounds rounds like this draw cost at most E in the audit")
    op.add_argument("--planned-rounds", type=int, default=None, metavar="R",
                    help="rounds the --epsilon budget is spread over (required with --epsilon)")
    op.add_argument("--delta", type=float, default=None,
                    help="delta of --epsilon (default: the server's dp_delta, 1e-5 unless set)")
    op.add_argument("--threshold", type=int, default=None)
    op.add_argument("--tolerate-dropouts", type=int, default=None, metavar="D",
                    help="threshold = neighbourhood size - D (drawn cohort - D on the complete "
                         "graph; never below the safe floor): devices add noise for t survivors, "
                         "so a t close to the turnout adds least noise")
    op.add_argument("--colluders", type=int, default=0)
    op.add_argument("--graph", choices=("complete", "harary"), default="complete")
    op.add_argument("--degree", type=int, default=None)
    op.add_argument("--deadline", type=float, default=300.0, help="seconds per stage")
    op.add_argument("--deadlines", help="four comma-separated per-stage seconds")
    op.add_argument("--strategy", choices=sorted(STRATEGIES), default="fedavg")
    op.add_argument("--server-lr", type=float, default=None)
    op.add_argument("--quiet-close", type=float, default=None,
                    help="close a stage after this many silent seconds once enough devices answered")
    op.add_argument("--frozen", default="", metavar="NAMES",
                    help="comma-separated weights the round leaves out (devices hold them fixed "
                         "and send only the rest; they come out unchanged), e.g. "
                         "emb_in,emb_out,feat_in,feat_out, or 'tables' for those four")
    add_evaluation_options(op)
    add_evaluation_parsers(sub, common)
    add_rollout_parser(sub, common)
    sub.add_parser("audit", parents=[common], help="privacy audit").add_argument("--json", action="store_true")
    sub.add_parser("public-key", parents=[common], help="print the bundle-signing key (hex)")
    sub.add_parser("authority-key", parents=[common],
                   help="print the enrolment authority's public key (hex): devices pin it"
                   ).add_argument("--json", action="store_true")
    certify = sub.add_parser("certify", parents=[common],
                             help="sign pending devices' certificates with an offline authority key")
    certify.add_argument("--authority-key", required=True, help="the authority's Ed25519 PEM file")
    export = sub.add_parser("export-bundle", parents=[common], help="write a model's bundle folder")
    export.add_argument("--version", type=int, default=None)
    export.add_argument("--out", type=Path, required=True)
    add_demo_parser(sub)
    return p


_HANDLERS = {"serve": _serve, "init": _init, "token": _token, "device": _device, "round": _round,
             "audit": _audit, "public-key": _public_key, "authority-key": _authority_key,
             "certify": _certify, "export-bundle": _export, "analytics": analytics_command,
             "operator-token": operator_token_command, "rollout": rollout_command}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edgerec-server`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*_HANDLERS, "demo", "-h", "--help", "--version"):
        argv.insert(0, "serve")
    args = _parser().parse_args(argv)
    if args.command == "demo":  # it runs its own server on a temporary data dir: no services
        return int(args.run(args))
    try:
        services = _services(args)
    except (ServerError, MissingDependencyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return _HANDLERS[args.command](services, args)
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        services.state.close()
