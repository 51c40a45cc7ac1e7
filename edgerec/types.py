"""The core data types of edgerec: a ``Catalogue`` of items, the users' ``Sequences`` of
interactions, and a ``Dataset`` of both (pure, no I/O). Loaders (``edgerec.data``), training,
fine-tuning, evaluation and the simulation all speak them; ``edgerec.data`` re-exports them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ._exceptions import DatasetError

__all__ = ["Catalogue", "Dataset", "Sequences"]


@dataclass(frozen=True, eq=False)
class Catalogue:
    """The items a model knows: ids, display titles and content features.

    ``features`` is a float32 matrix ``[n_items, n_features]`` (multi-hot genres, year buckets, ...);
    it may have zero columns when the catalogue has no content. Content features let a new item, or
    a rarely seen one, get a representation from what it is rather than from who consumed it.
    """

    item_ids: tuple[str, ...]
    titles: tuple[str, ...]
    features: np.ndarray
    feature_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        if len(set(self.item_ids)) != n:
            raise DatasetError("catalogue item ids are not unique")
        if len(self.titles) != n:
            raise DatasetError("catalogue titles and ids differ in length")
        if self.features.ndim != 2 or self.features.shape[0] != n:
            raise DatasetError(f"features must be [n_items, n_features], got {self.features.shape}")
        if self.features.shape[1] != len(self.feature_names):
            raise DatasetError("feature_names and feature columns differ in length")
        object.__setattr__(self, "features", np.ascontiguousarray(self.features, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.item_ids)

    @cached_property
    def index(self) -> dict[str, int]:
        """Item id -> row."""
        return {item: i for i, item in enumerate(self.item_ids)}

    def title(self, row: int) -> str:
        """The display title of a row, falling back to its id."""
        return self.titles[row] or self.item_ids[row]

    @cached_property
    def content_hash(self) -> str:
        """SHA-256 over ids, titles and features: the catalogue a bundle was built for."""
        h = hashlib.sha256()
        for item, title in zip(self.item_ids, self.titles):
            h.update(item.encode() + b"\x00" + title.encode() + b"\x00")
        h.update("\x00".join(self.feature_names).encode())
        h.update(self.features.tobytes())
        return h.hexdigest()

    @staticmethod
    def plain(item_ids: list[str] | tuple[str, ...]) -> "Catalogue":
        """A catalogue of ids only: no titles, no content features."""
        ids = tuple(item_ids)
        return Catalogue(ids, ("",) * len(ids), np.zeros((len(ids), 0), np.float32), ())


@dataclass(frozen=True, eq=False)
class Sequences:
    """Per-user interaction sequences in time order: item rows and the model's signal codes.

    ``items[u]`` and ``signals[u]`` are int arrays of equal length for user index ``u``.
    """

    items: list[np.ndarray]
    signals: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.items)

    def n_interactions(self) -> int:
        return int(sum(len(s) for s in self.items))


@dataclass(frozen=True, eq=False)
class Dataset:
    """Interactions as columns over a catalogue; ``user`` and ``item`` are integer indices.

    ``signal`` holds the model's signal code per interaction (see ``edgerec.events.signal_code``).
    """

    user_ids: tuple[str, ...]
    catalogue: Catalogue
    user: np.ndarray
    item: np.ndarray
    ts: np.ndarray
    value: np.ndarray
    signal: np.ndarray
    name: str = field(default="dataset")
    # Optional per-user side information (MovieLens u.user: age, gender, occupation), one row per
    # user index. Kept for analysis and future models; the user tower does not need it.
    user_features: np.ndarray | None = None
    user_feature_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.user)
        for col in ("item", "ts", "value", "signal"):
            if len(getattr(self, col)) != n:
                raise DatasetError(f"column {col!r} has {len(getattr(self, col))} rows, expected {n}")
        if n and (self.user.min() < 0 or self.user.max() >= len(self.user_ids)):
            raise DatasetError("user index out of range")
        if n and (self.item.min() < 0 or self.item.max() >= len(self.catalogue)):
            raise DatasetError("item index out of range")

    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.catalogue)

    def sequences(self) -> Sequences:
        """Each user's interactions sorted by (timestamp, item id), the order DESIGN.md fixes."""
        # lexsort: last key is primary. Ties on timestamp are broken by item id; loaders order the
        # catalogue by id (numerically when all ids are integers), so the row is the id's rank.
        order = np.lexsort((self.item, self.ts, self.user))
        users = self.user[order]
        bounds = np.searchsorted(users, np.arange(self.n_users + 1))
        items = self.item[order].astype(np.int64)
        signals = self.signal[order].astype(np.int64)
        return Sequences(
            [items[bounds[u] : bounds[u + 1]] for u in range(self.n_users)],
            [signals[bounds[u] : bounds[u + 1]] for u in range(self.n_users)],
        )
