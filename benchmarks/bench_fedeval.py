"""What a federated evaluation round costs a device and the server, and how precise it is (issue 16).

    python -m benchmarks.bench_fedeval [--devices 100,754,1000] [--no-write]

Three parts, all measured in this run:

* **The device's measurement**: ``edgerec.fedeval.device_eval`` of one device (200 events in
  its history, its held-out events, 100 impressions with clicks and dismissals) scored by the
  int8 ONNX graph of a MovieLens-sized model (1,682 items, width 64, random weights: the time
  does not depend on them). CPU ms per call, median of repeated calls.
* **The protocol**: full in-memory secure-aggregation rounds (``edgerec.secagg.simulate_round``,
  every message through the wire format, certificates checked by every device itself, as in a
  first round with these peers) of the evaluation vector, for each layout and graph: CPU ms
  per device (all stages), bytes up and down per device, server CPU ms for the whole round.
* **Precision**: the std of the NDCG@10 estimate that the DP noise alone gives at noise
  multiplier z = 1 when every device has a held-out event: the noise in the sum is
  ``z * C * sqrt(n / (t - c))`` (``DistributedNoise``: each device adds noise calibrated to the
  threshold, the fewest devices a sum can be unmasked over), divided by n. It scales with z.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._report import table, write_section
from edgerec.events import Interaction
from edgerec.fedeval import EvalConfig, device_eval, scorer_score_fn
from edgerec.model.config import ModelConfig
from edgerec.model.export import export_onnx, quantize_int8
from edgerec.model.params import init_params
from edgerec.privacy import DistributedNoise
from edgerec.scoring import Scorer
from edgerec.secagg import SecAggConfig, crypto, deterministic_rng, simulate_round
from edgerec.types import Catalogue

N_ITEMS = 1682
FULL_ALONE = EvalConfig(models=("installed",))
FULL_PAIR = EvalConfig()
LEAN = dict(metrics=("ndcg",), squares=False, live=False)
LEAN_ALONE = EvalConfig(models=("installed",), max_held_out=1, **LEAN)
LEAN_PAIR = EvalConfig(max_held_out=1, **LEAN)
LAYOUTS = {"full, installed (17 slots)": FULL_ALONE, "full, + candidate (23)": FULL_PAIR,
           "lean, installed (2)": LEAN_ALONE, "lean, + candidate (4)": LEAN_PAIR}


def _scorer(folder: Path) -> tuple[Scorer, Catalogue]:
    rng = np.random.default_rng(0)
    cfg = ModelConfig()
    features = (rng.random((N_ITEMS, 19)) < 0.1).astype(np.float32)
    params = init_params(cfg, N_ITEMS, features.shape[1], rng)
    float_path = export_onnx(params, features, cfg, folder / "model.onnx")
    int8 = quantize_int8(float_path, folder / "model.int8.onnx")
    ids = tuple(str(i) for i in range(N_ITEMS))
    cat = Catalogue(ids, ids, features, tuple(f"f{j}" for j in range(features.shape[1])))
    return Scorer(int8, N_ITEMS, cfg.history), cat


def _events(rng: np.random.Generator) -> list[Interaction]:
    """200 views before the cut-off (t < 1000), 5 after it, then 100 impressions with feedback."""
    items = rng.choice(N_ITEMS, 205, replace=False)
    out = [Interaction("u", str(i), "view", 1.0, float(t)) for t, i in enumerate(items[:200])]
    out += [Interaction("u", str(i), "view", 1.0, 1000.0 + t) for t, i in enumerate(items[200:])]
    for t in range(100):
        item, at = str(rng.integers(N_ITEMS)), 2000.0 + 10 * t
        out.append(Interaction("u", item, "impression", 1.0, at))
        for kind, p in (("click", 0.1), ("dismiss", 0.05)):
            if rng.random() < p:
                out.append(Interaction("u", item, kind, 1.0, at + 1))
    return out


def device_ms(repeat: int) -> list[list[str]]:
    """CPU ms of one device's ``device_eval`` per layout (two scorers when a candidate is measured)."""
    with tempfile.TemporaryDirectory() as tmp:
        scorer, cat = _scorer(Path(tmp))
        score = scorer_score_fn(scorer)
        events = _events(np.random.default_rng(1))
        rows = []
        for name, config in LAYOUTS.items():
            scorers = {m: score for m in config.models}
            times = []
            for _ in range(repeat):
                t0 = time.process_time()
                out = device_eval(events, config=config, catalogue=cat, scorers=scorers,
                                  held_out_after=999.5, live_since=1500.0, until=5000.0)
                times.append(time.process_time() - t0)
            rows.append([name, str(out.held_out), f"{out.impressions}",
                         f"{1000 * statistics.median(times):.1f}", f"{8 * len(config.layout)}"])
    return rows


