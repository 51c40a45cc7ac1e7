"""``edgerec-server demo``: the federated demo, end to end on one machine.

A real ``edgerec-server`` process on 127.0.0.1, devices (each its own SQLite file, identity and
credentials) hosted in a small pool of worker processes and talking to it only over HTTP,
rounds of secure aggregation with differential privacy, LOO-full after every round, and a
report folder (``report.json``, ``report.png``). See ``runner.py`` for the steps.

It lives with the server, not in the device SDK: it starts a server, and nothing under
``edgerec/`` may need one (DESIGN.md). ``DemoConfig`` and ``run_demo`` load on first use, so
``edgerec-server``'s other commands, which register ``demo`` (``command.py``), do not pay for
the demo's imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import DemoConfig
    from .runner import run_demo

__all__ = ["DemoConfig", "run_demo"]

_HOME = {"DemoConfig": ".config", "run_demo": ".runner"}


def __getattr__(name: str) -> Any:
    """``DemoConfig`` and ``run_demo``, imported on first use (PEP 562)."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name], __name__), name)
    globals()[name] = value  # once: later lookups (and a test's monkeypatch) see a plain attribute
    return value
