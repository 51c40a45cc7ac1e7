"""HTTP behind one small interface, so the protocol code never touches httpx directly.

:class:`Transport` is what the rest of ``edgerec.sync`` calls; :class:`HttpxTransport` is the
one adapter over httpx. Tests wrap a transport to record or tamper with bodies, or pass an
``httpx.Client`` of their own (e.g. Starlette's ``TestClient``) to ``HttpxTransport``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol

from .errors import TransportError

__all__ = ["HttpxTransport", "RecordingTransport", "Response", "Transport"]


@dataclass(frozen=True)
class Response:
    """An HTTP answer: status, headers (lower-case names) and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Sends one request and returns the answer; raises :class:`TransportError` when none came."""

    def request(self, method: str, path: str, *, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Response: ...


class HttpxTransport:
    """:class:`Transport` over an ``httpx.Client``.

    ``HttpxTransport("https://fl.example.com")`` makes (and owns) a client; pass ``client=`` to
    reuse one (its ``base_url`` is then used and it is not closed by :meth:`close`).
    """

    def __init__(self, base_url: str = "", *, timeout: float = 30.0, client: object = None,
                 verify: bool | str = True) -> None:
        import httpx

        self._httpx = httpx
        self._owned = client is None
        self._client = client if client is not None else httpx.Client(
            base_url=base_url, timeout=timeout, verify=verify)

    def request(self, method: str, path: str, *, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Response:
        try:
            answer = self._client.request(method, path, content=body, headers=dict(headers or {}))
        except self._httpx.HTTPError as exc:  # connect/read errors, timeouts, protocol errors
            raise TransportError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        return Response(answer.status_code, {k.lower(): v for k, v in answer.headers.items()},
                        answer.content)

    def close(self) -> None:
        """Close the client if this transport made it."""
        if self._owned:
            self._client.close()

    def __enter__(self) -> HttpxTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class RecordingTransport:
    """Wraps a transport and keeps every (method, path, request body, response) it carried.

    ``tamper(method, path, body) -> body`` may rewrite a request body before it is sent (tests).
    """

    inner: Transport
    tamper: Callable[[str, str, bytes | None], bytes | None] | None = None
    log: list[tuple[str, str, bytes | None, Response]] = field(default_factory=list)

    def request(self, method: str, path: str, *, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Response:
        if self.tamper is not None:
            body = self.tamper(method, path, body)
        answer = self.inner.request(method, path, body=body, headers=headers)
        self.log.append((method, path, body, answer))
        return answer
