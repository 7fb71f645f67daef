"""The dashboard's pages over a real event log, served by a real uvicorn: values, escaping, secrets, the session.

The log is :func:`tests.fixtures.web_log.fill_log`'s delivery (a canary that passed step 0 and rolled back at step
1, a scale-down, a run waiting for a signed approval), plus, per test, hostile events of a run's own making.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pilotage.bus.sqlite import SQLiteBus
from pilotage.catalogue import checked_event
from pilotage.events import EventType
from pilotage.policy.approval import seal_problem
from pilotage.policy.approval_key import default_key_path, load_key
from pilotage.settings import Settings
from pilotage.web.security import COOKIE
from tests.fixtures.web_log import DECISION_ID, DEPLOYMENT, PROD, RUN, SERVICE, WAITING, ServedApi
from tests.integration import test_web_api as web_api
from tests.integration.test_web_api import _serve, log_events

TOKEN = "tok-5e6f7a8b9c0d1e2f"
PASSWORD = "pw-prom-3c4d5e6f7a8b"
HOSTILE = "<script>alert('pwned')</script>"
PAGES = ("/", f"/runs/{RUN}", f"/runs/{WAITING}", f"/rollouts/{DEPLOYMENT}", f"/decisions/{DECISION_ID}",
         "/approvals", "/market", "/cost", "/login")  # fmt: skip

home, filled = web_api.home, web_api.filled  # the API tests' fixtures: the state folder, the filled log


@pytest.fixture
def site(home: Path, filled: dict[str, str]) -> Iterator[ServedApi]:
    yield from _serve(Settings(home=home))


def page(site: ServedApi, path: str, **kw: object) -> httpx.Response:
    return httpx.get(f"{site.url}{path}", timeout=30, **kw)  # type: ignore[arg-type]


def _publish_hostile(home: Path, text: str) -> None:
    """A run's process writes what it likes: a run whose request and a decision whose rationale carry ``text``."""

    async def go() -> None:
        async with SQLiteBus(f"sqlite:///{home / 'events.db'}") as bus:
            start = {"run_id": "run-hostile", "service": SERVICE, "spec_path": "", "request": text,
                     "workdir": str(home), "kind": "generate"}  # fmt: skip
            await bus.publish(checked_event(EventType.FLOW_STARTED, start, source="/x", runid="run-hostile"))
            decision = {"id": "d-hostile", "agent": "codegen", "kind": "codegen.plan", "inputs": {"note": text},
                        "action": "plan", "rule": text, "score": None, "rationale": text}  # fmt: skip
            await bus.publish(checked_event(EventType.DECISION, decision, source="/x", runid="run-hostile",
                                            id="d-hostile"))  # fmt: skip

    asyncio.run(go())


def test_every_page_shows_the_log_s_values(site: ServedApi, filled: dict[str, str]) -> None:
    for path in PAGES:
        shown = page(site, path)
        assert shown.status_code == 200, path
        assert shown.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in shown.headers["content-security-policy"]
    fleet = page(site, "/").text
    assert f'data-service="{SERVICE}"' in fleet and PROD[:12] in fleet and "team-shop" in fleet
    assert "rollback (breach) at the last watched step (step, 50%): 30/100 errors" in fleet
    assert f'href="/rollouts/{DEPLOYMENT}"' in fleet and f'href="/runs/{RUN}"' in fleet
    decision = page(site, f"/decisions/{DECISION_ID}").text
    assert 'Decision: slo.assessment → <span class="action">rollback</span>' in decision
    assert "canary fails" in decision and "rollback: allow" in decision and "rollback.rego" in decision
    approvals = page(site, "/approvals").text
    assert f'data-approval="{filled["approval_id"]}"' in approvals
    assert "a deploy of checkout on Friday needs approval" in approvals
    cost = page(site, "/cost").text
    assert re.search(rf"<td>{SERVICE}</td><td>1</td><td>0\.0416</td>", cost)
    assert page(site, "/runs/run-nope").status_code == 404 and "No run run-nope" in page(site, "/runs/run-nope").text
    assert page(site, "/rollouts/dep-nope").status_code == 404


def test_the_rollout_page_draws_each_step_and_marks_the_rollback(site: ServedApi) -> None:
    html = page(site, f"/rollouts/{DEPLOYMENT}").text
    assert re.findall(r'data-rolled-back-step="(\d+)"', html) == ["1"]
    assert "Rolled back at step 1: error rate" in html
    steps = re.findall(r'<section class="step( rolled-back)?" id="step-(\d)"', html)
    assert steps == [("", "0"), (" rolled-back", "1")]
    assert html.count('<span class="mark">rolled back at step 1</span>') == 1
    assert html.count('<svg class="chart"') == 8  # 4 charts × 2 verdicts
    # step 1: canary interval 2 has 28 of 60 requests failing → the error-rate chart's top label is 46.7 (%)
    assert '<text class="axis" x="42" y="26" text-anchor="end">46.7</text>' in html
    assert html.count('data-series="canary"') == 8 and html.count('data-series="baseline"') == 8
    assert "error rate 0.3 &gt; 0.05" in html and "30.00 %" in html  # the reason, the canary's error rate


