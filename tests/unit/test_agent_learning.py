"""LearningAgent: conjugate Beta updates in the graph, idempotent per deployment, model.updated events."""

from __future__ import annotations

import asyncio

import pytest

from pilotage.agent import AgentContext
from pilotage.agents.learning import LearningAgent, beta_update, failure_mean, failure_posterior
from pilotage.bus.memory import MemoryBus
from pilotage.events import CloudEvent, EventType, new_event
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.policy.rego import RegoPolicyEngine
from pilotage.settings import Settings


def make_ctx() -> AgentContext:
    return AgentContext(
        bus=MemoryBus(),
        graph=SQLiteGraph("sqlite:///:memory:"),
        policy=RegoPolicyEngine([], data={}),
        runtime=None,  # type: ignore[arg-type]  # the learning agent never touches the runtime
        settings=Settings(),
    )


def outcome(type: str, deployment_id: str, strategy: str = "canary", service: str = "checkout") -> CloudEvent:
    data = {"deployment_id": deployment_id, "strategy": strategy, "version": "v2"}
    if type == EventType.DEPLOY_ROLLED_BACK:
        data["reason"] = "slo breach"
    return new_event(type, data, source="/test", subject=service, runid="run-learn")


async def feed(ctx: AgentContext, events: list[CloudEvent]) -> list[CloudEvent]:
    agent = LearningAgent(ctx)
    for event in events:
        await ctx.bus.publish(event)
        await agent.handle(event)
    return [r.event for r in await ctx.bus.read(1, 1000)]


def test_subscription() -> None:
    assert LearningAgent.name == "learning"
    assert set(LearningAgent.subscribes) == {EventType.DEPLOY_PROMOTED, EventType.DEPLOY_ROLLED_BACK}


def test_pure_helpers() -> None:
    assert beta_update(1.0, 1.0, failed=True) == (1.0, 2.0)
    assert beta_update(1.0, 1.0, failed=False) == (2.0, 1.0)
    assert failure_mean(1.0, 2.0) == pytest.approx(2 / 3)


def test_prior_when_nothing_learned() -> None:
    assert failure_posterior(SQLiteGraph("sqlite:///:memory:"), "checkout", "canary") == (1.0, 1.0)


def test_outcomes_update_the_posterior_and_emit_model_updated() -> None:
    ctx = make_ctx()
    events = asyncio.run(
        feed(
            ctx,
            [
                outcome(EventType.DEPLOY_ROLLED_BACK, "d1"),
                outcome(EventType.DEPLOY_PROMOTED, "d2"),
                outcome(EventType.DEPLOY_ROLLED_BACK, "d3"),
                outcome(EventType.DEPLOY_PROMOTED, "d4", strategy="blue-green"),
            ],
        )
    )
    assert failure_posterior(ctx.graph, "checkout", "canary") == (2.0, 3.0)  # Beta(1 + 1 success, 1 + 2 failures)
    assert failure_posterior(ctx.graph, "checkout", "blue-green") == (2.0, 1.0)
    node = ctx.graph.get_node("Model:checkout/canary")
    assert node is not None
    assert node.props["failures"] == 2 and node.props["successes"] == 1
    assert node.props["failure_mean"] == pytest.approx(0.6)
    assert node.props["deployment_ids"] == ["d1", "d2", "d3"]

    updates = [e.data for e in events if e.type == EventType.MODEL_UPDATED]
    assert updates[0] == {
        "service": "checkout",
        "strategy": "canary",
        "alpha": 1.0,
        "beta": 2.0,
        "failure_mean": pytest.approx(2 / 3),
    }
    assert updates[2]["alpha"] == 2.0 and updates[2]["beta"] == 3.0
    assert updates[3]["strategy"] == "blue-green" and updates[3]["failure_mean"] == pytest.approx(1 / 3)

    decisions = [e.data for e in events if e.type == EventType.DECISION]
    assert [d["action"] for d in decisions] == ["count_failure", "count_success", "count_failure", "count_success"]
    assert all(d["kind"] == "learning.update" for d in decisions)
    assert decisions[0]["inputs"]["prior"] == {"alpha": 1.0, "beta": 1.0}
    linked = ctx.graph.neighbours("Deployment:d1", "COUNTED_IN")
    assert [n.id for _, n in linked] == ["Model:checkout/canary"]
    assert linked[0][0].props["outcome"] == "rolled_back"


def test_redelivered_event_is_counted_once() -> None:
    ctx = make_ctx()
    event = outcome(EventType.DEPLOY_ROLLED_BACK, "d1")
    agent = LearningAgent(ctx)

    async def go() -> list[CloudEvent]:
        await ctx.bus.publish(event)
        await agent.handle(event)
        await agent.handle(event)  # at-least-once delivery
        # the same deployment reported again under another event id (e.g. a promotion after rollback)
        await agent.handle(outcome(EventType.DEPLOY_PROMOTED, "d1"))
        return [r.event for r in await ctx.bus.read(1, 1000)]

    events = asyncio.run(go())
    assert failure_posterior(ctx.graph, "checkout", "canary") == (1.0, 2.0)
    node = ctx.graph.get_node("Model:checkout/canary")
    assert node is not None and node.props["failures"] == 1 and node.props["successes"] == 0
    # the redelivered event republishes the same deterministic ids (the log keeps the first decision and
    # model.updated); the same deployment under another event id is a new decision that changes nothing
    decisions = [e.data["action"] for e in events if e.type == EventType.DECISION]
    assert decisions == ["count_failure", "ignore_duplicate"]
    updates = [e.data for e in events if e.type == EventType.MODEL_UPDATED]
    assert [(u["alpha"], u["beta"]) for u in updates] == [(1.0, 2.0)] * 2


def test_replaying_a_decision_gives_the_same_answer() -> None:
    ctx = make_ctx()
    events = asyncio.run(feed(ctx, [outcome(EventType.DEPLOY_PROMOTED, "d9")]))
    (decision,) = [e.data for e in events if e.type == EventType.DECISION]
    again = LearningAgent(ctx).reason(decision["kind"], decision["inputs"])
    assert again.action == decision["action"] and again.score == decision["score"]


def test_malformed_outcome_fails_the_agent() -> None:
    ctx = make_ctx()
    bad = new_event(EventType.DEPLOY_PROMOTED, {"version": "v2"}, source="/t", subject="checkout", runid="r")
    events = asyncio.run(feed(ctx, [bad]))
    (failed,) = [e for e in events if e.type == EventType.AGENT_FAILED]
    assert failed.data["error_type"] == "InputError"
    assert "lacks deployment_id, strategy or subject" in failed.data["error"]
    assert ctx.graph.nodes("Model") == []
