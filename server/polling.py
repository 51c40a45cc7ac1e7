"""How long a device told "not yet" should wait before asking again (``Retry-After``).

Polling load is what drowned a single server at 1,000 devices (every device polling every
0.5 s). The server tells each waiting device to come back in (devices that may be polling /
``poll_rate``) seconds, so the whole cohort's polls add up to about ``poll_rate`` per second
whatever its size; devices add jitter so they do not come back together. A device waiting for
a stage is never told to come back after the stage's deadline (it would miss the next stage).
"""

from __future__ import annotations

import math

from .config import ServerConfig

__all__ = ["idle_hint", "stage_hint"]


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
