"""Anonymous visitor sessions: ids the kiosk issued, ended by a button or by inactivity. Pure.

Only ids this process issued are accepted, so a cookie cannot pick somebody else's history; an
unknown or expired cookie simply starts a new visitor. The clock and the id source are passed in.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable

__all__ = ["Sessions", "Visit", "new_session_id", "PREFIX"]

PREFIX = "kiosk-"


def new_session_id() -> str:
    """A fresh unguessable session id; it is also the edgerec user id of the visit."""
    return PREFIX + secrets.token_hex(8)


@dataclass
class Visit:
    """One anonymous visitor."""

    id: str
    number: int  # "visitor #n" since the kiosk started
    last_seen: float


class Sessions:
    """The live sessions, thread-safe. Methods return the ids of sessions that just ended."""

    def __init__(self, idle_timeout: float, *, clock: Callable[[], float] = time.monotonic,
                 new_id: Callable[[], str] = new_session_id):
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._new_id = new_id
        self._live: dict[str, Visit] = {}
        self._lock = threading.Lock()
        self.started = 0
        self.ended = 0

    def _start(self, now: float) -> Visit:
        self.started += 1
        visit = Visit(self._new_id(), self.started, now)
        self._live[visit.id] = visit
        return visit

    def _end(self, ids: list[str]) -> list[str]:
        for sid in ids:
            del self._live[sid]
        self.ended += len(ids)
        return ids

    def _expired(self, now: float) -> list[str]:
        return [v.id for v in self._live.values() if now - v.last_seen > self.idle_timeout]

    def resolve(self, cookie: str | None) -> tuple[Visit, list[str]]:
        """The visit a request belongs to (a new one if the cookie is unknown or idle too long)."""
        with self._lock:
            now = self._clock()
            ended = self._end(self._expired(now))
            visit = self._live.get(cookie or "")
            if visit is None:
                visit = self._start(now)
            visit.last_seen = now
            return visit, ended

    def reset(self, cookie: str | None) -> tuple[Visit, list[str]]:
        """End the cookie's session (the "new visitor" button) and start a fresh one."""
        with self._lock:
            now = self._clock()
            ended = self._expired(now)
            if cookie in self._live and cookie not in ended:
                ended.append(cookie)
            self._end(ended)
            return self._start(now), ended

    def sweep(self) -> list[str]:
        """End every session idle for longer than the timeout (run periodically)."""
        with self._lock:
            return self._end(self._expired(self._clock()))

    def end_all(self) -> list[str]:
        """End every live session (the kiosk is shutting down)."""
        with self._lock:
            return self._end(list(self._live))

    def live_ids(self) -> set[str]:
        """The ids of the live sessions now."""
        with self._lock:
            return set(self._live)

    @property
    def live(self) -> int:
        with self._lock:
            return len(self._live)
