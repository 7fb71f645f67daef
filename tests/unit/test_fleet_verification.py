"""Consumer verification (issue #19): each live consumer's own tests against a provider's new commit, on real
repositories and real processes — the notes service, digest (whose contract test reads ``text`` from the real notes
at ``$NOTES_URL``) and a consumer whose test command hangs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from pilotage.agents.testing import verdict_reasoning
from pilotage.bus.memory import MemoryBus
from pilotage.fleet.checkout import descriptor_at, prepare
from pilotage.fleet.onboard import add_services
from pilotage.fleet.registry import load_fleet
from pilotage.fleet.verification import (
    Verification,
    failed_tests_in,
    record_verifications,
    summary_line,
    verifications_of,
    verify_consumers,
)
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.runtime.local import LocalRuntime
from pilotage.settings import Settings
from tests.fixtures.consumer_repo import breaking_notes_change, make_consumer_repo, make_pair
from tests.fixtures.fleet import commit_files
from tests.fixtures.notes_repo import trivial_change

#: digest's contract test: runs only when Pilotage gives it the notes' address.
CONTRACT = """\
import os

import httpx
import pytest

URL = os.environ.get("NOTES_URL", "")


@pytest.mark.skipif(not URL, reason="NOTES_URL is not set")
def test_a_created_note_keeps_its_text() -> None:
    created = httpx.post(f"{URL}/notes", json={"text": "hello"}, timeout=5.0).json()
    assert created["text"] == "hello"
