"""How long a device told "not yet" should wait before asking again (``Retry-After``).

Polling load is what drowned a single server at 1,000 devices (every device polling every
0.5 s). The server tells each waiting device to come back in (devices that may be polling /
``poll_rate``) seconds, so the whole cohort's polls add up to about ``poll_rate`` per second
whatever its size; devices add jitter so they do not come back together. A device waiting for
a stage is never told to come back after the stage's deadline (it would miss the next stage).
"""

from __future__ import annotations

import math
from typing import Callable

from .config import ServerConfig
from .state import StateBackend

__all__ = ["IdlePacer", "idle_hint", "stage_hint"]

_POPULATION_TTL_S = 30.0  # how stale the active-device count behind an idle hint may be


def stage_hint(cohort: int, now: float, deadline: float | None, config: ServerConfig) -> int:
    """Seconds a member of a round of ``cohort`` devices waits before polling for its next
    server message again (at least ``retry_after_s``, at most ``max_retry_after_s``, and not
    past the stage's ``deadline``)."""
    hint = _clamp(cohort / config.poll_rate, config.retry_after_s, config.max_retry_after_s)
    if deadline is not None:
        hint = min(hint, max(config.retry_after_s, math.ceil(deadline - now) + 1))
    return hint


def idle_hint(active_devices: int, config: ServerConfig) -> int:
    """Seconds a device with no round to join waits before asking again."""
    return _clamp(active_devices / config.poll_rate, config.retry_after_s,
                  config.max_idle_retry_after_s)


def _clamp(seconds: float, low: int, high: int) -> int:
    return int(min(high, max(low, math.ceil(seconds))))


class IdlePacer:
    """``idle_hint`` for the current number of active devices, counted at most every 30 s."""

    def __init__(self, state: StateBackend, config: ServerConfig, clock: Callable[[], float]) -> None:
        self.state, self.config, self.clock = state, config, clock
        self._counted: tuple[float, int] | None = None  # (when, active devices)

    def idle_hint(self) -> int:
        now = self.clock()
        if self._counted is None or now - self._counted[0] > _POPULATION_TTL_S:
            self._counted = (now, len(self.state.active_devices(now)))
        return idle_hint(self._counted[1], self.config)
