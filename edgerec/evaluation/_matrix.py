"""Sequences -> sparse user-item matrix, the input of the classic peers (pure).

scipy is imported when a matrix is first built, never at import time: training a bundle
(``edgerec.workflows`` imports this package) works without it; the peers need ``edgerec[eval]``.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from .._extras import require
from ..types import Sequences

if TYPE_CHECKING:
    import scipy.sparse as sp

__all__ = ["binary_matrix", "sparse"]


def sparse() -> ModuleType:
    """``scipy.sparse``, or ``MissingDependencyError`` naming the extra that installs it."""
    return require("scipy.sparse", extra="eval",
                   why="the evaluation peers need scipy, which is not installed")


def binary_matrix(seqs: Sequences, n_items: int, rows: np.ndarray | None = None) -> sp.csr_matrix:
    """``[len(rows), n_items]`` float32 CSR with 1 where the user interacted (repeats count once).

    ``rows`` selects users (all by default), in the given order.
    """
    users = np.arange(len(seqs)) if rows is None else np.asarray(rows)
    items = [np.unique(seqs.items[u]) for u in users]
    lengths = np.fromiter((len(i) for i in items), dtype=np.int64, count=len(items))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate(items).astype(np.int32) if len(items) else np.zeros(0, np.int32)
    data = np.ones(len(indices), dtype=np.float32)
    return sparse().csr_matrix((data, indices, indptr), shape=(len(users), n_items))
