"""GovernanceAgent on the memory bus, the SQLite graph and real Rego: allow and deny flows."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pilotage.agent import AgentContext
from pilotage.agents.governance import GovernanceAgent, merge_input
from pilotage.bus.memory import MemoryBus
from pilotage.events import CloudEvent, EventType, new_event
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.policy.rego import RegoPolicyEngine
from pilotage.settings import Settings

RUN = "run-gov-1"


def make_ctx(policy_dirs: list[Path] | None = None) -> AgentContext:
    settings = Settings()
    return AgentContext(
        bus=MemoryBus(),
        graph=SQLiteGraph("sqlite:///:memory:"),
        policy=RegoPolicyEngine(policy_dirs or [], data={"license_allowlist": settings.license_allowlist}),
        runtime=None,  # type: ignore[arg-type]  # the governance agent never touches the runtime
        settings=settings,
        extras={"approval_timeout_s": 1.0},
    )


def code_generated(
    deps: list[dict[str, str]], files: list[str] | None = None, new: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    return {
        "repo_path": "/tmp/repo",
        "base_branch": "main",
        "base_commit": "b" * 40,
        "branch": "pilotage/discount-codes",
        "commit": "c" * 40,
        "base_dir": "/tmp/base",
        "head_dir": "/tmp/head",
        "files_changed": files or ["app/main.py", "app/models.py"],
        "lines_added": 120,
        "lines_removed": 4,
        "dependencies": deps,
        "new_dependencies": new or [],
    }


async def review(ctx: AgentContext, code: dict[str, Any] | None) -> list[CloudEvent]:
    if code is not None:
        await ctx.bus.publish(new_event(EventType.CODE_GENERATED, code, source="/test", subject="checkout", runid=RUN))
    pr = new_event(
        EventType.PR_OPENED,
        {
            "repo_path": "/tmp/repo",
            "branch": "pilotage/discount-codes",
            "base_branch": "main",
            "commit": "c" * 40,
            "base_commit": "b" * 40,
            "title": "Add discount code support",
            "body": "",
        },
        source="/test",
        subject="checkout",
        runid=RUN,
    )
    await ctx.bus.publish(pr)
    await GovernanceAgent(ctx).handle(pr)
    return [r.event for r in await ctx.bus.read(1, 1000)]


def of_type(events: list[CloudEvent], type: str) -> list[CloudEvent]:
    return [e for e in events if e.type == type]


def test_subscription() -> None:
    assert GovernanceAgent.name == "governance"
    assert GovernanceAgent.subscribes == (EventType.PR_OPENED,)


def test_allowed_change_emits_allow_verdict_and_decision() -> None:
    ctx = make_ctx()
    deps = [{"name": "fastapi", "version": "0.115.0"}, {"name": "httpx", "version": "0.28.1"}]
    events = asyncio.run(review(ctx, code_generated(deps)))

    verdicts = of_type(events, EventType.POLICY_EVALUATED)
    assert len(verdicts) == 1
    data = verdicts[0].data
    assert data["agent"] == "governance" and data["action"] == "merge" and data["allow"] is True
    assert data["reasons"] == [] and data["engine"] == "rego:"
    assert data["input"]["dependencies"] == [
        {"name": "fastapi", "version": "0.115.0", "license": "MIT"},
        {"name": "httpx", "version": "0.28.1", "license": "BSD-3-Clause"},
    ]
    assert verdicts[0].runid == RUN and verdicts[0].subject == "checkout"
    assert of_type(events, EventType.AGENT_FAILED) == []

    (decision,) = of_type(events, EventType.DECISION)
    assert decision.data["kind"] == "governance.review"
    assert decision.data["action"] == "approve_merge"
    assert decision.data["verdict"]["allow"] is True
    score = decision.data["score"]
    assert {k: score[k] for k in ("deny_count", "dependencies", "new_dependencies", "files_changed", "secrets")} == {
        "deny_count": 0,
        "dependencies": 2,
        "new_dependencies": 0,
        "files_changed": 2,
        "secrets": 0,
    }
    # fastapi and httpx pull in starlette, pydantic, anyio ... with their licences from the SBOM
    transitive = {d["name"]: d for d in data["input"]["transitive_dependencies"]}
    assert transitive["starlette"]["license"] == "BSD-3-Clause" and "fastapi" in transitive["starlette"]["required_by"]
    assert transitive["starlette"]["license_source"] == "sbom"
    assert data["input"]["vulnerability_scan"]["status"] == "skipped: offline"
    assert data["input"]["security_scan"]["status"] == "error"  # /tmp/head does not exist: scan not completed
    (scanned,) = of_type(events, "dev.pilotage.security.scanned")
    assert scanned.data["status"] == "error" and scanned.data["commit"] == "c" * 40

    commit = "c" * 40
    reviewed = ctx.graph.neighbours(f"Commit:{commit}", "REVIEWED_BY")
    assert len(reviewed) == 1
    edge, node = reviewed[0]
    assert node.id == f"PolicyVerdict:{commit}/merge"
    assert node.props["allow"] is True and node.props["decision_id"] == decision.id
    assert edge.props["decision_id"] == decision.id


def test_denied_change_emits_deny_verdict_decision_and_agent_failed() -> None:
    ctx = make_ctx()
    deps = [{"name": "fastapi", "version": "0.115.0"}, {"name": "pilotage-not-installed-zz", "version": "1.0"}]
    events = asyncio.run(review(ctx, code_generated(deps, files=["app/main.py", "deploy/id_rsa"])))

    (verdict,) = of_type(events, EventType.POLICY_EVALUATED)
    assert verdict.data["allow"] is False
    assert verdict.data["reasons"] == [
        "dependency pilotage-not-installed-zz 1.0 has no known licence: declare it in the package metadata or "
        "review it by hand",
        "file deploy/id_rsa looks like a secret (private key or .env): remove it from the change",
    ]
    (decision,) = of_type(events, EventType.DECISION)
    assert decision.data["action"] == "reject_merge"
    assert decision.data["score"]["deny_count"] == 2
    assert "pilotage-not-installed-zz" in decision.data["rationale"]

    (failed,) = of_type(events, EventType.AGENT_FAILED)
    assert failed.data["agent"] == "governance"
    assert failed.data["error_type"] == "PolicyDenied"
    assert failed.data["error"].startswith("policy denied merge: dependency pilotage-not-installed-zz")
    assert failed.data["verdict"]["allow"] is False
    # decision recorded before the failure, verdict before the decision
    order = [e.type for e in events]
    assert (
        order.index(EventType.POLICY_EVALUATED) < order.index(EventType.DECISION) < order.index(EventType.AGENT_FAILED)
    )
    node = ctx.graph.get_node(f"PolicyVerdict:{'c' * 40}/merge")
    assert node is not None and node.props["allow"] is False


def test_user_policy_can_deny_a_merge(tmp_path: Path) -> None:
    (tmp_path / "size.rego").write_text(
        "package pilotage.merge\n\n"
        'deny contains msg if {\n\tinput.lines_added > 100\n\tmsg := sprintf("change too large: %d lines", '
        "[input.lines_added])\n}\n"
    )
    ctx = make_ctx([tmp_path])
    events = asyncio.run(review(ctx, code_generated([{"name": "fastapi", "version": "0.115.0"}])))
    (verdict,) = of_type(events, EventType.POLICY_EVALUATED)
    assert verdict.data["reasons"] == ["change too large: 120 lines"]
    merge = [f"bundled/merge{part}.rego" for part in ("", "_crypto", "_dependencies", "_secrets", "_security")]
    assert verdict.data["policies"] == ["data.pilotage.merge", *merge, str(tmp_path / "size.rego")]


def test_missing_code_generated_fails_without_verdict() -> None:
    ctx = make_ctx()
    events = asyncio.run(review(ctx, None))
    assert of_type(events, EventType.POLICY_EVALUATED) == []
    (failed,) = of_type(events, EventType.AGENT_FAILED)
    assert failed.data["error_type"] == "InputError"
    assert "no code.generated event in run 'run-gov-1'" in failed.data["error"]


def test_reason_is_pure_and_replayable() -> None:
    agent = GovernanceAgent(make_ctx())
    policy_input = merge_input(code_generated([{"name": "rich", "version": "13", "license": "MIT"}]), {})
    inputs = {
        "policy_input": policy_input,
        "verdict": {
            "action": "merge",
            "allow": True,
            "reasons": [],
            "policies": ["data.pilotage.merge"],
            "engine": "rego:",
        },
    }
    assert agent.reason("governance.review", inputs) == agent.reason("governance.review", inputs)
    assert agent.reason("governance.review", inputs).action == "approve_merge"
    inputs["verdict"]["allow"] = False
    inputs["verdict"]["reasons"] = ["x"]
    assert agent.reason("governance.review", inputs).action == "reject_merge"
