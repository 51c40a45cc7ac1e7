"""Retrying one request, the only retry mechanism of the sync: bounded attempts, exponential
backoff with full jitter, and the server's ``Retry-After`` honoured.

Only failures that may pass are retried: no answer at all (:class:`TransportError`) and the
server saying it is busy or broken for now (429, 502, 503, 504). Everything else is the
server's final word. Sleep, clock and randomness come from a :class:`~edgerec.sync.SyncRuntime`
so tests run instantly.

The server's hints (``Retry-After`` on a 204 "not yet", a 429 or a 503) are read here too:
:func:`parse_retry_after` turns the header into seconds and :func:`jittered` spreads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, TypeVar

from .._exceptions import ConfigError, ServerRejectedError, TransportError

if TYPE_CHECKING:
    from .runtime import SyncRuntime

__all__ = ["RETRY_STATUSES", "Backoff", "jittered", "parse_retry_after"]

T = TypeVar("T")
RETRY_STATUSES = frozenset({429, 502, 503, 504})


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """The ``Retry-After`` of an answer (lower-case header names) in seconds, or None.

    Only the delta-seconds form is read (what edgerec servers send); an HTTP date, a negative
    or a non-finite value counts as no hint. A huge value is returned as it is: each waiting
    loop bounds it by its own limits.
    """
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def jittered(seconds: float, rng: Callable[[], float]) -> float:
    """``seconds`` times a uniform draw in [0.5, 1.5): on average what the server asked for
    (it sizes its hints so the whole fleet's polls stay within its budget), spread so that
    devices told together do not come back together."""
    return seconds * (0.5 + rng())


@dataclass(frozen=True)
class Backoff:
    """Retries of one request.

    ``attempts`` tries at most; before try k+1 sleep a uniform draw in [0, base * 2**k], capped
    at ``cap`` seconds (full jitter: devices that failed together do not retry together). After
    an answer with ``Retry-After`` the wait is that hint jittered (:func:`jittered`) if longer;
    a hint above ``max_retry_after`` seconds ends the retries at once, so a server cannot park
    the device inside one sync (the error, with its hint, reaches the app, which syncs later).
    """

    attempts: int = 3
    base: float = 0.25
    cap: float = 4.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) \
                or self.attempts < 1 or not (self.base >= 0 and self.cap >= 0
                                             and self.max_retry_after >= 0):
            raise ConfigError("Backoff needs attempts >= 1 and base, cap, max_retry_after >= 0")

    def delay(self, attempt: int, rng: Callable[[], float], retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (0-based), given the server's
        ``retry_after`` hint if it sent one."""
        wait = min(self.cap, self.base * 2.0 ** attempt) * rng()
        return wait if retry_after is None else max(wait, jittered(retry_after, rng))

    def call(self, request: Callable[[], T], runtime: SyncRuntime, *,
             deadline: float | None = None) -> T:
        """``request()``, retried on passing failures; the last failure is raised.

        ``deadline`` (a ``runtime.clock()`` time) stops retrying early: the app gets its answer
        in time.
        """
        for attempt in range(self.attempts):
            try:
                return request()
            except (TransportError, ServerRejectedError) as exc:
                hint = exc.retry_after if isinstance(exc, ServerRejectedError) else None
                if not _passing(exc) or attempt + 1 == self.attempts \
                        or (hint is not None and hint > self.max_retry_after):
                    raise
                wait = self.delay(attempt, runtime.jitter, hint)
                if deadline is not None and runtime.clock() + wait > deadline:
                    raise
                runtime.sleep(wait)
        raise AssertionError("unreachable")


def _passing(exc: Exception) -> bool:
    return isinstance(exc, TransportError) or (
        isinstance(exc, ServerRejectedError) and exc.status in RETRY_STATUSES)
