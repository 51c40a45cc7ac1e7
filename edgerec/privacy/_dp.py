"""Shared plumbing of the accountants: the lazy dp-accounting import and argument checks.

dp-accounting is imported on the first figure computed: a device that never makes privacy
reports (it only clips, noises and encodes) does not need it installed. Whoever makes reports
(the server, an auditor, a device showing its own epsilon) needs ``edgerec[privacy]``.
"""

from __future__ import annotations

import logging
from typing import Any

from .._exceptions import ConfigError
from .._extras import require
from ._checks import finite_float

ACCOUNTANTS = ("rdp", "pld")


def check_delta(delta: object) -> float:
    """``delta`` as a float, or ConfigError unless it is in (0, 1)."""
    value = finite_float(delta, "delta")
    if not 0.0 < value < 1.0:
        raise ConfigError(f"delta must be in (0, 1), got {delta!r}")
    return value


def check_accountant(kind: object) -> str:
    """``kind`` if it names an accountant (``ACCOUNTANTS``), else ConfigError."""
    if kind not in ACCOUNTANTS:
        raise ConfigError(f"accountant must be one of {ACCOUNTANTS}, got {kind!r}")
    return str(kind)


class _DropExcludedOrders(logging.Filter):
    """dp-accounting's RDP logs a warning for every Renyi order whose series does not converge
    at small z, then leaves that order out (the epsilon stays valid). Per call that is dozens of
    lines; drop just those, leaving the host app's logging otherwise as it was."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Excluding this order" not in record.getMessage()


def dp_accounting() -> Any:
    """The ``dp_accounting`` module, or MissingDependencyError (an ImportError) naming the extra."""
    dp = require("dp_accounting", extra="privacy", why="privacy accounting needs dp-accounting")
    absl = logging.getLogger("absl")
    if not any(isinstance(f, _DropExcludedOrders) for f in absl.filters):
        absl.addFilter(_DropExcludedOrders())
    return dp
