"""`edgerec demo`: train a bundle, use it like an app does, and compare it with the peers.

On embedded defaults (the synthetic dataset) it needs no download and takes about a minute.
The federated demo (server, devices, secure aggregation) will grow from this one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..client import open as open_rec
from ..workflows import DataSpec, compare, load_data, peer_notes, result_rows, train_bundle

__all__ = ["run_demo"]


def _show(title: str, recs: list[Any]) -> None:
    print(title)
    for n, r in enumerate(recs, 1):
        print(f"  {n:>2}. {r.title:<32} {r.reason}")


def _app_session(bundle: Path, db: Path) -> None:
    """What an app does: recommend, log a click, recommend again (the click counts at once)."""
    with open_rec(db, bundle=bundle) as rec:
        user = "demo-user"
        rec.forget(user)
        first = rec.recommend(user, k=5)
        _show("A new user sees the cold-start list:", first)
        rec.log(user, first[2].item, "click")
        rec.log(user, first[3].item, "purchase")
        _show(f"After clicking {first[2].title} and buying {first[3].title}:", rec.recommend(user, k=5))


def run_demo(out: Path, *, data: str = "synthetic", seeds: int = 1, progress: Any = None) -> int:
    """Run the demo, writing the bundle, the app database and results.json under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_data(DataSpec(data))
    print(f"dataset: {dataset.name}, {dataset.n_users} users, {dataset.n_items} items, "
          f"{len(dataset)} interactions")
    bundle = out / "model-bundle"
    manifest = train_bundle(dataset, bundle, progress=(lambda it: progress(it, desc="training"))
                            if progress else None)
    print(f"bundle: {bundle} (model version {manifest.model_version}, int8 graph "
          f"{(bundle / 'model.int8.onnx').stat().st_size / 1024:.0f} KiB)\n")
    _app_session(bundle, out / "app.db")
    for note in peer_notes():
        print(f"note: peer not run: {note}")
    result = compare(dataset, seeds=tuple(range(seeds)), progress=progress)
    rows = result_rows(result)
    print(f"\nLOO-full, {len(result.eval_users)} users, HR@10 / NDCG@10 (mean of {seeds} seed(s)):")
    for r in rows:
        print(f"  {r['method']:<14} {r['hr@10']:.4f}  {r['ndcg@10']:.4f}")
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"\nwrote {out / 'results.json'}")
    return 0
