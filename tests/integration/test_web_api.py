"""The HTTP API over a real SQLite event log filled by real (catalogue-checked) events, served by a real uvicorn."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from pilotage.bus.query import EventLog
from pilotage.bus.sqlite import SQLiteBus
from pilotage.catalogue import checked_event
from pilotage.errors import ConfigError
from pilotage.events import EventType
from pilotage.flows.supervisor import ControlPlaneLock
from pilotage.policy.approval import seal_problem
from pilotage.policy.approval_key import default_key_path, load_key
from pilotage.settings import Settings
from pilotage.web.security import check_binding
from pilotage.web.server import bind_api
from tests.fixtures.web_log import DECISION_ID, DEPLOYMENT, PROD, RUN, SERVICE, WAITING, ServedApi, fill_log

API = "/api/v1"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return (tmp_path / ".pilotage").resolve()


@pytest.fixture
def filled(home: Path) -> dict[str, str]:
    return fill_log(home)


def _serve(settings: Settings) -> Iterator[ServedApi]:
    served = ServedApi(settings).start()
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def api(home: Path, filled: dict[str, str]) -> Iterator[ServedApi]:
    yield from _serve(Settings(home=home))


def get(api: ServedApi, path: str, **params: object) -> httpx.Response:
    return httpx.get(f"{api.url}{API}{path}", params=params, timeout=30)  # type: ignore[arg-type]


def log_events(home: Path, type: str, run: str | None = None) -> list[object]:
    async def go() -> list[object]:
        async with SQLiteBus(f"sqlite:///{home / 'events.db'}") as bus:
            return list(await EventLog(bus).all(type, run=run))

    return asyncio.run(go())


def test_services_runs_and_events_are_read_from_the_log(api: ServedApi) -> None:
    (service,) = get(api, "/services").json()
    assert service["name"] == SERVICE and service["production_commit"] == PROD and service["owner"] == "team-shop"
    assert service["slo"]["summary"].startswith("rollback (breach) at the last watched step (step, 50%): 30/100")
    runs = get(api, "/runs").json()
    assert runs["total"] == 2 and [r["run_id"] for r in runs["items"]] == [WAITING, RUN]  # newest first
    done = get(api, f"/runs/{RUN}").json()
    assert (done["status"], done["outcome"], done["duration_s"], done["kind"]) == (
        "completed",
        "rolled_back",
        42,
        "deliver",
    )
    missing = get(api, "/runs/run-nope")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["detail"] == "no run 'run-nope' in the event log" and "Traceback" not in missing.text


def test_events_are_paged_and_filtered_by_type_run_and_service(api: ServedApi) -> None:
    first = get(api, "/events", limit=3).json()
    assert [e["offset"] for e in first["items"]] == [1, 2, 3] and first["has_more"] and first["next_after"] == 3
    second = get(api, "/events", limit=3, after=first["next_after"]).json()
    assert [e["offset"] for e in second["items"]] == [4, 5, 6]
    steps = get(api, "/events", type="dev.pilotage.deploy.step").json()["items"]
    assert [(e["data"]["step"], e["data"]["weight"]) for e in steps] == [(0, 10), (1, 50)]
    waiting = get(api, "/events", run=WAITING).json()["items"]
    assert [e["type"] for e in waiting] == [EventType.FLOW_STARTED, EventType.APPROVAL_REQUESTED]
    assert get(api, "/events", service="other").json() == {"items": [], "next_after": 0, "has_more": False}
    tail = get(api, "/events", after=1000).json()
    assert tail == {"items": [], "next_after": 1000, "has_more": False}


def test_a_decision_is_explained_as_pilotage_explain_does(api: ServedApi, home: Path) -> None:
    view = get(api, f"/decisions/{DECISION_ID}").json()
    assert (view["agent"], view["kind"], view["action"], view["run_id"]) == ("reliability", "slo.assessment",
                                                                             "rollback", RUN)  # fmt: skip
    (policy,) = log_events(home, EventType.POLICY_EVALUATED)
    assert view["policy_verdict"]["event_id"] == policy.id and view["policy_verdict"]["action"] == "rollback"  # type: ignore[attr-defined]
    assert [e["type"] for e in view["outcome_events"]] == [EventType.SLO_EVALUATED]
    not_a_decision = get(api, f"/decisions/{policy.id}")  # type: ignore[attr-defined]
    assert not_a_decision.status_code == 404


def test_a_rollout_shows_each_step_its_verdicts_series_and_where_it_rolled_back(api: ServedApi) -> None:
    (summary,) = get(api, "/rollouts").json()
    assert summary == summary | {"deployment_id": DEPLOYMENT, "status": "rolled_back", "service": SERVICE}
    rollout = get(api, f"/rollouts/{DEPLOYMENT}").json()
    assert [(s["step"], s["weight"]) for s in rollout["steps"]] == [(0, 10), (1, 50)]
    assert [[v["action"] for v in s["verdicts"]] for s in rollout["steps"]] == [["continue"], ["rollback"]]
    assert rollout["ended_at_step"] == 1 and rollout["end"]["type"] == EventType.DEPLOY_ROLLED_BACK
    verdict = rollout["steps"][1]["verdicts"][0]
    assert verdict["canary"]["error_rate"] == 0.3 and verdict["baseline"]["requests"] == 400
    first, second = verdict["canary_series"]
    # interval 1: 40 requests, 2 errors, 30 of them under 0.1 s; p50 inside the first bucket, p95 in the second
    assert (first["requests"], first["errors"], first["error_rate"]) == (40, 2, 0.05)
    assert first["p50_s"] == pytest.approx(0.1 * 20 / 30) and first["p95_s"] == pytest.approx(0.1 + 0.9 * 8 / 10)
    assert (second["requests"], second["errors"], second["error_rate"]) == (60, 28, pytest.approx(28 / 60, abs=1e-6))
    assert len(verdict["baseline_series"]) == 1 and get(api, "/rollouts/dep-nope").status_code == 404


def test_cost_ledger_market_and_fleet_graph(api: ServedApi) -> None:
    cost = get(api, "/cost").json()
    assert cost["totals"] == [{"service": SERVICE, "scale_downs": 1, "saving_usd_per_hour": 0.0416}]
    assert cost["entries"][0]["instances_stopped"] == 2 and cost["entries"][0]["run_id"] == RUN
    market = get(api, "/market").json()
    assert market["slot"]["resource"] and {r["event_type"] for r in market["earnings"]} >= {EventType.DEPLOY_PROMOTED}
    graph = get(api, "/fleet/graph").json()
    assert set(graph["services"]) == {SERVICE} and graph["mermaid"].startswith("flowchart LR")


def _approve(api: ServedApi, ident: str, **headers: str) -> httpx.Response:
    body = {"by": "alice", "reason": "checked the change"}
    return httpx.post(f"{api.url}{API}/approvals/{ident}/approve", json=body, headers=headers, timeout=30)


def test_an_approval_is_signed_names_who_and_refuses_cross_site_posts(
    api: ServedApi, filled: dict[str, str], home: Path
) -> None:
    ident = filled["approval_id"]
    assert [a["approval_id"] for a in get(api, "/approvals").json()] == [ident]
    assert _approve(api, ident, Origin="http://evil.example").status_code == 403
    assert _approve(api, ident, **{"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert _approve(api, ident, Host="evil.example").status_code == 403  # DNS rebinding
    assert log_events(home, EventType.APPROVAL_GRANTED) == []
    done = _approve(api, ident, Origin=api.url, **{"Sec-Fetch-Site": "same-origin"})
    assert done.status_code == 200 and done.json()["by"] == "alice"
    (granted,) = log_events(home, EventType.APPROVAL_GRANTED, run=WAITING)
    assert granted.source == "/pilotage/api" and granted.data["by"] == "alice"  # type: ignore[attr-defined]
    assert seal_problem(load_key(default_key_path()), granted) is None  # type: ignore[arg-type]
    assert get(api, "/approvals").json() == []
    again = _approve(api, ident)
    assert again.status_code == 409 and "already granted by alice" in again.json()["detail"]
    assert _approve(api, "apr-000000000000").status_code == 404
    nobody = httpx.post(f"{api.url}{API}/approvals/{ident}/deny", json={"by": ""}, timeout=30)
    assert nobody.status_code == 422 and nobody.json()["detail"].startswith("body.by:")


def test_with_a_token_every_write_needs_it(home: Path, filled: dict[str, str]) -> None:
    token = "tok-7c1d9e2a55f04b3f"
    for served in _serve(Settings(home=home, api_token=token)):
        url = f"{served.url}{API}/approvals/{filled['approval_id']}/deny"
        assert httpx.post(url, json={"by": "bob"}, timeout=30).status_code == 401
        wrong = httpx.post(url, json={"by": "bob"}, headers={"Authorization": "Bearer nope"}, timeout=30)
        assert wrong.status_code == 401 and token not in wrong.text
        assert get(served, "/services").status_code == 200  # reads on loopback need no token
        ok = httpx.post(url, json={"by": "bob"}, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert ok.status_code == 200 and ok.json()["type"] == EventType.APPROVAL_DENIED


def test_another_interface_than_loopback_needs_a_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="refusing to serve the HTTP API on 0.0.0.0 without an access token"):
        check_binding("0.0.0.0", None)
    check_binding("127.0.0.1", None)
    bind_api(Settings(home=tmp_path, api_host="0.0.0.0", api_token="tok-12345678"), 0).close()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PILOTAGE_API_HOST": "0.0.0.0",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}  # fmt: skip
    shown = subprocess.run([sys.executable, "-m", "pilotage", "serve"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    assert shown.returncode != 0 and "Traceback" not in shown.stderr
    assert "refusing to serve the HTTP API on 0.0.0.0 without an access token" in shown.stderr
    assert not (tmp_path / ".pilotage" / "events.db").exists()  # refused before anything started


def test_pilotage_serve_serves_the_api_and_stops_it(tmp_path: Path, filled: dict[str, str], home: Path) -> None:
    source = str(Path(__file__).resolve().parents[2] / "src")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PILOTAGE_HOME": str(home),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "PYTHONPATH": source}  # fmt: skip
    serve = subprocess.Popen([sys.executable, "-m", "pilotage", "serve", "--json", "--api-port", "0"], cwd=tmp_path,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert serve.stdout is not None
        ready = json.loads(serve.stdout.readline())
        assert ready["serving"] and ready["api"].startswith("http://127.0.0.1:")
        services = httpx.get(f"{ready['api']}/services", timeout=30).json()
        assert [s["name"] for s in services] == [SERVICE]
    finally:
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=60)
    assert serve.returncode == 0 and "Traceback" not in err
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{ready['api']}/services", timeout=5)


def _read_stream(api: ServedApi, publish_after_open: bool, home: Path, **params: object) -> list[str]:
    """Open the event stream, optionally publish one event, return the ``event:`` lines of the first 2 events."""
    found: list[str] = []
    with httpx.stream("GET", f"{api.url}{API}/events/stream", params=params, timeout=30) as response:  # type: ignore[arg-type]
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines).startswith(": pilotage event stream")
        if publish_after_open:
            _publish_note(home)
        for line in lines:
            if line.startswith("event: "):
                found.append(line.removeprefix("event: "))
            if len(found) == (1 if publish_after_open else 2):
                return found
    return found


def _publish_note(home: Path) -> None:
    async def go() -> None:
        async with SQLiteBus(f"sqlite:///{home / 'events.db'}") as bus:
            data = {"run_id": "run-new", "status": "completed", "outcome": "none", "error": None}
            await bus.publish(checked_event(EventType.FLOW_COMPLETED, data, source="/t", runid="run-new"))

    asyncio.run(go())


def test_the_event_stream_replays_from_an_offset_and_follows_new_events(api: ServedApi, home: Path) -> None:
    assert _read_stream(api, False, home, after=0) == [EventType.SERVICE_ADDED, EventType.FLOW_STARTED]
    assert _read_stream(api, True, home) == [EventType.FLOW_COMPLETED]  # from the end of the log: new ones only


def test_a_delivery_is_handed_to_the_control_plane(home: Path, filled: dict[str, str], tmp_path: Path) -> None:
    from tests.fixtures.fleet import make_service_repo, trivial_change

    repo = make_service_repo("catalog", tmp_path / "repos")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    descriptor = yaml.safe_load((repo / "pilotage.yaml").read_text(encoding="utf-8"))

    async def add() -> None:
        async with SQLiteBus(f"sqlite:///{home / 'events.db'}") as bus:
            data = {"service": "catalog", "repo_path": str(repo), "commit": head, "stable_port": 18101,
                    "descriptor": descriptor}  # fmt: skip
            await bus.publish(checked_event(EventType.SERVICE_ADDED, data, source="/t", subject="catalog"))

    asyncio.run(add())
    change = trivial_change(repo)
    for served in _serve(Settings(home=home)):
        url = f"{served.url}{API}/deliveries"
        refused = httpx.post(url, json={"service": "catalog", "rev": change}, timeout=30)
        assert refused.status_code == 409 and "no control plane serves" in refused.json()["detail"]
        lock = ControlPlaneLock(home, "test")
        lock.acquire()
        try:
            assert httpx.post(url, json={"service": "nope"}, timeout=30).status_code == 409
            same = httpx.post(url, json={"service": "catalog", "rev": head}, timeout=30)
            assert same.status_code == 409 and "already the production commit" in same.json()["detail"]
            done = httpx.post(url, json={"service": "catalog", "rev": "main"}, timeout=60)
        finally:
            lock.release()
        assert done.status_code == 202, done.text
        submitted = done.json()
        assert (submitted["commit"], submitted["production_commit"]) == (change, head)
        (start,) = log_events(home, EventType.FLOW_QUEUED, run=submitted["run_id"])  # issue 19: serve's queue
        assert start.data["kind"] == "deliver" and start.data["rev"] == change  # type: ignore[attr-defined]
        assert start.id == submitted["event_id"]  # type: ignore[attr-defined]
