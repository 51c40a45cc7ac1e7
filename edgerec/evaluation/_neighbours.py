"""Two classic non-learned peers: most-popular and item-KNN (pure numpy/scipy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..types import Catalogue, Sequences
from ._matrix import binary_matrix, sparse

if TYPE_CHECKING:
    import scipy.sparse as sp

__all__ = ["PopularityModel", "ItemKNNModel", "fit_popularity", "fit_item_knn"]

_DENSE_BUDGET = 1 << 24  # floats per dense block while sparsifying similarities (~64 MB)


@dataclass(frozen=True, eq=False)
class PopularityModel:
    """Scores every item by its number of training interactions, the same for every user."""

    counts: np.ndarray

    def score(self, users: np.ndarray, histories: Sequences) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(users), len(self.counts))).copy()


def fit_popularity(train: Sequences, catalogue: Catalogue, seed: int) -> PopularityModel:
    """Count training interactions per item (``seed`` is unused: the method is deterministic)."""
    items = np.concatenate(train.items) if len(train) else np.zeros(0, np.int64)
    return PopularityModel(np.bincount(items, minlength=len(catalogue)).astype(np.float32))


@dataclass(frozen=True, eq=False)
class ItemKNNModel:
    """Item-based KNN: a user's score for j sums the similarity of j to each item in the history.

    ``neighbours`` is ``[n_items, n_items]`` sparse: row i keeps item i's top-k most similar items.
    """

    neighbours: sp.csr_matrix

    def score(self, users: np.ndarray, histories: Sequences) -> np.ndarray:
        history = binary_matrix(histories, self.neighbours.shape[0], users)
        return np.asarray((history @ self.neighbours).todense(), dtype=np.float32)


def fit_item_knn(train: Sequences, catalogue: Catalogue, seed: int, *, k: int = 50, shrink: float = 0.0) -> ItemKNNModel:
    """Cosine similarity on the binary user-item matrix, ``|i∩j| / (‖i‖‖j‖ + shrink)``, top-k per item.

    Shrinkage pulls similarities computed from few co-occurrences towards zero. ``seed`` is unused.
    """
    n_items = len(catalogue)
    matrix = binary_matrix(train, n_items)
    co = (matrix.T @ matrix).tocsr()
    norms = np.sqrt(np.asarray(matrix.sum(axis=0)).ravel())
    block = max(1, _DENSE_BUDGET // max(1, n_items))
    parts = [_top_k_rows(co, norms, start, min(start + block, n_items), k, shrink) for start in range(0, n_items, block)]
    sp = sparse()
    return ItemKNNModel(sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, 0), dtype=np.float32))


def _top_k_rows(co: sp.csr_matrix, norms: np.ndarray, start: int, stop: int, k: int, shrink: float) -> sp.csr_matrix:
    """Rows start..stop of the similarity matrix, each keeping its k largest positive entries."""
    dense = np.asarray(co[start:stop].todense(), dtype=np.float32)
    denom = np.outer(norms[start:stop], norms) + shrink
    sim = np.divide(dense, denom, out=np.zeros_like(dense), where=denom > 0)
    rows = np.arange(stop - start)
    sim[rows, rows + start] = 0.0  # an item is not its own neighbour
    if k < sim.shape[1]:
        drop = np.argpartition(-sim, k, axis=1)[:, k:]
        np.put_along_axis(sim, drop, 0.0, axis=1)
    return sparse().csr_matrix(sim)
