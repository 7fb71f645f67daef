"""Replay (issue #7, item 6): recompute recorded decisions on detached agents and report differences."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from pilotage.agent import Agent, Reasoning
from pilotage.agents.cost import idle_reasoning
from pilotage.agents.deployment import strategy_reasoning
from pilotage.bus.base import Record
from pilotage.bus.memory import MemoryBus
from pilotage.errors import BackendError
from pilotage.events import CloudEvent, EventType, new_event
from pilotage.replay import DetachedContext, detached_agents, replay_decisions

STRATEGY_INPUTS: dict[str, Any] = {
    "lines_changed": 390,
    "endpoints_touched": 5,
    "new_dependencies": 0,
    "breaking_changes": 0,
    "perf_error_rate": 0.0,
    "slo_error_rate": 0.05,
    "posteriors": {"canary": {"alpha": 2.0, "beta": 1.0}},
}
IDLE_INPUTS: dict[str, Any] = {"idle_s": 3.2, "idle_after_s": 3.0, "instances": 1, "price_usd_per_hour": 0.0208}


def decision_record(offset: int, agent: str, kind: str, inputs: dict[str, Any], reasoning: Reasoning) -> Record:
    data = {
        "id": f"d{offset}",
        "agent": agent,
        "kind": kind,
        "inputs": inputs,
        "action": reasoning.action,
        "rule": reasoning.rule,
        "score": reasoning.score,
        "rationale": reasoning.rationale,
        "verdict": None,
        "cause_event_id": "",
        "run_id": "r1",
    }
    event = new_event(EventType.DECISION, data, source=f"/pilotage/agents/{agent}", subject="checkout", runid="r1")
    return Record(offset, event.model_copy(update={"id": f"d{offset}"}))


def test_recorded_decisions_replay_identically_on_detached_agents() -> None:
    records = [
        decision_record(3, "deployment", "deploy.strategy", STRATEGY_INPUTS, strategy_reasoning(STRATEGY_INPUTS)),
        decision_record(7, "cost", "cost.scale", IDLE_INPUTS, idle_reasoning(IDLE_INPUTS)),
        Record(8, new_event(EventType.DEPLOY_STEP, {"step": 0}, source="/t", runid="r1")),
    ]
    report = replay_decisions(records)
    assert [(r.agent, r.kind, r.differs) for r in report.results] == [
        ("deployment", "deploy.strategy", False),
        ("cost", "cost.scale", False),
    ]
    assert report.to_dict() == {"decisions": 2, "differing": 0, "results": []}


def test_a_changed_action_or_score_is_reported_with_both_values() -> None:
    honest = strategy_reasoning(STRATEGY_INPUTS)
    tampered = Reasoning("blue-green", honest.rule, {**honest.score, "risk": 0.01}, honest.rationale)
    report = replay_decisions([decision_record(4, "deployment", "deploy.strategy", STRATEGY_INPUTS, tampered)])
    (result,) = report.differing
    assert result.decision_id == "d4" and result.offset == 4
    assert result.recorded["action"] == "blue-green" and result.recorded["score"]["risk"] == 0.01
    assert result.recomputed is not None and result.recomputed["action"] == honest.action == "canary"
    assert result.recomputed["score"]["risk"] == honest.score["risk"]


def test_unknown_agent_and_failing_reason_count_as_differences() -> None:
    unknown = decision_record(1, "oracle", "x", {}, Reasoning("a", "r", None, "t"))
    broken = decision_record(2, "cost", "cost.scale", {"idle_s": 1.0}, Reasoning("keep", "r", None, "t"))
    report = replay_decisions([unknown, broken])
    errors = [r.error for r in report.differing]
    assert errors[0] == "no agent called 'oracle'"
    assert errors[1] is not None and errors[1].startswith("KeyError")


class Peeker(Agent):
    """An impure agent: its reason reads the settings."""

    name = "peeker"
    subscribes: ClassVar[tuple[str, ...]] = ()

    def reason(self, kind: str, inputs: dict[str, Any]) -> Reasoning:
        return Reasoning("go", "r", self.ctx.settings.slo_error_rate, "uses settings")

    async def on_event(self, event: CloudEvent) -> None:  # pragma: no cover - never subscribed
        return None


def test_a_reason_that_touches_a_backend_fails_the_replay() -> None:
    agents = {"peeker": Peeker(DetachedContext())}
    report = replay_decisions([decision_record(1, "peeker", "k", {}, Reasoning("go", "r", 0.05, "x"))], agents)
    (result,) = report.differing
    assert result.error is not None and "reason() used the settings" in result.error
    with pytest.raises(BackendError):
        DetachedContext().bus.read  # noqa: B018 - the attribute access itself must raise


def test_every_lifecycle_agent_is_built_without_backends() -> None:
    lifecycle = [
        "design",
        "source",  # issue 17: a delivery's commit
        "codegen",
        "governance",
        "testing",
        "performance",
        "deployment",
        "reliability",
        "rollout",
        "cost",
    ]
    assert sorted(detached_agents()) == sorted([*lifecycle, "learning", "coordination"])


def test_replay_reads_a_bus_log() -> None:
    bus = MemoryBus()

    async def go() -> list[Record]:
        record = decision_record(1, "cost", "cost.scale", IDLE_INPUTS, idle_reasoning(IDLE_INPUTS))
        await bus.publish(record.event)
        return await bus.read(1, 100)

    report = replay_decisions(asyncio.run(go()))
    assert len(report.results) == 1 and report.results[0].recomputed == {
        "action": "scale_down",
        "score": {"idle_s": 3.2, "saving_usd_per_hour": 0.0208},
    }
