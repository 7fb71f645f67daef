"""The flow runner with small test-double agents on the memory bus: closing rule, failure, time budget."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

from pilotage.agent import Agent, AgentContext, Reasoning, RunSpec
from pilotage.bus.memory import MemoryBus
from pilotage.errors import InputError
from pilotage.events import CloudEvent, EventType
from pilotage.flows.feature_delivery import run_feature_delivery
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.settings import Settings


class Closer(Agent):
    """Answers flow.started with a decision, a promotion, a model update and a scale-down."""

    name = "closer"
    subscribes: ClassVar[tuple[str, ...]] = (EventType.FLOW_STARTED,)

    def reason(self, kind: str, inputs: dict[str, Any]) -> Reasoning:
        return Reasoning(action="promote" if inputs["ok"] else "rollback", rule="ok flag", score=1.0, rationale="x")

    async def on_event(self, event: CloudEvent) -> None:
        run = await self.run_spec(event)
        await self.decide("test.kind", {"ok": run.inject_fault_rate == 0}, cause=event)
        promoted = {"deployment_id": "d1", "strategy": "canary", "version": "v2", "commit": None, "standby": {}}
        await self.emit(EventType.DEPLOY_PROMOTED, promoted, cause=event)
        model = {"service": run.service, "strategy": "canary", "alpha": 1.0, "beta": 2.0, "failure_mean": 0.33}
        await self.emit(EventType.MODEL_UPDATED, model, cause=event)
        scaled = {"environment": "d1", "idle_s": 0.0, "instances_stopped": 1, "saving_usd_per_hour": 0.1,
                  "price_source": "test", "deployment_id": "d1"}  # fmt: skip
        await self.emit(EventType.ENV_SCALED_DOWN, scaled, cause=event)


class Failer(Agent):
    name = "failer"
    subscribes: ClassVar[tuple[str, ...]] = (EventType.FLOW_STARTED,)

    async def on_event(self, event: CloudEvent) -> None:
        raise InputError("spec file nope.yaml not found", hint="pass an existing file")


class Silent(Agent):
    name = "silent"
    subscribes: ClassVar[tuple[str, ...]] = ()

    async def on_event(self, event: CloudEvent) -> None:  # pragma: no cover - never subscribed
        return None


def ctx() -> AgentContext:
    return AgentContext(
        bus=MemoryBus(),
        graph=SQLiteGraph("sqlite:///:memory:"),
        policy=None,  # type: ignore[arg-type]
        runtime=None,
        settings=Settings(),
    )  # type: ignore[arg-type]


def spec(tmp_path: Path) -> RunSpec:
    return RunSpec(
        run_id="run-test", service="svc", spec_path="/x.yaml", request="Add x support", workdir=str(tmp_path)
    )


def test_run_completes_when_closing_events_arrive(tmp_path: Path) -> None:
    c = ctx()
    seen: list[str] = []
    result = asyncio.run(
        run_feature_delivery(c, spec(tmp_path), [Closer(c)], budget_s=10, on_event=lambda e: seen.append(e.type))
    )
    assert result.status == "completed" and result.outcome == "promoted" and result.error is None
    [decision] = result.decisions()
    assert decision["action"] == "promote" and decision["inputs"] == {"ok": True} and decision["agent"] == "closer"
    assert seen[0] == EventType.FLOW_STARTED and seen[-1] == EventType.FLOW_COMPLETED


def test_agent_failure_fails_the_run_with_its_one_line_error(tmp_path: Path) -> None:
    c = ctx()
    result = asyncio.run(run_feature_delivery(c, spec(tmp_path), [Failer(c)], budget_s=10))
    assert result.status == "failed"
    assert result.error == "failer: spec file nope.yaml not found (fix: pass an existing file)"
    assert result.events[-1].type == EventType.FLOW_FAILED


def test_time_budget_fails_the_run_naming_the_last_stage(tmp_path: Path) -> None:
    c = ctx()
    result = asyncio.run(run_feature_delivery(c, spec(tmp_path), [Silent(c)], budget_s=0.3))
    assert result.status == "failed"
    assert result.error is not None and "time budget" in result.error and "flow.started" in result.error


def test_events_of_a_closed_run_are_skipped(tmp_path: Path) -> None:
    c = ctx()
    asyncio.run(run_feature_delivery(c, spec(tmp_path), [Closer(c)], budget_s=10))

    async def replay_start() -> int:
        agent = Closer(c)
        [start] = [r.event for r in await c.bus.read(1, 100, pattern=EventType.FLOW_STARTED)]
        before = await c.bus.last_offset()
        await agent.handle(start)
        return await c.bus.last_offset() - before

    assert asyncio.run(replay_start()) == 0
