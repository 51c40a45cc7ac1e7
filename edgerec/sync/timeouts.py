"""How long a device waits for the server and how often it asks: one frozen config object.

::

    rec.sync(url, timeouts=SyncTimeouts(poll_interval=1.0, max_wait=1800.0), ...)

While a round's stage is being collected the server answers "not yet" (204) with a
``Retry-After`` it sizes to the cohort, so the fleet's polls stay within its budget. The device
sleeps for that hint with jitter (uniform in [0.5, 1.5) x hint), never less than its own
``poll_interval`` and never past its own deadline for the wait; without a hint it polls every
``poll_interval``. It waits for a stage for ``stage_timeout`` seconds, or until the announced
``stage_deadline`` plus ``stage_grace`` (the time the server needs to close the stage) if that
is later; never longer than ``max_wait``, whatever the server announces, so a lying server
cannot hold a device forever.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from .._exceptions import ConfigError
from .retry import Backoff, jittered

__all__ = ["SyncTimeouts"]


@dataclass(frozen=True)
class SyncTimeouts:
    """The sync's timing knobs (seconds).

    Attributes:
        request: per HTTP request (the default httpx transport only).
        poll_interval: the least time between two polls while waiting for the server, and the
            time between polls when the server sends no ``Retry-After``.
        stage_timeout: the least time a device waits for one stage before it gives up
            (``offline``).
        stage_grace: how long after an announced stage deadline the device still waits, for
            the server to close the stage (a large cohort's close takes a while).
        max_wait: the most a device waits for one stage, whatever deadline the server
            announces (at least ``stage_timeout``).
        backoff: retries of one request that got no answer or a 429/5xx (:class:`Backoff`).
    """

    request: float = 10.0
    poll_interval: float = 0.5
    stage_timeout: float = 300.0
    stage_grace: float = 60.0
    max_wait: float = 3600.0
    backoff: Backoff = field(default_factory=Backoff)

    def __post_init__(self) -> None:
        for name in ("request", "poll_interval", "stage_timeout", "stage_grace", "max_wait"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise ConfigError(f"SyncTimeouts.{name} must be a finite number of seconds >= 0")
        if self.request <= 0 or self.stage_timeout <= 0:
            raise ConfigError("SyncTimeouts.request and stage_timeout must be positive")
        if self.max_wait < self.stage_timeout:
            raise ConfigError("SyncTimeouts.max_wait must be at least stage_timeout")
        if not isinstance(self.backoff, Backoff):
            raise ConfigError("SyncTimeouts.backoff must be a Backoff")

    def long_poll(self) -> float:
        """Seconds a poll may be held by the server (``Prefer: wait``): what the request
        timeout leaves after a margin for the answer to arrive (0 under 3 s)."""
        return float(max(0, int(self.request) - 2))

    def wait_limit(self, stage_deadline: float | None, wall_now: float) -> float:
        """Seconds to wait for a stage whose collection closes at ``stage_deadline`` (seconds
        since the epoch; None or not finite: unknown), at wall-clock time ``wall_now``."""
        announced = 0.0
        if stage_deadline is not None and math.isfinite(stage_deadline):
            announced = stage_deadline + self.stage_grace - wall_now
        return min(self.max_wait, max(self.stage_timeout, announced))

    def pause(self, retry_after: float | None, remaining: float, rng: Callable[[], float]) -> float:
        """Seconds to sleep before polling again: the server's ``retry_after`` hint jittered
        (``poll_interval`` without one), at least ``poll_interval``, at most ``remaining``
        (the time left before this wait gives up)."""
        wanted = self.poll_interval if retry_after is None \
            else max(self.poll_interval, jittered(retry_after, rng))
        return max(0.0, min(wanted, remaining))
