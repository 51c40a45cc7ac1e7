"""Dataset types and loaders (MovieLens-100K, any interactions CSV, a synthetic generator)."""

from ._types import Catalogue, Dataset, Sequences

__all__ = ["Catalogue", "Dataset", "Sequences"]
