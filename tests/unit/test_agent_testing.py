"""The testing agent on the memory bus with a real runtime: the buggy service fails the gate, the ok one passes."""

from __future__ import annotations

import asyncio
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pilotage.agent import AgentContext, RunSpec
from pilotage.agents.testing import VERDICT_RULE, TestingAgent, suite_options, verdict_reasoning
from pilotage.bus.memory import MemoryBus
from pilotage.events import CloudEvent, EventType, new_event
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.runtime.local import LocalRuntime
from pilotage.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _ctx(tmp_path: Path) -> AgentContext:
    return AgentContext(
        bus=MemoryBus(),
        graph=SQLiteGraph("sqlite:///:memory:"),
        policy=None,  # type: ignore[arg-type]  # the testing agent asks no policy question
        runtime=LocalRuntime(log_dir=tmp_path / "logs"),
        settings=Settings.model_validate({"schemathesis_max_examples": 10}),
    )


async def _seed(
    ctx: AgentContext,
    tmp_path: Path,
    fixture: str,
    *,
    code: bool = True,
    files: list[str] | None = None,
    base: str | None = None,
) -> Path:
    head = shutil.copytree(FIXTURES / fixture, tmp_path / "versions" / COMMIT[:12])
    if files is not None:  # issue 4: a test that no changed file affects, collected first (alphabetical)
        (head / "tests/test_aa_plain.py").write_text("def test_plain() -> None:\n    assert 1 + 1 == 2\n")
    run = RunSpec(
        run_id="r1", service="pets", spec_path=str(head / "openapi.yaml"), request="x", workdir=str(tmp_path / "work")
    )
    events = [(EventType.FLOW_STARTED, run.model_dump())]
    events.append((EventType.SPEC_VALIDATED, {"spec_path": str(head / "openapi.yaml"), "valid": True}))
    if code:
        data = {"commit": COMMIT, "head_dir": str(head), "branch": "feat"}
        if base is not None:  # issue 18: the production version the change is tested against
            data["base_dir"] = str(shutil.copytree(FIXTURES / base, tmp_path / "versions" / "base"))
        events.append((EventType.CODE_GENERATED, {**data, "files_changed": files} if files is not None else data))
    for type_, data in events:
        await ctx.bus.publish(new_event(type_, data, source="/test", subject="pets", runid="r1"))
    return head


def _merge(allow: bool = True, action: str = "merge") -> CloudEvent:
    data = {"agent": "governance", "action": action, "allow": allow, "reasons": [], "policies": [], "engine": "rego:"}
    return new_event(EventType.POLICY_EVALUATED, data, source="/test", subject="pets", runid="r1")


def _run(tmp_path: Path, body: Callable[[AgentContext], Awaitable[None]]) -> None:
    async def scenario() -> None:
        ctx = _ctx(tmp_path)
        try:
            await body(ctx)
        finally:
            await ctx.runtime.close()  # no service process outlives a failed assertion

    asyncio.run(scenario())


async def _events(ctx: AgentContext, pattern: str) -> list[CloudEvent]:
    return [r.event for r in await ctx.bus.read(1, 10_000, pattern=pattern)]


def test_buggy_service_fails_the_gate_with_evidence(tmp_path: Path) -> None:
    async def scenario(ctx: AgentContext) -> None:
        head = await _seed(ctx, tmp_path, "buggy_service")
        agent = TestingAgent(ctx)
        await agent.handle(_merge())
        assert ctx.runtime.instances() == []  # type: ignore[attr-defined]  # stopped in finally
        [done] = await _events(ctx, EventType.TESTS_COMPLETED)
        data = done.data
        assert data["passed"] is False and data["commit"] == COMMIT and data["head_dir"] == str(head)
        st = data["schemathesis"]
        by = {op["operation"]: op for op in st["operations"]}
        assert st["server_errors"] > 0 and by["GET /pets"]["server_errors"] > 0
        assert set(by) == {"GET /pets", "POST /pets", "GET /pets/{petId}"}
        assert "not_a_server_error" in by["GET /pets"]["checks_failed"]
        assert any("limit=0" in e["curl"] for e in by["GET /pets"]["examples"])
        assert (data["unit"]["passed"], data["unit"]["failed"], data["unit"]["errors"]) == (2, 1, 0)
        assert Path(data["junit_path"]).is_file() and Path(data["junit_path"]).is_relative_to(tmp_path / "work")
        [decision] = [e.data for e in await _events(ctx, EventType.DECISION)]
        assert decision["kind"] == "tests.verdict" and decision["action"] == "fail"
        assert decision["id"] == data["decision_id"] and decision["verdict"]["action"] == "merge"
        assert decision["rule"] == VERDICT_RULE
        assert agent.reason("tests.verdict", decision["inputs"]).action == "fail"  # replayable
        node = ctx.graph.get_node(f"TestRun:r1/{COMMIT}")
        assert node is not None and node.props["passed"] is False and node.props["server_errors"] == st["server_errors"]
        assert node.props["unit_failed"] == 1 and len(node.props["operations"]) == 3
        [(edge, other)] = ctx.graph.neighbours(f"Commit:{COMMIT}", "TESTED_BY")
        assert other.id == node.id
        assert not list(head.rglob("__pycache__")) and not (head / "data.db").exists()  # the worktree stays clean

    _run(tmp_path, scenario)


