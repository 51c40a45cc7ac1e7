"""The app's ASGI plumbing: error answers and the access log.

Every error answer is an ``edgerec.sync.ErrorBody`` (JSON) with the status of the server error
behind it; anything unexpected answers 500 without detail and is logged with its traceback.
"""

from __future__ import annotations

import logging
import time
from typing import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from edgerec.sync import ErrorBody, ProtocolError
from edgerec.sync import codec

from ._exceptions import ServerError
from .coordinator import Coordinator
from .logs import log_event

__all__ = ["ERROR_HANDLERS", "AccessLog"]


def _error(status: int, code: str, message: str) -> Response:
    return Response(codec.encode(ErrorBody(code, message)), status, None, codec.JSON)


async def _server_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServerError)
    if exc.status >= 500:
        log_event("request_failed", logging.ERROR, path=request.url.path, error=str(exc))
    return _error(exc.status, exc.code, str(exc))


async def _protocol_error(request: Request, exc: Exception) -> Response:
    return _error(400, "bad_request", str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    response = _error(exc.status_code, code, str(exc.detail))
    # Starlette's 405 names the route's methods in an Allow header (RFC 9110 requires it).
    response.headers.update(exc.headers or {})
    return response


async def _unexpected(request: Request, exc: Exception) -> Response:
    get = logging.getLogger("edgerec_server")
    get.error("unexpected_error", exc_info=exc, extra={"fields": {"path": request.url.path}})
    return _error(500, "internal_error", "internal server error (logged)")


class AccessLog:
    """ASGI middleware: one structured log line and the metrics of every request."""

    def __init__(self, app: Callable[..., Awaitable[None]], coordinator: Coordinator) -> None:
        self.app, self.co = app, coordinator

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            self.co.metrics.requests.labels(route, str(status[0])).inc()
            self.co.metrics.latency.labels(route).observe(elapsed)
            if status[0] >= 400:
                self.co.metrics.rejections.labels(f"http_{status[0]}").inc()
            log_event("request", method=scope["method"], path=scope["path"], status=status[0],
                      ms=round(elapsed * 1000, 2))


#: Starlette's ``exception_handlers``: server errors, protocol errors, HTTP errors, the rest.
ERROR_HANDLERS = {ServerError: _server_error, ProtocolError: _protocol_error,
                  HTTPException: _http_error, Exception: _unexpected}
