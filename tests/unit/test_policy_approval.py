"""Human in the loop: a new external dependency waits for pilotage approve / deny, through events on the bus."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pilotage.bus.sqlite import SQLiteBus
from pilotage.errors import InputError
from pilotage.events import CloudEvent, EventType
from pilotage.policy.approval import (
    answer,
    pending_approvals,
    seal,
)
from pilotage.policy.approval_key import default_key_path, load_key
from tests.unit.test_agent_governance import RUN, code_generated, make_ctx, of_type, review

NEW = [{"name": "httpx", "version": "0.28.1"}]
DEPS = [{"name": "fastapi", "version": "0.115.0"}, *NEW]
NEEDS = "new external dependency httpx 0.28.1 (licence BSD-3-Clause) needs approval"


async def _answer_when_requested(bus: Any, granted: bool, by: str = "alice", reason: str = "") -> CloudEvent:
    """Play the person: wait for the request on the log, then answer it (as `pilotage approve/deny` does)."""
    key = load_key(default_key_path())  # the operator's key (the test's own $XDG_CONFIG_HOME, tests/conftest.py)
    for _ in range(200):
        waiting = await pending_approvals(bus, key)
        if waiting:
            return await answer(bus, waiting[0]["approval_id"], granted=granted, by=by, reason=reason, key=key)
        await asyncio.sleep(0.02)
    raise AssertionError("no approval was requested")


def _review_with(ctx: Any, person: Any) -> list[CloudEvent]:
    async def go() -> list[CloudEvent]:
        helper = asyncio.create_task(person(ctx.bus)) if person else None
        events = await review(ctx, code_generated(DEPS, new=NEW))
        if helper is not None:
            await helper
        return events

    return asyncio.run(go())


def test_new_dependency_waits_and_an_approval_allows_the_merge() -> None:
    ctx = make_ctx()
    events = _review_with(ctx, lambda bus: _answer_when_requested(bus, True))
    (request,) = of_type(events, EventType.APPROVAL_REQUESTED)
    assert request.data["needs_approval"] == [NEEDS]
    assert request.data["default"] == "deny" and request.data["timeout_s"] == 1.0
    assert request.data["approval_id"].startswith("apr-") and request.runid == RUN
    assert len(request.data["signature"]) == 64 and request.data["signature_alg"] == "HMAC-SHA256"
    (granted,) = of_type(events, EventType.APPROVAL_GRANTED)
    assert granted.data["by"] == "alice" and granted.data["approved"] == [NEEDS]
    assert (
        granted.data["key_id"] == request.data["key_id"]
        and granted.data["cause_event_id"] == request.data["cause_event_id"]
    )
    (verdict,) = of_type(events, EventType.POLICY_EVALUATED)  # one verdict: the allow after the approval
    assert verdict.data["allow"] is True and verdict.data["needs_approval"] == []
    assert verdict.data["input"]["approval"] == {
        "id": request.data["approval_id"],
        "granted": True,
        "by": "alice",
        "approved": [NEEDS],
    }
    assert of_type(events, EventType.AGENT_FAILED) == []
    order = [e.type for e in events]
    assert (
        order.index(EventType.APPROVAL_REQUESTED)
        < order.index(EventType.APPROVAL_GRANTED)
        < order.index(EventType.POLICY_EVALUATED)
    )


def test_a_person_denies_the_merge() -> None:
    ctx = make_ctx()
    events = _review_with(ctx, lambda bus: _answer_when_requested(bus, False, "bob", "use the stdlib"))
    (verdict,) = of_type(events, EventType.POLICY_EVALUATED)
    assert verdict.data["allow"] is False
    ident = of_type(events, EventType.APPROVAL_REQUESTED)[0].data["approval_id"]
    assert verdict.data["reasons"] == [f"approval {ident} denied by bob: use the stdlib", "approval required: " + NEEDS]
    (failed,) = of_type(events, EventType.AGENT_FAILED)
    assert failed.data["error_type"] == "PolicyDenied" and "denied by bob" in failed.data["error"]
    assert of_type(events, EventType.APPROVAL_DENIED)[0].data["approved"] == []


def test_no_answer_applies_the_default_deny_after_the_timeout() -> None:
    ctx = make_ctx()  # approval_timeout_s = 1.0
    events = _review_with(ctx, None)
    (expired,) = of_type(events, EventType.APPROVAL_EXPIRED)
    assert expired.data["default"] == "deny"
    (verdict,) = of_type(events, EventType.POLICY_EVALUATED)
    assert verdict.data["allow"] is False
    assert (
        verdict.data["reasons"][0] == f"approval {expired.data['approval_id']} got no answer within 1 s: default deny"
    )
    assert of_type(events, EventType.AGENT_FAILED)[0].data["error_type"] == "PolicyDenied"


def test_preapproved_dependency_does_not_wait() -> None:
    ctx = make_ctx()
    ctx.policy.data["approved_dependencies"] = ["HTTPX"]  # type: ignore[attr-defined]
    events = _review_with(ctx, None)
    assert of_type(events, EventType.APPROVAL_REQUESTED) == []
    assert of_type(events, EventType.POLICY_EVALUATED)[0].data["allow"] is True


def test_answer_errors_and_the_cli_across_processes(tmp_path: Path) -> None:
    """`pilotage approve` in another process answers a request in the shared SQLite log."""
    import os
    import subprocess
    import sys

    from pilotage.events import new_event

    url = f"sqlite:///{tmp_path}/.pilotage/events.db"
    key = load_key(tmp_path / ".config" / "pilotage" / "approval.key")  # the CLI's default key with HOME=tmp_path

    async def seed() -> None:
        async with SQLiteBus(url) as bus:
            with pytest.raises(InputError, match="no approval apr-nope was requested"):
                await answer(bus, "apr-nope", granted=True, by="x", key=key)
            data = {"approval_id": "apr-000000000001", "action": "merge", "agent": "governance", "default": "deny",
                    "needs_approval": [NEEDS], "timeout_s": 600, "cause_event_id": "e-1"}  # fmt: skip
            sealed = seal(key, EventType.APPROVAL_REQUESTED, data, RUN)
            await bus.publish(
                new_event(EventType.APPROVAL_REQUESTED, sealed, source="/t", subject="checkout", runid=RUN)
            )
            # a request nobody signed (a run's process writing the log) is neither listed nor answerable
            forged = {**data, "approval_id": "apr-00000000f0f0"}
            await bus.publish(
                new_event(EventType.APPROVAL_REQUESTED, forged, source="/t", subject="checkout", runid=RUN)
            )

    asyncio.run(seed())
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    cli = [sys.executable, "-m", "pilotage"]
    listed = subprocess.run(
        [*cli, "policy", "pending", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert '"apr-000000000001"' in listed.stdout and "apr-00000000f0f0" not in listed.stdout
    forged = subprocess.run([*cli, "approve", "apr-00000000f0f0"], cwd=tmp_path, env=env, capture_output=True,
                            text=True)  # fmt: skip
    assert forged.returncode == 2 and "no approval apr-00000000f0f0 was requested" in forged.stderr
    ok = subprocess.run([*cli, "approve", "apr-000000000001", "--by", "carol"], cwd=tmp_path, env=env,
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "apr-000000000001 approved by carol (merge in run run-gov-1)" in ok.stdout
    again = subprocess.run([*cli, "deny", "apr-000000000001"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert again.returncode == 2
    assert again.stderr.strip().startswith("error: approval apr-000000000001 is already granted by carol")

    async def check() -> list[CloudEvent]:
        async with SQLiteBus(url) as bus:
            return [r.event for r in await bus.read(1, 100)]

    granted = [e for e in asyncio.run(check()) if e.type == EventType.APPROVAL_GRANTED]
    assert len(granted) == 1 and granted[0].data["approved"] == [NEEDS] and granted[0].runid == RUN
    assert granted[0].data["signature"] == seal(key, EventType.APPROVAL_GRANTED, granted[0].data, RUN)["signature"]
    assert (tmp_path / ".config" / "pilotage" / "approval.key").stat().st_mode & 0o777 == 0o600


def test_any_action_waits_for_approval_through_agent_authorize(tmp_path: Path) -> None:
    """Agent.authorize itself waits when a policy only needs approval (here a user policy on `scale`)."""
    from pilotage.agent import Agent, AgentContext
    from pilotage.bus.memory import MemoryBus
    from pilotage.errors import PolicyDenied
    from pilotage.events import new_event
    from pilotage.graph.sqlite import SQLiteGraph
    from pilotage.policy.rego import RegoPolicyEngine
    from pilotage.settings import Settings

    (tmp_path / "scale_approval.rego").write_text(
        "package pilotage.scale\n\nneeds_approval contains msg if {\n"
        "\tinput.instances > 3\n\tnot input.approval.granted\n"
        '\tmsg := sprintf("scaling down %d instances needs approval", [input.instances])\n}\n'
    )

    class Scaler(Agent):
        name = "scaler"

        async def on_event(self, event: CloudEvent) -> None:
            return None

    def run(granted: bool | None) -> tuple[list[CloudEvent], BaseException | None]:
        bus = MemoryBus()
        ctx = AgentContext(
            bus=bus,
            graph=SQLiteGraph("sqlite:///:memory:"),
            policy=RegoPolicyEngine([tmp_path]),
            runtime=None,
            settings=Settings(),
            extras={"approval_timeout_s": 1.0},
        )  # type: ignore[arg-type]
        cause = new_event("dev.pilotage.deploy.promoted", {}, source="/t", subject="svc", runid="r1")

        async def go() -> BaseException | None:
            await bus.publish(cause)
            person = asyncio.create_task(_answer_when_requested(bus, granted)) if granted is not None else None
            try:
                await Scaler(ctx).authorize(
                    "scale", {"direction": "down", "instances": 5, "idle_s": 9e9, "min_idle_s": 1}, cause=cause
                )
                error = None
            except PolicyDenied as exc:
                error = exc
            if person is not None:
                await person
            return error

        error = asyncio.run(go())
        return [r.event for r in asyncio.run(bus.read(1, 1000))], error

    events, error = run(True)
    assert error is None
    assert of_type(events, EventType.APPROVAL_REQUESTED)[0].data["action"] == "scale"
    assert of_type(events, EventType.POLICY_EVALUATED)[-1].data["allow"] is True
    events, error = run(False)
    assert isinstance(error, PolicyDenied) and "denied by alice" in str(error)
    events, error = run(None)
    assert isinstance(error, PolicyDenied) and "no answer within 1 s" in str(error)
    assert of_type(events, EventType.APPROVAL_EXPIRED)
