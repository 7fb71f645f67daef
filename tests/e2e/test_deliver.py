"""Delivering commits of a service Pilotage did not write, as a user does (issue #17).

`pilotage service add` a hand-written FastAPI service in its own git repository, then `pilotage deliver` a commit:
promoted (it becomes production and the next baseline), or — a commit whose one operation answers 500 — rolled
back by the canary while production keeps serving at the stable address (under `pilotage up`).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import FAST, of_type, read_log, run_cli
from tests.fixtures.notes_repo import bad_change, git, make_notes_repo, trivial_change

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: Only the service's own tests gate these deliveries (FAST's testing_api_tests = false: the spec-derived tests would
#: find the bad commit's 500 before the canary does; tests/unit/test_agent_testing*.py cover them); short load test,
#: analysis windows and watch (nothing here is about their length).
SETTINGS = "fleet_port_base = {port}\n" + FAST


def _workdir(tmp_path: Path, port: int) -> Path:
    work = tmp_path / "ops"
    work.mkdir()
    (work / "pilotage.toml").write_text(SETTINGS.format(port=port), encoding="utf-8")
    return work


def _show(work: Path, name: str = "notes") -> dict[str, object]:
    result = run_cli(work, "service", "show", name, "--json")
    assert result.code == 0, result.stderr
    data: dict[str, object] = result.json()
    return data


def test_a_delivered_commit_is_promoted_and_becomes_production(tmp_path: Path) -> None:
    repo = make_notes_repo(tmp_path / "notes")
    work = _workdir(tmp_path, 18610)
    added = run_cli(work, "service", "add", str(repo), "--json")
    assert added.code == 0, added.stderr
    first = git(repo, "rev-parse", "HEAD")
    assert added.json()[0]["commit"] == first
    change = trivial_change(repo)

    result = run_cli(work, "deliver", "notes", "HEAD", "--json", timeout_s=600)
    assert result.code == 0, result.stdout[-3000:] + result.stderr
    assert result.json()["outcome"] == "promoted"
    shown = _show(work)
    assert shown["production_commit"] == change
    deliveries = shown["deliveries"]
    assert isinstance(deliveries, list) and deliveries[-1]["outcome"] == "promoted"
    events = read_log(work)
    started = of_type(events, "deploy.started")[-1].data
    assert started["baseline"]["version"] == first[:12]  # the canary ran from the production version
    assert started["proxy_url"] == "http://127.0.0.1:18610"  # on the service's stable address
    released = of_type(events, "service.released")[-1].data
    assert released["commit"] == change and released["previous_commit"] == first
    assert git(repo, "status", "--porcelain") == ""  # the user's repository was only read


def _poll(url: str, stop: threading.Event, codes: list[int]) -> None:
    with httpx.Client(timeout=2.0) as client:
        while not stop.is_set():
            try:
                codes.append(client.get(url).status_code)
            except httpx.HTTPError:
                codes.append(0)
            time.sleep(0.05)


def test_a_commit_failing_one_operation_is_rolled_back_while_production_keeps_serving(tmp_path: Path) -> None:
    repo = make_notes_repo(tmp_path / "notes")
    work = _workdir(tmp_path, 18620)
    assert run_cli(work, "service", "add", str(repo)).code == 0
    production = git(repo, "rev-parse", "HEAD")
    up = run_cli(work, "up", "--json", timeout_s=120)
    assert up.code == 0, up.stdout + up.stderr
    stable = "http://127.0.0.1:18620"
    try:
        created = httpx.post(f"{stable}/notes", json={"text": "kept"}, timeout=5).json()
        bad = bad_change(repo)
        stop, codes = threading.Event(), []
        poller = threading.Thread(target=_poll, args=(f"{stable}/notes", stop, codes))
        poller.start()
        try:
            result = run_cli(work, "deliver", "notes", bad, "--json", timeout_s=600)
        finally:
            stop.set()
            poller.join()
        assert result.code == 1, result.stdout[-3000:] + result.stderr
        assert "ended rolled_back" in result.stderr and production[:12] in result.stderr
        assert codes and set(codes) == {200}  # the unchanged operation never failed for a client of the address
        # production serves the note it had before the delivery: its process and data are untouched
        assert httpx.get(f"{stable}/notes/{created['id']}", timeout=5).json() == created
        shown = _show(work)
        assert shown["production_commit"] == production
        events = read_log(work)
        rolled = of_type(events, "deploy.rolled_back")[-1].data
        assert rolled["version"] == bad[:12] or bad[:12] in str(rolled)
        breach = of_type(events, "slo.evaluated")[-1].data
        assert breach["action"] == "rollback"
    finally:
        down = run_cli(work, "down", "--json")
    assert down.code == 0, down.stderr
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{stable}/notes", timeout=2)


def test_production_comes_back_at_its_stable_address_after_the_control_plane_is_killed(tmp_path: Path) -> None:
    import os
    import signal

    repo = make_notes_repo(tmp_path / "notes")
    work = _workdir(tmp_path, 18630)
    assert run_cli(work, "service", "add", str(repo)).code == 0
    first = run_cli(work, "up", "--json", timeout_s=120)
    assert first.code == 0, first.stderr
    stable = "http://127.0.0.1:18630"
    try:
        assert httpx.get(f"{stable}/notes", timeout=5).status_code == 200
        os.kill(first.json()["pid"], signal.SIGKILL)  # the control plane dies; its proxy (the address) with it
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{stable}/notes", timeout=1)
            except httpx.HTTPError:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the stable address still answered after its control plane was killed")
        again = run_cli(work, "up", "--json", timeout_s=120)  # a new control plane: production from the log
        assert again.code == 0, again.stderr
        assert again.json()["pid"] != first.json()["pid"]
        assert str(again.json()["api"]).startswith("http://127.0.0.1:")  # where its dashboard and API answer
        assert httpx.get(str(again.json()["api"]) + "/openapi.json", timeout=5).status_code == 200
        assert httpx.get(f"{stable}/notes", timeout=5).status_code == 200
        ups = [e.data for e in of_type(read_log(work), "service.up")]
        assert [u["commit"] for u in ups] == [git(repo, "rev-parse", "HEAD")] * 2
        recovered = of_type(read_log(work), "controlplane.recovered")[-1].data
        assert recovered["orphans_killed"]  # the dead plane's production process was stopped, not leaked
    finally:
        assert run_cli(work, "down").code == 0
