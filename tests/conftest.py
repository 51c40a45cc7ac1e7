"""Shared fixtures: small real data and a real (tiny) trained bundle, made once per session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ML100K = Path(os.environ.get("EDGEREC_ML100K", Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"))


def _tiny_sequences(n_users: int = 30, n_items: int = 40, seed: int = 0):
    from edgerec.data import Catalogue, Sequences

    rng = np.random.default_rng(seed)
    items = [rng.integers(0, n_items, rng.integers(3, 12)) for _ in range(n_users)]
    signals = [rng.integers(1, 12, len(s)) for s in items]
    feats = (rng.random((n_items, 5)) < 0.3).astype(np.float32)
    cat = Catalogue(tuple(f"i{i}" for i in range(n_items)), tuple(f"Item {i}" for i in range(n_items)),
                    feats, tuple(f"f{j}" for j in range(5)))
    return Sequences(items, signals), cat


@pytest.fixture(scope="session")
def tiny_sequences():
    """A factory of random short sequences over a small catalogue with 5 content features."""
    return _tiny_sequences


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory):
    """A bundle trained on the synthetic dataset: real training, real ONNX, real int8."""
    from edgerec.bundle import write_bundle
    from edgerec.data import synthetic
    from edgerec.model.config import ModelConfig, TrainConfig
    from edgerec.training import fit_params

    ds = synthetic(n_users=200, n_items=120, seed=1)
    cfg = ModelConfig(dim=16, history=20)
    params = fit_params(ds.sequences(), ds.catalogue.features, cfg, TrainConfig(epochs=4, seed=0))
    path = tmp_path_factory.mktemp("bundle") / "model-bundle"
    write_bundle(path, params, ds.catalogue, cfg, model_version=1)
    return path
