"""The coordinating server under one real round: 100 devices, a MovieLens-100K-sized model.

A real ``edgerec-server`` process on 127.0.0.1; 100 devices (real ``edgerec.sync``
participants: privatize, SecAgg+ client machine, HTTP) driven from a thread pool in this
process. Reported: the server's wall time per stage (open to close, which includes waiting for
the devices), the server's own time per stage (accepting messages including the database
write, and closing the stage), HTTP handling time, the server's peak RSS, and, beside them,
the aggregation math alone: the same round's server side in memory (``simulate_round``: wire
decode, verify, add, unmask) plus decode and the optimizer. Their ratio is the overhead.

    python -m benchmarks.bench_server [--devices 100] [--workers 8] [--no-write]

(The devices step through the stages together, each stage for all devices before the next.)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from benchmarks._report import table, write_section
from edgerec_server.process import ServeSpec, ServerProcess

ML100K = Path(os.environ.get("EDGEREC_ML100K", Path(__file__).resolve().parents[2] / "shared/data/ml-100k"))
STAGES = ("ADVERTISE", "SHARE_KEYS", "MASKED_INPUT", "CONSISTENCY", "UNMASK")


def _catalogue():
    if (ML100K / "u.data").is_file():
        from edgerec.data import load_movielens

        return load_movielens(ML100K).catalogue, "MovieLens-100K catalogue"
    from edgerec.data import synthetic

    return synthetic(n_users=50, n_items=1682).catalogue, "synthetic 1,682-item catalogue"


def _server_cli(data_dir: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "edgerec_server", *args, "--data-dir", str(data_dir)],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _metric(text: str, name: str, stage: str | None = None) -> float:
    label = f'{{stage="{stage}"}}' if stage else ""
    match = re.search(rf"^{re.escape(name + label)} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def _start(data_dir: Path) -> ServerProcess:
    """The server on a free port, answering /healthz (its log: server-PORT.log beside the data dir)."""
    env = {**os.environ, "EDGEREC_SERVER_TICK_INTERVAL_S": "0.05", "EDGEREC_SERVER_LOG_LEVEL": "warning"}
    return ServerProcess(ServeSpec(data_dir, env=env, ready_timeout=60, stop_grace=30)).start()


def math_alone(n: int, length: int, fp, seed: int = 0) -> dict:
    """The server's aggregation math for the same round, in memory: secagg + decode + FedAvg."""
    from edgerec.federated import FedAvg, StrategyState
    from edgerec.privacy import aggregate_decode
    from edgerec.secagg import SecAggConfig, crypto, deterministic_rng, simulate_round

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2**20, length, dtype=np.uint32)
    config = SecAggConfig(round_id=1, vector_length=length, min_clients=n, graph="harary")
    authority = crypto.ed25519_private(deterministic_rng(b"bench-authority"))
    outcome = simulate_round(config, {c: x for c in range(1, n + 1)}, seed=b"bench", clock=time.perf_counter,
                             authority_key=authority)
    secagg = {s.name: t for s, t in outcome.server_seconds.items()}
    t0 = time.perf_counter()
    mean = aggregate_decode(outcome.result.total, fp, n)
    FedAvg().apply(np.zeros(length, np.float32), mean, StrategyState())
    return {"secagg": secagg, "decode_and_optimizer": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from edgerec.bundle import write_bundle
    from edgerec.model.config import ModelConfig
    from edgerec.model.params import init_params
    from edgerec.sync import HttpxTransport, RoundParticipant, ServerApi, SyncTimeouts, new_identity_key

    n = args.devices
    catalogue, source = _catalogue()
    tmp = Path(tempfile.mkdtemp(prefix="edgerec-bench-server-"))
    cfg = ModelConfig(dim=64)
    params = init_params(cfg, len(catalogue), catalogue.features.shape[1], np.random.default_rng(0))
    write_bundle(tmp / "bundle", params, catalogue, cfg, model_version=1)
    data_dir = tmp / "state"
    _server_cli(data_dir, "init", "--bundle", str(tmp / "bundle"))
    server = _start(data_dir)
    url = server.url
    try:
        token = _server_cli(data_dir, "token", "create", "--uses", str(n))
        transport = HttpxTransport(url, timeout=120.0)
        with ThreadPoolExecutor(args.workers) as pool:
            identities = list(pool.map(lambda _: ServerApi(transport).enrol(token, new_identity_key()), range(n)))
        opened = json.loads(_server_cli(data_dir, "round", "open", "--min", str(n), "--graph", "harary",
                                        "--clip", "1", "--noise", "1", "--deadline", "600"))
        apis = [ServerApi(transport, i.credential) for i in identities]
        ann = apis[0].current_round()
        rng = np.random.default_rng(1)
        deltas = [d / np.linalg.norm(d) * 0.5 for d in rng.normal(0, 1, (n, ann.vector_length))]
        authority = bytes.fromhex(_server_cli(data_dir, "authority-key"))  # what devices pin
        parts = [RoundParticipant(a, i, ann, d, authority_key=authority,
                                  timeouts=SyncTimeouts(poll_interval=0.05, stage_timeout=600))
                 for a, i, d in zip(apis, identities, deltas)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.workers) as pool:
            # Stage by stage: a pool smaller than the cohort must not block on a stage that
            # waits for devices still queued behind it.
            for step in ("advertise", "share_keys", "masked_input", "consistency", "unmask"):
                list(pool.map(lambda p, step=step: getattr(p, step)(), parts))
            outcomes = list(pool.map(lambda p: p.result(), parts))
        round_wall = time.perf_counter() - t0
        assert {o.status.state for o in outcomes} == {"done"}, outcomes[0].status
        metrics = httpx.get(url + "/metrics").text
        rss = _peak_rss_mb(server.pid)
    finally:
        server.stop()
    alone = math_alone(n, ann.vector_length, ann.fixed_point())
    rows, server_total, math_total = [], 0.0, 0.0
    for stage in STAGES:
        wall = _metric(metrics, "edgerec_stage_open_seconds_sum", stage)
        accept = _metric(metrics, "edgerec_stage_receive_seconds_total", stage)
        close = _metric(metrics, "edgerec_stage_close_seconds_sum", stage)
        math_s = alone["secagg"].get(stage, 0.0)
        server_total += accept + close
        math_total += math_s
        rows.append([stage.lower(), f"{wall:.2f}", f"{accept:.2f}", f"{close:.2f}", f"{math_s:.2f}"])
    math_total += alone["decode_and_optimizer"]
    aggregate = _metric(metrics, "edgerec_aggregate_seconds_sum")
    publish = _metric(metrics, "edgerec_publish_seconds_sum")
    http_s = _metric(metrics, "edgerec_http_request_seconds_sum") or sum(
        float(v) for v in re.findall(r"^edgerec_http_request_seconds_sum\{.*\} ([0-9.e+-]+)$", metrics, re.M))
    requests = sum(float(v) for v in re.findall(r"^edgerec_http_requests_total\{.*\} ([0-9.e+-]+)$", metrics, re.M))
    body = "\n".join([
        f"One round, {n} devices, SecAgg+ (harary, threshold {opened['threshold']}), clip 1, noise "
        f"multiplier 1, FedAvg; model dim 64 on the {source} ({ann.vector_length:,} shared weights, "
        f"{4 * ann.vector_length / 1e6:.2f} MB per masked vector). Devices run in {args.workers} threads "
        "of the benchmark process; the server is a separate `edgerec-server` process on loopback.",
        "",
        table(["stage", "wall s (open -> closed)", "server: accept s", "server: close s", "math alone s"], rows),
        "",
        f"- Round wall time (first advert to model published, seen by devices): {round_wall:.1f} s",
        f"- Server time in the stages (accept + close): {server_total:.2f} s, of which unmask + decode + "
        f"optimizer {aggregate:.2f} s and publishing (ONNX, int8, sign, store) {publish:.2f} s",
        f"- HTTP: {int(requests)} requests, {http_s:.2f} s handling in total (includes waiting for the lock)",
        f"- Aggregation math alone (in memory, same round): {math_total:.2f} s "
        f"(decode + optimizer {alone['decode_and_optimizer']:.3f} s)",
        f"- Overhead ratio, server stage time / math alone: {server_total / math_total:.2f}x "
        f"({(server_total - publish) / math_total:.2f}x without publishing the new bundle)",
        f"- Server peak RSS: {rss:.0f} MB",
        "",
        "The wall time of a stage includes the devices' own work (privatize, mask, encrypt) on the "
        "same 2 cores; the server's accept time includes writing each message to SQLite "
        "(synchronous=FULL) before acknowledging it.",
    ])
    if args.no_write:
        print(body)
    else:
        write_section(name="server", title="Coordinating server (edgerec-server), one round",
                      command="python -m benchmarks.bench_server", body=body)


if __name__ == "__main__":
    main()
