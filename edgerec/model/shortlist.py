"""An inverted-file (IVF) shortlist for the top-k path: score a few clusters of items exactly
instead of every item. Pure numpy (``edgerec.model.export_shortlist`` makes it an ONNX graph).

The score of item j for user u is ``u . table_out[j] + bias[j]``: with the usual augmentation
``x_j = [table_out[j], bias[j]]`` and ``q = [u, 1]`` it is the inner product ``q . x_j``, so the
top k is a maximum-inner-product search (MIPS) over the ``x_j``. The index clusters the ``x_j``
with k-means (each item in exactly one cluster); a query scores the ``probe`` most promising
clusters' items exactly and returns their top k. With ``probe`` = all clusters that is the
exact top k.

A cluster's promise is an estimate of its best item's score, not of its mean item's:

    [u, 1] . centroid + |u| * reach,    centroid = [mean table_out row, max bias]
                                        reach = REACH * RMS distance of the rows from their mean

(a spread cluster reaches further in u's direction; the bias needs no estimate, its weight is
always 1). On 1M clustered items this found far more of the exact top 10 at the same cost than
ranking by the mean score ``q . mean x`` (FAISS's inner-product IVF) or k-means after the norm
augmentation of Bachrach et al. (2014) (BENCHMARKS.md, "Shortlist for large catalogues").

The per-query cost is ``probe * S`` candidates, S the size of the largest cluster (the graph
has fixed shapes: every cluster's row of ``members`` is padded to S with the sentinel N, an item
whose score is -inf). So no cluster may hold more than ``ceil(balance * N / K)`` items: a
cluster's surplus (its items farthest from the centroid) goes to their nearest cluster with room.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._exceptions import ConfigError

__all__ = ["REACH", "ShortlistConfig", "ShortlistIndex", "augment", "build_index", "candidates",
           "cluster_count", "cluster_scores", "exact_top_k", "probe_clusters", "shortlist_top_k"]

# Rows of the [rows, K] distance matrix computed at once: 16k x 1,000 clusters is 64 MB.
_CHUNK_CELLS = 16 * 1024 * 1024
# How far a cluster reaches in the user's direction, in RMS distances of its rows from their
# mean: of 0.25, 0.5 and 0.75, 0.5 found the most of the exact top 10 on average over the
# settings measured (1M clustered items, K 2,000 and 4,000, random and cluster-aligned users).
REACH = 0.5
# Rounds of "nearest cluster with room" for a cluster's surplus before the rest is poured into
# whatever room is left (never reached on clustered data: each round fills at least one cluster).
_SPILL_ROUNDS = 64


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class ShortlistConfig:
    """How the shortlist index is built and probed.

    ``clusters``: K, None for ``round(4 * sqrt(N))``. More, smaller clusters find more of the
    top k for the same number of candidates (``probe * S``): on 1M clustered items, K = 4,000
    with probe 64 (20k candidates, 1.7 ms) found 0.87 of the exact top 10 where K = 1,000 with
    probe 32 (40k, 2.9 ms) found 0.78, at 2.7x the build time (24 s against 9).
    ``probe``: clusters scored exactly per query. The defaults (K = 4,000 and probe 128 at 1M
    items: 40k candidates) found 0.94-0.96 of the exact top 10 in 3.1 ms, against 11.5 ms for
    the exact int8 graph (BENCHMARKS.md, "Shortlist for large catalogues"; 0.87-0.95 through
    recommend() in "recommend() latency").
    ``iterations`` of k-means (Lloyd), fitted on at most ``sample`` items (then every item is
    assigned). ``balance``: no cluster holds more than ``ceil(balance * N / K)`` items; 1.25
    found more of the top 10 than 1.5 or 2 on 1M clustered items with 1,000 clusters at the
    same probe, with fewer candidates (the cap splits clusters that straddle several regions).
    """

    clusters: int | None = None
    probe: int = 128
    iterations: int = 8
    sample: int = 100_000
    seed: int = 0
    balance: float = 1.25

    def __post_init__(self) -> None:
        if self.clusters is not None and not (_is_int(self.clusters) and self.clusters >= 1):
            raise ConfigError(f"clusters must be None or an int >= 1, got {self.clusters!r}")
        if not (_is_int(self.probe) and self.probe >= 1):
            raise ConfigError(f"probe must be an int >= 1, got {self.probe!r}")
        if not (_is_int(self.iterations) and 0 <= self.iterations <= 1000):
            raise ConfigError(f"iterations must be an int within 0..1000, got {self.iterations!r}")
        if not (_is_int(self.sample) and self.sample >= 1):
            raise ConfigError(f"sample must be an int >= 1, got {self.sample!r}")
        if not (_is_int(self.seed) and self.seed >= 0):
            raise ConfigError(f"seed must be an int >= 0, got {self.seed!r}")
        if isinstance(self.balance, bool) or not isinstance(self.balance, (int, float)) \
                or not 1.0 <= self.balance <= 1000.0:
            raise ConfigError(f"balance must be a number within 1..1000, got {self.balance!r}")


@dataclass(frozen=True)
class ShortlistIndex:
    """``centroids [K, D+1]`` float32 (each cluster's mean ``table_out`` row and its largest
    bias; an empty cluster's bias -inf), ``reach [K]`` float32 and ``members [K, S]`` int64:
    each cluster's items in increasing order, padded with the sentinel ``n_items``. A user's
    cluster scores are ``centroids @ [u, 1] + |u| * reach``."""

    centroids: np.ndarray
    reach: np.ndarray
    members: np.ndarray
    n_items: int

    @property
    def clusters(self) -> int:
        """K, the number of clusters."""
        return int(self.centroids.shape[0])

    @property
    def width(self) -> int:
        """S, the padded size of every cluster (that of the largest)."""
        return int(self.members.shape[1])


def cluster_count(n_items: int, cfg: ShortlistConfig) -> int:
    """K for ``n_items``: ``cfg.clusters`` or ``round(4 * sqrt(N))``, at most the fitted items."""
    wanted = cfg.clusters if cfg.clusters is not None else round(4 * math.sqrt(n_items))
    return max(1, min(wanted, n_items, cfg.sample))


def augment(table_out: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``[N, D+1]`` float32 rows ``[table_out[j], bias[j]]``: ``[u, 1] . row`` is the score."""
    return np.concatenate([table_out, bias[:, None]], axis=1).astype(np.float32)


def _chunk_rows(n_clusters: int) -> int:
    return max(1, _CHUNK_CELLS // max(1, n_clusters))


def _nearest(x: np.ndarray, centroids: np.ndarray,
             blocked: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's nearest centroid (squared L2) and that distance, chunked to bound memory.
    ``blocked`` [K] bool: centroids no row may pick."""
    # |x - c|^2 / 2 = |x|^2 / 2 - (x . c - |c|^2 / 2): the nearest c has the largest bracket,
    # which one product computes with the rows widened by a 1 and the centroids by -|c|^2 / 2
    # (a separate subtraction would be a second pass over the [rows, K] matrix).
    offsets = -0.5 * np.einsum("kd,kd->k", centroids, centroids)
    wide_centroids = np.concatenate([centroids, offsets[:, None]], axis=1).astype(np.float32).T
    labels = np.empty(len(x), np.int64)
    dist = np.empty(len(x), np.float32)
    step = _chunk_rows(len(centroids))
    for start in range(0, len(x), step):
        rows = x[start:start + step]
        closeness = np.concatenate([rows, np.ones((len(rows), 1), rows.dtype)], axis=1) @ wide_centroids
        if blocked is not None:  # after the product: BLAS may multiply an -inf by a zero
            closeness[:, blocked] = -np.inf
        best = np.argmax(closeness, axis=1)
        labels[start:start + step] = best
        dist[start:start + step] = (0.5 * np.einsum("nd,nd->n", rows, rows)
                                    - np.take_along_axis(closeness, best[:, None], axis=1)[:, 0])
    return labels, dist


def _means(x: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster means of the rows (zero for an empty cluster) and the cluster sizes."""
    counts = np.bincount(labels, minlength=k)
    sums = np.stack([np.bincount(labels, weights=x[:, d], minlength=k)
                     for d in range(x.shape[1])], axis=1)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32), counts


def _fit(x: np.ndarray, k: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """Lloyd's k-means from k distinct rows; an emptied cluster restarts at a random row."""
    centroids = x[rng.choice(len(x), k, replace=False)].copy()
    for _ in range(iterations):
        labels, _ = _nearest(x, centroids)
        means, counts = _means(x, labels, k)
        empty = counts == 0
        means[empty] = x[rng.integers(0, len(x), int(empty.sum()))]
        centroids = means
    return centroids


def _rank_within(labels: np.ndarray, dist: np.ndarray, k: int) -> np.ndarray:
    """Each row's rank by distance among the rows with its label (0 = nearest)."""
    order = np.lexsort((dist, labels))
    starts = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=k))[:-1]])
    rank = np.empty(len(labels), np.int64)
    rank[order] = np.arange(len(labels)) - starts[labels[order]]
    return rank


