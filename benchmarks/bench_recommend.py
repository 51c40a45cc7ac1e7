"""recommend() latency (int8 onnxruntime vs float32 onnxruntime vs float32 numpy) and bundle figures.

    python -m benchmarks.bench_recommend [--calls 3000] [--sizes ml 10000 100000 1000000]
        [--encoders pooled] [--profile-at 1000000]

One thread, k=10, the user's history read from SQLite included in every call. Catalogues: the
MovieLens-100K one (~1.7k items, a model trained on it) when the data is present, then synthetic
10k, 100k and 1M item catalogues with random weights (latency does not depend on the values).
From ``--shortlist-from`` items on (default: where bundles get it), recommend() through the
shortlist graph too, and its recall of the exact top 10. Beside recommend(): the int8 graph called alone (``Scorer.top_k``: no SQLite, no reasons) and
the plain int8 top-k kernel on the same scoring matrix (``_kernel``: only MatMul + TopK), and
at ``--profile-at`` items onnxruntime's time per node of the int8 graph. ``--encoders`` picks
the user encoders (``ENCODERS``: one ModelConfig each) to measure.
"""

from __future__ import annotations

import os

# One thread everywhere, the numpy baseline included (a BLAS pool would spin against the app).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks._kernel import kernel_latencies, node_profile, timed_calls
from benchmarks._report import table, write_section
from edgerec import (Catalogue, EdgeRec, InteractionStore, ModelConfig, ShortlistConfig, TrainConfig,
                     load_bundle, write_bundle)
from edgerec.bundle import SHORTLIST_FROM_ITEMS
from edgerec.model.export import export_onnx
from edgerec.model.mix import scoring_tables, user_vectors
from edgerec.model.params import init_params
from edgerec.scoring import Scorer

ML100K = Path(os.environ.get("EDGEREC_ML100K", Path(__file__).resolve().parents[2] / "shared/data/ml-100k"))
USER = "bench-user"
#: The shortlist's recall rows (catalogue, encoder, recall@10, bundle write time).
RECALL: list[list[str]] = []
#: User encoders to measure, by name: the ModelConfig options of each (a new encoder is one
#: entry here; --encoders chooses among them).
ENCODERS: dict[str, dict[str, object]] = {"pooled": {}, "attention": {"encoder": "attention"},
                                          "mix": {"encoder": "mix"}}


class NumpyScorer:
    """The same model scored in float32 numpy: the baseline the int8 graph is compared with."""

    def __init__(self, params: dict, features: np.ndarray, cfg: ModelConfig):
        self.params = {k: v.astype(np.float32) for k, v in params.items()}
        self.table_in, table_out, self.bias = scoring_tables(self.params, features, cfg)
        self.table_out = np.ascontiguousarray(table_out, np.float32)
        self.history = cfg.history

    def top_k(self, items, signals, exclude, k, offset=None, adapter=None):
        pad = self.history - len(items)
        it = np.pad(items, (0, pad))[None, :]
        sg = np.pad(signals, (0, pad))[None, :]
        user = user_vectors(self.params, self.table_in, it, sg)[0]
        if adapter is not None:
            user = user + adapter
        scores = self.table_out @ user + self.bias
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


def _model(n_items: int, cfg: ModelConfig):
    """(params, catalogue, label): trained on MovieLens-100K for its size when present."""
    rng = np.random.default_rng(0)
    if n_items == 0:
        from edgerec.data import load_movielens
        from edgerec.training import fit_params

        ds = load_movielens(ML100K)
        params = fit_params(ds.sequences(), ds.catalogue.features, cfg, TrainConfig(epochs=8))
        return params, ds.catalogue, f"MovieLens-100K ({len(ds.catalogue)})"
    cat = _catalogue(n_items, rng)
    params = init_params(cfg, n_items, 20, rng)
    _cluster_items(params, rng)
    return params, cat, f"synthetic {n_items:,}"


