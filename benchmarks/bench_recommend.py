"""recommend() latency (int8 onnxruntime vs float32 onnxruntime vs float32 numpy) and bundle figures.

    python -m benchmarks.bench_recommend [--calls 3000]

One thread, k=10, the user's history read from SQLite included in every call. Catalogues: the
MovieLens-100K one (~1.7k items, a model trained on it) when the data is present, then synthetic
10k and 100k item catalogues with random weights (latency does not depend on the values).
"""

from __future__ import annotations

import os

# One thread everywhere, the numpy baseline included (a BLAS pool would spin against the app).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks._report import table, write_section
from edgerec import Catalogue, EdgeRec, InteractionStore, ModelConfig, TrainConfig, load_bundle, write_bundle
from edgerec.model.export import export_onnx
from edgerec.model.network import user_vectors
from edgerec.model.params import init_params, item_tables
from edgerec.scoring import Scorer

ML100K = Path(os.environ.get("EDGEREC_ML100K", Path(__file__).resolve().parents[2] / "shared/data/ml-100k"))
USER = "bench-user"


class NumpyScorer:
    """The same model scored in float32 numpy: the baseline the int8 graph is compared with."""

    def __init__(self, params: dict, features: np.ndarray, history: int):
        self.params = {k: v.astype(np.float32) for k, v in params.items()}
        self.table_in, table_out = item_tables(self.params, features)
        self.table_out = np.ascontiguousarray(table_out, np.float32)
        self.history = history

    def top_k(self, items, signals, exclude, k, offset=None, adapter=None):
        pad = self.history - len(items)
        it = np.pad(items, (0, pad))[None, :]
        sg = np.pad(signals, (0, pad))[None, :]
        user = user_vectors(self.params, self.table_in, it, sg)[0]
        if adapter is not None:
            user = user + adapter
        scores = self.table_out @ user + self.params["bias"]
        if offset is not None:
            scores = scores + offset[0]
        scores[exclude] = -np.inf
        top = np.argpartition(-scores, k)[:k]
        top = top[np.argsort(-scores[top])]
        return top, scores[top]


def _catalogue(n_items: int, rng: np.random.Generator) -> Catalogue:
    features = (rng.random((n_items, 20)) < 0.1).astype(np.float32)
    ids = tuple(str(i) for i in range(n_items))
    return Catalogue(ids, tuple(f"Item {i}" for i in ids), features, tuple(f"f{j}" for j in range(20)))


def _model(n_items: int, folder: Path):
    """(params, catalogue, label): trained on MovieLens-100K for its size when present."""
    cfg = ModelConfig()
    rng = np.random.default_rng(0)
    if n_items == 0:
        from edgerec.data import load_movielens
        from edgerec.training import fit_params

        ds = load_movielens(ML100K)
        params = fit_params(ds.sequences(), ds.catalogue.features, cfg, TrainConfig(epochs=8))
        return params, ds.catalogue, f"MovieLens-100K ({len(ds.catalogue)})"
    cat = _catalogue(n_items, rng)
    return init_params(cfg, n_items, 20, rng), cat, f"synthetic {n_items:,}"


def _fill_store(db: Path, catalogue: Catalogue, rng: np.random.Generator) -> None:
    """1,000 users x 50 events, the benchmark user among them."""
    ids = catalogue.item_ids
    events = [{"user": USER if u == 0 else f"u{u}", "item": ids[int(i)], "event": "click", "ts": 1e9 + n}
              for u in range(1000) for n, i in enumerate(rng.integers(0, len(ids), 50))]
    with InteractionStore(db) as store:
        store.log_many(events)


def _latencies(rec: EdgeRec, calls: int) -> np.ndarray:
    for _ in range(50):
        rec.recommend(USER, k=10)
    out = np.empty(calls)
    for n in range(calls):
        start = time.perf_counter_ns()
        rec.recommend(USER, k=10)
        out[n] = time.perf_counter_ns() - start
    return out / 1e6


def _one_catalogue(n_items: int, calls: int, work: Path) -> tuple[list, list]:
    params, cat, label = _model(n_items, work)
    cfg = ModelConfig()
    bundle_dir = work / "bundle"
    write_bundle(bundle_dir, params, cat, cfg)
    float_path = export_onnx(params, cat.features, cfg, work / "float.onnx")
    db = work / "app.db"
    _fill_store(db, cat, np.random.default_rng(1))

    start = time.perf_counter()
    bundle = load_bundle(bundle_dir)
    loaded = time.perf_counter()
    int8 = Scorer(bundle.model_path, len(cat), cfg.history)
    session = time.perf_counter()
    rec = EdgeRec(InteractionStore(db), bundle, scorer=int8)
    rec.recommend(USER, k=10)
    first = time.perf_counter()

    rows = []
    scorers = {"int8 onnxruntime": int8,
               "float32 onnxruntime": Scorer(float_path, len(cat), cfg.history),
               "float32 numpy": NumpyScorer(params, cat.features, cfg.history)}
    for name, scorer in scorers.items():
        lat = _latencies(EdgeRec(rec.store, bundle, scorer=scorer), calls)
        rows.append([label, name, f"{np.percentile(lat, 50):.3f}", f"{np.percentile(lat, 99):.3f}"])
    size_f, size_q = float_path.stat().st_size, bundle.model_path.stat().st_size
    bundle_row = [label, f"{size_f / 1e6:.2f} MB", f"{size_q / 1e6:.2f} MB", f"{size_q / size_f:.1%}",
                  f"{(loaded - start) * 1e3:.0f} ms", f"{(session - loaded) * 1e3:.0f} ms",
                  f"{(first - session) * 1e3:.1f} ms"]
    rec.close()
    return rows, [bundle_row]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    sizes = ([0] if (ML100K / "u.data").is_file() else [1682]) + [10_000, 100_000]
    latency, bundles = [], []
    for n_items in sizes:
        work = Path(tempfile.mkdtemp(prefix="edgerec-bench-"))
        try:
            lat, bun = _one_catalogue(n_items, args.calls, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        latency += lat
        bundles += bun
    body = (
        "recommend(user, k=10), one thread, history read from SQLite (user with 50 events, 50k rows "
        f"in the table) included; {args.calls} calls after 50 warm-up calls; milliseconds.\n\n"
        + table(["catalogue", "scorer", "p50 ms", "p99 ms"], latency)
        + "\n\nBundle: float graph vs int8 graph, bundle load (hash checks + weights), onnxruntime "
        "session creation, then open-to-first-recommendation.\n\n"
        + table(["catalogue", "float graph", "int8 graph", "int8/float", "bundle load", "session",
                 "first recommend"], bundles)
    )
    write_section("recommend", "recommend() latency and bundle size",
                  f"python -m benchmarks.bench_recommend --calls {args.calls}", body)


if __name__ == "__main__":
    main()
