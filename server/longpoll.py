"""Long polling: a device's poll for a stage's message (or a round's outcome) is held open
until the round moves on, up to the time the device says it can wait (``Prefer: wait=N``,
RFC 7240) and the server's ``long_poll_s``. A device then hears of a closed stage at once
instead of at its next poll, and a held request costs nothing while it waits.

The coordinator calls :meth:`Changes.notify` (from any thread) whenever an open round moves
on here: a stage closed by this replica, or caught up from another one (by the next tick), a
round finished or aborted. Each held request then checks again whether it has an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Awaitable, Callable, Mapping, TypeVar

__all__ = ["Changes", "preferred_wait"]

T = TypeVar("T")

_WAIT = re.compile(r"(?:^|[\s,;])wait\s*=\s*(\d{1,6})(?:$|[\s,;])", re.I)


def preferred_wait(headers: Mapping[str, str], limit: float) -> float:
    """Seconds the client asked to be held (its ``Prefer: wait``), at most ``limit``; 0 when
    it asked for nothing (an immediate answer, as for clients that do not long-poll)."""
    match = _WAIT.search(headers.get("prefer", ""))
    return min(float(match.group(1)), limit) if match else 0.0


class Changes:
    """Wakes held requests when a round moves on. Bound to the server's event loop at start;
    unbound (an app run without its lifespan, as in-process tests do), nothing is held."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._event = loop, asyncio.Event()

    @property
    def bound(self) -> bool:
        return self._loop is not None

    def notify(self) -> None:
        """Something moved on (callable from any thread)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        event, self._event = self._event, asyncio.Event()
        if event is not None:
            event.set()

    async def hold(self, check: Callable[[], Awaitable[T | None]], wait: float) -> tuple[T | None, float]:
        """``await check()`` until it answers (not None) or ``wait`` seconds have passed, checking
        again after each change; (the answer or None, seconds held)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            event = self._event  # taken before the check: a change during it is not missed
            answer = await check()
            left = start + wait - loop.time()
            if answer is not None or event is None or left <= 0:
                return answer, loop.time() - start
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), left)
