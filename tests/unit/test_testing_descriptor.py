"""Issue 17: the testing agent on a hand-written service with ``pilotage.yaml`` (real processes, real git).

Each test writes a small FastAPI repository with its own tests, commits it on ``main``, checks the commit out into
a scratch worktree (what the coordinator's checkout stage does) and drives :class:`TestingAgent` as
``test_agent_testing.py`` does: ``flow.started``, ``code.generated`` (no ``spec.validated``), then the merge verdict.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pilotage.agent import AgentContext, RunSpec
from pilotage.agents.testing import TestingAgent, verdict_reasoning
from pilotage.bus.memory import MemoryBus
from pilotage.errors import ConfigError, InputError
from pilotage.events import CloudEvent, EventType, new_event
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.runtime.local import LocalRuntime
from pilotage.settings import Settings
from pilotage.testing.commit_tests import commit_spec_tests
from pilotage.testing.descriptor_suite import resolve_openapi
from pilotage.testing.own_tests import parse_pytest_summary

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

APP = '''"""A hand-written notes service."""

from __future__ import annotations

import itertools

from fastapi import FastAPI, HTTPException, Response
from pydantic import BaseModel, Field

app = FastAPI(title="notes", version="1.0.0")
NOTES: dict[int, dict[str, object]] = {}
IDS = itertools.count(1)


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=200)


class Note(NoteIn):
    id: int


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/notes", response_model=list[Note])
def list_notes() -> list[dict[str, object]]:
    return list(NOTES.values())


@app.post("/notes", response_model=Note, status_code=201)
def create_note(note: NoteIn) -> dict[str, object]:
    item = {"id": next(IDS), "text": note.text}
    NOTES[int(item["id"])] = item
    return item


@app.get("/notes/{note_id}", response_model=Note, responses={404: {"description": "no such note"}})
def get_note(note_id: int) -> dict[str, object]:
    if note_id not in NOTES:
        raise HTTPException(404, "no such note")
    return NOTES[note_id]


@app.delete("/notes/{note_id}", status_code=204, responses={404: {"description": "no such note"}})
def delete_note(note_id: int) -> Response:
    if NOTES.pop(note_id, None) is None:
        raise HTTPException(404, "no such note")
    return Response(status_code=204)
'''

OWN_TESTS = """import os

import httpx

BASE = os.environ["PILOTAGE_BASE_URL"]


def test_healthz() -> None:
    assert httpx.get(f"{BASE}/healthz").json() == {"status": "ok"}


def test_create_then_read() -> None:
    made = httpx.post(f"{BASE}/notes", json={"text": "hello"}).json()
    assert httpx.get(f"{BASE}/notes/{made['id']}").json() == made


def test_missing_note_is_404() -> None:
    assert httpx.get(f"{BASE}/notes/999999").status_code == 404
"""

START = "{python} -m uvicorn app.main:app --host 127.0.0.1 --port {port}"
COMMIT_TESTS_FILES = {"tests/test_pilotage_api_schemathesis.py", "tests/pilotage_openapi.json"}


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _descriptor(openapi: str | None = "/openapi.json", test: str | None = "{python} -m pytest -q") -> str:
    lines = ["name: notes", f"start: {json.dumps(START)}", "health: /healthz"]  # "{python} …" quoted for YAML
    lines += [f"openapi: {openapi}"] if openapi else []
    lines += [f"test: {json.dumps(test)}"] if test else []
    return "\n".join(lines) + "\n"


def _repo(tmp_path: Path, descriptor: str, extra: dict[str, str] | None = None) -> tuple[Path, str]:
    """The user's repository, committed on main: (path, commit sha)."""
    repo = tmp_path / "notes"
    files = {
        "pilotage.yaml": descriptor,
        "pytest.ini": "[pytest]\ntestpaths = tests\n",
        "app/__init__.py": "",
        "app/main.py": APP,
        "tests/test_notes.py": OWN_TESTS,
        **(extra or {}),
    }
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    _git(repo.parent, "init", "-q", "-b", "main", str(repo))
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.invalid", "commit", "-q", "-m", "notes service")
    return repo, _git(repo, "rev-parse", "HEAD")


def _ctx(tmp_path: Path) -> AgentContext:
    return AgentContext(
        bus=MemoryBus(),
        graph=SQLiteGraph("sqlite:///:memory:"),
        policy=None,  # type: ignore[arg-type]  # the testing agent asks no policy question
        runtime=LocalRuntime(log_dir=tmp_path / "logs"),
        settings=Settings.model_validate({"schemathesis_max_examples": 5, "testing_crud_examples": 3}),
    )


