"""The dashboard: server-rendered pages over the API's own data functions (README "Dashboard").

Pages (HTML, outside ``/api/v1``): ``/`` the fleet, ``/runs/{run_id}`` a run's live timeline,
``/rollouts/{deployment_id}`` a rollout step by step with its charts, ``/decisions/{id}``, ``/approvals``,
``/market``, ``/cost``, and ``/login`` when an access token is set. The data comes from the owners the API uses
(:mod:`pilotage.web.views`, :mod:`pilotage.web.rollouts`, :mod:`pilotage.policy.approval`); the charts from
:mod:`pilotage.web.charts`; the markup from the Jinja2 templates of ``pilotage/web/templates`` with autoescape on
(everything read from the log is untrusted: no template marks event data safe). The one script,
``static/dashboard.js``, follows a run through ``/api/v1/events/stream`` and answers approvals through the API's
``POST /api/v1/approvals/{id}/approve|deny``: the dashboard has no write of its own besides the login.

Every page's data is masked before rendering and the rendered text once more (:func:`pilotage.secrets.mask`):
no configured secret reaches a page. Pages carry a Content-Security-Policy allowing only their own origin.
"""

from __future__ import annotations

import getpass
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader

from pilotage.bus.base import Bus
from pilotage.bus.query import EventLog
from pilotage.errors import InputError
from pilotage.events import EventType
from pilotage.graph.base import Graph
from pilotage.report import stage_of, summarize
from pilotage.secrets import mask, masker
from pilotage.settings import Settings
from pilotage.web import charts, rollouts, views
from pilotage.web.security import COOKIE, SESSION_S, issue, read_cookie, session_name

__all__ = ["CSP", "PAGES", "install"]

#: The dashboard's pages (path, navigation label); the run, rollout and decision pages are reached by links.
PAGES = (("/", "Fleet"), ("/approvals", "Approvals"), ("/market", "Market"), ("/cost", "Cost"))
#: Only the page's own origin: no inline script, no third-party anything (the SVG charts are inline markup).
CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
#: Events a page or a rows request shows at once (a longer run: the script asks for the rows after the last one).
TIMELINE_LIMIT = 1000


def _clock(iso: Any) -> str:
    """``HH:MM:SS`` of an ISO-8601 time (the text itself when it has no ``T``)."""
    text = str(iso or "")
    return text.partition("T")[2][:8] or text


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("pilotage.web", "templates"), autoescape=True)
    env.filters["short"] = lambda value, n=12: str(value or "")[:n]
    env.filters["pct"] = lambda value: "" if value is None else f"{float(value) * 100:.2f} %"
    env.filters["clock"] = _clock
    return env


class Pages:
    """Renders the pages of one app over its backends.

    Args:
        settings: the control plane's settings (the token decides whether the login form is needed).
        bus, graph: the open backends.
        key: returns the operator's approval key (loaded on first use by the API's state).
    """

    def __init__(self, settings: Settings, bus: Bus, graph: Graph, key: Callable[[], bytes]) -> None:
        self.settings, self.bus, self.graph, self.key = settings, bus, graph, key
        self.env = _environment()

    def who(self, request: Request) -> tuple[str, bool]:
        """Who answers from this browser, and whether that is fixed.

        The session's name (fixed), else the OS user of ``pilotage serve`` as the CLI's default (the form lets the
        person type theirs).
        """
        name = session_name(self.settings.api_token, read_cookie(request.headers))
        return (name, True) if name else (getpass.getuser(), False)

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        """Render ``template`` with the masked ``context``; the rendered text is masked again."""
        html = self.env.get_template(template).render(
            pages=PAGES, path=request.url.path, token=bool(self.settings.api_token), **context
        )
        return HTMLResponse(masker().mask_text(html), status, headers={"Content-Security-Policy": CSP})

    def missing(self, request: Request, what: str) -> HTMLResponse:
        """A 404 page naming what was not found (masked, escaped)."""
        return self.render(request, "missing.html", 404, what=mask(what))


async def _timeline(bus: Bus, run_id: str, after: int) -> dict[str, Any]:
    """The rows of ``run_id``'s timeline after offset ``after``: offset, time, stage, type, summary, links."""
    page = await EventLog(bus).records("*", run=run_id, after=after, limit=TIMELINE_LIMIT)
    rows = []
    for record in page:
        event = record.event
        data = event.data if isinstance(event.data, dict) else {}
        decision = event.id if event.type == EventType.DECISION else data.get("decision_id")
        rows.append({
            "offset": record.offset, "time": event.time, "stage": stage_of(event),
            "type": event.type.removeprefix(EventType.PREFIX), "summary": summarize(event),
            "decision": decision, "deployment": data.get("deployment_id"),
        })  # fmt: skip
    return {"rows": mask(rows), "last": page[-1].offset if page else after}


async def _or_none(lookup: Awaitable[dict[str, Any]]) -> dict[str, Any] | None:
    """Await a view of :mod:`pilotage.web.views`; None when it names something unknown (its InputError)."""
    try:
        return await lookup
    except InputError:
        return None


