"""The kiosk's model on first start: load the bundle, or train one when there is none yet.

The data is MovieLens-100K when it is there (real film titles), the synthetic catalogue otherwise.
``quick`` trains a small model in seconds (tests and demos); the default takes about half a
minute on MovieLens (22-25 s on 2 cores, 40 s beside two busy processes: one BLAS thread,
``TrainConfig.threads``) and gives better recommendations.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgerec import Dataset, Manifest, ModelConfig, TrainConfig
from edgerec.data import load_movielens, synthetic
from edgerec.workflows import train_bundle

__all__ = ["movielens_path", "load_dataset", "train_kiosk_bundle", "ensure_bundle"]

_REPO = Path(__file__).resolve().parents[2]


def movielens_path() -> Path | None:
    """$EDGEREC_ML100K, else ``../shared/data/ml-100k`` next to the repository, if it holds u.data."""
    path = Path(os.environ.get("EDGEREC_ML100K", _REPO.parent / "shared" / "data" / "ml-100k"))
    return path if (path / "u.data").is_file() else None


def load_dataset(source: str | None, *, quick: bool = False) -> Dataset:
    """``"synthetic"``, a MovieLens-100K folder, or None for MovieLens when present, else synthetic."""
    if source is None:
        found = movielens_path()
        source = str(found) if found else "synthetic"
    if source == "synthetic":
        return synthetic(200, 120, seed=0) if quick else synthetic(500, 300, seed=0)
    return load_movielens(source)


def train_kiosk_bundle(out: str | Path, source: str | None = None, *, quick: bool = False) -> Manifest:
    """Train a bundle for the kiosk into ``out`` (see the module docstring for the choices)."""
    dataset = load_dataset(source, quick=quick)
    if quick:
        epochs = 3 if dataset.n_items < 500 else 1  # MovieLens: one epoch is already usable
        model, training = ModelConfig(dim=16, history=20), TrainConfig(epochs=epochs)
    else:
        model, training = ModelConfig(), TrainConfig(epochs=8)
    return train_bundle(dataset, out, model=model, training=training)


def ensure_bundle(path: Path, source: str | None = None, *, quick: bool = False) -> Path:
    """``path`` itself when it already holds a bundle, else a newly trained one there."""
    if not (path / "manifest.json").is_file():
        print(f"kiosk: no bundle at {path}; training one (first start)...", flush=True)
        manifest = train_kiosk_bundle(path, source, quick=quick)
        print(f"kiosk: trained model v{manifest.model_version} on "
              f"{manifest.hyperparameters.get('dataset')} ({manifest.n_items} items)", flush=True)
    return path
