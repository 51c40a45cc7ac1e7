"""The device's one waiting loop: poll until the server has an answer, at the pace it asks for.

Every wait of a round (for the next stage's server message, for the round's outcome) runs
:func:`poll_until`. Its rules are :class:`~edgerec.sync.SyncTimeouts`': sleep for the server's
``Retry-After`` with jitter (``poll_interval`` without one, never less, never past the wait's
own deadline), and give up after ``wait_limit`` of the announced stage deadline.

When that limit passes, the device asks once for a fresher deadline (``refresh``: the round's
current announcement, which names the stage now collected and when it closes). The first
announcement only dates the stage collected when it was fetched; a later stage may close after
the device's ``stage_timeout`` and must not be given up early. Whatever the server says, the
whole wait ends by ``max_wait``.
"""

from __future__ import annotations

import math
from typing import Callable, TypeVar

from .._exceptions import TransportError
from .api import NotYet
from .runtime import SyncRuntime
from .timeouts import SyncTimeouts

__all__ = ["poll_until"]

T = TypeVar("T")


def poll_until(poll: Callable[[], T | NotYet], what: str, *, timeouts: SyncTimeouts,
               runtime: SyncRuntime, stage_deadline: float | None = None,
               refresh: Callable[[], float | None] | None = None) -> T:
    """``poll()`` until it answers something other than :class:`NotYet`; that answer.

    Args:
        poll: one request (with its own retries); :class:`NotYet` carries the server's hint.
        what: what is waited for, for the error message.
        stage_deadline: when the stage being collected closes (seconds since the epoch, as
            announced); None: unknown, wait ``stage_timeout``.
        refresh: asked when the limit passes, for a newer stage deadline (None: none known).

    Raises :class:`TransportError` when the wait gives up.
    """
    clock = runtime.clock
    started = clock()
    hard_stop = started + timeouts.max_wait
    give_up = started + timeouts.wait_limit(stage_deadline, runtime.wall_clock())
    asked = refresh is None
    while True:
        answer = poll()
        if not isinstance(answer, NotYet):
            return answer
        now = clock()
        if now >= give_up and not asked:
            asked = True  # once per deadline: a server repeating the same one gains nothing
            later = refresh()  # type: ignore[misc]
            if later is not None and math.isfinite(later) and later != stage_deadline:
                stage_deadline, asked = later, False
                left = later + timeouts.stage_grace - runtime.wall_clock()
                give_up = min(hard_stop, max(give_up, now + left))
        if now >= give_up:
            raise TransportError(f"no answer for {what} within {now - started:g} s")
        runtime.sleep(timeouts.pause(answer.retry_after, give_up - now, runtime.jitter))