def test_failures_production_has_too_are_baseline_problems_not_blamed_on_the_change(tmp_path: Path) -> None:
    """Issue 18: head and baseline share the planted bugs; the failing tests rerun on the baseline excuse them."""

    async def scenario(ctx: AgentContext) -> None:
        await _seed(ctx, tmp_path, "buggy_service", base="buggy_service")
        await TestingAgent(ctx).handle(_merge())
        [done] = await _events(ctx, EventType.TESTS_COMPLETED)
        problems = {p["test"]: p for p in done.data["baseline_problems"]}
        assert problems["tests/test_pets.py::test_zero_limit_is_rejected"]["message"].startswith("ZeroDivisionError")
        assert "schemathesis not_a_server_error GET /pets" in problems
        assert done.data["unit"]["failed"] == 1 and done.data["baseline_untested"] == []  # reported as it was
        [decision] = [e.data for e in await _events(ctx, EventType.DECISION)]
        assert (
            "Baseline problem: tests/test_pets.py::test_zero_limit_is_rejected fails on production too: ZeroDivision"
            in (decision["rationale"])
        )
        assert decision["score"]["unit_failed"] == 0
        why = (decision["rationale"], done.data["baseline_untested"], done.data["failures"])
        assert done.data["passed"] is True, why  # every failure is production's too

    _run(tmp_path, scenario)


def test_the_same_failure_only_on_the_change_still_gates(tmp_path: Path) -> None:
    async def scenario(ctx: AgentContext) -> None:
        await _seed(ctx, tmp_path, "buggy_service", base="ok_service")
        await TestingAgent(ctx).handle(_merge())
        [done] = await _events(ctx, EventType.TESTS_COMPLETED)
        assert done.data["passed"] is False and done.data["baseline_problems"] == []
        [decision] = [e.data for e in await _events(ctx, EventType.DECISION)]
        assert "Baseline problem" not in decision["rationale"] and decision["score"]["unit_failed"] == 1

    _run(tmp_path, scenario)


def test_ok_service_passes_and_a_redelivery_does_nothing(tmp_path: Path) -> None:
    async def scenario(ctx: AgentContext) -> None:
        await _seed(ctx, tmp_path, "ok_service")
        ctx.graph.upsert_node("Commit", COMMIT, {"sha": COMMIT, "message": "kept"})
        agent = TestingAgent(ctx)
        event = _merge()
        await agent.handle(event)
        [done] = await _events(ctx, EventType.TESTS_COMPLETED)
        assert done.data["passed"] is True and done.data["schemathesis"]["server_errors"] == 0
        assert done.data["schemathesis"]["requests"] > 0 and done.data["unit"]["passed"] == 4
        assert done.data["affected_tests"] == "all"  # issue 4: the graph does not know this code
        assert done.data["affected_tests_source"].startswith("all: the graph has no code under")
        assert done.runid == "r1" and done.subject == "pets" and done.source == "/pilotage/agents/testing"
        commit = ctx.graph.get_node(f"Commit:{COMMIT}")
        assert commit is not None and commit.props["message"] == "kept"  # existing node merged, not replaced
        before = len(await _events(ctx, "*"))
        await agent.handle(event)  # at-least-once delivery: the same verdict again
        assert len(await _events(ctx, "*")) == before

    _run(tmp_path, scenario)


