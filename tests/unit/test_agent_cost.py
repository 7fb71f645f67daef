"""The cost agent: the idleness rule, and scaling a real environment to zero only once it is idle."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from pilotage.agents.cost import idle_reasoning
from pilotage.events import EventType, new_event
from pilotage.policy.rego import RegoPolicyEngine
from pilotage.runtime.base import Workload
from pilotage.runtime.traffic_registry import start_traffic, stop_traffic
from tests.fixtures.tiny_service.harness import SOURCE, Stack, copy_service, events_of, seed_run, wait_for


@pytest.mark.parametrize(
    ("idle_s", "instances", "action", "saving"),
    [(10.0, 2, "scale_down", 0.0416), (9.99, 2, "keep", 0.0416), (10.0, 0, "scale_down", 0.0)],
)
def test_idle_rule(idle_s: float, instances: int, action: str, saving: float) -> None:
    reasoning = idle_reasoning(
        {"idle_s": idle_s, "idle_after_s": 10.0, "instances": instances, "price_usd_per_hour": 0.0208}
    )
    assert reasoning.action == action
    assert reasoning.score["saving_usd_per_hour"] == pytest.approx(saving)


def test_busy_environment_is_kept_until_traffic_stops(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Stack(tmp_path, RegoPolicyEngine(), instance_size="medium") as stack:
            await seed_run(stack.bus, tmp_path, idle_after_s=1.0)
            instances = await asyncio.gather(
                *(stack.runtime.start(Workload("tiny", v, copy_service(tmp_path / v))) for v in ("v1", "v2"))
            )
            route = await stack.runtime.create_route(
                "env-1", dict(zip(("v1", "v2"), instances, strict=True)), {"v1": 50, "v2": 50}
            )
            await start_traffic("env-1", route.url, ["/notes"], 20.0)
            began = time.monotonic()
            await stack.bus.publish(
                new_event(
                    EventType.DEPLOY_PROMOTED,
                    {"deployment_id": "env-1", "strategy": "canary", "version": "v2"},
                    source=SOURCE,
                    subject="tiny",
                    runid="run-1",
                )
            )
            await asyncio.sleep(2.0)  # traffic flows: twice the idle window passes without a scale-down
            assert await events_of(stack.bus, EventType.ENV_SCALED_DOWN) == []
            assert all([(await stack.runtime.health(i)).running for i in instances])
            await stop_traffic("env-1")
            scaled = await wait_for(stack.bus, EventType.ENV_SCALED_DOWN, timeout_s=10)
            assert time.monotonic() - began >= 3.0
            assert scaled.data["instances_stopped"] == 2
            assert scaled.data["saving_usd_per_hour"] == pytest.approx(2 * 0.0416)
            assert "t3.medium" in scaled.data["price_source"]
            assert not any([(await stack.runtime.health(i)).running for i in instances])
            assert await stack.runtime.get_route("env-1") is None
            verdict = (await events_of(stack.bus, EventType.POLICY_EVALUATED))[0].data
            assert verdict["action"] == "scale" and verdict["allow"] is True
            assert verdict["input"]["min_idle_s"] == 1.0 and verdict["input"]["idle_s"] >= 1.0
            env = stack.graph.get_node("Environment:env-1")
            assert env is not None and env.props["instances_stopped"] == 2
            assert env.props["saving_usd_per_hour"] == pytest.approx(0.0832)
            assert [n.id for _, n in stack.graph.neighbours("Service:tiny", "HAS_ENVIRONMENT")] == [env.id]

    asyncio.run(scenario())


def test_handler_returns_at_once_and_a_closed_route_ends_the_watch(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Stack(tmp_path, RegoPolicyEngine()) as stack:
            await seed_run(stack.bus, tmp_path, idle_after_s=3600.0)
            instance = await stack.runtime.start(Workload("tiny", "v1", copy_service(tmp_path / "v1")))
            await stack.runtime.create_route("env-2", {"v1": instance}, {"v1": 100})
            event = new_event(
                EventType.DEPLOY_ROLLED_BACK, {"deployment_id": "env-2"}, source=SOURCE, subject="tiny", runid="run-1"
            )
            began = time.monotonic()
            await stack.cost.handle(event)  # does not wait an hour
            assert time.monotonic() - began < 0.5 and len(stack.cost._watches) == 1
            await stack.runtime.close_route("env-2")
            await asyncio.wait_for(stack.cost.drain(), timeout=5)
            assert await events_of(stack.bus, EventType.ENV_SCALED_DOWN) == []
            assert (await stack.runtime.health(instance)).running

    asyncio.run(scenario())
