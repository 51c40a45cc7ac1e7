"""The kiosk's web app (Starlette): routes parse the request, call ``Kiosk``, render a template.

Pages are rendered on the server with Jinja2. ``static/kiosk.js`` turns each form into a
``fetch`` that swaps in the ``#kiosk`` fragment the server returns, so a click updates the grid
without a page load; without JavaScript the same forms post and redirect back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from edgerec import EdgeRecError

from .filters import FilterError
from .forms import BadRequest, query_fields, read_form
from .federation import SyncWorker
from .kiosk import Kiosk, UnknownItem
from .sessions import Visit

__all__ = ["create_app", "COOKIE", "FETCH_HEADER"]

HERE = Path(__file__).resolve().parent
COOKIE = "kiosk_session"
FETCH_HEADER = "x-kiosk-fetch"  # set by kiosk.js: answer with the #kiosk fragment, not a redirect
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
_NO_STORE = {"Cache-Control": "no-store"}


def _respond(request: Request, kiosk: Kiosk, visit: Visit, ended: list[str], template: str,
             context: dict[str, Any], status: int = 200) -> Response:
    """Render, set the session cookie when it changed, and erase ended sessions after responding."""
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status, headers=_NO_STORE)
    return _finish(request, kiosk, visit, ended, response)


def _finish(request: Request, kiosk: Kiosk, visit: Visit, ended: list[str], response: Response) -> Response:
    if request.cookies.get(COOKIE) != visit.id:
        response.set_cookie(COOKIE, visit.id, httponly=True, samesite="strict", path="/")
    if ended:
        response.background = BackgroundTask(kiosk.end, ended)
    return response


def create_app(kiosk: Kiosk, *, sweep_every: float | None = None, worker: SyncWorker | None = None) -> Starlette:
    """The ASGI app serving ``kiosk``. Idle sessions are swept every ``sweep_every`` seconds;
    ``worker`` (federated learning) runs in its own thread while the app is up."""
    sweep_every = sweep_every or min(kiosk.config.idle_timeout / 3, 30.0)

    async def page(request: Request) -> Response:
        filters = kiosk.filters.parse(query_fields(request))
        visit, ended = kiosk.sessions.resolve(request.cookies.get(COOKIE))
        context = await run_in_threadpool(kiosk.view, visit, filters)
        fragment = request.url.path == "/grid"
        return _respond(request, kiosk, visit, ended, "_main.html" if fragment else "page.html", context)

    def action_route(action: str) -> Route:
        async def act(request: Request) -> Response:
            return await _act(request, action)
        return Route(f"/{action}", act, methods=["POST"])

    async def _act(request: Request, action: str) -> Response:
        started = time.perf_counter()
        form = await read_form(request)
        filters = kiosk.filters.parse(form)
        item = form.get("item", "")
        if not item:
            raise BadRequest(400, "missing form field 'item'")
        visit, ended = kiosk.sessions.resolve(request.cookies.get(COOKIE))

        def work() -> dict[str, Any]:
            title = kiosk.act(visit.id, item, action)
            note = f"You picked {title}. More like it:" if action == "click" else f"Hidden: {title}."
            return kiosk.view(visit, filters, note)

        context = await run_in_threadpool(work)
        response = _swap_or_redirect(request, kiosk, visit, ended, context, filters.query())
        kiosk.timed(time.perf_counter() - started)
        return response

    async def reset(request: Request) -> Response:
        form = await read_form(request)
        idle = form.get("reason") == "idle"
        visit, ended = kiosk.sessions.reset(request.cookies.get(COOKIE))
        context = await run_in_threadpool(kiosk.view, visit, kiosk.filters.parse({}),
                                          "" if idle else "Welcome! Tap anything that looks good.")
        return _swap_or_redirect(request, kiosk, visit, ended, context, {})

    def _swap_or_redirect(request: Request, kiosk: Kiosk, visit: Visit, ended: list[str],
                          context: dict[str, Any], query: dict[str, str]) -> Response:
        if request.headers.get(FETCH_HEADER):
            return _respond(request, kiosk, visit, ended, "_main.html", context)
        target = "/" + ("?" + urlencode(query) if query else "")
        return _finish(request, kiosk, visit, ended, RedirectResponse(target, status_code=303))

    async def operator(request: Request) -> Response:
        view = await run_in_threadpool(kiosk.operator)
        if request.url.path.endswith(".json"):
            return JSONResponse(view.as_json(), headers=_NO_STORE)
        return TEMPLATES.TemplateResponse(request, "operator.html", {"op": view}, headers=_NO_STORE)

    async def health(request: Request) -> Response:
        rec = kiosk.rec
        return JSONResponse({"ok": True, "model_version": rec.model_version,
                             "items": len(rec.bundle.catalogue)})

    async def bad_request(request: Request, exc: Exception) -> Response:
        if isinstance(exc, BadRequest):
            status, message = exc.status, exc.message
        elif isinstance(exc, UnknownItem):
            status, message = 404, f"unknown item {str(exc.args[0])[:80]!r}"
        else:  # FilterError, or an edgerec error caused by the request's values
            status, message = 400, str(exc)
        return PlainTextResponse(message, status_code=status, headers=_NO_STORE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(kiosk.forget_orphans)

        async def sweeper() -> None:
            while True:
                await asyncio.sleep(sweep_every)
                await run_in_threadpool(kiosk.end, kiosk.sessions.sweep())

        task = asyncio.create_task(sweeper())
        if worker is not None:
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                await run_in_threadpool(worker.stop)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await run_in_threadpool(kiosk.end, kiosk.sessions.end_all())

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/grid", page, methods=["GET"]),
        action_route("click"),
        action_route("dismiss"),
        Route("/reset", reset, methods=["POST"]),
        Route("/operator", operator, methods=["GET"]),
        Route("/operator.json", operator, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    handlers = {BadRequest: bad_request, UnknownItem: bad_request, FilterError: bad_request,
                EdgeRecError: bad_request}
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