def protocol(n: int, length: int, graph: str) -> dict[str, float]:
    """One in-memory round of ``n`` devices sending ``length`` slots: its figures."""
    import edgerec.secagg.certificate as certificate

    # Every device checks its peers' certificates itself, as in a first round with them (the
    # process-wide memo would let the simulated devices share their checks).
    signed_by = certificate._signed_by
    certificate._signed_by = signed_by.__wrapped__  # type: ignore[attr-defined]
    try:
        x = np.ones(length, np.uint32)
        config = SecAggConfig(round_id=1, vector_length=length, graph=graph)
        authority = crypto.ed25519_private(deterministic_rng(b"bench-authority"))
        out = simulate_round(config, {c: x for c in range(n)}, seed=b"fedeval", clock=time.process_time,
                             authority_key=authority)
    finally:
        certificate._signed_by = signed_by
    alive = sorted(out.result.survivors)
    assert len(alive) == n and np.array_equal(out.result.total, x * n), "unmasked sum is wrong"
    degree, threshold = config.parameters_for(n)
    return {"client_ms": 1000 * float(np.mean([out.client_seconds[c] for c in alive])),
            "up": float(np.mean([out.upload_bytes[c] for c in alive])),
            "down": float(np.mean([out.download_bytes[c] for c in alive])),
            "server_ms": 1000 * sum(out.server_seconds.values()), "degree": degree, "t": threshold}


def noise_std(config: EvalConfig, n: int, threshold: int) -> float:
    """Std of the NDCG@10 estimate's DP noise at z = 1 (every device with a held-out event)."""
    return DistributedNoise(config.layout.l2_bound, 1.0, threshold).sum_std(n) / n


def protocol_rows(sizes: list[int], complete_up_to: int) -> list[list[str]]:
    rows = []
    for n in sizes:
        for graph in ("harary", "complete"):
            if graph == "complete" and n > complete_up_to:
                continue
            for name in ("full, installed (17 slots)", "lean, installed (2)"):
                config = LAYOUTS[name]
                r = protocol(n, len(config.layout), graph)
                rows.append([f"{n:,}", graph, f"{r['degree']} / {r['t']}", name, f"{r['client_ms']:.0f}",
                             f"{r['up'] / 1e3:.1f}", f"{r['down'] / 1e3:.1f}", f"{r['server_ms'] / 1000:.1f}",
                             f"{noise_std(config, n, int(r['t'])):.4f}"])
                print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", default="100,754,1000")
    parser.add_argument("--complete-up-to", type=int, default=1000,
                        help="skip complete-graph rounds of more devices than this")
    parser.add_argument("--repeat", type=int, default=30, help="device_eval calls per layout (median)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    device = device_ms(args.repeat)
    print(device, flush=True)
    rows = protocol_rows([int(v) for v in args.devices.split(",")], args.complete_up_to)
    body = "\n\n".join([
        "A device's own measurement (`device_eval`, int8 ONNX scoring of a 1,682-item model, 200 "
        "history events; CPU ms, median of "
        f"{args.repeat} calls): it ranks each held-out event once per model and counts its feedback.",
        table(["layout", "held-out events ranked", "impressions counted", "device CPU ms",
               "vector bytes (float64)"], device),
        "The round (in-memory, all five stages, every device checks its peers' certificates itself). "
        "Client ms: CPU per device, all stages; up/down: bytes per device; server: CPU s for the whole "
        "round. The last column is what the DP noise alone leaves on the NDCG@10 estimate at noise "
        "multiplier z = 1 (multiply by the round's z): on the Harary graph each device calibrates its "
        "noise to the neighbourhood threshold t, so the sum carries sqrt(n / t) times z*C; on the "
        "complete graph t is close to n.",
        table(["devices", "graph", "degree / t", "layout", "client ms", "up KB", "down KB",
               "server s", "NDCG@10 noise std at z = 1"], rows),
    ])
    print(body)
    if not args.no_write:
        write_section(name="fedeval", title="Cost and precision of an evaluation round (issue 16)",
                      command=f"python -m benchmarks.bench_fedeval --devices {args.devices}", body=body)


if __name__ == "__main__":
    main()