def _assign(x: np.ndarray, centroids: np.ndarray, cap: int) -> np.ndarray:
    """Every row's cluster: its nearest, unless that one is full (``cap``): then the nearest
    with room. A cluster keeps the rows nearest to it."""
    k = len(centroids)
    labels, dist = _nearest(x, centroids)
    rank = _rank_within(labels, dist, k)
    spill = np.flatnonzero(rank >= cap)
    room = cap - np.minimum(np.bincount(labels, minlength=k), cap)
    for _ in range(_SPILL_ROUNDS):
        if spill.size == 0:
            return labels
        # Each round every spilled row tries its nearest cluster with room; a cluster takes
        # the nearest of them up to its room, so it is full after the round or took them all.
        choice, choice_dist = _nearest(x[spill], centroids, blocked=room == 0)
        taken = _rank_within(choice, choice_dist, k) < room[choice]
        labels[spill[taken]] = choice[taken]
        room -= np.bincount(choice[taken], minlength=k)
        spill = spill[~taken]
    # Degenerate data only (e.g. many identical rows): pour the rest into the room left.
    slots = np.repeat(np.arange(k), room)[: spill.size]
    labels[spill] = slots
    return labels


def _members(labels: np.ndarray, k: int, n_items: int) -> np.ndarray:
    """``[K, S]`` item ids per cluster, increasing, padded with the sentinel ``n_items``."""
    counts = np.bincount(labels, minlength=k)
    order = np.argsort(labels, kind="stable")  # items by cluster, increasing within each
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(n_items) - starts[labels[order]]
    members = np.full((k, max(1, int(counts.max()))), n_items, np.int64)
    members[labels[order], slot] = order
    return members


