"""Scoring functions for ``device_eval``: one history in, scores of every catalogue row out.

A ``ScoreFn`` takes the item rows and signal codes of one history, most recent first, and
returns ``[n_items]`` scores. Both models edgerec has fit: the int8 ONNX graph ``recommend()``
uses (``scorer_score_fn``) and the numpy float model (``params_score_fn``). Pure: the ONNX
session is made by the caller (``edgerec.scoring.Scorer``); this module never imports
onnxruntime.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np

from .._exceptions import ConfigError
from ..events import PAD_SIGNAL
from ..model.config import ModelConfig

__all__ = ["BatchScorer", "ScoreFn", "params_score_fn", "scorer_score_fn"]

#: Scores ``[n_items]`` for one history: item rows and signal codes, most recent first.
ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]



class BatchScorer(Protocol):
    """What ``scorer_score_fn`` needs of an ONNX ``edgerec.scoring.Scorer``."""

    def pad(self, items: np.ndarray, signals: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def score_batch(self, items: np.ndarray, signals: np.ndarray,
                    adapters: np.ndarray | None = None) -> np.ndarray: ...


def scorer_score_fn(scorer: BatchScorer, adapter: np.ndarray | None = None) -> ScoreFn:
    """A ``ScoreFn`` over an ONNX ``Scorer`` (the int8 graph recommend() uses), with the
    device's personal ``adapter`` offset ``[d]`` if it has one for that model."""
    adapters = None if adapter is None else np.asarray(adapter, np.float32).reshape(1, -1)

    def score(items: np.ndarray, signals: np.ndarray) -> np.ndarray:
        padded_items, padded_signals = scorer.pad(items, signals)
        return np.asarray(scorer.score_batch(padded_items, padded_signals, adapters))[0]

    return score


def params_score_fn(params: Mapping[str, np.ndarray], features: np.ndarray, history: int, *,
                    cfg: ModelConfig | None = None) -> ScoreFn:
    """A ``ScoreFn`` over the numpy float model (``edgerec.model``): its ``params`` (with the
    device's ``adapter`` entry, if any), the catalogue's ``features`` and its ``history`` length.
    A mix's scores need its ``cfg`` (the towers' weights).

    Raises:
        ConfigError: ``params`` are a mix's and ``cfg`` is not given.
    """
    from ..model.mix import is_mix, scoring_tables, user_vectors

    weights = dict(params)
    if cfg is None:
        if is_mix(weights):
            raise ConfigError("a mix's scores need its ModelConfig (cfg=)")
        cfg = ModelConfig(history=history)
    table_in, table_out, bias = scoring_tables(weights, features, cfg)

    def score(items: np.ndarray, signals: np.ndarray) -> np.ndarray:
        padded_items = np.zeros((1, history), np.int64)
        padded_signals = np.full((1, history), PAD_SIGNAL, np.int64)
        n = min(len(items), history)
        padded_items[0, :n], padded_signals[0, :n] = items[:n], signals[:n]
        user = user_vectors(weights, table_in, padded_items, padded_signals)
        return np.asarray(user @ table_out.T + bias)[0]

    return score