"""
#: Long enough for digest's pytest to start on a loaded 2-core machine (2 s was not), short for the hanging one.
HANG_TIMEOUT_S = 15.0


def _verify(tmp_path: Path, change: Any, *, hanging: bool) -> tuple[list[Verification], dict[str, Any], SQLiteGraph]:
    """notes, digest (with the contract test) and, when ``hanging``, ``stuck`` (its test command sleeps) managed;
    ``change`` committed to notes and verified; returns the verifications, the fleet and the graph."""
    notes, digest = make_pair(tmp_path / "repos")
    commit_files(digest, {"tests/test_contract.py": CONTRACT}, "digest: contract test with the real notes")
    repos = [notes, digest]
    if hanging:
        stuck = make_consumer_repo(tmp_path / "repos" / "stuck", name="stuck", operations='["GET /notes"]')
        text = (stuck / "pilotage.yaml").read_text(encoding="utf-8")
        commit_files(stuck, {"pilotage.yaml": text.replace('test: "{python} -m pytest', 'test: "sleep 600 #')}, "hang")
        repos.append(stuck)
    settings = Settings(home=tmp_path / "state", fleet_port_base=18960, consumer_verification_timeout_s=HANG_TIMEOUT_S)
    graph = SQLiteGraph(f"sqlite:///{tmp_path}/graph.db")

    async def go() -> tuple[list[Verification], dict[str, Any]]:
        bus = MemoryBus()
        await add_services(bus, graph, settings, None, repos)
        sha = change(notes)
        descriptor = descriptor_at(notes, sha)
        ready = prepare(notes, sha, descriptor, settings.path_in_home("services").resolve() / "notes")
        fleet = await load_fleet(bus)
        runtime = LocalRuntime(log_dir=tmp_path / "logs")
        try:
            found = await verify_consumers(
                runtime, settings, fleet, provider="notes", commit=sha, head_dir=ready.checkout,
                descriptor=descriptor, prepared=ready.prepared, out_dir=tmp_path / "verify",
            )  # fmt: skip
        finally:
            await runtime.close()
        return found, fleet

    found, fleet = asyncio.run(go())
    record_verifications(graph, found)
    return found, fleet, graph


def test_a_breaking_change_fails_the_consumer_naming_its_test_and_a_hanging_one_times_out(tmp_path: Path) -> None:
    started = time.monotonic()
    (digest, stuck), fleet, graph = _verify(tmp_path, breaking_notes_change, hanging=True)
    notes_commit = digest.provider_commit
    assert (digest.consumer, digest.env, digest.passed) == ("digest", "NOTES_URL", False)
    assert digest.consumer_commit == fleet["digest"].production_commit  # its production commit's tests ran
    assert digest.failed_tests == ["tests/test_contract.py::test_a_created_note_keeps_its_text"]
    assert not digest.timed_out and digest.message.endswith("exited with 1")
    assert (stuck.consumer, stuck.passed, stuck.timed_out) == ("stuck", False, True)
    assert stuck.failed_tests == ["pilotage.yaml test `sleep 600 # -q -p no:cacheprovider tests`"]
    assert stuck.message.endswith(f"killed after {HANG_TIMEOUT_S:g} s") and stuck.duration_s < HANG_TIMEOUT_S + 5
    line = summary_line([digest, stuck])
    assert line == (
        f"consumer verification of notes failed: digest@{digest.consumer_commit[:12]} (NOTES_URL): "
        "tests/test_contract.py::test_a_created_note_keeps_its_text; "
        f"stuck@{stuck.consumer_commit[:12]} (NOTES_URL): its test command hung: {stuck.message}"
    )
    assert "\n" not in line and time.monotonic() - started < 120
    # the graph answers can-i-deploy: which consumer commit verified which provider commit, with what result
    shown = verifications_of(graph, "notes")
    assert [(r["consumer"], r["consumer_commit"], r["passed"]) for r in shown["as_provider"]] == [
        ("digest", digest.consumer_commit, False),
        ("stuck", stuck.consumer_commit, False),
    ]
    [as_consumer] = verifications_of(graph, "digest")["as_consumer"]
    assert (as_consumer["provider"], as_consumer["provider_commit"]) == ("notes", notes_commit)
    assert as_consumer["failed_tests"] == digest.failed_tests and as_consumer["time"]
    # the testing verdict fails on it, quoting the line
    verdict = verdict_reasoning(
        {"schemathesis": {"complete": True}, "unit": {}, "consumers": {"verified": 2, "failed": 2, "summary": line}}
    )
    assert verdict.action == "fail" and line in verdict.rationale and verdict.score["consumers_failed"] == 2


def test_a_compatible_change_is_verified_by_its_consumer(tmp_path: Path) -> None:
    [digest], _fleet, graph = _verify(tmp_path, trivial_change, hanging=False)
    assert (digest.consumer, digest.passed, digest.failed_tests, digest.message) == ("digest", True, [], "")
    assert summary_line([digest]) == ""
    [row] = verifications_of(graph, "digest")["as_consumer"]
    assert (row["provider_commit"], row["passed"]) == (digest.provider_commit, True)
    passed = verdict_reasoning(
        {"schemathesis": {"complete": True}, "unit": {}, "consumers": {"verified": 1, "failed": 0, "summary": ""}}
    )
    assert passed.action == "pass" and passed.score["consumers_failed"] == 0


def test_failed_tests_are_read_from_pytests_summary_lines(tmp_path: Path) -> None:
    log = tmp_path / "own-tests.log"
    log.write_text(
        "..F.E\n=== short test summary info ===\nFAILED tests/a.py::test_x - AssertionError: 1 != 2\n"
        "ERROR tests/b.py::test_y[1] - RuntimeError\nFAILED tests/a.py::test_x - again\n1 failed, 1 error in 0.2s\n",
        encoding="utf-8",
    )
    assert failed_tests_in(log) == ["tests/a.py::test_x", "tests/b.py::test_y[1]"]
    assert failed_tests_in(tmp_path / "missing.log") == []


def test_a_consumer_without_a_test_command_is_not_verified_and_does_not_block() -> None:
    unverified = Verification("audit", "a" * 40, "notes", "b" * 40, "NOTES_URL", None, message="no `test`")
    assert summary_line([unverified]) == ""