def _cluster_items(params: dict, rng: np.random.Generator) -> None:
    """Candidate vectors in 2,000 Gaussian blobs and a spread of biases, as a trained model's
    items group by taste and popularity (random weights would leave the shortlist's clusters
    nothing to find; latency does not depend on the values). A mix's two towers put an item in
    the same blob (each with its own centres), as both learn the same item."""
    blob = rng.integers(0, 2000, params["emb_out"].shape[0])
    for name in [n for n in params if n.endswith("emb_out")]:
        n_items, dim = params[name].shape
        centres = rng.standard_normal((2000, dim)).astype(np.float32) * 0.3
        noise = rng.standard_normal((n_items, dim)).astype(np.float32) * 0.1
        params[name] = centres[blob] + noise
    for name in [n for n in params if n.endswith("bias")]:
        params[name] = rng.standard_normal(params[name].shape).astype(np.float32) * 0.5


def _fill_store(db: Path, catalogue: Catalogue, rng: np.random.Generator) -> None:
    """1,000 users x 50 events, the benchmark user among them."""
    ids = catalogue.item_ids
    events = [{"user": USER if u == 0 else f"u{u}", "item": ids[int(i)], "event": "click", "ts": 1e9 + n}
              for u in range(1000) for n, i in enumerate(rng.integers(0, len(ids), 50))]
    with InteractionStore(db) as store:
        store.log_many(events)


def _latencies(rec: EdgeRec, calls: int) -> np.ndarray:
    return timed_calls(lambda: rec.recommend(USER, k=10), calls)


def _pcts(lat: np.ndarray) -> list[str]:
    return [f"{np.percentile(lat, 50):.3f}", f"{np.percentile(lat, 99):.3f}"]


def _shortlist_rows(params: dict, cat: Catalogue, cfg: ModelConfig, work: Path, rec: EdgeRec,
                    calls: int, label: str, encoder: str) -> list[list[str]]:
    """recommend() through a bundle with the shortlist graph (``ShortlistConfig()`` defaults), and
    how much of the exact float top 10 it finds for 200 users with random 20-event histories."""
    path = work / "shortlist-bundle"
    start = time.perf_counter()
    write_bundle(path, params, cat, cfg, shortlist=ShortlistConfig())
    built = time.perf_counter() - start
    bundle = load_bundle(path)
    scorer = Scorer(bundle.model_path, len(cat), cfg.history, shortlist=bundle.shortlist_path)
    lat = _latencies(EdgeRec(rec.store, bundle, scorer=scorer), calls)
    exact, rng, found = NumpyScorer(params, cat.features, cfg), np.random.default_rng(7), []
    for _ in range(200):
        hist = rng.integers(0, len(cat), 20)
        sig = np.full(20, 3, np.int64)
        want, _ = exact.top_k(hist, sig, hist, 10)
        got, _ = scorer.top_k(hist, sig, hist, 10)
        found.append(len(set(want) & set(got)) / 10)
    RECALL.append([label, encoder, f"{np.mean(found):.3f}", f"{built:.0f} s"])
    return [[label, encoder, "recommend(), int8 shortlist", *_pcts(lat)]]