def build_index(table_out: np.ndarray, bias: np.ndarray, cfg: ShortlistConfig) -> ShortlistIndex:
    """Cluster the items' ``[table_out, bias]`` rows with k-means into ``cluster_count(N, cfg)``
    clusters of at most ``ceil(cfg.balance * N / K)`` items each.

    Plain (Euclidean) k-means on the augmented rows: the bias column splits a region of the
    table by popularity, which the clusters' largest bias then tells apart. K-means after the
    norm augmentation of Bachrach et al. (2014) is not used: on 100k clustered items it found
    no more of the top 10 than plain k-means under the same cluster ranking, and it needs the
    largest norm of the table. Float32 throughout, distances chunked (``_CHUNK_CELLS``).
    """
    table_out, bias = np.asarray(table_out), np.asarray(bias)
    if table_out.ndim != 2 or bias.shape != (table_out.shape[0],) or table_out.shape[0] == 0:
        raise ConfigError(f"need table_out [N, D] and bias [N] with N >= 1, got "
                          f"{table_out.shape} and {bias.shape}")
    x = augment(table_out, bias)
    if not np.isfinite(x).all():
        raise ConfigError("table_out and bias must be finite to be clustered")
    n_items, rng = len(x), np.random.default_rng(cfg.seed)
    k = cluster_count(n_items, cfg)
    fit_rows = rng.choice(n_items, cfg.sample, replace=False) if n_items > cfg.sample else None
    centroids = _fit(x if fit_rows is None else x[fit_rows], k, cfg.iterations, rng)
    labels = _assign(x, centroids, max(1, math.ceil(cfg.balance * n_items / k)))
    centroids, reach = _summaries(x, labels, k)
    return ShortlistIndex(centroids, reach, _members(labels, k, n_items), n_items)


