"""edgerec's own model as evaluation methods: ``edgerec`` (float, numpy) and ``edgerec-int8``.

Both share one fit per (training data, seed, hyper-parameters): the int8 method scores the very
model the float method trained, exported and quantized the way a bundle is, run by onnxruntime.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..data._types import Catalogue, Sequences
from ..model.config import ModelConfig, TrainConfig
from ..model.examples import latest_histories
from ..model.network import user_vectors
from ..model.params import Params, item_tables
from ..training import fit_params
from ._method import Method

__all__ = ["DEFAULT_GRID", "FloatModel", "edgerec_methods"]

_MODEL_KEYS = {"dim", "history", "hidden"}

# Chosen from a wider look on MovieLens-100K validation items (epochs 8/16, L2 1e-5/1e-4, history
# dropout 0.1/0.3, dim 64/128): the neighbourhood of the best, for each run to choose from.
DEFAULT_GRID: tuple[dict[str, Any], ...] = (
    {"epochs": 8, "l2": 1e-4},
    {"epochs": 16, "l2": 1e-4},
    {"epochs": 16, "l2": 3e-4},
)


def _split_hparams(hparams: dict[str, Any], seed: int) -> tuple[ModelConfig, TrainConfig]:
    model = {k: v for k, v in hparams.items() if k in _MODEL_KEYS}
    train = {k: v for k, v in hparams.items() if k not in _MODEL_KEYS}
    return ModelConfig(**model), TrainConfig(seed=seed, **train)


@dataclass
class FloatModel:
    """The numpy float model as a ``FittedModel`` (scores users from their histories)."""

    params: Params
    cfg: ModelConfig
    features: np.ndarray

    def score(self, users: np.ndarray, histories: Sequences) -> np.ndarray:
        table_in, table_out = item_tables(self.params, self.features)
        items, signals = latest_histories(histories, self.cfg.history, users)
        return user_vectors(self.params, table_in, items, signals) @ table_out.T + self.params["bias"]


@dataclass
class _Int8:
    scorer: Any
    cfg: ModelConfig

    def score(self, users: np.ndarray, histories: Sequences) -> np.ndarray:
        items, signals = latest_histories(histories, self.cfg.history, users)
        return self.scorer.score_batch(items, signals)


def edgerec_methods(grid: tuple[dict[str, Any], ...] = DEFAULT_GRID, *, int8: bool = True,
                    progress: Callable[..., Any] | None = None) -> list[Method]:
    """The float method and, with ``int8``, the int8 method sharing its fits."""
    # Keyed by the training object's identity; the entry keeps the object alive, so an id can
    # never be reused for other data while its entry exists.
    cache: dict[tuple[int, int, str], tuple[Sequences, Params, ModelConfig]] = {}

    def fitted(train: Sequences, catalogue: Catalogue, seed: int, hparams: dict[str, Any]):
        key = (id(train), seed, repr(sorted(hparams.items())))
        if key not in cache:
            cfg, tcfg = _split_hparams(hparams, seed)
            params = fit_params(train, catalogue.features, cfg, tcfg, progress=progress)
            cache[key] = (train, params, cfg)
        return cache[key][1:]

    def fit_float(train: Sequences, catalogue: Catalogue, seed: int, **hparams: Any) -> FloatModel:
        params, cfg = fitted(train, catalogue, seed, hparams)
        return FloatModel(params, cfg, catalogue.features)

    def fit_int8(train: Sequences, catalogue: Catalogue, seed: int, **hparams: Any) -> _Int8:
        from ..model.export import export_onnx, quantize_int8
        from ..scoring import Scorer

        params, cfg = fitted(train, catalogue, seed, hparams)
        with tempfile.TemporaryDirectory() as tmp:
            float_path = export_onnx(params, catalogue.features, cfg, Path(tmp) / "f.onnx")
            int8_path = quantize_int8(float_path, Path(tmp) / "q.onnx")
            scorer = Scorer(int8_path, len(catalogue), cfg.history, threads=2)
        return _Int8(scorer, cfg)

    methods = [Method("edgerec", fit_float, grid)]
    if int8:
        methods.append(Method("edgerec-int8", fit_int8, grid))
    return methods