async def _seed(ctx: AgentContext, tmp_path: Path, repo: Path, commit: str, *, commit_tests: bool = False) -> Path:
    """Publish flow.started and code.generated (no spec.validated); return the scratch worktree (head_dir)."""
    head = tmp_path / "work" / "versions" / commit[:12]
    _git(repo, "worktree", "add", "-q", "--detach", str(head), commit)
    run = RunSpec(
        run_id="r1", service="notes", spec_path="", request="deliver", workdir=str(tmp_path / "work"), kind="deliver",
        commit_tests=commit_tests,
    )  # fmt: skip
    code = {"commit": commit, "head_dir": str(head), "branch": "main", "service_repo": str(repo)}
    code |= {"head_prepared": "", "base_prepared": "", "files_changed": ["app/main.py"]}
    for type_, data in ((EventType.FLOW_STARTED, run.model_dump()), (EventType.CODE_GENERATED, code)):
        await ctx.bus.publish(new_event(type_, data, source="/test", subject="notes", runid="r1"))
    return head


def _merge() -> CloudEvent:
    data = {"agent": "governance", "action": "merge", "allow": True, "reasons": [], "policies": [], "engine": "rego:"}
    return new_event(EventType.POLICY_EVALUATED, data, source="/test", subject="notes", runid="r1")


async def _events(ctx: AgentContext, pattern: str) -> list[CloudEvent]:
    return [r.event for r in await ctx.bus.read(1, 10_000, pattern=pattern)]


def _run(tmp_path: Path, body: Callable[[AgentContext], Awaitable[None]]) -> None:
    async def scenario() -> None:
        ctx = _ctx(tmp_path)
        try:
            await body(ctx)
        finally:
            await ctx.runtime.close()

    asyncio.run(scenario())


async def _test(ctx: AgentContext, tmp_path: Path, descriptor: str, **kw: Any) -> tuple[dict[str, Any], Path, Path]:
    """Run the agent once on a fresh repository; return (tests.completed data, head_dir, repo)."""
    repo, commit = _repo(tmp_path, descriptor, kw.pop("extra", None))
    head = await _seed(ctx, tmp_path, repo, commit, **kw)
    await TestingAgent(ctx).handle(_merge())
    failed = await _events(ctx, EventType.AGENT_FAILED)
    assert failed == [], failed[0].data["error"] if failed else ""
    [done] = await _events(ctx, EventType.TESTS_COMPLETED)
    assert ctx.runtime.instances() == []  # type: ignore[attr-defined]  # the scratch instance was stopped
    return done.data, head, repo


def test_passing_service_with_served_openapi(tmp_path: Path) -> None:
    async def scenario(ctx: AgentContext) -> None:
        data, head, _ = await _test(ctx, tmp_path, _descriptor())
        assert data["passed"] is True and data["descriptor"] == str(head / "pilotage.yaml")
        unit = data["unit"]
        assert (unit["passed"], unit["failed"], unit["errors"], unit["exit_code"]) == (3, 0, 0, 0)
        assert unit["counts_from"] == "pytest summary" and unit["ran"] is True
        st = data["schemathesis"]
        assert st["requests"] > 0 and st["server_errors"] == 0 and st["complete"] is True
        ops = {op["operation"] for op in st["operations"]}
        assert {"GET /notes", "POST /notes", "GET /notes/{note_id}", "DELETE /notes/{note_id}"} <= ops
        served = Path(data["spec_path"])
        assert served.name == "openapi.served.json" and served.is_relative_to(tmp_path / "work" / "artifacts")
        gen = data["generated"]
        assert gen["code"]["skipped"] is True and "generated services only" in gen["code"]["reason"]
        assert Path(gen["dir"]).is_relative_to(tmp_path / "work" / "artifacts") and gen["crud"]["passed"] > 0
        assert gen["crud"]["failed"] == 0 and data["failures"] == []
        assert data["executed_by"] == "local" and "descriptor" in data["allocation"]["reason"]
        assert "tests_branch" not in data
        assert sorted(p.name for p in (head / "tests").iterdir()) == ["test_notes.py"]  # nothing written there
        assert _git(head, "status", "--porcelain", "--untracked-files=all", "--", "tests", "app") == ""

    _run(tmp_path, scenario)