def _summaries(x: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each final cluster's centroid ``[mean table_out row, max bias]`` and reach."""
    table = x[:, :-1]
    means, counts = _means(table, labels, k)
    square, _ = _means(np.einsum("nd,nd->n", table, table)[:, None], labels, k)
    # E|t - mean|^2 = E|t|^2 - |mean|^2, clipped at 0 against rounding.
    spread = np.sqrt(np.maximum(square[:, 0] - np.einsum("kd,kd->k", means, means), 0))
    top_bias = np.full(k, -np.inf, np.float32)
    np.maximum.at(top_bias, labels, x[:, -1])
    centroids = np.concatenate([means, top_bias[:, None]], axis=1).astype(np.float32)
    return centroids, (REACH * spread * (counts > 0)).astype(np.float32)


def cluster_scores(index: ShortlistIndex, user: np.ndarray) -> np.ndarray:
    """``[K]`` estimates of each cluster's best score for ``user``: ``[u, 1] . centroid + |u|
    * reach``."""
    user = np.asarray(user, np.float32)
    query = np.append(user, np.float32(1))
    return index.centroids @ query + np.linalg.norm(user) * index.reach


def probe_clusters(index: ShortlistIndex, user: np.ndarray, probe: int) -> np.ndarray:
    """The ``min(probe, K)`` clusters of highest ``cluster_scores``, best first (ties: the
    lower cluster first, as onnxruntime's TopK)."""
    scores = cluster_scores(index, user)
    return np.argsort(-scores, kind="stable")[: min(probe, index.clusters)]


def candidates(index: ShortlistIndex, user: np.ndarray, probe: int) -> np.ndarray:
    """The probed clusters' member rows end to end (sentinels included), the graph's order."""
    return index.members[probe_clusters(index, user, probe)].ravel()


def _scores(table_out: np.ndarray, bias: np.ndarray, user: np.ndarray, rows: np.ndarray,
            exclude: np.ndarray | None, offset: np.ndarray | None) -> np.ndarray:
    """Scores of ``rows`` with the offset added and excluded rows at -inf."""
    scores = (table_out[rows] @ np.asarray(user, np.float32) + bias[rows]).astype(np.float32)
    if offset is not None:
        scores = scores + np.asarray(offset, np.float32).reshape(-1)[rows]
    if exclude is not None and len(exclude):
        scores[np.isin(rows, exclude)] = -np.inf
    return scores


def _best(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best finite scores, best first (ties: the earlier row, as TopK)."""
    order = np.argsort(-scores, kind="stable")[:k]
    order = order[np.isfinite(scores[order])]
    return rows[order].astype(np.int64), scores[order]


def exact_top_k(table_out: np.ndarray, bias: np.ndarray, user: np.ndarray, k: int,
                exclude: np.ndarray | None = None,
                offset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The exact top ``k`` items and scores of every item, best first: ``u . table_out[j] +
    bias[j] + offset[j]``, excluded items and -inf scores left out (as ``Scorer.top_k``)."""
    rows = np.arange(len(table_out))
    return _best(rows, _scores(table_out, bias, user, rows, exclude, offset), k)


def shortlist_top_k(index: ShortlistIndex, table_out: np.ndarray, bias: np.ndarray,
                    user: np.ndarray, k: int, exclude: np.ndarray | None = None,
                    offset: np.ndarray | None = None, *,
                    probe: int = ShortlistConfig.probe) -> tuple[np.ndarray, np.ndarray]:
    """``exact_top_k`` over the items of the ``probe`` best clusters only: what the shortlist
    graph computes (the reference its tests compare it with)."""
    rows = candidates(index, user, probe)
    rows = rows[rows < index.n_items]
    return _best(rows, _scores(table_out, bias, user, rows, exclude, offset), k)
