"""The HTTP API (Starlette on uvicorn). Routes parse, call the coordinator, serialize.

Error answers (``edgerec.sync.ErrorBody``) and the access log are ``middleware.py``'s.
Blocking work (database, crypto, publishing) runs in the thread pool, serialized by the
coordinator's lock, except publishing a round's model, which runs beside it (in the thread of
the tick that closed the round). See ``openapi.py`` for the routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any, AsyncIterator, Awaitable, Callable, Literal

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edgerec.secagg import Stage
from edgerec.sync import (DOWNLOAD_NAMES, OUTCOME, CertificateAnswer, EnrolRequest, EnrolResponse,
                          RoundStatus, ServerKey)
from edgerec.sync import codec

from . import audit, auth, operators, rollout
from .analytics import analytics as analytics_doc
from ._exceptions import BadRequestError, NotFoundError, PayloadTooLargeError, ServerError
from .coordinator import NOT_CACHED, Coordinator
from .logs import log_event
from .longpoll import Changes, preferred_wait
from .metrics import CONTENT_TYPE
from .middleware import ERROR_HANDLERS, AccessLog
from .openapi import openapi_schema
from .state import DeviceRecord, ModelRecord
from .validation import (check_content_length, check_json_depth, check_media_type, parse_id,
                         shown)

__all__ = ["create_app"]

_STAGE_OF_NAME = {name: stage for stage, name in DOWNLOAD_NAMES.items()}


def _message(msg: Any, status: int = 200, headers: dict | None = None,
             background: BackgroundTask | None = None) -> Response:
    return Response(codec.encode(msg), status, headers, codec.JSON, background)


async def _body(request: Request, limit: int, media_type: str) -> bytes:
    """The request body, refusing another media type (415), and (413) refusing before reading
    more than ``limit`` bytes."""
    check_media_type(request.headers.get("content-type"), media_type)
    check_content_length(request.headers.get("content-length"), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"body over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _then(text: str | None) -> Stage | None | Literal[False]:
    """An upload's ``then``: the stage whose message to wait for, None for the round's outcome,
    False when not asked (400 for another name)."""
    if text is None:
        return False
    if text == OUTCOME:
        return None
    stage = _STAGE_OF_NAME.get(text)
    if stage is None:
        raise BadRequestError(f"then must be one of {sorted([*_STAGE_OF_NAME, OUTCOME])}, got "
                              f"{shown(text)!r}")
    return Stage(stage)


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


class Api:
    """The route handlers, bound to one coordinator."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.co = coordinator
        self.state, self.config = coordinator.state, coordinator.config
        self.changes = Changes()
        self._tick_waiting = False
        self._tasks: set[asyncio.Task] = set()

    async def device(self, request: Request) -> DeviceRecord:
        """The authenticated device (401/403 otherwise)."""
        return await run_in_threadpool(auth.authenticate, self.state,
                                       request.headers.get("authorization"), self.co.clock())

    async def member(self, request: Request) -> tuple[DeviceRecord, int]:
        """The authenticated device and the round in the path, which it must be a member of.

        A round the device was not drawn into answers 404 exactly like one that does not exist
        (and like an id out of range), before anything else is looked at, so a device learns
        nothing about other rounds, not even whether they exist or are open. One trip to the
        thread pool for both checks, not one each: every round message pays for it (the
        trips were the largest item of a request in a profile of a 1,000-device round).
        """
        return await run_in_threadpool(self._member, request.headers.get("authorization"),
                                       request.path_params["round_id"])

    def _member(self, authorization: str | None, text: str) -> tuple[DeviceRecord, int]:
        device = auth.authenticate(self.state, authorization, self.co.clock())
        round_id = parse_id(text, "round_id")
        if round_id is None or not self.co.is_member(round_id, device.id):
            raise NotFoundError(f"no round {shown(text)} that device {device.id} is a member of")
        return device, round_id

    def _wait(self, request: Request) -> float:
        """How long this poll may be held (what the device asked, within ``long_poll_s``)."""
        return preferred_wait(request.headers, self.config.long_poll_s) if self.changes.bound else 0.0

    def _after(self, round_id: int, held: float) -> int:
        """``Retry-After`` once a poll was held ``held`` s: the round's pace, less the hold."""
        hint = self.co.poll_hint(round_id)  # from the cached round: no database call
        return max(self.config.retry_after_s, math.ceil(hint - held))

    def _tick_later(self) -> BackgroundTask | None:
        """A tick after this answer, to close the stage if this message completed it; merged
        into one already waiting to start (it will see this message: the flag is cleared
        before it reads anything). Runs on the event loop, so the flag needs no lock."""
        if self._tick_waiting:
            return None
        self._tick_waiting = True
        return BackgroundTask(self._tick)

    def _tick_now(self) -> None:
        """``_tick_later``'s tick, started now (for an answer that waits for what it closes)."""
        if self._tick_waiting:
            return
        self._tick_waiting = True
        task = asyncio.get_running_loop().create_task(self._tick())
        self._tasks.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._tasks.discard)

    async def _tick(self) -> None:
        self._tick_waiting = False
        try:
            await run_in_threadpool(self.co.tick)
        except Exception as exc:  # as the ticker: the round is rebuilt from the database
            logging.getLogger("edgerec_server").error("tick_failed", exc_info=exc)

    async def _model_version(self) -> int | None:
        """The latest published model version (None before the first): /healthz and /metrics."""
        latest = await run_in_threadpool(self.state.latest_model)
        return latest.version if latest else None

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "model_version": await self._model_version()})

    async def metrics(self, request: Request) -> Response:
        # Read at scrape time from the same source as /healthz: the gauge is never stale, also
        # for a model published by `init` or another process before any round closed here.
        self.co.metrics.model_version.set(await self._model_version() or 0)
        return Response(self.co.metrics.render(), media_type=CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_schema(self.config.public_models))

    async def public_key(self, request: Request) -> Response:
        return _message(ServerKey(self.co.publisher.public_key))

    async def enrol(self, request: Request) -> Response:
        body = await _body(request, self.config.max_control_body_bytes, codec.JSON)
        check_json_depth(body)  # before json.loads, which a deep enough body crashes
        req = codec.decode(body, EnrolRequest)
        done = await run_in_threadpool(auth.enrol, self.state, req, self.co.clock(),
                                       self.config.credential_ttl_s, self.co.authority)
        self.co.metrics.enrolments.inc()
        log_event("device_enrolled", device_id=done.device.id)
        return _message(EnrolResponse(done.device.id, done.credential, self.co.publisher.public_key,
                                      done.device.expires_at, done.certificate), 201)

    async def certificate(self, request: Request) -> Response:
        device = await self.device(request)
        cert = await run_in_threadpool(auth.certificate_of, self.state, device, self.co.authority,
                                       self.co.clock())
        return _message(CertificateAnswer(cert))

    async def current_round(self, request: Request) -> Response:
        device = await self.device(request)
        found = await run_in_threadpool(self.co.announcement, device)
        if found is None:
            wait = await run_in_threadpool(self.co.poll_hint)
            return Response(status_code=204, headers={"Retry-After": str(wait)})
        return _message(found)

    async def round_status(self, request: Request) -> Response:
        _, round_id = await self.member(request)

        async def outcome() -> RoundStatus | None:
            status = await run_in_threadpool(self.co.status, round_id)
            return None if status.state == "open" else status

        settled, held = await self.changes.hold(outcome, self._wait(request))
        if settled is not None:
            return _message(settled)
        # Devices poll an open round for its outcome: pace them as stage polls are paced.
        status = await run_in_threadpool(self.co.status, round_id)
        hint = {"Retry-After": str(self._after(round_id, held))} if status.state == "open" else None
        return _message(status, headers=hint)

    async def upload(self, request: Request) -> Response:
        """Store a stage message (202 and its ack). With ``?then=<name>`` and ``Prefer: wait``,
        the answer is held until what the device fetches next is ready and is that instead
        (200): the server message ``name`` (a download name), or the round's final status
        (``outcome``). One request a stage instead of two: the upload is its poll. Not ready
        within the hold, or not answerable (the device's next poll says why): the ack."""
        device, round_id = await self.member(request)
        then = _then(request.query_params.get("then"))  # refused before anything is stored
        body = await _body(request, self.config.max_body_bytes, codec.OCTETS)
        ack = await run_in_threadpool(self.co.accept, device, round_id, body)
        wait = self._wait(request)
        if then is False or wait <= 0:
            return _message(ack, 202, background=self._tick_later())
        self._tick_now()  # not after the answer: the answer may wait for what this tick closes
        next_answer, held = await self.changes.hold(self._next_for(device, round_id, then), wait)
        if next_answer is not None:
            return next_answer
        return _message(ack, 202, {"Retry-After": str(self._after(round_id, held))})

    def _next_for(self, device: DeviceRecord, round_id: int,
                  then: Stage | None) -> Callable[[], Awaitable[Response | None]]:
        """The check a held upload repeats: the answer of the poll ``then`` names, or None."""
        async def check() -> Response | None:
            try:
                if then is None:  # the round's outcome
                    status = await run_in_threadpool(self.co.status, round_id)
                    return None if status.state == "open" else _message(status)
                found = await self._stage_message(device, round_id, then)
            except ServerError:
                return None  # the upload was stored: its answer is the ack, the poll tells why
            return None if found is None else Response(found, media_type=codec.OCTETS)

        return check

    async def download(self, request: Request) -> Response:
        device, round_id = await self.member(request)
        stage = _STAGE_OF_NAME.get(request.path_params["name"])
        if stage is None:
            raise NotFoundError(f"no server message named {shown(request.path_params['name'])!r};"
                                f" use one of {sorted(_STAGE_OF_NAME)}")

        body, held = await self.changes.hold(
            lambda: self._stage_message(device, round_id, Stage(stage)), self._wait(request))
        if body is None:
            return Response(status_code=204, headers={"Retry-After": str(self._after(round_id, held))})
        return Response(body, media_type=codec.OCTETS)

    async def _stage_message(self, device: DeviceRecord, round_id: int, stage: Stage) -> bytes | None:
        """``Coordinator.download``: a poll the cached round answers needs neither the lock nor
        the database, so it is answered here, without a trip to the thread pool (1,000 held
        polls wake at each close)."""
        found = self.co.cached_download(device, round_id, stage)
        if found is not NOT_CACHED:
            return found  # type: ignore[return-value]
        return await run_in_threadpool(self.co.download, device, round_id, stage)

    async def model(self, request: Request) -> Response:
        device = await self._caller(request)
        text = request.path_params.get("version")
        record: ModelRecord | None
        if text is None:  # the version the rollout statement assigns to this device
            version = await run_in_threadpool(rollout.served_version, self.state,
                                              device.id if device else None)
            record = None if version is None else await run_in_threadpool(self.state.model, version)
        else:
            version = parse_id(text, "version")
            record = None if version is None else await run_in_threadpool(self.state.model, version)
        if record is None:
            raise NotFoundError("no model published yet" if text is None
                                else f"no model version {shown(text)}")
        etag = f'"{record.sha256}"'
        headers = {"ETag": etag, "X-Edgerec-Model-Version": str(record.version),
                   "Cache-Control": "no-cache"}
        if _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        archive = await run_in_threadpool(self.state.model_archive, record.version)
        return Response(archive, media_type=codec.ZIP, headers=headers)

    async def _caller(self, request: Request) -> DeviceRecord | None:
        """The authenticated device; None for an anonymous caller where models are public."""
        if not self.config.public_models:
            return await self.device(request)
        if not request.headers.get("authorization"):
            return None
        try:
            return await self.device(request)
        except ServerError:
            return None

    async def rollout(self, request: Request) -> Response:
        """The newest signed rollout statement (204: none yet); devices verify it."""
        await self._caller(request)
        found = await run_in_threadpool(rollout.answer, self.state)
        return Response(status_code=204) if found is None else _message(found)

    async def audit(self, request: Request) -> Response:
        rows = await run_in_threadpool(audit.audit_rows, self.state, self.config.dp_delta,
                                       self.config.accountant)
        certificates = await run_in_threadpool(audit.certificate_rows, self.state)
        return JSONResponse({"delta": self.config.dp_delta, "accountant": self.config.accountant,
                             "public_key": self.co.publisher.public_key.hex(),
                             "authority": {"public_key": self.co.authority.public_key.hex(),
                                           "mode": self.co.authority.mode},
                             "certificates": certificates, "rounds": rows,
                             "rollouts": await run_in_threadpool(rollout.rollout_rows, self.state)})


    async def analytics(self, request: Request) -> Response:
        """Federated evaluation, per model version: for the operator (an operator token)."""
        await run_in_threadpool(operators.authenticate_operator, self.state,
                                request.headers.get("authorization"))
        evaluations = await run_in_threadpool(self.state.evaluations)
        return JSONResponse(analytics_doc(evaluations, self.config.dp_delta))


