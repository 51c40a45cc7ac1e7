"""The outside world a sync reads and waits on, injected as one object: clocks, sleep and
randomness (as httpx groups its ``Timeout`` and ``Limits``).

Tests pass a fake one and run a whole round in no real time::

    runtime = SyncRuntime(clock=fake.now, wall_clock=fake.now, sleep=fake.advance,
                          jitter=lambda: 0.5)
    rec.sync(url, runtime=runtime, ...)
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from typing import Callable

from .._exceptions import ConfigError

__all__ = ["SyncRuntime"]


@dataclass(frozen=True)
class SyncRuntime:
    """Where a sync gets time and randomness (the real ones by default).

    Attributes:
        clock: monotonic seconds, for timeouts and deadlines of waits (never goes back).
        wall_clock: seconds since the epoch, for certificates' validity and the stage deadlines
            a server announces.
        sleep: waits that many seconds (between polls and retries).
        jitter: a uniform draw in [0, 1) that spreads waits so devices do not act in step.
            Not for secrets.
        key_rng: ``key_rng(n)`` returns n bytes from a cryptographic generator, for the
            identity key and each round's keys and masks.

    The privacy noise is not here: it has its own source (``noise_source``), because a
    reproducible one changes what the ledger charges.
    """

    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random
    key_rng: Callable[[int], bytes] = os.urandom

    def __post_init__(self) -> None:
        for name in ("clock", "wall_clock", "sleep", "jitter", "key_rng"):
            if not callable(getattr(self, name)):
                raise ConfigError(f"SyncRuntime.{name} must be callable")