def test_failing_own_test_fails_the_gate(tmp_path: Path) -> None:
    failing = {"tests/test_broken.py": "def test_broken() -> None:\n    assert 1 + 1 == 3\n"}

    async def scenario(ctx: AgentContext) -> None:
        data, _, _ = await _test(ctx, tmp_path, _descriptor(), extra=failing)
        assert data["passed"] is False
        assert (data["unit"]["passed"], data["unit"]["failed"], data["unit"]["exit_code"]) == (3, 1, 1)
        [failure] = data["failures"]
        assert failure["nodeid"] == "pilotage.yaml test" and "1 failed, 3 passed" in failure["message"]
        assert Path(data["unit"]["log_path"]).read_text().count("test_broken") >= 1
        [decision] = [e.data for e in await _events(ctx, EventType.DECISION)]
        assert decision["action"] == "fail" and "1 unit tests failed" in decision["rationale"]
        # issue 18: not rerun on the baseline, and saying so: the failure gates
        untested = "Not checked on the baseline (still gating): baseline: a service with pilotage.yaml"
        assert untested in decision["rationale"]
        assert data["baseline_problems"] == [] and data["baseline_untested"][0]["test"] == "baseline"

    _run(tmp_path, scenario)


def test_without_openapi_only_own_tests_gate(tmp_path: Path) -> None:
    async def scenario(ctx: AgentContext) -> None:
        data, _, repo = await _test(ctx, tmp_path, _descriptor(openapi=None), commit_tests=True)
        assert data["passed"] is True and data["spec_path"] == "" and data["unit"]["passed"] == 3
        assert [f["kind"] for f in data["findings"]] == ["commit_tests_skipped"] and "tests_branch" not in data
        assert _git(repo, "branch", "--list", "pilotage/*") == ""
        st = data["schemathesis"]
        assert st["ran"] is False and "no OpenAPI document" in st["reason"]
        assert (st["requests"], st["server_errors"], st["operations"], st["junit_path"]) == (0, 0, [], "")
        [decision] = [e.data for e in await _events(ctx, EventType.DECISION)]
        assert decision["inputs"]["schemathesis"]["ran"] is False and "schemathesis: not run" in decision["rationale"]

    _run(tmp_path, scenario)


def test_missing_test_command_fails_with_the_shells_message(tmp_path: Path) -> None:
    async def scenario(ctx: AgentContext) -> None:
        data, _, _ = await _test(ctx, tmp_path, _descriptor(openapi=None, test="no-such-test-runner --all"))
        unit = data["unit"]
        assert data["passed"] is False and unit["counts_from"] == "exit code"
        assert (unit["passed"], unit["failed"], unit["exit_code"]) == (0, 1, 127)
        assert "no-such-test-runner: not found" in unit["message"]
        assert "not found" in data["failures"][0]["message"]

    _run(tmp_path, scenario)


def test_no_test_command_is_not_run_not_failed(tmp_path: Path) -> None:
    async def scenario(ctx: AgentContext) -> None:
        data, _, _ = await _test(ctx, tmp_path, _descriptor(openapi=None, test=None))
        assert data["passed"] is True and data["unit"]["ran"] is False
        assert data["unit"]["reason"] == "pilotage.yaml has no `test` command"

    _run(tmp_path, scenario)


def test_commit_tests_puts_them_on_their_own_branch(tmp_path: Path) -> None:
    async def scenario(ctx: AgentContext) -> None:
        data, _, repo = await _test(ctx, tmp_path, _descriptor(), commit_tests=True)
        main_before = _git(repo, "rev-parse", "main")
        branch = data["tests_branch"]
        assert branch == f"pilotage/tests-{main_before[:12]}" and data["passed"] is True
        assert _git(repo, "rev-parse", branch) == data["tests_commit"]
        assert _git(repo, "rev-parse", f"{branch}~1") == main_before  # one commit on top of the tested one
        files = set(_git(repo, "diff", "--name-only", "main", branch).splitlines())
        assert COMMIT_TESTS_FILES <= files and "tests/test_pilotage_api_crud.py" in files
        assert _git(repo, "branch", "--show-current") == "main" and _git(repo, "status", "--porcelain") == ""
        assert not (repo / "tests" / "test_pilotage_api_schemathesis.py").exists()  # the user's tree untouched
        assert _git(repo, "worktree", "list", "--porcelain").count("worktree ") == 2  # repo + head_dir only

    _run(tmp_path, scenario)


def test_served_openapi_that_is_missing_fails_naming_the_field(tmp_path: Path) -> None:
    async def scenario(ctx: AgentContext) -> None:
        repo, commit = _repo(tmp_path, _descriptor(openapi="/no-such-openapi.json"))
        await _seed(ctx, tmp_path, repo, commit)
        await TestingAgent(ctx).handle(_merge())
        [failed] = await _events(ctx, EventType.AGENT_FAILED)
        assert failed.data["error_type"] == "ConfigError"
        assert "pilotage.yaml openapi: GET" in failed.data["error"] and "answered 404" in failed.data["error"]
        assert ctx.runtime.instances() == []  # type: ignore[attr-defined]

    _run(tmp_path, scenario)