def _routes(api: Api) -> list[Route]:
    return [
        Route("/healthz", api.healthz),
        Route("/metrics", api.metrics),
        Route("/openapi.json", api.openapi),
        Route("/v1/public-key", api.public_key),
        Route("/v1/enrol", api.enrol, methods=["POST"]),
        Route("/v1/certificate", api.certificate),
        Route("/v1/rounds/current", api.current_round),
        # Ids are matched as text and parsed by the handler (validation.parse_id), so "abc" is
        # a 400 and 2**64 a 404 (an :int convertor made "abc" a 404 and passed 2**64 on to
        # overflow the database). The fixed paths come first: "current" is not an id.
        Route("/v1/rounds/{round_id}", api.round_status),
        Route("/v1/rounds/{round_id}/messages", api.upload, methods=["POST"]),
        Route("/v1/rounds/{round_id}/messages/{name}", api.download),
        Route("/v1/models/latest", api.model),
        Route("/v1/rollout", api.rollout),
        Route("/v1/models/{version}", api.model),
        Route("/v1/audit", api.audit),
        Route("/v1/analytics", api.analytics),
    ]


def create_app(coordinator: Coordinator, *, tick_interval_s: float | None = None) -> Any:
    """The ASGI app; with ``tick_interval_s`` > 0 a background task checks deadlines."""
    interval = coordinator.config.tick_interval_s if tick_interval_s is None else tick_interval_s
    api = Api(coordinator)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        api.changes.bind(asyncio.get_running_loop())  # held polls wake when a round moves on
        coordinator.on_change = api.changes.notify
        task = asyncio.create_task(_ticker(coordinator, interval)) if interval > 0 else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()

    app = Starlette(routes=_routes(api), lifespan=lifespan, exception_handlers=ERROR_HANDLERS)
    return AccessLog(app, coordinator)


async def _ticker(coordinator: Coordinator, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(coordinator.tick)
        except Exception as exc:  # keep ticking; the round is rebuilt from the database
            logging.getLogger("edgerec_server").error("tick_failed", exc_info=exc)
