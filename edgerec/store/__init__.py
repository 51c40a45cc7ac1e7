"""The on-device interaction store: one SQLite file (WAL), adapted from sqlite-utils.

``InteractionStore`` logs and reads interactions; ``Retention`` bounds what it keeps;
``forget()`` returns an ``ErasureResult``.
``Migration`` and ``MIGRATIONS`` are the schema steps (see ``_schema`` to add one).
"""

from __future__ import annotations

from ._device_state import DeviceState, StateValue
from ._erasure import ErasureResult
from ._retention import Retention
from ._schema import MIGRATIONS, Migration
from ._store import InteractionStore

__all__ = [
    "MIGRATIONS",
    "DeviceState",
    "ErasureResult",
    "InteractionStore",
    "Migration",
    "Retention",
    "StateValue",
]
