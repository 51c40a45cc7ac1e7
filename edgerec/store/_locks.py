"""The store's in-process write lock: first come, first served, reentrant, with a timeout.

Why a Python lock in front of SQLite's own: threads of one process that contend for SQLite's
write lock only meet in its busy handler, which polls with sleeps growing to 100 ms and is
not fair. Eight threads logging at once then leave one of them waiting for seconds. Queued
here instead, writers of one process take turns in arrival order and are handed the lock
directly, so a write waits for at most the writes queued before it. Readers never take it.
Writers in *other* processes still meet in SQLite's busy handler (``busy_timeout_ms``).
"""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["WriteLock"]


class WriteLock:
    """A FIFO, reentrant lock. ``acquire(timeout)`` returns False if it was not granted in time."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._owner: int | None = None
        self._depth = 0
        # Waiting threads in arrival order: (thread id, a lock the thread sleeps on).
        self._queue: deque[tuple[int, threading.Lock]] = deque()

    def acquire(self, timeout: float) -> bool:
        """Take the lock (again, if this thread holds it), waiting at most ``timeout`` seconds."""
        me = threading.get_ident()
        with self._mutex:
            if self._owner == me:
                self._depth += 1
                return True
            if self._owner is None and not self._queue:
                self._owner, self._depth = me, 1
                return True
            ticket = threading.Lock()
            ticket.acquire()
            entry = (me, ticket)
            self._queue.append(entry)
        if ticket.acquire(timeout=max(0.0, timeout)):
            return True  # release() made us the owner before waking us
        with self._mutex:
            if self._owner == me:
                return True  # handed over between the timeout and here
            self._queue.remove(entry)
            return False

    def release(self) -> None:
        """Release one level; the last one hands the lock to the longest-waiting thread."""
        with self._mutex:
            if self._owner != threading.get_ident():
                raise RuntimeError("the store's write lock was released by a thread that does not hold it")
            self._depth -= 1
            if self._depth:
                return
            if self._queue:
                # Direct hand-off: no other thread can barge in between release and wake-up.
                self._owner, ticket = self._queue.popleft()
                self._depth = 1
                ticket.release()
            else:
                self._owner = None

    def held_by_me(self) -> bool:
        """True if the calling thread holds the lock."""
        return self._owner == threading.get_ident()