def _reads(router: APIRouter, pages: Pages) -> None:  # noqa: C901 - one nested function per page, flat
    bus = pages.bus

    @router.get("/", response_class=HTMLResponse)
    async def fleet(request: Request) -> Response:
        services = mask(await views.services(bus))
        graph = mask(await views.fleet_graph(bus, pages.graph))
        recent = mask(await views.runs(bus, service=None, offset=0, limit=15))
        deployments = mask((await rollouts.rollouts(bus))[:15])
        return pages.render(request, "fleet.html", services=services, graph=graph, runs=recent["items"],
                            rollouts=deployments)  # fmt: skip

    @router.get("/runs/{run_id}", response_class=HTMLResponse)
    async def run(request: Request, run_id: str) -> Response:
        detail = await _or_none(views.run_detail(bus, run_id))
        if detail is None:
            return pages.missing(request, f"run {run_id}")
        timeline = await _timeline(bus, run_id, 0)
        return pages.render(request, "run.html", run=mask(detail), **timeline)

    @router.get("/runs/{run_id}/rows", response_class=HTMLResponse)
    async def run_rows(request: Request, run_id: str, after: int = 0) -> Response:
        """The timeline rows after ``after`` (the script appends them); ``X-Run-Status`` is the run's status."""
        detail = await _or_none(views.run_detail(bus, run_id))
        if detail is None:
            return pages.missing(request, f"run {run_id}")
        response = pages.render(request, "rows.html", **await _timeline(bus, run_id, max(after, 0)))
        response.headers["X-Run-Status"] = f"{detail['status']} {detail['outcome']}".strip()
        return response

    @router.get("/rollouts/{deployment_id}", response_class=HTMLResponse)
    async def rollout(request: Request, deployment_id: str) -> Response:
        found = await rollouts.rollout_view(bus, deployment_id)
        if found is None:
            return pages.missing(request, f"rollout {deployment_id}")
        view = mask(found)
        drawn = [{**step, "verdicts": [{**v, "charts": charts.step_charts(v)} for v in step["verdicts"]]}
                 for step in view["steps"]]  # fmt: skip
        return pages.render(request, "rollout.html", rollout=view, steps=drawn)

    @router.get("/decisions/{decision_id}", response_class=HTMLResponse)
    async def decision(request: Request, decision_id: str) -> Response:
        view = await _or_none(views.decision(bus, decision_id))
        if view is None:
            return pages.missing(request, f"decision {decision_id}")
        return pages.render(request, "decision.html", d=mask(view))

    @router.get("/approvals", response_class=HTMLResponse)
    async def approvals(request: Request) -> Response:
        from pilotage.policy.approval import pending_approvals

        waiting = mask(await pending_approvals(bus, pages.key()))
        who, fixed = pages.who(request)
        return pages.render(request, "approvals.html", approvals=waiting, who=mask(who), fixed=fixed)

    @router.get("/market", response_class=HTMLResponse)
    async def market(request: Request) -> Response:
        return pages.render(request, "market.html", m=mask(await views.market(bus, 50)))

    @router.get("/cost", response_class=HTMLResponse)
    async def cost(request: Request) -> Response:
        return pages.render(request, "cost.html", ledger=mask(await views.cost_ledger(bus)))


def _local(target: str) -> str:
    """``target`` if it is a path of this site (``/...``, not ``//host``), else ``/``: no open redirect."""
    parts = urlsplit(target)
    ok = target.startswith("/") and not target.startswith("//") and not parts.scheme and not parts.netloc
    return target if ok and "\\" not in target else "/"


def _login(router: APIRouter, pages: Pages) -> None:
    @router.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, next: str = "/") -> Response:
        return pages.render(request, "login.html", next=_local(next), failed=False)

    @router.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        """Check the form's token (constant time); on a match set the session cookie and go to ``next``."""
        import hmac

        form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
        token, name = (form.get("token") or [""])[0], (form.get("name") or [""])[0].strip()[:200]
        target = _local((form.get("next") or ["/"])[0])
        expected = pages.settings.api_token
        if not expected or not name or not hmac.compare_digest(token.encode(), expected.encode()):
            return pages.render(request, "login.html", 401, next=target, failed=True)
        response = RedirectResponse(target, 303)
        response.set_cookie(COOKIE, issue(expected, name), max_age=SESSION_S, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")  # fmt: skip
        return response

    @router.post("/logout")
    async def logout() -> Response:
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE, path="/")
        return response


def login_redirect(path: str) -> Response:
    """Where a browser without a session goes when a page needs the token: the login form, then back."""
    from urllib.parse import quote

    return RedirectResponse(f"/login?next={quote(_local(path))}", 303)


def install(app: FastAPI, settings: Settings, bus: Bus, graph: Graph, key: Callable[[], bytes]) -> None:
    """Add the dashboard's pages, its login and its static files (``/static``) to ``app``."""
    pages = Pages(settings, bus, graph, key)
    router = APIRouter(include_in_schema=False)
    _reads(router, pages)
    _login(router, pages)
    app.include_router(router)
    app.mount("/static", StaticFiles(packages=[("pilotage.web", "static")]), name="static")
