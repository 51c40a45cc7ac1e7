"""The LOO-full evaluation protocol of DESIGN.md, its metrics, and the peers."""

from ._method import FittedModel, Method
from ._parallel import default_jobs
from .bootstrap import paired_bootstrap
from .metrics import hr_at, ndcg_at, rank_of_target
from .peers import als, available_peers, bpr, item_knn, missing_peers, most_popular, sasrec
from .plan import EvalPlan, MethodPlan
from .protocol import rank_users, run_protocol
from .results import FitRecord, MethodResult, ProtocolResult
from .split import LOOSplit, loo_split

__all__ = [
    "EvalPlan",
    "FitRecord",
    "FittedModel",
    "LOOSplit",
    "Method",
    "MethodPlan",
    "MethodResult",
    "ProtocolResult",
    "als",
    "available_peers",
    "bpr",
    "default_jobs",
    "hr_at",
    "item_knn",
    "loo_split",
    "missing_peers",
    "most_popular",
    "ndcg_at",
    "paired_bootstrap",
    "rank_of_target",
    "rank_users",
    "run_protocol",
    "sasrec",
]
