"""The peers every edgerec figure is compared with: most-popular, item-KNN, ALS and BPR, and
(opt-in: minutes, not seconds, per fit) SASRec.

Grids are kept small on purpose (the full benchmark runs on two shared cores); each is tuned on
the validation item like every other method.
"""

from __future__ import annotations

import itertools
from functools import partial
from typing import Any, Sequence

from ._implicit import fit_als, fit_bpr, implicit_installed
from ._method import Method
from ._neighbours import fit_item_knn, fit_popularity
from .progress import Progress

__all__ = [
    "available_peers",
    "missing_peers",
    "most_popular",
    "item_knn",
    "als",
    "bpr",
    "sasrec",
    "KNN_GRID",
    "ALS_GRID",
    "BPR_GRID",
    "SASREC_GRID",
    "QUICK_GRIDS",
]


def _grid(**axes: Sequence[Any]) -> tuple[dict[str, Any], ...]:
    """Every combination of the axes, as hyper-parameter dicts."""
    names = list(axes)
    return tuple(dict(zip(names, values)) for values in itertools.product(*axes.values()))


# Ranges were placed by validation NDCG on MovieLens-100K (never the test item): ALS likes few
# factors or heavy regularisation there, BPR a small learning rate.
KNN_GRID = _grid(k=(20, 50, 100, 200), shrink=(0.0, 10.0, 50.0))
ALS_GRID = _grid(factors=(32, 64, 128), regularization=(0.1, 10.0), alpha=(1.0, 10.0))
BPR_GRID = _grid(factors=(64, 128), learning_rate=(0.005, 0.01), regularization=(0.001, 0.01))
# SASRec at the paper's settings (d 64, L 50, 2 blocks, dropout 0.2, lr 1e-3, batches of 128);
# validation chooses how long to train and which window of a longer history an epoch trains on
# (the latest, the paper's, or a random one). Candidates differing in epochs share one run. On
# MovieLens-100K validation NDCG@10 peaks near 100-150 epochs with the latest window (0.101) and
# near 200 with random ones (0.108, chosen); L = 200 reached 0.120 but costs ~4.5x per epoch.
SASREC_GRID = (*_grid(crop=("last",), epochs=(50, 100, 150)),
               *_grid(crop=("random",), epochs=(150, 200, 250)))

# `edgerec eval --quick`: two candidates each from the full grids, among them what MovieLens-100K's
# validation chooses from the full grids (k 200, shrink 10; ALS 128 factors, regularization 10,
# alpha 10, a hair ahead of 32 / 0.1 / 1; BPR 128 factors, lr 0.005, regularization 0.01; SASRec
# random windows, 200 epochs: one 200-epoch run instead of 400 epochs), so a quick run there
# picks the same configs as a full one.
QUICK_GRIDS: dict[str, tuple[dict[str, Any], ...]] = {
    "item-knn": _grid(k=(50, 200), shrink=(10.0,)),
    "als": ({"factors": 32, "regularization": 0.1, "alpha": 1.0},
            {"factors": 128, "regularization": 10.0, "alpha": 10.0}),
    "bpr": _grid(factors=(64, 128), learning_rate=(0.005,), regularization=(0.01,)),
    "sasrec": _grid(crop=("random",), epochs=(150, 200)),
}

_INSTALL_HINT = "implicit is not installed (pip install edgerec[peers])"


def most_popular() -> Method:
    """Rank items by their number of training interactions."""
    return Method("most-popular", fit_popularity, ({},), seeded=False)


def item_knn(grid: tuple[dict[str, Any], ...] = KNN_GRID) -> Method:
    """Cosine item-KNN with shrinkage, top-k neighbours per item."""
    return Method("item-knn", fit_item_knn, grid, seeded=False)


def als(grid: tuple[dict[str, Any], ...] = ALS_GRID, *, iterations: int = 15, num_threads: int = 1) -> Method:
    """implicit's alternating least squares on the binary (confidence-weighted by alpha) matrix."""
    return Method("als", partial(fit_als, iterations=iterations, num_threads=num_threads), grid)


def bpr(grid: tuple[dict[str, Any], ...] = BPR_GRID, *, iterations: int = 100, num_threads: int = 1) -> Method:
    """implicit's Bayesian personalised ranking."""
    return Method("bpr", partial(fit_bpr, iterations=iterations, num_threads=num_threads), grid)


def sasrec(grid: tuple[dict[str, Any], ...] = SASREC_GRID, *, progress: Progress | None = None) -> Method:
    """SASRec (Kang & McAuley 2018) trained with full softmax cross-entropy (gSASRec), in numpy.

    Not among ``available_peers``: a fit trains for minutes (``edgerec eval --sasrec``, and the
    quality benchmark, add it). ``progress`` shows the epochs of each training run.
    """
    from ._sasrec import sasrec_method

    return sasrec_method(grid, progress=progress)


def available_peers(*, quick: bool = False) -> list[Method]:
    """The peers whose libraries are installed, with their default grids (``quick``: the two
    candidates each of ``QUICK_GRIDS``)."""
    peers = [most_popular(), item_knn(QUICK_GRIDS["item-knn"] if quick else KNN_GRID)]
    if implicit_installed():
        peers += [als(QUICK_GRIDS["als"] if quick else ALS_GRID),
                  bpr(QUICK_GRIDS["bpr"] if quick else BPR_GRID)]
    return peers


def missing_peers() -> list[str]:
    """One message per peer that cannot run here, saying what to install."""
    if implicit_installed():
        return []
    return [f"als: {_INSTALL_HINT}", f"bpr: {_INSTALL_HINT}"]
