"""Dataset types and loaders (MovieLens-100K, any interactions CSV, a synthetic generator)."""

from ._csv import load_csv
from ._movielens import load_movielens
from ._synthetic import synthetic
from ..types import Catalogue, Dataset, Sequences

__all__ = ["Catalogue", "Dataset", "Sequences", "load_csv", "load_movielens", "synthetic"]
