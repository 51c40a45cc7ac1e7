"""Secure aggregation cost: per-device client time, server unmasking time, bytes per device.

Every round is a full in-memory round (``edgerec.secagg.simulate_round``): all n clients and
the server run every stage, every message goes through the wire format, and the unmasked sum
is checked against the exact sum of the survivors' inputs. Times are CPU seconds of this
process (``time.process_time``), so other work on a shared machine does not inflate them;
per-device client time is the mean (and max) over the clients that finished, every stage
including encoding and decoding their messages. Dropped clients vanish after sharing keys,
the costliest moment for the server (it must rebuild their mask keys and their pairwise masks).
Every client has an enrolment certificate and checks its peers'.

The first table compares this protocol (v2: certificates, signed mask sets, the consistency
check) with the one before it (v1, git commit ``--baseline``, extracted with ``git archive``),
both measured in this run, each in fresh interpreters, alternating, median of ``--repeat``.

Run from the repository root: ``python -m benchmarks.bench_secagg`` (``--help`` for sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._report import table, write_section
from edgerec.secagg import SecAggConfig, Stage, crypto, deterministic_rng, simulate_round

CLIENT_BAR_S = 2.0
EXPANSION_BAR = 1.2
#: the last commit with the v1 protocol (before certificates and the consistency check)
BASELINE = "bd73e27"
ROOT = Path(__file__).resolve().parents[1]
#: Measures rounds with whatever ``edgerec`` is on the path (v1 or v2): argv[1] is a JSON list of
#: [n, length, graph, dropout, seed]; prints a JSON list of figures.
_MEASURE = r"""
import inspect, json, sys, time
import numpy as np
from edgerec.secagg import SecAggConfig, Stage, crypto, deterministic_rng, simulate_round
COLD = sys.argv[2] == "cold"
try:
    import edgerec.secagg.certificate as certificate
except ImportError:  # v1: no certificates at all
    certificate = None
if COLD and certificate is not None:
    # Every simulated client checks every certificate itself, as a device in its first round
    # with these peers does (the process-wide memo would let 100 in-process clients share it).
    certificate._signed_by = certificate._signed_by.__wrapped__

def one(n, length, graph, dropout, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2**32, length, dtype=np.uint32)
    dropped = rng.choice(n, size=int(round(dropout * n)), replace=False)
    config = SecAggConfig(round_id=seed, vector_length=length, graph=graph)
    kw = {}
    if "authority_key" in inspect.signature(simulate_round).parameters:
        kw["authority_key"] = crypto.ed25519_private(deterministic_rng(b"bench-authority"))
    out = simulate_round(config, {c: x for c in range(n)}, seed=b"bench%d" % seed,
                         dropouts={int(c): Stage.MASKED_INPUT for c in dropped},
                         clock=time.process_time, **kw)
    alive = sorted(out.result.survivors)
    assert np.array_equal(out.result.total, (x.astype(np.uint64) * len(alive) % 2**32).astype(np.uint32))
    degree, threshold = config.parameters_for(n)
    return dict(client=float(np.mean([out.client_seconds[c] for c in alive])),
                up=float(np.mean([out.upload_bytes[c] for c in alive])),
                down=float(np.mean([out.download_bytes[c] for c in alive])),
                server=float(sum(out.server_seconds.values())), degree=degree, threshold=threshold)

def measured(args):
    if not COLD:
        one(*args)  # the same peers (same keys and certificates) met once before
    return one(*args)

