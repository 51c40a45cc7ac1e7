"""`edgerec demo`: the federated demo, end to end on one machine.

A real ``edgerec-server`` process on 127.0.0.1, devices (each its own SQLite file, identity and
credentials) hosted in a small pool of worker processes and talking to it only over HTTP,
rounds of secure aggregation with differential privacy, LOO-full after every round, and a
report folder (``report.json``, ``report.png``). See ``runner.py`` for the steps.
"""

from __future__ import annotations

from .config import DemoConfig
from .runner import run_demo

__all__ = ["DemoConfig", "run_demo"]
