"""The LOO-full evaluation protocol of DESIGN.md, its metrics, and the peers."""

from ._method import FittedModel, Method
from .bootstrap import paired_bootstrap
from .metrics import hr_at, ndcg_at, rank_of_target
from .split import LOOSplit, loo_split

__all__ = [
    "FittedModel",
    "LOOSplit",
    "Method",
    "hr_at",
    "loo_split",
    "ndcg_at",
    "paired_bootstrap",
    "rank_of_target",
]
