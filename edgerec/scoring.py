"""The one place that owns an onnxruntime session: the int8 graph of a bundle.

One session per bundle, created once. ``top_k`` is the recommend() hot path; ``score_batch``
scores many users at once for evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ._exceptions import ScoringError
from .events import PAD_SIGNAL

__all__ = ["Scorer", "TopKScorer"]

_TOP_OUTPUTS = ["top_scores", "top_items"]


class TopKScorer(Protocol):
    """What ``EdgeRec.recommend()`` asks of a scorer: :meth:`Scorer.top_k`. ``Scorer`` is the
    one edgerec makes; benchmarks install others (float32 graphs, numpy) beside it."""

    def top_k(self, items: np.ndarray, signals: np.ndarray, exclude: np.ndarray, k: int,
              offset: np.ndarray | None = None,
              adapter: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...


class Scorer:
    """Scores histories with an ONNX graph made by ``edgerec.model.export``.

    ``threads`` bounds onnxruntime's intra-op pool: one thread is the fastest for a single user
    (no hand-off cost) and leaves the host app's other threads alone.

    With ``shortlist`` (a large catalogue's shortlist graph, ``edgerec.model.export_shortlist``)
    ``top_k`` scores only the items of the clusters that graph probes, and the full graph is
    loaded only when ``score_batch`` first needs it (its tables would double the memory).
    """

    def __init__(self, model_path: str | Path, n_items: int, history: int, *,
                 threads: int = 1, shortlist: str | Path | None = None) -> None:
        self.n_items = n_items
        self.history = history
        self._threads = threads
        self._model_path = model_path
        top = self._open(model_path if shortlist is None else shortlist)
        self._top: Any = top
        self._full: Any = top if shortlist is None else None
        self._no_offset = np.zeros((1, n_items), np.float32)
        self._no_exclude = np.zeros((1, 0), np.int64)
        dim = {i.name: i.shape for i in top.get_inputs()}["user_offset"][1]
        self._no_adapter = np.zeros((1, dim), np.float32)

    def _open(self, path: str | Path) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ScoringError(f"onnxruntime cannot load {path}: {exc}") from exc
        if "user_offset" not in {i.name for i in session.get_inputs()}:
            raise ScoringError(f"{path} is not an edgerec graph (no user_offset input)")
        return session

    @staticmethod
    def _run(session: Any, outputs: list[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return session.run(outputs, feed)
        except Exception as exc:
            raise ScoringError(f"onnxruntime failed to score: {exc}") from exc

    def pad(self, items: np.ndarray, signals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One history (most recent first) as ``[1, L]`` inputs, cut or PAD-padded to L."""
        out_items = np.zeros((1, self.history), np.int64)
        out_signals = np.full((1, self.history), PAD_SIGNAL, np.int64)
        n = min(len(items), self.history)
        out_items[0, :n] = items[:n]
        out_signals[0, :n] = signals[:n]
        return out_items, out_signals

    def top_k(self, items: np.ndarray, signals: np.ndarray, exclude: np.ndarray, k: int,
              offset: np.ndarray | None = None,
              adapter: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` item rows for one history, and their scores, best first.

        ``exclude`` rows and rows whose ``offset`` is -inf are never returned, so fewer than
        ``k`` may come back. ``adapter`` is the device's personal user offset ``[d]``.

        With a shortlist, a call with an ``offset`` scores with the exact graph: the offset may
        filter out every item the shortlist would look at (``recommend(candidates=...)``).
        """
        hist_items, hist_signals = self.pad(items, signals)
        feed = {
            "hist_items": hist_items,
            "hist_signals": hist_signals,
            "exclude": exclude.reshape(1, -1).astype(np.int64) if len(exclude) else self._no_exclude,
            "score_offset": self._no_offset if offset is None else offset,
            "k": np.array([min(k, self.n_items)], np.int64),
            "user_offset": self._no_adapter if adapter is None else adapter.reshape(1, -1),
        }
        session = self._top if offset is None else self._exact()
        scores, rows = self._run(session, _TOP_OUTPUTS, feed)
        keep = np.isfinite(scores[0])
        return rows[0][keep], scores[0][keep]

    def score_batch(self, items: np.ndarray, signals: np.ndarray,
                    adapters: np.ndarray | None = None) -> np.ndarray:
        """Scores ``[B, n_items]`` for a batch of ``[B, L]`` histories (evaluation)."""
        feed: dict[str, np.ndarray] = {
            "hist_items": items.astype(np.int64),
            "hist_signals": signals.astype(np.int64),
            "exclude": np.zeros((len(items), 0), np.int64),
            "score_offset": self._no_offset,
            "k": np.array([1], np.int64),
            "user_offset": self._no_adapter if adapters is None else adapters.astype(np.float32),
        }
        return self._run(self._exact(), ["scores"], feed)[0]

    def _exact(self) -> Any:
        """The exact graph's session, opened on first use when a shortlist serves ``top_k``."""
        if self._full is None:
            self._full = self._open(self._model_path)
        return self._full
