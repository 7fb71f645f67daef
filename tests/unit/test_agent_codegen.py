"""CodegenAgent after the DesignAgent: real git repository, generation, worktrees, events and graph."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from pilotage.agent import AgentContext
from pilotage.agents.codegen import CodegenAgent, branch_name
from pilotage.agents.design import DesignAgent
from pilotage.catalogue import checked_event
from pilotage.codegen import git
from pilotage.events import CloudEvent, EventType
from pilotage.fleet.descriptor import load_descriptor
from pilotage.fleet.registry import load_fleet
from pilotage.policy.rego import RegoPolicyEngine
from pilotage.spec.load import load_spec, spec_key
from tests.unit.test_agent_design import CHECKOUT, started
from tests.unit.test_agent_design import make_ctx as design_ctx


def make_ctx(policy_dirs: list[Path] | None = None) -> AgentContext:
    """The design agent's context plus the real Rego engine: codegen asks the commit policy (issue 6)."""
    ctx = design_ctx()
    ctx.policy = RegoPolicyEngine(policy_dirs or [])
    return ctx


async def design_then_codegen(ctx: AgentContext, tmp_path: Path, run_id: str = "run-design-1") -> list[CloudEvent]:
    start = started(tmp_path)
    if run_id != start.runid:
        start = start.model_copy(update={"runid": run_id, "data": {**start.data, "run_id": run_id}})
    await ctx.bus.publish(start)
    await DesignAgent(ctx).handle(start)
    validated = [
        r.event for r in await ctx.bus.read(1, 1000, pattern=EventType.SPEC_VALIDATED) if r.event.runid == run_id
    ]
    await CodegenAgent(ctx).handle(validated[0])
    return [r.event for r in await ctx.bus.read(1, 1000) if r.event.runid == run_id]


def test_generates_commits_and_opens_a_pr(tmp_path: Path) -> None:
    ctx = make_ctx()
    events = asyncio.run(design_then_codegen(ctx, tmp_path))
    assert not [e for e in events if e.type == EventType.AGENT_FAILED], [e.data for e in events]
    generated = next(e.data for e in events if e.type == EventType.CODE_GENERATED)
    pr = next(e.data for e in events if e.type == EventType.PR_OPENED)
    types = [e.type for e in events]
    assert types.index(EventType.CODE_GENERATED) < types.index(EventType.PR_OPENED)

    repo = (tmp_path / "repo").resolve()
    assert generated["repo_path"] == str(repo) and generated["base_branch"] == "main"
    assert generated["branch"] == "pilotage/discount-code-run-desi" == branch_name("discount-code", "run-design-1")
    assert git.rev_parse(repo, "main") == generated["base_commit"]
    assert git.rev_parse(repo, generated["branch"]) == generated["commit"]
    assert git.git(repo, "log", "-1", "--format=%s", "main") == "baseline: Checkout service 1.0.0"
    assert git.git(repo, "log", "-1", "--format=%s", generated["commit"]) == started(tmp_path).data["request"]

    versions = (tmp_path / "versions").resolve()
    assert generated["base_dir"] == str(versions / generated["base_commit"][:12])
    assert generated["head_dir"] == str(versions / generated["commit"][:12])
    head_main = Path(generated["head_dir"], "app", "main.py").read_text()
    assert "async def create_discount_code" in head_main
    assert "create_discount_code" not in Path(generated["base_dir"], "app", "main.py").read_text()
    assert sorted(generated["files_changed"]) == [
        "README.md",
        "app/main.py",
        "app/models.py",
        "app/openapi.json",
        "tests/test_service.py",
    ]
    assert generated["lines_added"] > 50 and generated["lines_removed"] >= 1
    assert {d["name"] for d in generated["dependencies"]} >= {"fastapi", "uvicorn", "pydantic", "prometheus-client"}
    assert generated["new_dependencies"] == []

    assert pr["title"] == started(tmp_path).data["request"]
    assert pr["commit"] == generated["commit"] and pr["base_commit"] == generated["base_commit"]
    assert "`POST /discount-codes` (create)" in pr["body"]

    decision = next(e.data for e in events if e.type == EventType.DECISION and e.data["kind"] == "codegen.plan")
    assert decision["action"] == "baseline-and-branch"
    assert decision["score"] == {"files": 20, "resources": 4, "operations": 15, "stored_operations": 15}
    replay = CodegenAgent(ctx).reason("codegen.plan", decision["inputs"])
    assert (replay.action, replay.score, replay.rationale) == (
        decision["action"],
        decision["score"],
        decision["rationale"],
    )

    graph = ctx.graph
    commits = {n.key for _, n in graph.neighbours("Service:checkout", "HAS_COMMIT")}
    assert commits == {generated["base_commit"], generated["commit"]}
    next_key = spec_key("checkout", load_spec(tmp_path / "artifacts" / "openapi.next.yaml"))
    assert [n.key for _, n in graph.neighbours(f"Commit:{generated['commit']}", "IMPLEMENTS")] == [next_key]
    assert [n.key for _, n in graph.neighbours(f"Commit:{generated['base_commit']}", "IMPLEMENTS")] == [
        spec_key("checkout", load_spec(CHECKOUT))
    ]

    # issue 17: the generated service is a managed service, its baseline the production the change goes to
    fleet = asyncio.run(load_fleet(ctx.bus))
    assert fleet["checkout"].generated and fleet["checkout"].repo_path == str(repo)
    assert fleet["checkout"].production_commit == generated["base_commit"] and generated["service_repo"] == str(repo)
    assert [d["run_id"] for d in fleet["checkout"].deliveries] == ["run-design-1"]
    descriptor = load_descriptor(generated["head_dir"])  # the one Pilotage wrote validates against the schema
    assert (descriptor.name, descriptor.health, descriptor.openapi) == ("checkout", "/healthz", "app/openapi.json")

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=generated["head_dir"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:]


