"""The agent-driven rollout of issue #3 on real processes: post-promotion watch, hot standby, Inconclusive policy."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pilotage.events import EventType
from pilotage.runtime.faults import FaultSpec, set_faults
from pilotage.runtime.traffic_registry import get_traffic
from tests.fixtures.tiny_service.harness import AllowAll, Stack, events_of, publish_perf, seed_run, wait_for

A, B = "a" * 12, "b" * 12
#: Polls every 0.25 s for 2.5 s: enough intervals (8) for the latency tests of a step.
FAST = {"rollout_poll_s": 0.25, "analysis_window_s": 2.5}


@pytest.fixture(autouse=True)
def fault_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the tests switch the canary's faults at run time (the runtime passes its environment on)."""
    monkeypatch.setenv("PILOTAGE_FAULT_ADMIN", "1")


def test_a_fault_after_promotion_is_caught_by_the_watch_and_rolled_back_to_the_hot_standby(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = {
            **FAST,
            "canary_steps_percent": [50, 100],
            "post_promotion_watch_s": 8.0,
            "standby_s": 120.0,
            "incident_repository": "acme/shop",
        }
        async with Stack(tmp_path, AllowAll(), **settings) as stack:
            run = await seed_run(stack.bus, tmp_path, idle_after_s=60.0)
            await publish_perf(stack.bus)
            watch = await wait_for(stack.bus, EventType.DEPLOY_STEP, timeout_s=90, step=1)
            assert watch.data["weight"] == 100
            started = (await events_of(stack.bus, EventType.DEPLOY_STARTED))[0].data
            await set_faults(started["canary"]["url"], FaultSpec(error_rate=0.3))  # the new version goes bad at 100 %
            rolled = await wait_for(stack.bus, EventType.DEPLOY_ROLLED_BACK, timeout_s=60)
            assert rolled.data["phase"] == "watch" and rolled.data["version"] == B
            assert await events_of(stack.bus, EventType.DEPLOY_PROMOTED) == []

            route = await stack.runtime.get_route(started["deployment_id"])
            assert route is not None and route.weights == {A: 100, B: 0}
            assert (await stack.runtime.health(route.backends[A])).running  # the standby took the traffic back
            assert not (await stack.runtime.health(route.backends[B])).running

            evaluations = [e.data for e in await events_of(stack.bus, EventType.SLO_EVALUATED)]
            assert [(e["phase"], e["healthy"]) for e in evaluations] == [("step", True), ("watch", False)]
            assert evaluations[1]["outcome"] == "fail" and evaluations[1]["baseline"]["requests"] == 0

            incident = (await events_of(stack.bus, EventType.INCIDENT_OPENED))[0].data
            assert incident["evidence"]["phase"] == "watch" and incident["evidence"]["weight"] == 100
            payload = json.loads(Path(incident["github_payload_path"]).read_text(encoding="utf-8"))
            assert set(payload) == {"title", "body", "labels"} and "incident" in payload["labels"]
            assert payload["title"].startswith("[pilotage] tiny: ") and incident["incident_id"] in payload["title"]
            assert Path(incident["report_path"]).parent == run.artifacts_path / "incidents"
            assert "## Burn-rate alerts" in payload["body"]

    asyncio.run(scenario())


def test_the_previous_version_stays_warm_for_standby_s_after_promotion(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = {**FAST, "canary_steps_percent": [50, 100], "post_promotion_watch_s": 1.0, "standby_s": 4.0}
        async with Stack(tmp_path, AllowAll(), **settings) as stack:
            await seed_run(stack.bus, tmp_path, idle_after_s=60.0)
            await publish_perf(stack.bus)
            promoted = await wait_for(stack.bus, EventType.DEPLOY_PROMOTED, timeout_s=90)
            assert promoted.data["standby"] == {"version": A, "standby_s": 4.0}
            route = await stack.runtime.get_route(promoted.data["deployment_id"])
            assert route is not None and route.weights == {A: 0, B: 100}
            assert (await stack.runtime.health(route.backends[A])).running  # warm, with no traffic
            released = await wait_for(stack.bus, EventType.DEPLOY_STANDBY_RELEASED, timeout_s=30)
            assert released.data["version"] == A
            assert (
                not (await stack.runtime.health(route.backends[A])).running
                and (await stack.runtime.health(route.backends[B])).running
            )

    asyncio.run(scenario())


@pytest.mark.parametrize("policy", ["pause", "rollback"])
def test_a_step_without_evidence_is_never_passed_it_pauses_or_rolls_back_per_policy(
    tmp_path: Path, policy: str
) -> None:
    async def scenario() -> None:
        settings = {
            "metrics_source_url": "prometheus://127.0.0.1:1",  # nothing listens: every query errors
            "rollout_on_inconclusive": policy,
            "rollout_inconclusive_grace_s": 0.5,
            "canary_steps_percent": [50, 100],
        }
        async with Stack(tmp_path, AllowAll(), **settings) as stack:
            await seed_run(stack.bus, tmp_path, idle_after_s=60.0)
            await publish_perf(stack.bus)
            evaluated = await wait_for(stack.bus, EventType.SLO_EVALUATED, timeout_s=90)
            assert evaluated.data["healthy"] is False and evaluated.data["outcome"] == "inconclusive"
            assert evaluated.data["action"] == policy
            assert any("cannot" in r or "127.0.0.1:1" in r for r in evaluated.data["reasons"])
            route = await stack.runtime.get_route(evaluated.data["deployment_id"])
            assert route is not None
            if policy == "pause":
                paused = await wait_for(stack.bus, EventType.DEPLOY_PAUSED, timeout_s=10)
                assert paused.data["weight"] == 50 and "Inconclusive" in paused.data["reason"]
                route = await stack.runtime.get_route(evaluated.data["deployment_id"])
                assert route is not None and route.weights == {A: 50, B: 50}  # held at the step's weight for a human
                assert get_traffic(evaluated.data["deployment_id"]) is None  # nothing judges it: no synthetic traffic
                assert await events_of(stack.bus, EventType.DEPLOY_ROLLED_BACK) == []
            else:
                await wait_for(stack.bus, EventType.DEPLOY_ROLLED_BACK, timeout_s=30)
                route = await stack.runtime.get_route(evaluated.data["deployment_id"])
                assert route is not None and route.weights == {A: 100, B: 0}
                assert await events_of(stack.bus, EventType.DEPLOY_PAUSED) == []
            assert [e.data["step"] for e in await events_of(stack.bus, EventType.DEPLOY_STEP)] == [0]

    asyncio.run(scenario())