print(json.dumps([measured(args) for args in json.loads(sys.argv[1])]))
"""


def run(n: int, length: int, graph: str, dropout: float, seed: int = 0) -> dict:
    """One round; returns its figures."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2**32, length, dtype=np.uint32)
    inputs = {c: x for c in range(n)}  # one shared array: the machines never write to inputs
    dropped = rng.choice(n, size=int(round(dropout * n)), replace=False)
    dropouts = {int(c): Stage.MASKED_INPUT for c in dropped}
    config = SecAggConfig(round_id=seed, vector_length=length, graph=graph)
    authority = crypto.ed25519_private(deterministic_rng(b"bench-authority"))
    wall = time.perf_counter()
    outcome = simulate_round(config, inputs, seed=b"bench%d" % seed, dropouts=dropouts,
                             clock=time.process_time, authority_key=authority)
    wall = time.perf_counter() - wall
    survivors = sorted(outcome.result.survivors)
    expected = (x.astype(np.uint64) * len(survivors) % 2**32).astype(np.uint32)
    assert np.array_equal(outcome.result.total, expected), "unmasked sum is wrong"
    client_s = np.array([outcome.client_seconds[c] for c in survivors])
    up = np.array([outcome.upload_bytes[c] for c in survivors])
    down = np.array([outcome.download_bytes[c] for c in survivors])
    degree, threshold = config.parameters_for(n)
    return dict(
        n=n, length=length, graph=graph, degree=degree, threshold=threshold, dropped=len(dropouts),
        client_mean=client_s.mean(), client_max=client_s.max(),
        server_unmask=outcome.server_seconds[Stage.UNMASK], server_total=sum(outcome.server_seconds.values()),
        up=up.mean(), down=down.mean(), expansion=up.mean() / (4 * length), wall=wall,
    )


def _name(r: dict) -> str:
    return "SecAgg (complete)" if r["graph"] == "complete" else "SecAgg+ (Harary)"


def _ms(s: float) -> str:
    return f"{1000 * s:,.0f}"


def headline_rows(results: list[dict]) -> list[list[object]]:
    rows = []
    for r in results:
        passes = r["client_max"] < CLIENT_BAR_S and r["expansion"] < EXPANSION_BAR
        rows.append([
            _name(r), f"{r['degree']} / {r['threshold']}", r["dropped"], _ms(r["client_mean"]), _ms(r["client_max"]),
            _ms(r["server_unmask"]), _ms(r["server_total"]), f"{r['up'] / 1e6:.3f}", f"{r['expansion']:.4f}x",
            f"{r['down'] / 1e3:.1f}", "pass" if passes else "FAIL",
        ])
    return rows


def growth_rows(results: list[dict]) -> list[list[object]]:
    return [
        [_name(r), r["n"], f"{r['length']:,}", f"{r['degree']} / {r['threshold']}", r["dropped"],
         _ms(r["client_mean"]), _ms(r["server_unmask"]), _ms(r["server_total"]), f"{r['expansion']:.4f}x",
         f"{r['wall']:.1f}"]
        for r in results
    ]


