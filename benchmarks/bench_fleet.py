"""The coordinating server at fleet scale: one round of 100 / 1,000 / 5,000 devices, SQLite with
one server against PostgreSQL with one and two replicas.

Devices are real ``edgerec.sync`` participants with the SDK's default polling and timeouts, in
several OS processes on this machine (``_fleet_devices.py``), talking HTTP on loopback to the
server processes (spread over the replicas, round robin). The model is small (a few thousand
weights) so that what is measured is the server's cost per device (requests, signatures,
database writes, share forwarding), not the devices' masking. Reported per setting: round wall
time (round opened to the last device seeing it done), server CPU seconds per device (all
replicas; the database server's CPU beside it), requests per second, errors (failed devices
and 5xx answers: must be 0), peak RSS per replica, database size after the round, and the
aggregation math alone for the same round in memory (``simulate_round``).

    python -m benchmarks.bench_fleet [--devices 100,1000,5000] [--setups sqlite,pg1,pg2]
        [--processes 32] [--threads 0] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks._report import table, write_section
from benchmarks._fleet_devices import run_devices
from edgerec_server.process import ServeSpec, ServerProcess

SETUPS = {"sqlite": (False, 1), "pg1": (True, 1), "pg2": (True, 2)}
_TICK = os.sysconf("SC_CLK_TCK")


def _cli(data_dir: Path, database: str, *args: str) -> str:
    extra = ["--database", database] if database else []
    out = subprocess.run([sys.executable, "-m", "edgerec_server", *args, "--data-dir", str(data_dir),
                          *extra], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _cpu_s(pid: int, children: bool = False) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / _TICK


def _postgres_cpu_s() -> float:
    """CPU of every postgres process (a backend that exited is in its parent's children time)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "postgres":
                total += _cpu_s(int(proc.name), children=True)
        except OSError:
            continue
    return total


def _rss_mb(pid: int) -> float:
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024


def _requests(urls: list[str]) -> tuple[float, float]:
    """(requests answered, of which 5xx) over all replicas, from their /metrics."""
    total = errors = 0.0
    for url in urls:
        text = httpx.get(url + "/metrics").text
        for status, value in re.findall(r'^edgerec_http_requests_total\{.*status="(\d+)".*\} ([0-9.e+-]+)$',
                                        text, re.M):
            total += float(value)
            errors += float(value) if status.startswith("5") else 0.0
    return total, errors


def _start(data_dir: Path, database: str) -> ServerProcess:
    """One replica on a free port, answering /healthz (its log: server-PORT.log beside the data dir)."""
    env = {**os.environ, "EDGEREC_SERVER_LOG_LEVEL": "warning", "EDGEREC_SERVER_DATABASE": database}
    return ServerProcess(ServeSpec(data_dir, env=env, ready_timeout=60, stop_grace=30)).start()


def _bundle(path: Path) -> Path:
    from edgerec.bundle import write_bundle
    from edgerec.data import synthetic
    from edgerec.model.config import ModelConfig
    from edgerec.model.params import init_params

    catalogue = synthetic(n_users=20, n_items=200).catalogue
    cfg = ModelConfig(dim=8, history=10)
    params = init_params(cfg, len(catalogue), catalogue.features.shape[1], np.random.default_rng(0))
    write_bundle(path, params, catalogue, cfg, model_version=1)
    return path


_GRAPHS = {"harary": "SecAgg+ (harary graph)", "complete": "SecAgg (complete graph)"}


def _db_size(data_dir: Path, database: str) -> float:
    if not database:
        return sum(f.stat().st_size for f in data_dir.glob("state.sqlite3*")) / 1e6
    import psycopg

    with psycopg.connect(database) as conn:
        return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 1e6


def one_round(n: int, setup: str, args: argparse.Namespace, pg) -> dict:  # type: ignore[no-untyped-def]
    """Run one round of ``n`` devices on ``setup``; its measurements."""
    uses_pg, replicas = SETUPS[setup]
    tmp = Path(tempfile.mkdtemp(prefix=f"edgerec-fleet-{setup}-"))
    database = pg.create_database() if uses_pg else ""
    data_dir = tmp / "state"
    _cli(data_dir, database, "init", "--bundle", str(_bundle(tmp / "bundle")))
    servers: list[ServerProcess] = []
    try:
        for _ in range(replicas):  # one by one: a replica that fails to start stops the ones before it
            servers.append(_start(data_dir, database))
        urls = [s.url for s in servers]
        token = _cli(data_dir, database, "token", "create", "--uses", str(n))
        authority = bytes.fromhex(_cli(data_dir, database, "authority-key"))
        ctx = multiprocessing.get_context("spawn")
        shares = [n // args.processes + (i < n % args.processes) for i in range(args.processes)]
        pipes, procs = [], []
        for count in shares:
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=run_devices, args=(urls, token, count, args.threads, authority, theirs))
            proc.start()
            pipes.append(mine)
            procs.append(proc)
        assert sum(p.recv()[1] for p in pipes) == n
        kind = ("--kind", "evaluation") if args.kind == "evaluation" else ()
        opened = json.loads(_cli(data_dir, database, "round", "open", *kind, "--min", "3", "--graph",
                                 args.graph, "--noise", "0", "--deadline", str(args.deadline)))
        cpu0, db0, (req0, _) = [_cpu_s(s.pid) for s in servers], _postgres_cpu_s(), _requests(urls)
        t0 = time.time()
        for p in pipes:
            p.send("go")
        reports = [p.recv()[1] for p in pipes]
        wall = max(r["finished"] for r in reports) - t0
        cpu = sum(_cpu_s(s.pid) for s in servers) - sum(cpu0)
        db_cpu = _postgres_cpu_s() - db0 if uses_pg else 0.0
        req, errors5xx = _requests(urls)
        rss = [_rss_mb(s.pid) for s in servers]
        for proc in procs:
            proc.join(60)
    finally:
        for server in servers:
            server.stop()
    failed = sum(r["failed"] for r in reports)
    return {"devices": n, "setup": setup, "wall_s": wall, "cpu_s": cpu, "db_cpu_s": db_cpu,
            "device_cpu_s": sum(r["cpu_s"] for r in reports),
            "requests": req - req0, "errors": failed + int(errors5xx), "failed": failed,
            "sample_errors": sorted({e for r in reports for e in r["errors"]})[:3],
            "rss_mb": rss, "db_mb": _db_size(data_dir, database), "threshold": opened["threshold"],
            "vector_length": opened.get("federated_weights") or opened.get("vector_length"),
            "kind": args.kind, "graph": args.graph}


def _math_alone_per_device(n: int, length: int, graph: str) -> float:
    """The server's secure-aggregation math for the same round in memory, seconds per device."""
    from edgerec.secagg import SecAggConfig, crypto, deterministic_rng, simulate_round

    x = np.random.default_rng(0).integers(0, 2**20, length, dtype=np.uint32)
    config = SecAggConfig(round_id=1, vector_length=length, min_clients=n, graph=graph)
    authority = crypto.ed25519_private(deterministic_rng(b"bench-authority"))
    outcome = simulate_round(config, {c: x for c in range(1, n + 1)}, seed=b"bench",
                             clock=time.perf_counter, authority_key=authority)
    return sum(outcome.server_seconds.values()) / n


def _report(rows: list[dict], math: dict[int, float], args: argparse.Namespace) -> str:
    lines = []
    for r in rows:
        n = r["devices"]
        per = r["cpu_s"] / n * 1000
        lines.append([f"{n:,}", r["setup"], f"{r['wall_s']:.1f}", f"{per:.1f}",
                      f"{r['db_cpu_s'] / n * 1000:.1f}" if r["setup"] != "sqlite" else "-",
                      f"{r['device_cpu_s'] / n * 1000:.1f}",
                      f"{math.get(n, float('nan')) * 1000:.2f}", f"{per / (math.get(n, float('nan')) * 1000):.0f}x",
                      f"{r['requests'] / r['wall_s']:.0f}", str(r["errors"]),
                      " / ".join(f"{m:.0f}" for m in r["rss_mb"]), f"{r['db_mb']:.1f}"])
    notes = [f"- {r['devices']:,} on {r['setup']}: {r['failed']} devices failed: {'; '.join(r['sample_errors'])}"
             for r in rows if r["failed"]]
    return "\n".join([
        f"One round per row: {_GRAPHS[args.graph]}, no noise, FedAvg, a {rows[0]['vector_length']:,}-weight "
        f"model; devices in {args.processes} processes, "
        f"{f'{args.threads} threads each' if args.threads else 'a thread per device (uploads held)'}, "
        "with the SDK's default "
        "polling (Retry-After from the server) and timeouts; servers and database on the same 2 cores "
        "as the devices. Server CPU counts every replica from round open to the last device done, "
        "device CPU every device process over the same time (SDK, HTTP client, cryptography); "
        "'math alone' is the server side of the same round's secure aggregation in memory.",
        "",
        table(["devices", "setup", "round wall s", "server CPU ms/device", "DB CPU ms/device",
               "device CPU ms/device",
               "math alone ms/device", "CPU / math", "requests/s", "errors", "peak RSS MB (replicas)",
               "DB MB after"], lines),
        "", *notes,
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", default="100,1000,5000")
    parser.add_argument("--setups", default="sqlite,pg1,pg2")
    parser.add_argument("--processes", type=int, default=32,
                        help="device processes (a thread per device in each by default)")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads per device process; 0 (default): one per device, as each "
                             "phone runs its own sync, with held uploads (one request a stage)")
    parser.add_argument("--deadline", type=float, default=900.0)
    parser.add_argument("--skip", default="", metavar="N:SETUP,...",
                        help="combinations not to run, e.g. 5000:sqlite,5000:pg1")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--graph", choices=tuple(_GRAPHS), default="harary",
                        help="secure aggregation graph: harary (SecAgg+, the default) or complete")
    parser.add_argument("--kind", choices=("training", "evaluation"), default="training",
                        help="evaluation: an evaluation round (issue 16: devices send a 17-slot "
                             "edgerec.fedeval vector instead of a delta); printed, never written")
    args = parser.parse_args()
    from tests.server.pg_helpers import pg_bindir, running_postgres

    sizes = [int(v) for v in args.devices.split(",")]
    setups = args.setups.split(",")
    rows = []
    with running_postgres(pg_bindir(), max_connections=500) as pg:
        skip = set(filter(None, args.skip.split(",")))
        for n in sizes:
            for setup in setups:
                if f"{n}:{setup}" in skip:
                    continue
                row = one_round(n, setup, args, pg)
                print(json.dumps(row), flush=True)
                rows.append(row)
    math = {n: _math_alone_per_device(n, rows[0]["vector_length"], args.graph) for n in sizes}
    body = _report(rows, math, args)
    print(body)
    # The fleet section is of training rounds on the harary graph; other runs are printed only.
    if not args.no_write and args.kind == "training" and args.graph == "harary":
        write_section(name="fleet", title="Coordinating server at fleet scale (SQLite vs PostgreSQL replicas)",
                      command=f"python -m benchmarks.bench_fleet --devices {args.devices} --setups {args.setups}"
                              + (f" --skip {args.skip}" if args.skip else ""),
                      body=body)


if __name__ == "__main__":
    main()
