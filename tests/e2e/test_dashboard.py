"""The dashboard in a real browser (Debian's chromium driven by Playwright), over a real ``pilotage serve``.

One test, as a user lives it: ``pilotage serve`` in a fresh folder whose own policy makes every deploy wait for a
person; ``pilotage demo --submit --inject-fault`` hands it the demo. The browser opens the run's timeline and
watches it grow without a reload (the event stream), answers the deploy's approval with the Approve button
(signed, naming who), watches the rollback arrive on the still-open timeline, and finds the rollback drawn at the
step the judge rolled back on the rollout page. Screenshots go to the test's tmp folder (``screens/``), and to
``$DASHBOARD_SCREENSHOTS`` when set (``scripts/screenshots`` refreshes the README's pictures so).

Chromium is Debian's (``scripts/test`` installs it); Playwright's own browser download is never used. Without
chromium the test skips, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import FAST, of_type, read_log

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
#: Bounds on a loaded 2-core machine: serve's start, the run reaching its approval, then its end.
START_S, APPROVAL_S, END_S = 120.0, 150.0, 180.0
#: The organisation's own policy (policies/ of the folder serve runs in): every deploy waits for a person.
POLICY = """package pilotage.deploy

needs_approval contains {"msg": "every release of this fleet needs a person's approval", "rule": "four-eyes"} if {
\ttrue
}
"""
APPROVER = "Ada Operator"


def _browser_or_skip() -> None:
    missing = not Path(CHROMIUM).exists()
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = True
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the dashboard's browser test needs {CHROMIUM} and playwright (scripts/test installs both)")
        pytest.skip(f"needs {CHROMIUM} and the playwright package")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTAGE_")}
    return env | {"COLUMNS": "200"}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """``pilotage serve --json --api-port 0`` in ``tmp_path/work`` (with the four-eyes policy); its base URL."""
    work = tmp_path / "work"
    (work / "policies").mkdir(parents=True)
    (work / "policies" / "four_eyes.rego").write_text(POLICY, encoding="utf-8")
    (work / "pilotage.toml").write_text(FAST, encoding="utf-8")  # short stages: the approval and rollback are the point
    out, err = (tmp_path / "serve.out").open("w"), (tmp_path / "serve.err").open("w")
    argv = [sys.executable, "-m", "pilotage", "serve", "--json", "--api-port", "0"]
    proc = subprocess.Popen(argv, cwd=work, env=_env(), stdout=out, stderr=err, text=True)
    try:
        deadline = time.monotonic() + START_S
        while '"serving": true' not in (text := (tmp_path / "serve.out").read_text(encoding="utf-8")):
            assert proc.poll() is None, (tmp_path / "serve.err").read_text(encoding="utf-8")[-3000:]
            assert time.monotonic() < deadline, "pilotage serve did not start"
            time.sleep(0.2)
        ready = json.loads(next(line for line in text.splitlines() if '"serving": true' in line))
        yield work, str(ready["api"]).removesuffix("/api/v1")
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
        err.close()


def _wait_for(what: str, probe: Any, limit_s: float) -> Any:
    deadline = time.monotonic() + limit_s
    while not (found := probe()):
        assert time.monotonic() < deadline, f"{what}: not within {limit_s:.0f} s"
        time.sleep(0.5)
    return found


def _shoot(page: Any, screens: Path, name: str, readme: bool = True) -> None:
    """Save the whole page as ``screens/NAME.png`` (the test's artifact) and, when ``DASHBOARD_SCREENSHOTS``
    names a folder (``scripts/screenshots``), what the window shows as ``dashboard-NAME.png`` there (README)."""
    page.screenshot(path=str(screens / f"{name}.png"), full_page=True)
    if readme and os.environ.get("DASHBOARD_SCREENSHOTS"):
        page.screenshot(path=str(Path(os.environ["DASHBOARD_SCREENSHOTS"]) / f"dashboard-{name}.png"))


def _api(base: str, path: str) -> Any:
    return httpx.get(f"{base}/api/v1{path}", timeout=30).json()


def test_a_person_follows_approves_and_sees_the_rollback_in_a_browser(served: tuple[Path, str], tmp_path: Path) -> None:
    _browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    work, base = served
    screens = tmp_path / "screens"
    screens.mkdir()
    demo_out = (tmp_path / "demo.out").open("w")
    demo = subprocess.Popen([sys.executable, "-m", "pilotage", "demo", "--submit", "--inject-fault", "--json"],
                            cwd=work, env=_env(), stdout=demo_out, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            run_id = _wait_for("a run", lambda: [r["run_id"] for r in _api(base, "/runs")["items"]], START_S)[0]

            # the timeline, opened early: it grows by itself
            page.goto(f"{base}/runs/{run_id}")
            expect(page.locator("#live")).to_have_attribute("data-state", "open", timeout=30_000)
            first = page.locator("#timeline tbody tr").count()
            approval = _wait_for("the deploy's approval", lambda: _api(base, "/approvals"), APPROVAL_S)[0]
            expect(page.locator("#timeline tbody tr", has_text="approval.requested")).to_have_count(1, timeout=30_000)

            # the approval, answered with the button
            answer = browser.new_page(viewport={"width": 1280, "height": 700})
            answer.goto(f"{base}/approvals")
            section = answer.locator(f'section[data-approval="{approval["approval_id"]}"]')
            expect(section).to_contain_text("every release of this fleet needs a person's approval")
            section.locator('input[name="by"]').fill(APPROVER)
            section.locator('input[name="reason"]').fill("watched the tests; go")
            _shoot(answer, screens, "approvals")
            section.locator("button.approve").click()
            expect(section.locator("output.result")).to_contain_text(f"Approved by {APPROVER}", timeout=30_000)
            expect(section).to_have_attribute("data-answered", "approve")

            # the rollback reaches the page that was never reloaded
            rolled = page.locator("#timeline tbody tr", has_text="deploy.rolled_back")
            expect(rolled).to_have_count(1, timeout=int(END_S * 1000))
            expect(page.locator("#run-status")).to_contain_text("rolled_back", timeout=int(END_S * 1000))
            assert page.locator("#timeline tbody tr").count() > first + 10  # appended live: the page never reloaded
            rolled.scroll_into_view_if_needed()
            _shoot(page, screens, "run")

            [deployment] = _api(base, "/rollouts")
            page.goto(f"{base}/rollouts/{deployment['deployment_id']}")
            banner = page.locator("[data-rolled-back-step]")
            expect(banner).to_contain_text("Rolled back at step")
            drawn_step = int(banner.get_attribute("data-rolled-back-step") or "-1")
            marked = page.locator("section.step[data-rolled-back-here]")
            expect(marked).to_have_count(1)
            expect(marked.locator(".mark")).to_have_text(f"rolled back at step {drawn_step}")
            assert marked.locator("svg.chart polyline[data-series='canary']").count() >= 1
            _shoot(page, screens, "rollout")
            page.goto(base + "/")
            expect(page.locator("tr[data-service='checkout']")).to_be_visible()
            _shoot(page, screens, "fleet", readme=False)
            browser.close()
        assert demo.wait(END_S) == 0, (tmp_path / "demo.out").read_text(encoding="utf-8")[-3000:]
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        demo_out.close()

    events = [e for e in read_log(work) if e.runid == run_id]
    [granted] = of_type(events, "approval.granted")
    assert granted.data["by"] == APPROVER and granted.data["key_id"]  # signed, naming who pressed the button
    assert granted.data["reason"] == "watched the tests; go" and granted.source == "/pilotage/api"
    judged = [e.data["step"] for e in of_type(events, "slo.evaluated") if e.data["action"] == "rollback"]
    assert judged and drawn_step == judged[-1]  # drawn where the judge rolled back
    for name in ("approvals", "run", "rollout", "fleet"):
        assert (screens / f"{name}.png").stat().st_size > 10_000