def _baseline_tree(commit: str, into: Path) -> Path:
    """The ``edgerec`` package as of ``commit`` (``git archive``), unpacked under ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "edgerec"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def _measure(path: Path, cases: list[list[object]], cold: bool = True) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(path), "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _MEASURE, json.dumps(cases), "cold" if cold else "warm"],
                          check=True,
                          capture_output=True, text=True, env=env, cwd=str(path))
    return json.loads(done.stdout)


def signature_costs(reps: int = 2000) -> tuple[float, float]:
    """(verify, sign) seconds of one Ed25519 operation here (``cryptography``, OpenSSL)."""
    key = crypto.ed25519_private(deterministic_rng(b"bench-sign"))
    public, data = crypto.ed25519_public(key), b"x" * 100
    signature = crypto.sign(key, data)
    t0 = time.process_time()
    for _ in range(reps):
        crypto.verify(public, signature, data)
    t1 = time.process_time()
    for _ in range(reps):
        crypto.sign(key, data)
    return (t1 - t0) / reps, (time.process_time() - t1) / reps


def compare(baseline: str, n: int, length: int, dropout: float,
            repeat: int) -> tuple[list[list[object]], list[float], list[float]]:
    """v1 (``baseline``) against v2 (this tree), alternating fresh interpreters: median rows,
    and the client-time ratios (first round, certificates known)."""
    cases = [[n, length, g, d, 0] for g in ("harary", "complete") for d in (0.0, dropout)]
    with tempfile.TemporaryDirectory(prefix="edgerec-baseline-") as tmp:
        old_tree = _baseline_tree(baseline, Path(tmp))
        runs: dict[str, list[list[dict]]] = {"v1": [], "v2": [], "v2 warm": []}
        for _ in range(repeat):
            runs["v1"].append(_measure(old_tree, cases))
            runs["v2"].append(_measure(ROOT, cases, cold=True))
            runs["v2 warm"].append(_measure(ROOT, cases, cold=False))
    rows, cold, warm = [], [], []
    for i, (_, _, graph, drop, _) in enumerate(cases):
        med = {v: {k: float(np.median([r[i][k] for r in runs[v]])) for k in ("client", "up", "down", "server")}
               for v in runs}
        first = {v: runs[v][0][i] for v in runs}
        rows.append([
            "SecAgg+ (Harary)" if graph == "harary" else "SecAgg (complete)", int(round(drop * n)),
            f"{first['v1']['degree']} / {first['v1']['threshold']}", f"{first['v2']['degree']} / {first['v2']['threshold']}",
            _ms(med["v1"]["client"]), _ms(med["v2"]["client"]), f"{med['v2']['client'] / med['v1']['client']:.2f}x",
            _ms(med["v2 warm"]["client"]), f"{med['v2 warm']['client'] / med['v1']['client']:.2f}x",
            f"{med['v1']['up']:,.0f}", f"{med['v2']['up']:,.0f}", f"{med['v2']['up'] / med['v1']['up']:.4f}x",
            f"{med['v1']['down'] / 1e3:.1f} / {med['v2']['down'] / 1e3:.1f}",
            f"{_ms(med['v1']['server'])} / {_ms(med['v2']['server'])}"])
        cold.append(med["v2"]["client"] / med["v1"]["client"])
        warm.append(med["v2 warm"]["client"] / med["v1"]["client"])
    return rows, cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--length", type=int, default=200_000)
    parser.add_argument("--growth", default="10,100,500", help="client counts for the growth table")
    parser.add_argument("--growth-length", type=int, default=200_000)
    parser.add_argument("--full-graph-max-n", type=int, default=500, help="skip complete-graph growth rows above")
    # 2%: SecAgg+ neighbourhoods (2 log2 n + 1 devices) with t above 2/3 of them tolerate only
    # about a quarter of them dropping; 10% random dropouts would leave some neighbourhood short.
    parser.add_argument("--dropout", type=float, default=0.02, help="fraction dropped after sharing keys")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--baseline", default=BASELINE, help="git commit of the v1 protocol to compare with")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs per protocol (median)")
    args = parser.parse_args()

    versus, cold, warm = compare(args.baseline, args.n, args.length, args.dropout, args.repeat)
    met = lambda ratios: sum(r <= 1.1 for r in ratios)  # noqa: E731
    verify_s, sign_s = signature_costs()
    extra = {g: SecAggConfig(0, 1, graph=g).parameters_for(args.n) for g in ("harary", "complete")}
    run(10, args.length, "complete", 0.0)  # warm-up: imports, allocator, OpenSSL contexts
    headline = [run(args.n, args.length, g, d) for g in ("complete", "harary") for d in (0.0, args.dropout)]
    sizes = [int(s) for s in args.growth.split(",") if s]
    growth = [run(n, args.growth_length, "harary", args.dropout) for n in sizes]
    growth += [run(n, args.growth_length, "complete", args.dropout) for n in sizes if n <= args.full_graph_max_n]

    body = "\n\n".join([
        f"### The cost of the active-adversary protocol (v2) against v1 (commit {args.baseline}), same run",
        f"n = {args.n}, vector length {args.length:,}; each protocol with its own default threshold "
        f"(v1: a majority of each neighbourhood; v2: above 2/3 of it). Client ms: CPU per surviving "
        f"device, all stages (v2 adds a certificate check per neighbour, a signed mask set, the "
        f"consistency stage's signature, and at unmasking the check of every surviving neighbour's "
        f"survivor signature, which restates its mask set). 'First round': every device checks each "
        "peer's certificate itself; 'certificates known': a device that met these peers before "
        f"(it remembers certificates it verified). Median of {args.repeat} alternating runs in fresh "
        "interpreters. Goals: client time <= 1.1x, upload expansion <= 1.01x.",
        table(
            ["protocol", "dropped", "v1 degree / t", "v2 degree / t", "v1 client ms",
             "v2 client ms (first round)", "ratio", "v2 client ms (peers' certificates known)", "ratio",
             "v1 upload B", "v2 upload B", "upload ratio", "download KB v1 / v2", "server ms v1 / v2"],
            versus,
        ),
        "Where v2's extra client time goes: per device it verifies k certificates (remembered for "
        "later rounds) and k survivor signatures, and signs twice more. One Ed25519 verification "
        f"costs {verify_s * 1e6:.0f} us and one signature {sign_s * 1e6:.0f} us here (measured in this "
        "run), so SecAgg+ (k = {0}, t = {1}) adds about {2:.0f} ms and SecAgg (k = {3}, t = {4}) about "
        "{5:.0f} ms per device in a first round with those peers, whatever the vector length (about "
        "half of it once their certificates are known). The upload goal (1.01x) is met in every row. "
        "The client-time goal (1.1x) is met in {6} of {8} rows for a device meeting its peers for "
        "the first time and in {7} of {8} once their certificates are known (the figures are a few "
        "ms of CPU, so single rows move by several percent between runs); where it is missed, at "
        "this vector length v1's own client work is a few tens of ms, and the checks that add to "
        "it are what stop key substitution, split views and isolation (SECURITY.md), each one "
        "public-key operation. Batch verification (not in `cryptography`) would make them cheaper.".format(
            extra["harary"][0], extra["harary"][1],
            (2 * extra["harary"][0] * verify_s + 2 * sign_s) * 1e3,
            extra["complete"][0], extra["complete"][1],
            (2 * extra["complete"][0] * verify_s + 2 * sign_s) * 1e3, met(cold), met(warm), len(cold)),
        "### This protocol (v2)",
        f"n = {args.n} devices, vector length {args.length:,} uint32 ({4 * args.length / 1e6:.1f} MB plain). "
        "Full in-memory rounds: every stage, every message through the wire format, sum checked exactly. "
        "Times are CPU ms of the benchmark process (per-device: mean and max over finishing clients, all "
        "five stages including (de)serialisation). Dropped devices vanish after sharing keys. "
        f"Bars (SecAgg+): client < {CLIENT_BAR_S:.0f} s per round, upload expansion < {EXPANSION_BAR}x.",
        table(
            ["protocol", "degree / t", "dropped", "client ms (mean)", "client ms (max)", "server unmask ms",
             "server all stages ms", "upload MB/device", "expansion", "download KB/device", "bars"],
            headline_rows(headline),
        ),
        f"### Growth with n (dropout {args.dropout:.0%} after sharing keys)",
        table(
            ["protocol", "n", "length", "degree / t", "dropped", "client ms/device", "server unmask ms",
             "server all stages ms", "expansion", "round wall s (all clients, sequential)"],
            growth_rows(growth),
        ),
        "Client cost is O(k·L + k·t) for k neighbours (k = n-1 for SecAgg, about 2·log2 n for SecAgg+): "
        "one AES-CTR mask expansion and one uint32 add per neighbour, plus Shamir dealing. The server's "
        "unmasking is O(n·L) for the self masks plus O(dropped·k·L) for the pairwise masks of the dropped. "
        "Upload is the masked vector plus about 100 bytes per neighbour (encrypted shares) and 37 bytes "
        "per neighbour (revealed shares), so expansion stays near 1 unless k is large and L small.",
    ])
    if args.no_write:
        print(body)
    else:
        cmd = "python -m benchmarks.bench_secagg"
        write_section(name="secagg", title="Secure aggregation (edgerec.secagg)", command=cmd, body=body)


if __name__ == "__main__":
    main()
