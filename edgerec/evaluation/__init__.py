"""The LOO-full evaluation protocol of DESIGN.md, its metrics, and the peers."""

from ._method import FittedModel, Method

__all__ = ["FittedModel", "Method"]