def _one_catalogue(n_items: int, calls: int, work: Path, encoder: str,
                   profile: bool, shortlist_from: int) -> tuple[list, list, list]:
    cfg = ModelConfig(**ENCODERS[encoder])  # type: ignore[arg-type]
    params, cat, label = _model(n_items, cfg)
    bundle_dir = work / "bundle"
    write_bundle(bundle_dir, params, cat, cfg, shortlist=None)  # the exact graph
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
               "float32 numpy": NumpyScorer(params, cat.features, cfg)}
    for name, scorer in scorers.items():
        lat = _latencies(EdgeRec(rec.store, bundle, scorer=scorer), calls)
        rows.append([label, encoder, f"recommend(), {name}", *_pcts(lat)])
    # What recommend() adds to the graph, and what the graph adds to the bare int8 kernel.
    history = rec.store.profile(USER)
    index = {item: row for row, item in enumerate(cat.item_ids)}
    hist = np.array([index[item] for item, _, _ in history][: cfg.history], np.int64)
    sig = np.full(len(hist), 3, np.int64)
    lat = timed_calls(lambda: int8.top_k(hist, sig, hist, 10), calls)
    rows.append([label, encoder, "int8 graph alone (Scorer.top_k)", *_pcts(lat)])
    _, table_out, _ = scoring_tables(params, cat.features, cfg)
    lat = kernel_latencies(np.ascontiguousarray(table_out.T), work, calls)
    rows.append([label, "-", "plain int8 kernel (MatMul + TopK)", *_pcts(lat)])
    if n_items >= shortlist_from:
        rows += _shortlist_rows(params, cat, cfg, work, rec, calls, label, encoder)
    nodes = []
    if profile:
        items_in, signals_in = int8.pad(hist, sig)
        feed = {"hist_items": items_in, "hist_signals": signals_in, "exclude": hist.reshape(1, -1),
                "score_offset": np.zeros((1, len(cat)), np.float32), "k": np.array([10], np.int64),
                "user_offset": np.zeros((1, cfg.user_dim), np.float32)}
        for node, us in node_profile(bundle.model_path, feed, ["top_scores", "top_items"], calls, work):
            nodes.append([label, encoder, node, f"{us / 1e3:.3f}"])
    size_f, size_q = float_path.stat().st_size, bundle.model_path.stat().st_size
    bundle_row = [label, f"{size_f / 1e6:.2f} MB", f"{size_q / 1e6:.2f} MB", f"{size_q / size_f:.1%}",
                  f"{(loaded - start) * 1e3:.0f} ms", f"{(session - loaded) * 1e3:.0f} ms",
                  f"{(first - session) * 1e3:.1f} ms"]
    rec.close()
    return rows, [bundle_row], nodes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--sizes", nargs="+", default=["ml", "10000", "100000", "1000000"],
                        help="catalogues: 'ml' (MovieLens-100K, trained) or a number of items")
    parser.add_argument("--encoders", nargs="+", choices=sorted(ENCODERS), default=["pooled"])
    parser.add_argument("--profile-at", type=int, default=1_000_000,
                        help="catalogue size whose int8 graph gets a per-node profile (0: none)")
    parser.add_argument("--shortlist-from", type=int, default=SHORTLIST_FROM_ITEMS,
                        help="catalogue size from which a shortlist bundle is measured too")
    args = parser.parse_args()
    movielens = 0 if (ML100K / "u.data").is_file() else 1682
    sizes = [movielens if s == "ml" else int(s) for s in args.sizes]
    latency, bundles, nodes = [], [], []
    for encoder in args.encoders:
        for n_items in sizes:
            work = Path(tempfile.mkdtemp(prefix="edgerec-bench-"))
            try:
                lat, bun, nod = _one_catalogue(n_items, args.calls, work, encoder,
                                               profile=n_items == args.profile_at,
                                               shortlist_from=args.shortlist_from)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            latency += lat
            bundles += bun
            nodes += nod
            print(table(["catalogue", "encoder", "what", "p50 ms", "p99 ms"], lat), flush=True)
    body = (
        "recommend(user, k=10), one thread, history read from SQLite (user with 50 events, 50k rows "
        f"in the table) included; {args.calls} calls after 50 warm-up calls; milliseconds. Beside "
        "it, the int8 graph called alone (no SQLite, no reasons) and the plain int8 top-k kernel "
        "on the same scoring matrix (only MatMul + TopK, quantized the same way).\n\n"
        + table(["catalogue", "encoder", "what", "p50 ms", "p99 ms"], latency)
        + "\n\nBundle: float graph vs int8 graph, bundle load (hash checks + weights), onnxruntime "
        "session creation, then open-to-first-recommendation.\n\n"
        + table(["catalogue", "float graph", "int8 graph", "int8/float", "bundle load", "session",
                 "first recommend"], bundles)
    )
    if RECALL:
        body += ("\n\nThe shortlist (`ShortlistConfig()`: about 4 sqrt(N) clusters, 128 probed): the "
                 "share of the exact float top 10 that recommend() returns, over 200 users with "
                 "random 20-event histories (candidate vectors in 2,000 blobs), and the time to "
                 "write that bundle (k-means, export, quantization).\n\n"
                 + table(["catalogue", "encoder", "recall@10 vs exact", "bundle write"], RECALL))
    if nodes:
        body += ("\n\nWhere the int8 graph's time goes (onnxruntime's profiler, mean kernel time per "
                 "call, nodes after its graph optimisations; the Python call adds the rest).\n\n"
                 + table(["catalogue", "encoder", "node (op)", "ms per call"], nodes))
    write_section("recommend", "recommend() latency and bundle size",
                  "python -m benchmarks.bench_recommend " + " ".join(sys.argv[1:]), body)


if __name__ == "__main__":
    main()