def test_commit_spec_tests_from_a_repository_file_is_idempotent(tmp_path: Path) -> None:
    spec = (FIXTURES / "ok_service" / "openapi.yaml").read_text()
    repo, commit = _repo(tmp_path, _descriptor(openapi="openapi.yaml"), {"openapi.yaml": spec})
    kw: dict[str, Any] = {"openapi": "openapi.yaml", "spec_path": repo / "openapi.yaml", "scratch": tmp_path / "s"}
    first = asyncio.run(commit_spec_tests(repo, commit, **kw))
    assert first["branch"] == f"pilotage/tests-{commit[:12]}" and "tests/pilotage_openapi.json" not in first["files"]
    assert "tests/test_pilotage_api_crud.py" in first["files"]
    shown = _git(repo, "show", f"{first['branch']}:tests/test_pilotage_api_schemathesis.py")
    assert "'../openapi.yaml'" in shown  # the committed tests read the repository's own document
    again = asyncio.run(commit_spec_tests(repo, commit, **kw))
    assert again["commit"] == first["commit"]  # nothing changed: no new commit
    assert _git(repo, "rev-parse", "main") == commit and _git(repo, "status", "--porcelain") == ""
    with pytest.raises(InputError, match="is not a git repository"):
        asyncio.run(commit_spec_tests(tmp_path / "s", commit, **kw))


def test_a_repository_openapi_file_is_validated_and_kept_inside_the_checkout(tmp_path: Path) -> None:
    spec = (FIXTURES / "ok_service" / "openapi.yaml").read_text()
    repo, _ = _repo(tmp_path, _descriptor(openapi="openapi.yaml"), {"openapi.yaml": spec, "bad.yaml": "openapi: 2\n"})
    assert asyncio.run(resolve_openapi("openapi.yaml", repo, tmp_path)) == repo / "openapi.yaml"
    assert asyncio.run(resolve_openapi(None, repo, tmp_path)) is None
    (tmp_path / "outside.yaml").write_text(spec)
    for openapi, message in (("../outside.yaml", "is not a file of the repository"), ("bad.yaml", "not a valid")):
        with pytest.raises(ConfigError, match=f"pilotage.yaml openapi: .*{message}"):
            asyncio.run(resolve_openapi(openapi, repo, tmp_path))


@pytest.mark.parametrize(
    ("text", "counts"),
    [
        ("..F\n1 failed, 2 passed in 0.05s\n", {"passed": 2, "failed": 1, "errors": 0, "skipped": 0}),
        ("==== 3 passed, 1 skipped, 2 warnings in 1.20s ====", {"passed": 3, "failed": 0, "errors": 0, "skipped": 1}),
        ("1 passed, 2 errors, 1 xfailed in 75.00s (0:01:15)", {"passed": 1, "failed": 0, "errors": 2, "skipped": 1}),
        ("no tests ran in 0.01s", {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}),
        ("\x1b[32m4 passed\x1b[0m\x1b[32m in 0.10s\x1b[0m", {"passed": 4, "failed": 0, "errors": 0, "skipped": 0}),
        ("ok: all 4 checks passed\n", None),
    ],
)
def test_pytest_summary_line(text: str, counts: dict[str, int] | None) -> None:
    assert parse_pytest_summary(text) == counts


def test_a_part_that_did_not_run_does_not_gate() -> None:
    inputs = {
        "commit": "c",
        "schemathesis": {"requests": 0, "server_errors": 0, "complete": False, "ran": False, "reason": "no document"},
        "unit": {"passed": 0, "failed": 0, "errors": 0, "ran": False, "reason": "no test command"},
    }
    reasoning = verdict_reasoning(inputs)
    assert reasoning.action == "pass" and "unit: not run (no test command)" in reasoning.rationale
    assert verdict_reasoning({**inputs, "schemathesis": {**inputs["schemathesis"], "ran": True}}).action == "fail"


def test_a_served_document_dripped_byte_by_byte_is_refused_within_its_total_deadline(tmp_path: Path) -> None:
    import time

    from pilotage.errors import ConfigError
    from pilotage.testing.descriptor_suite import _fetch

    writers: list[asyncio.StreamWriter] = []

    async def drip(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        while not writer.is_closing():  # one byte every 0.3 s: each read is within the 0.5 s timeout, the whole not
            writer.write(b"{")
            await asyncio.sleep(0.3)

    async def scenario() -> float:
        server = await asyncio.start_server(drip, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        started = time.monotonic()
        try:
            with pytest.raises(ConfigError, match=r"pilotage.yaml openapi: GET .*/openapi.json did not finish within"):
                await _fetch(f"http://127.0.0.1:{port}/openapi.json", tmp_path, {}, 0.5)
        finally:
            for writer in writers:
                writer.close()
            server.close()
            await server.wait_closed()
            await asyncio.sleep(0.4)  # the handler sees its writer closing and returns
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 5.0
