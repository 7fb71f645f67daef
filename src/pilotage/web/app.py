"""The control plane's HTTP API: a FastAPI application under ``/api/v1`` (README "HTTP API").

:func:`create_app` builds it over open backends (the event log's bus and the graph): ``pilotage serve`` passes its
own, tests a SQLite log of their own. The OpenAPI document is ``/api/v1/openapi.json`` (interactive docs at
``/api/v1/docs``). Reads come from :mod:`pilotage.web.views` and :mod:`pilotage.web.rollouts`; the two writes are
answering an approval (:func:`pilotage.policy.approval.answer`, signed with the operator's key, naming ``by``) and
submitting a delivery (checked as ``pilotage deliver`` checks it, then handed to ``pilotage serve`` as its
``flow.started``). Every answer is masked (:func:`pilotage.secrets.mask`: configured secrets never leave), every
error is a problem document (``application/problem+json``: status, title, one-line detail, hint), and
:class:`~pilotage.web.security.Guard` applies the token and same-origin rules before any route runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pilotage.bus.base import Bus
from pilotage.bus.query import EventLog
from pilotage.errors import BackendError, InputError, PilotageError
from pilotage.graph.base import Graph
from pilotage.secrets import mask, register_secrets
from pilotage.settings import Settings
from pilotage.web import models, rollouts, views
from pilotage.web.dashboard import install as install_dashboard
from pilotage.web.dashboard import login_redirect
from pilotage.web.security import Guard

__all__ = ["API_PREFIX", "STREAM_POLL_S", "ApiProblem", "create_app"]

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
#: Seconds between two reads of the log by an event stream; a comment line keeps the connection alive each time.
STREAM_POLL_S = 0.5
_PROBLEM = "application/problem+json"
_ERRORS = {
    400: "Malformed request (a body that is not JSON) or bad input",
    401: "Access token missing or wrong",
    403: "Refused by the same-origin or Host rule",
    404: "Not found",
    409: "Conflicts with the state or the configuration",
    422: "Invalid request",
    503: "Event log unavailable",
}
_PROBLEM_DOC: dict[int | str, dict[str, Any]] = {
    status: {"model": models.Problem, "description": text, "content": {_PROBLEM: {}}}
    for status, text in _ERRORS.items()
}


class ApiProblem(Exception):
    """An error the API answers as a problem document with ``status``."""

    def __init__(self, status: int, detail: str, hint: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.hint = status, detail, hint


def problem(status: int, detail: str, hint: str | None = None, headers: dict[str, str] | None = None) -> Response:
    """Return a problem-document response (RFC 9457); ``detail`` is masked."""
    from http import HTTPStatus

    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body = models.Problem(title=title, status=status, detail=mask(detail), hint=mask(hint) if hint else None)
    return JSONResponse(body.model_dump(), status_code=status, media_type=_PROBLEM, headers=headers)


def _install_errors(app: FastAPI) -> None:
    """Every error becomes a problem document; an unexpected one is logged and answered without its traceback."""

    @app.exception_handler(ApiProblem)
    async def _api(_request: Request, exc: ApiProblem) -> Response:
        return problem(exc.status, exc.detail, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return problem(422, f"{where}: {first.get('msg')}", "see the operation in /api/v1/openapi.json")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> Response:
        return problem(exc.status_code, str(exc.detail), None, dict(exc.headers or {}))

    @app.exception_handler(PilotageError)
    async def _pilotage(_request: Request, exc: PilotageError) -> Response:
        status = 503 if isinstance(exc, BackendError) else 400 if isinstance(exc, InputError) else 409
        return problem(status, exc.message, exc.hint)


def _unexpected(exc: Exception) -> Response:
    """A bug: logged with its traceback (the control plane's log file), answered as a 500 without it."""
    log.error("HTTP API: unexpected %s", type(exc).__name__, exc_info=exc)
    return problem(500, f"internal error ({type(exc).__name__})", "see the control plane's log file")


def _install_guard(app: FastAPI, guard: Guard) -> None:
    @app.middleware("http")
    async def _guarded(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        refusal = guard.check(request.method, request.url.scheme, request.headers, path)
        if refusal is not None and refusal.status == 401 and request.method == "GET" and not path.startswith("/api/"):
            return login_redirect(path)  # a dashboard page: the login form, then back
        if refusal is not None:
            return problem(refusal.status, refusal.detail, refusal.hint)
        try:
            return await call_next(request)
        except Exception as exc:  # noqa: BLE001 - starlette would re-raise it to uvicorn, which prints it
            return _unexpected(exc)


async def _or_404(work: Awaitable[Any]) -> Any:
    """Await ``work``; an InputError (an unknown name) becomes a 404 problem naming it."""
    try:
        return await work
    except InputError as exc:
        raise ApiProblem(404, exc.message, exc.hint) from exc


class _State:
    """What the routes share: backends, settings, the guard and the operator's approval key (loaded on first use)."""

    def __init__(self, settings: Settings, bus: Bus, graph: Graph, guard: Guard) -> None:
        self.settings, self.bus, self.graph, self.guard = settings, bus, graph, guard
        self._key: bytes | None = None

    def key(self) -> bytes:
        from pilotage.policy.approval_key import key_path, load_key

        if self._key is None:
            self._key = load_key(key_path(self.settings))
        return self._key


def _reads(router: APIRouter, st: _State) -> None:  # noqa: C901 - one nested function per route, flat
    @router.get("/services", response_model=list[models.ServiceOut], summary="Managed services")
    async def list_services() -> Any:
        return mask(await views.services(st.bus))

    @router.get("/services/{name}", response_model=models.ServiceDetail, summary="One managed service")
    async def show_service(name: str) -> Any:
        return mask(await _or_404(views.service_detail(st.bus, st.graph, name)))

    @router.get("/fleet/graph", response_model=models.FleetGraph, summary="The fleet's dependency graph")
    async def fleet_graph() -> Any:
        return mask(await views.fleet_graph(st.bus, st.graph))

    @router.get("/runs", response_model=models.RunPage, summary="Runs and deliveries, newest first")
    async def list_runs(
        service: str | None = None,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> Any:
        return mask(await views.runs(st.bus, service=service, offset=offset, limit=limit))

    @router.get("/runs/{run_id}", response_model=models.RunOut, summary="One run")
    async def show_run(run_id: str) -> Any:
        return mask(await _or_404(views.run_detail(st.bus, run_id)))

    @router.get("/events", response_model=models.EventPage, summary="Events of the log, oldest first, paged")
    async def list_events(
        type: Annotated[str, Query(max_length=200, description="Type glob, e.g. dev.pilotage.deploy.*")] = "*",
        run: Annotated[str | None, Query(max_length=200)] = None,
        service: Annotated[str | None, Query(max_length=200)] = None,
        after: Annotated[int, Query(ge=0, description="Only offsets > after (next_after of the previous page)")] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        page = await views.event_page(st.bus, type=type, run=run, service=service, after=after, limit=limit)
        return mask(page)

    @router.get("/decisions/{decision_id}", response_model=models.DecisionView, summary="A decision, explained")
    async def show_decision(decision_id: str) -> Any:
        return mask(await _or_404(views.decision(st.bus, decision_id)))

    @router.get("/rollouts", response_model=list[models.RolloutSummary], summary="Rollouts, newest first")
    async def list_rollouts() -> Any:
        return mask(await rollouts.rollouts(st.bus))

    @router.get("/rollouts/{deployment_id}", response_model=models.RolloutOut, summary="A rollout, step by step")
    async def show_rollout(deployment_id: str) -> Any:
        found = await rollouts.rollout_view(st.bus, deployment_id)
        if found is None:
            raise ApiProblem(404, f"no rollout {deployment_id!r} in the event log", "list them: GET /api/v1/rollouts")
        return mask(found)

    @router.get("/market", response_model=models.AuctionsOut, summary="Credit balances and auctions")
    async def show_market(limit: Annotated[int, Query(ge=0, le=1000)] = 20) -> Any:
        return mask(await views.market(st.bus, limit))

    @router.get("/cost", response_model=models.CostLedger, summary="The cost ledger: scale-downs and savings")
    async def show_cost() -> Any:
        return mask(await views.cost_ledger(st.bus))

    @router.get("/approvals", response_model=list[models.ApprovalOut], summary="Actions waiting for a person")
    async def list_approvals() -> Any:
        from pilotage.policy.approval import pending_approvals

        return mask(await pending_approvals(st.bus, st.key()))


def _writes(router: APIRouter, st: _State) -> None:
    async def respond(approval_id: str, body: models.Answer, granted: bool, http: Request) -> Any:
        from pilotage.policy.approval import answer, find_approval

        who = st.guard.session_of(http.headers)
        if who is not None and body.by != who:  # a dashboard session answers under the name it logged in with
            raise ApiProblem(403, f"this session answers as {who!r}, not {body.by!r}", "log in under your own name")
        key = st.key()
        request, _ = await find_approval(st.bus, approval_id, key)
        if request is None:
            raise ApiProblem(404, f"no approval {approval_id} was requested", "list them: GET /api/v1/approvals")
        try:
            event = await answer(st.bus, approval_id, granted=granted, by=body.by, key=key, reason=body.reason,
                                 source="/pilotage/api")  # fmt: skip
        except InputError as exc:
            raise ApiProblem(409, exc.message, exc.hint) from exc
        d = event.data
        return mask({"event_id": event.id, "type": event.type, "run_id": event.runid, "approval_id": approval_id,
                     "action": d["action"], "by": d["by"], "reason": d["reason"], "key_id": d["key_id"]})  # fmt: skip

    @router.post("/approvals/{approval_id}/approve", response_model=models.AnswerOut,
                 summary="Approve a waiting action (signed, names who)")  # fmt: skip
    async def approve(approval_id: str, body: models.Answer, request: Request) -> Any:
        return await respond(approval_id, body, True, request)

    @router.post("/approvals/{approval_id}/deny", response_model=models.AnswerOut,
                 summary="Deny a waiting action (signed, names who)")  # fmt: skip
    async def deny(approval_id: str, body: models.Answer, request: Request) -> Any:
        return await respond(approval_id, body, False, request)

    @router.post("/deliveries", response_model=models.Submitted, status_code=202,
                 summary="Hand a delivery to pilotage serve")  # fmt: skip
    async def submit(body: models.DeliveryIn) -> Any:
        from pilotage.web.submit import submit_delivery

        try:
            return mask(await submit_delivery(st.settings, st.bus, body))
        except InputError as exc:  # not managed, no such revision, already production, one still running
            raise ApiProblem(409, exc.message, exc.hint) from exc


def _stream(app: FastAPI, st: _State) -> None:
    @app.get(f"{API_PREFIX}/events/stream", include_in_schema=False)
    async def stream(
        request: Request,
        type: Annotated[str, Query(max_length=200)] = "*",
        run: Annotated[str | None, Query(max_length=200)] = None,
        service: Annotated[str | None, Query(max_length=200)] = None,
        after: Annotated[int | None, Query(ge=0)] = None,
        named: bool = True,
    ) -> StreamingResponse:
        """Server-sent events: each new event as ``id: <offset>``, ``event: <type>``, ``data: <EventOut JSON>``.

        Starts after ``after`` (or the ``Last-Event-ID`` a reconnecting browser sends), else at the end of the log.
        ``named=false`` leaves the ``event:`` line out, so a browser's ``EventSource.onmessage`` gets every type.
        """
        resume = request.headers.get("last-event-id", "")
        start = int(resume) if resume.isdigit() else after
        offset = start if start is not None else await st.bus.last_offset()
        return StreamingResponse(
            _event_lines(request, st.bus, offset, type=type, run=run, service=service, named=named),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


async def _event_lines(
    request: Request, bus: Bus, offset: int, *, type: str, run: str | None, service: str | None, named: bool = True
) -> AsyncIterator[str]:
    log_ = EventLog(bus)
    yield ": pilotage event stream\n\n"
    while not await request.is_disconnected():
        page = await log_.records(type, run=run, after=offset, limit=500, subject=service)
        for record in page:
            data = json.dumps(mask(views.event_out(record.offset, record.event)), separators=(",", ":"))
            name = f"event: {record.event.type}\n" if named else ""
            yield f"id: {record.offset}\n{name}data: {data}\n\n"
        if page:
            offset = page[-1].offset
            continue
        await asyncio.sleep(STREAM_POLL_S)
        yield ": keep-alive\n\n"


def create_app(settings: Settings, bus: Bus, graph: Graph, *, host: str | None = None) -> FastAPI:
    """Return the API application over ``bus`` and ``graph``.

    Args:
        settings: the control plane's settings (their secrets are registered with the masker here too).
        bus: the open event log.
        graph: the open graph.
        host: the interface the API is bound to (default ``settings.api_host``): decides the Guard's rules.
    """
    register_secrets(settings.secret_values())
    app = FastAPI(
        title="Pilotage control plane",
        version="1",
        description="Services, runs, rollouts, decisions, approvals, credits and costs of a Pilotage control plane.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    guard = Guard(host or settings.api_host, settings.api_token)
    state = _State(settings, bus, graph, guard)
    router = APIRouter(prefix=API_PREFIX, responses=_PROBLEM_DOC)
    _reads(router, state)
    _writes(router, state)
    _stream(app, state)
    app.include_router(router)
    install_dashboard(app, settings, bus, graph, state.key)
    _install_errors(app)
    _install_guard(app, guard)
    return app
