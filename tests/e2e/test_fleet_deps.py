"""Two services that depend on each other, as a user runs them (issue #19).

The notes service and digest, its consumer (``tests/fixtures/consumer_repo.py``), each in its own git repository:
added in one command (the consumer named first), served by `pilotage up` (digest gets the notes' stable address in
``NOTES_URL``), drawn by `service graph`. A commit of notes that renames a response property breaks what digest
calls: `pilotage impact --service notes` names digest and the operations; a delivery of it waits at the deploy
gate for a person, who denies it (the delivery fails naming digest, production untouched); delivered again and
approved, it passes the gate and rolls out.

What the rollout then decides is not asserted: a breaking change of a delivered service rolls out blue-green, and on
this shared 2-core machine (load 4-6) the blue-green preview of the notes service (``metrics: proxy``) was rolled
back on latency in 3 runs of 4 — on main too, without this change (the fresh green's requests through the preview
proxy: 2-4 of ~25 over 500 ms, or a latency variance ×10 the baseline's). The release path (`service.released`
carrying the descriptor, the fleet graph rewritten) is ``tests/unit/test_fleet_documents.py``.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import FAST, CliResult, of_type, read_log, run_cli
from tests.fixtures.consumer_repo import breaking_notes_change, make_pair

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PORT = 18640
#: The notes' own tests gate the deliveries; short load test and watch (the approval is what this test is about).
SETTINGS = f"fleet_port_base = {PORT}\nstandby_s = 0.0\n{FAST}"


def _deliver_in_background(work: Path) -> subprocess.Popen[str]:
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTAGE_")} | {"COLUMNS": "200"}
    return subprocess.Popen(  # noqa: S603 - this interpreter running Pilotage
        [sys.executable, "-m", "pilotage", "deliver", "notes", "HEAD", "--json"],
        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _pending(work: Path, delivery: subprocess.Popen[str], timeout_s: float = 300.0) -> dict[str, Any]:
    """The approval the delivery waits for (polled with `pilotage policy pending --json`)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert delivery.poll() is None, delivery.communicate()
        waiting = run_cli(work, "policy", "pending", "--json", timeout_s=60)
        assert waiting.code == 0, waiting.stderr
        if waiting.json():
            [item] = waiting.json()
            return dict(item)
        time.sleep(1.0)
    raise AssertionError("no approval requested in time")


def _finish(delivery: subprocess.Popen[str]) -> CliResult:
    stdout, stderr = delivery.communicate(timeout=600)
    return CliResult(delivery.returncode, stdout, stderr)


def _get_json(url: str, wait_s: float = 30.0) -> object:
    """GET ``url``'s JSON, retrying while nothing answers yet (the keeper opens stable routes after `up`)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return httpx.get(url, timeout=5).json()
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_a_breaking_change_waits_for_a_person_naming_its_consumer_then_is_denied_and_approved(tmp_path: Path) -> None:
    notes, digest = make_pair(tmp_path / "repos")
    work = tmp_path / "ops"
    work.mkdir()
    (work / "pilotage.toml").write_text(SETTINGS, encoding="utf-8")
    added = run_cli(work, "service", "add", str(digest), str(notes), "--json")
    assert added.code == 0, added.stderr
    assert [a["service"] for a in added.json()] == ["notes", "digest"]  # providers first
    drawn = run_cli(work, "service", "graph")
    assert drawn.code == 0 and "|DEPENDS_ON|" in drawn.stdout and '["Operation: notes GET /notes"]' in drawn.stdout

    up = run_cli(work, "up", "--json", timeout_s=300)
    try:
        assert up.code == 0, up.stdout + up.stderr
        health = _get_json(f"http://127.0.0.1:{PORT + 1}/healthz")  # digest, added second
        assert health["notes_url"] == f"http://127.0.0.1:{PORT}"  # the notes' stable address, set by Pilotage
        assert httpx.get(f"http://127.0.0.1:{PORT + 1}/digest", timeout=5).json() == {"count": 0, "newest": ""}

        change = breaking_notes_change(notes)
        impact = run_cli(work, "impact", "--service", "notes", "--rev", "HEAD", "--json")
        assert impact.code == 0, impact.stderr
        doc = impact.json()
        assert doc["commit"] == change and [c["service"] for c in doc["consumers"]] == ["digest"]
        assert [op["operation"] for op in doc["consumers"][0]["operations"]] == ["GET /notes", "GET /notes/{note_id}"]
        [gate] = doc["gate"]
        assert gate.startswith("approval required: breaking API change of notes used by live consumer digest")

        first = _deliver_in_background(work)
        waiting = _pending(work, first)
        [message] = waiting["needs_approval"]
        assert message == gate.removeprefix("approval required: ")  # the gate says what `impact` said
        assert run_cli(work, "deny", waiting["approval_id"], "--reason", "digest still reads text").code == 0
        denied = _finish(first)
        assert denied.code != 0 and json.loads(denied.stdout)["status"] == "failed"
        assert "live consumer digest (NOTES_URL): GET /notes: response 200 property 'items/text' removed" in (
            denied.stdout + denied.stderr
        )
        shown = json.loads(run_cli(work, "service", "show", "notes", "--json").stdout)
        assert shown["production_commit"] != change  # nothing delivered

        second = _deliver_in_background(work)
        again = _pending(work, second)
        assert again["needs_approval"] == [message]
        assert run_cli(work, "approve", again["approval_id"], "--reason", "digest moves to body next").code == 0
        approved = _finish(second)
        assert json.loads(approved.stdout)["status"] == "completed", approved.stdout[-3000:] + approved.stderr
        events = [e for e in read_log(work) if e.runid == again["run_id"]]
        [granted] = of_type(events, "approval.granted")
        assert granted.data["approved"] == [message] and granted.data["reason"] == "digest moves to body next"
        [deploy] = [e.data for e in of_type(events, "policy.evaluated") if e.data["action"] == "deploy"]
        assert deploy["allow"] is True and deploy["input"]["approval"]["approved"] == [message]
        assert [c["service"] for c in deploy["input"]["cross_service"]["consumers"]] == ["digest"]
        [started] = of_type(events, "deploy.started")
        assert started.data["canary"]["version"] == change[:12]  # the approved commit rolled out
    finally:
        run_cli(work, "down", timeout_s=120)