def test_the_timeline_rows_after_an_offset_carry_the_run_s_status(site: ServedApi) -> None:
    full = page(site, f"/runs/{RUN}").text
    offsets = [int(o) for o in re.findall(r'<tr data-offset="(\d+)"', full)]
    assert len(offsets) == 12 and offsets == sorted(offsets)  # flow.started … flow.completed of RUN
    assert f'data-after="{offsets[-1]}"' in full
    rows = page(site, f"/runs/{RUN}/rows", params={"after": offsets[-3]})
    assert [int(o) for o in re.findall(r'data-offset="(\d+)"', rows.text)] == offsets[-2:]
    assert rows.headers["x-run-status"] == "completed rolled_back"
    assert page(site, f"/runs/{RUN}/rows", params={"after": offsets[-1]}).text.strip() == ""
    assert f'href="/decisions/{DECISION_ID}"' in full and f'href="/rollouts/{DEPLOYMENT}"' in full


def test_text_from_the_log_is_escaped_everywhere(site: ServedApi, home: Path) -> None:
    _publish_hostile(home, HOSTILE)
    for path in ("/", "/runs/run-hostile", "/decisions/d-hostile"):
        html = page(site, path).text
        assert HOSTILE not in html and "<script>alert" not in html, path
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in page(site, "/decisions/d-hostile").text


def test_no_secret_of_the_settings_reaches_a_page_or_an_answer(home: Path, filled: dict[str, str]) -> None:
    settings = Settings(home=home, api_token=TOKEN, metrics_source_url=f"http://prom:{PASSWORD}@127.0.0.1:9/")
    _publish_hostile(home, f"deliver with {TOKEN} and {PASSWORD}")  # a run that leaks both into the log
    for site in _serve(settings):
        jar = {COOKIE: _login(site, "carol").cookies[COOKIE]}
        answers = [page(site, path, cookies=jar) for path in (*PAGES, "/runs/run-hostile", "/decisions/d-hostile")]
        answers += [page(site, f"/api/v1{p}") for p in ("/runs", "/runs/run-hostile", "/decisions/d-hostile",
                                                        "/events", "/services", "/approvals")]  # fmt: skip
        assert all(a.status_code == 200 for a in answers), [a.url for a in answers if a.status_code != 200]
        for answer in answers:
            assert TOKEN not in answer.text and PASSWORD not in answer.text, answer.url
        assert "deliver with" in page(site, "/runs/run-hostile").text  # the event is shown, its secrets masked


def _login(site: ServedApi, name: str, token: str = TOKEN) -> httpx.Response:
    form = {"name": name, "token": token, "next": "/approvals"}
    return httpx.post(f"{site.url}/login", data=form, headers={"Origin": site.url}, timeout=30)


def test_with_a_token_the_dashboard_answers_with_a_session_from_its_own_page(
    home: Path, filled: dict[str, str]
) -> None:
    ident = filled["approval_id"]
    for site in _serve(Settings(home=home, api_token=TOKEN)):
        assert _login(site, "carol", "tok-wrong").status_code == 401
        assert COOKIE not in _login(site, "carol", "tok-wrong").cookies
        logged = _login(site, "carol")
        assert logged.status_code == 303 and logged.headers["location"] == "/approvals"
        cookie = logged.cookies[COOKIE]
        assert TOKEN not in cookie and "httponly" in logged.headers["set-cookie"].lower()
        assert "samesite=strict" in logged.headers["set-cookie"].lower()
        assert re.search(
            r'<input name="by" value="carol"[^>]* readonly>', page(site, "/approvals", cookies={COOKIE: cookie}).text
        )
        url = f"{site.url}/api/v1/approvals/{ident}/approve"
        body = {"by": "carol", "reason": "from the dashboard"}

        def post(**headers: str) -> httpx.Response:
            return httpx.post(url, json=body, cookies={COOKIE: cookie}, headers=headers, timeout=30)  # noqa: B023

        assert httpx.post(url, json=body, timeout=30).status_code == 401  # no cookie, no bearer
        assert post(Origin="http://evil.example").status_code == 403
        assert post().status_code == 403  # a cookie without the page's Origin or Referer
        assert post(Referer="http://evil.example/approvals").status_code == 403
        other = httpx.post(url, json=body | {"by": "mallory"}, cookies={COOKIE: cookie},
                           headers={"Origin": site.url}, timeout=30)  # fmt: skip
        assert other.status_code == 403 and other.json()["detail"] == "this session answers as 'carol', not 'mallory'"
        assert log_events(home, EventType.APPROVAL_GRANTED) == []
        done = post(Origin=site.url, **{"Sec-Fetch-Site": "same-origin"})
        assert done.status_code == 200 and done.json()["by"] == "carol"
        (granted,) = log_events(home, EventType.APPROVAL_GRANTED, run=WAITING)
        assert granted.data["reason"] == "from the dashboard"  # type: ignore[attr-defined]
        assert seal_problem(load_key(default_key_path()), granted) is None  # type: ignore[arg-type]
        out = httpx.post(f"{site.url}/logout", cookies={COOKIE: cookie}, headers={"Origin": site.url}, timeout=30)
        assert out.status_code == 303 and 'pilotage_session=""' in out.headers["set-cookie"]