def test_tests_the_graph_says_are_affected_run_first(tmp_path: Path) -> None:
    """Issue 4: with the service's code ingested, the impact of files_changed orders pytest; all tests still run."""
    from pilotage.graph.ingest import ingest

    async def scenario(ctx: AgentContext) -> None:
        head = await _seed(ctx, tmp_path, "ok_service", files=["app/main.py", "openapi.yaml"])
        ingest(ctx.graph, head, service="pets")
        await TestingAgent(ctx).handle(_merge())
        [done] = await _events(ctx, EventType.TESTS_COMPLETED)
        affected = [
            "tests/test_pets.py::test_create_then_get",
            "tests/test_pets.py::test_healthz",
            "tests/test_pets.py::test_metrics_count_route_template",
            "tests/test_pets.py::test_missing_pet_is_404",
        ]
        assert done.data["affected_tests"] == affected
        assert done.data["affected_tests_source"] == "graph: 1 of 2 changed files in the graph"
        assert done.data["passed"] is True and done.data["unit"]["passed"] == 5  # the unaffected test ran too
        cases = ET.parse(done.data["unit"]["junit_path"]).getroot().iter("testcase")
        ran = [f"{c.get('classname', '').replace('.', '/')}.py::{c.get('name')}" for c in cases]
        ran = [nodeid for nodeid in ran if "test_pilotage_" not in nodeid]  # issue 5: generated tests run too
        assert ran == [*affected, "tests/test_aa_plain.py::test_plain"]  # collected first, run last

    _run(tmp_path, scenario)


@pytest.mark.parametrize(("allow", "action"), [(False, "merge"), (True, "deploy")])
def test_other_verdicts_are_ignored(tmp_path: Path, allow: bool, action: str) -> None:
    async def scenario(ctx: AgentContext) -> None:
        await _seed(ctx, tmp_path, "ok_service")
        before = len(await _events(ctx, "*"))
        await TestingAgent(ctx).handle(_merge(allow, action))
        assert len(await _events(ctx, "*")) == before

    _run(tmp_path, scenario)


def test_missing_code_generated_becomes_agent_failed(tmp_path: Path) -> None:
    async def scenario(ctx: AgentContext) -> None:
        await _seed(ctx, tmp_path, "ok_service", code=False)
        await TestingAgent(ctx).handle(_merge())
        [failed] = await _events(ctx, EventType.AGENT_FAILED)
        assert failed.data["agent"] == "testing" and failed.data["error_type"] == "InputError"
        assert "no code.generated" in failed.data["error"]
        assert await _events(ctx, EventType.TESTS_COMPLETED) == []

    _run(tmp_path, scenario)


def _inputs(server_errors: int = 0, failed: int = 0, errors: int = 0, complete: bool = True, **st: Any) -> Any:
    return {
        "commit": COMMIT,
        "schemathesis": {"requests": 10, "server_errors": server_errors, "complete": complete, **st},
        "unit": {"passed": 3, "failed": failed, "errors": errors},
    }


@pytest.mark.parametrize(
    ("inputs", "action"),
    [
        (_inputs(), "pass"),
        (_inputs(checks_failed=["status_code_conformance", "allow_header_conformance"]), "pass"),
        (_inputs(server_errors=1, checks_failed=["not_a_server_error"]), "fail"),
        (_inputs(failed=1), "fail"),
        (_inputs(errors=1), "fail"),
        (_inputs(complete=False), "fail"),
    ],
)
def test_verdict_rule(inputs: dict[str, Any], action: str) -> None:
    reasoning = verdict_reasoning(inputs)
    assert reasoning.action == action
    assert reasoning.score["server_errors"] == inputs["schemathesis"]["server_errors"]
    if inputs["schemathesis"].get("checks_failed") == ["status_code_conformance", "allow_header_conformance"]:
        assert reasoning.score["non_gating_checks"] == 2 and "status_code_conformance" in reasoning.rationale


def test_suite_options_are_the_settings_knobs_and_a_seed_per_commit() -> None:
    settings = Settings(schemathesis_max_examples=4, testing_timeout_s=90.0, testing_request_timeout_s=2.5,
                        testing_auth_headers={"X-Tenant": "t1"})  # fmt: skip
    options = suite_options(settings, "a" * 40)
    assert options["max_examples"] == 4 and options["timeout_s"] == 90.0 and options["request_timeout_s"] == 2.5
    assert options["headers"] == {"X-Tenant": "t1"} and "quarantine" not in options
    assert options["seed"] == 3812417436  # the first 8 hex digits of the commit's sha256
    assert suite_options(settings, "a" * 40)["seed"] == options["seed"] != suite_options(settings, "b" * 40)["seed"]
