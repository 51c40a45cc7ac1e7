"""Bounded retries with exponential backoff and full jitter, for the device's sync calls.

Only failures that may pass are retried: no answer at all (:class:`TransportError`) and the
server saying it is busy or broken for now (429, 502, 503, 504). Everything else is the
server's final word. Sleep and randomness are injected so tests run instantly.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from .._exceptions import ConfigError
from .errors import ServerRejectedError, TransportError

__all__ = ["Backoff", "RETRY_STATUSES"]

T = TypeVar("T")
RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class Backoff:
    """``attempts`` tries at most; before try k+1 sleep a uniform draw in [0, base * 2**k],
    capped at ``cap`` seconds (full jitter: devices that failed together do not retry together)."""

    attempts: int = 3
    base: float = 0.25
    cap: float = 4.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base < 0 or self.cap < 0:
            raise ConfigError("Backoff needs attempts >= 1 and base, cap >= 0")

    def delay(self, attempt: int, rng: Callable[[], float]) -> float:
        """Seconds to wait after failed try number ``attempt`` (0-based)."""
        return min(self.cap, self.base * 2.0 ** attempt) * rng()

    def call(self, request: Callable[[], T], *, sleep: Callable[[float], None] = time.sleep,
             rng: Callable[[], float] = random.random,
             deadline: float | None = None, clock: Callable[[], float] = time.monotonic) -> T:
        """``request()``, retried on passing failures; the last failure is raised.

        ``deadline`` (a ``clock()`` time) stops retrying early: the app gets its answer in time.
        """
        for attempt in range(self.attempts):
            try:
                return request()
            except (TransportError, ServerRejectedError) as exc:
                if not _passing(exc) or attempt + 1 == self.attempts:
                    raise
                wait = self.delay(attempt, rng)
                if deadline is not None and clock() + wait > deadline:
                    raise
                sleep(wait)
        raise AssertionError("unreachable")


def _passing(exc: Exception) -> bool:
    return isinstance(exc, TransportError) or (
        isinstance(exc, ServerRejectedError) and exc.status in RETRY_STATUSES)