def test_second_run_reuses_the_repository(tmp_path: Path) -> None:
    ctx = make_ctx()
    first = asyncio.run(design_then_codegen(ctx, tmp_path))
    refused = asyncio.run(design_then_codegen(ctx, tmp_path, run_id="run-second-2"))
    failed = [e.data["error"] for e in refused if e.type == EventType.AGENT_FAILED]
    assert any("a delivery of checkout is in progress (run run-design-1" in str(f) for f in failed)  # concurrent
    closed = {"run_id": "run-design-1", "status": "completed", "outcome": "promoted", "error": None}
    asyncio.run(ctx.bus.publish(checked_event(EventType.FLOW_COMPLETED, closed, source="t", runid="run-design-1")))
    second = asyncio.run(design_then_codegen(ctx, tmp_path, run_id="run-second-2"))
    g1 = next(e.data for e in first if e.type == EventType.CODE_GENERATED)
    g2 = next(e.data for e in second if e.type == EventType.CODE_GENERATED)
    assert g2["base_commit"] == g1["base_commit"]
    assert g2["branch"] == "pilotage/discount-code-run-seco"
    assert git.rev_parse(Path(g2["repo_path"]), g2["branch"]) == g2["commit"]
    assert git.git(Path(g2["repo_path"]), "rev-parse", "main") == g1["base_commit"]
    decision = next(e.data for e in second if e.type == EventType.DECISION and e.data["kind"] == "codegen.plan")
    assert decision["action"] == "branch"


def test_redelivery_reuses_the_commit(tmp_path: Path) -> None:
    ctx = make_ctx()
    events = asyncio.run(design_then_codegen(ctx, tmp_path))
    validated = next(e for e in events if e.type == EventType.SPEC_VALIDATED)
    before = asyncio.run(ctx.bus.read(1, 1000, pattern=EventType.CODE_GENERATED))
    asyncio.run(CodegenAgent(ctx).handle(validated))
    records = asyncio.run(ctx.bus.read(1, 1000, pattern=EventType.CODE_GENERATED))
    # the second run of the handler republishes the same deterministic ids: the log keeps one code.generated
    assert [r.event.id for r in records] == [r.event.id for r in before] and len(records) == 1
    repo = Path(records[0].event.data["repo_path"])
    assert git.rev_parse(repo, records[0].event.data["branch"]) == records[0].event.data["commit"]


def test_every_commit_asks_the_policy_and_a_deny_commits_nothing(tmp_path: Path) -> None:
    ctx = make_ctx()
    events = asyncio.run(design_then_codegen(ctx, tmp_path / "ok"))
    commits = [e.data for e in events if e.type == EventType.POLICY_EVALUATED and e.data["action"] == "commit"]
    assert [(c["input"]["role"], c["input"]["branch"], c["allow"]) for c in commits] == [
        ("baseline", "main", True),
        ("change", "pilotage/discount-code-run-desi", True),
    ]
    assert "app/main.py" in commits[1]["input"]["files"]

    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "freeze.rego").write_text(
        'package pilotage.commit\n\ndeny contains "repository frozen" if { input.role == "change" }\n'
    )
    ctx = make_ctx([policies])
    events = asyncio.run(design_then_codegen(ctx, tmp_path / "frozen"))
    (failed,) = [e.data for e in events if e.type == EventType.AGENT_FAILED]
    assert failed["agent"] == "codegen" and failed["error"].startswith("policy denied commit: repository frozen")
    repo = (tmp_path / "frozen" / "repo").resolve()
    assert git.git(repo, "log", "--all", "--format=%s").splitlines() == ["baseline: Checkout service 1.0.0"]
    assert not [e for e in events if e.type == EventType.CODE_GENERATED]
