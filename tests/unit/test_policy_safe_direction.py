"""Issue 15, finding 5: fail closed never keeps a failing canary serving.

A rollback moves traffic back to the known-good version: when the policy engine cannot answer (it raises, times
out, the OPA server is down) or a working policy denies it, it still happens, recorded as such. Every action that
adds risk (deploy, promote, scale, commit, merge) stays fail closed with the same broken engine.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from pilotage.agent import Agent, AgentContext
from pilotage.bus.memory import MemoryBus
from pilotage.errors import BackendUnavailable, PolicyDenied
from pilotage.events import CloudEvent, EventType, new_event
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.policy.base import PolicyEngine, Verdict
from pilotage.policy.opa import OPAPolicyEngine
from pilotage.policy.rego import RegoPolicyEngine
from pilotage.settings import Settings
from tests.fixtures.tiny_service.harness import DenyAll, Stack, events_of, publish_perf, seed_run, wait_for

RISKY = ("deploy", "promote", "scale", "commit", "merge")


def closed_port_url() -> str:
    """Return ``http://127.0.0.1:PORT`` for a port nothing listens on (OPA down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Raising(PolicyEngine):
    """An engine that breaks down on the listed actions (raises, as a crashed backend would); else asks ``inner``."""

    url = "test:raising"

    def __init__(self, inner: PolicyEngine | None = None, failing: tuple[str, ...] | None = None) -> None:
        self.inner, self.failing = inner, failing

    def evaluate(self, action: str, input: dict[str, Any]) -> Verdict:
        if self.failing is None or action in self.failing:
            raise BackendUnavailable("policy engine connection reset", url=self.url)
        assert self.inner is not None
        return self.inner.evaluate(action, input)

    def check(self) -> None:
        return None


class Routed(PolicyEngine):
    """Bundled Rego for every action but ``rollback``, which goes to an OPA server that is down."""

    def __init__(self) -> None:
        self.rego, self.opa = RegoPolicyEngine(), OPAPolicyEngine(closed_port_url(), timeout_s=1.0)
        self.url = self.opa.url

    def evaluate(self, action: str, input: dict[str, Any]) -> Verdict:
        return (self.opa if action == "rollback" else self.rego).evaluate(action, input)

    def check(self) -> None:
        return None


class Actor(Agent):
    name = "actor"

    async def on_event(self, event: CloudEvent) -> None:
        return None


def _authorize(engine: PolicyEngine, action: str) -> tuple[Verdict | PolicyDenied, list[CloudEvent]]:
    bus = MemoryBus()
    ctx = AgentContext(bus, SQLiteGraph("sqlite:///:memory:"), engine, None, Settings(), {"approval_timeout_s": 30})  # type: ignore[arg-type]
    cause = new_event(EventType.DEPLOY_STEP, {}, source="/t", subject="svc", runid="r1")

    async def go() -> Verdict | PolicyDenied:
        try:
            return await Actor(ctx).authorize(action, {"deployment_id": "d1", "version": "a" * 12}, cause=cause)
        except PolicyDenied as exc:
            return exc

    outcome = asyncio.run(go())
    return outcome, [r.event for r in asyncio.run(bus.read(1, 1000))]


BROKEN = {
    "raises": (lambda: Raising(), "policy engine error: BackendUnavailable: policy engine connection reset"),
    "opa-down": (lambda: OPAPolicyEngine(closed_port_url(), timeout_s=1.0), "policy engine unreachable: http://"),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_without_a_verdict_a_rollback_proceeds_and_every_risky_action_is_denied(broken: str) -> None:
    make, error = BROKEN[broken]
    outcome, events = _authorize(make(), "rollback")
    assert isinstance(outcome, Verdict) and outcome.allow is True
    (record,) = [e.data for e in events if e.type == EventType.POLICY_EVALUATED]
    assert record["action"] == "rollback" and record["allow"] is True
    assert record["override"] == "no verdict; safe direction"
    assert record["error"].startswith(error) and record["reasons"] == [record["error"]]
    for action in RISKY:
        outcome, events = _authorize(make(), action)
        assert isinstance(outcome, PolicyDenied), action
        (record,) = [e.data for e in events if e.type == EventType.POLICY_EVALUATED]
        assert (record["action"], record["allow"], record["override"]) == (action, False, "")
        assert record["error"].startswith(error) and outcome.message == f"policy denied {action}: {record['error']}"


def test_an_explicit_deny_or_approval_never_blocks_a_rollback_but_still_blocks_a_deploy(tmp_path: Path) -> None:
    outcome, events = _authorize(DenyAll(), "rollback")
    assert isinstance(outcome, Verdict) and outcome.allow is True
    (record,) = [e.data for e in events if e.type == EventType.POLICY_EVALUATED]
    assert record["override"] == "deny overridden; safe direction" and record["error"] == ""
    assert record["reasons"] == ["rollback refused by test"]
    assert isinstance(_authorize(DenyAll(), "deploy")[0], PolicyDenied)

    (tmp_path / "rollback_person.rego").write_text('package pilotage.rollback\n\nneeds_approval contains "ask me"\n')
    outcome, events = _authorize(RegoPolicyEngine([tmp_path]), "rollback")  # approval timeout 30 s: never waited
    assert isinstance(outcome, Verdict) and outcome.allow is True
    assert [e.type for e in events] == [EventType.POLICY_EVALUATED]  # no approval.requested
    assert events[0].data["override"] == "approval not awaited; safe direction"
    assert events[0].data["needs_approval"] == ["ask me"]


@pytest.mark.parametrize("broken", ["raises", "opa-down"])
def test_a_failing_canary_is_rolled_back_when_the_rollback_policy_cannot_be_evaluated(
    tmp_path: Path, broken: str
) -> None:
    engine: PolicyEngine = Raising(RegoPolicyEngine(), failing=("rollback",)) if broken == "raises" else Routed()

    async def scenario() -> None:
        async with Stack(tmp_path, engine) as stack:
            await seed_run(stack.bus, tmp_path, fault_rate=0.3, idle_after_s=30.0)
            await publish_perf(stack.bus)
            rolled = await wait_for(stack.bus, EventType.DEPLOY_ROLLED_BACK, timeout_s=90)
            dep_id = (await events_of(stack.bus, EventType.DEPLOY_STARTED))[0].data["deployment_id"]
            route = await stack.runtime.get_route(dep_id)
            assert route is not None and route.weights == {"a" * 12: 100, "b" * 12: 0}
            assert not (await stack.runtime.health(route.backends["b" * 12])).running
            assert (await stack.runtime.health(route.backends["a" * 12])).running
            verdicts = [e.data for e in await events_of(stack.bus, EventType.POLICY_EVALUATED)]
            assert [(v["action"], v["allow"], v["override"]) for v in verdicts] == [
                ("deploy", True, ""),
                ("rollback", True, "no verdict; safe direction"),
            ]
            assert verdicts[1]["error"].startswith(
                "policy engine error: BackendUnavailable" if broken == "raises" else "policy engine unreachable"
            )
            (incident,) = [e.data for e in await events_of(stack.bus, EventType.INCIDENT_OPENED)]
            assert rolled.data["incident_id"] == incident["incident_id"]
            report = Path(incident["report_path"]).read_text(encoding="utf-8")
            assert "no verdict; safe direction: " + verdicts[1]["error"] in report
            assert await events_of(stack.bus, EventType.AGENT_FAILED) == []
            assert await events_of(stack.bus, EventType.DEPLOY_PROMOTED) == []

    asyncio.run(scenario())
