"""Catalogue filters: how an app restricts the items ``recommend()`` may return (``candidates=``).

Two filters, both derived from the catalogue alone: "in stock only" over a deterministic stock set
(a hash of the item id, so every run and every test sees the same shelf), and a genre filter read
from the catalogue's ``genre:*`` content features when it has them (MovieLens and synthetic do).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from edgerec import Catalogue

__all__ = ["Filters", "CatalogueFilters", "FilterError"]

_GENRE_PREFIX = "genre:"
_TRUE, _FALSE = {"1", "on", "true", "yes"}, {"", "0", "off", "false", "no"}


class FilterError(ValueError):
    """A filter value the catalogue does not know (a bad request)."""


@dataclass(frozen=True)
class Filters:
    """What the visitor asked to see."""

    in_stock: bool = False
    genre: str = ""

    def query(self) -> dict[str, str]:
        """The form/query fields that encode these filters (empty ones left out)."""
        out = {}
        if self.in_stock:
            out["stock"] = "1"
        if self.genre:
            out["genre"] = self.genre
        return out


def in_stock(item: str, share: float) -> bool:
    """Deterministic stock: the first 4 bytes of SHA-256(item id) below ``share`` of 2**32."""
    return int.from_bytes(hashlib.sha256(item.encode()).digest()[:4], "big") < share * 2**32


def _genre_label(name: str) -> str:
    label = name[len(_GENRE_PREFIX):]
    return f"Genre {label}" if label.isdigit() else label


def _genres(catalogue: Catalogue) -> dict[str, tuple[str, ...]]:
    """Genre label -> item ids carrying it (a flag at least 3/4 of the item's strongest genre)."""
    cols = [j for j, n in enumerate(catalogue.feature_names) if n.startswith(_GENRE_PREFIX)]
    if not cols:
        return {}
    block = catalogue.features[:, cols]
    strongest = block.max(axis=1, keepdims=True)
    member = (block > 0) & (block >= 0.75 * strongest)
    out = {}
    for j, col in enumerate(cols):
        rows = np.flatnonzero(member[:, j])
        if len(rows):
            out[_genre_label(catalogue.feature_names[col])] = tuple(catalogue.item_ids[r] for r in rows)
    return out


class CatalogueFilters:
    """Turns ``Filters`` into the candidate list passed to ``recommend(candidates=...)``."""

    def __init__(self, catalogue: Catalogue, *, stock_share: float = 0.7):
        self.stock = frozenset(i for i in catalogue.item_ids if in_stock(i, stock_share))
        self.genre_items = _genres(catalogue)
        self._cache: dict[Filters, tuple[str, ...] | None] = {}

    @property
    def genres(self) -> list[str]:
        return sorted(self.genre_items)

    def parse(self, fields: Mapping[str, str]) -> Filters:
        """Filters from form or query fields ``stock`` and ``genre``; ``FilterError`` when invalid."""
        stock = fields.get("stock", "").strip().lower()
        if stock not in _TRUE | _FALSE:
            raise FilterError(f"stock must be 1 or 0, got {stock[:40]!r}")
        genre = fields.get("genre", "")
        if genre and genre not in self.genre_items:
            raise FilterError(f"unknown genre {genre[:60]!r}")
        return Filters(in_stock=stock in _TRUE, genre=genre)

    def candidates(self, filters: Filters) -> tuple[str, ...] | None:
        """The allowed item ids, or None for the whole catalogue (the same tuple every time)."""
        if filters not in self._cache:
            if not filters.in_stock and not filters.genre:
                self._cache[filters] = None
            else:
                items = self.genre_items[filters.genre] if filters.genre else sorted(self.stock)
                self._cache[filters] = tuple(i for i in items if not filters.in_stock or i in self.stock)
        return self._cache[filters]
