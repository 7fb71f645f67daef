"""Issue 17 through the agents: the deployment agent's traffic plan, and a rollout whose plan has nothing to call.

Real processes (two copies of the tiny service), the real proxy and the real agents on the memory bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import httpx
import pytest
import yaml

from pilotage.agents.deployment import DeploymentAgent
from pilotage.events import EventType, new_event
from pilotage.rollout.traffic_plan import NOTHING_TO_CALL
from tests.fixtures.tiny_service.harness import SOURCE, AllowAll, Stack, events_of, publish_perf, seed_run, wait_for

#: Only an item read whose id nothing can create: synthetic traffic has nothing to call.
LOCKED = {
    "openapi": "3.0.3",
    "info": {"title": "tiny-locked", "version": "1.0"},
    "paths": {
        "/notes/{note_id}": {
            "get": {
                "parameters": [{"name": "note_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "a note"}},
            }
        }
    },
}


async def _lock_spec(stack: Stack, tmp_path: Path) -> None:
    """Publish a spec.proposed (the newest wins) whose document gives synthetic traffic nothing to call."""
    spec = tmp_path / "locked.yaml"
    spec.write_text(yaml.safe_dump(LOCKED, sort_keys=False), encoding="utf-8")
    data = {"spec_path": str(spec), "base_spec_path": str(spec), "operations_added": [], "diff": {"added": []}}
    await stack.bus.publish(new_event(EventType.SPEC_PROPOSED, data, source=SOURCE, subject="tiny", runid="run-1"))


def test_a_step_without_synthetic_traffic_or_requests_is_inconclusive_without_the_grace(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = {"rollout_inconclusive_grace_s": 30.0, "canary_steps_percent": [50, 100], "idle_after_s": 60.0}
        async with Stack(tmp_path, AllowAll(), **settings) as stack:
            await seed_run(stack.bus, tmp_path, idle_after_s=60.0)
            await _lock_spec(stack, tmp_path)
            started = time.monotonic()
            await publish_perf(stack.bus)
            requested = await wait_for(stack.bus, EventType.DEPLOY_REQUESTED)
            traffic = requested.data["traffic"]
            assert traffic["requests"] == [] and traffic["summary"] == NOTHING_TO_CALL
            assert requested.data["traffic_paths"] == []
            step = await wait_for(stack.bus, EventType.DEPLOY_STEP, step=0)
            assert step.data["traffic"] == NOTHING_TO_CALL  # the first step says so
            evaluated = await wait_for(stack.bus, EventType.SLO_EVALUATED, timeout_s=60)
            assert evaluated.data["outcome"] == "inconclusive" and evaluated.data["action"] == "rollback"
            assert evaluated.data["canary"]["requests"] == 0 and evaluated.data["baseline"]["requests"] == 0
            assert evaluated.data["window_s"] < 5.0  # the 0.5 s window, not the 30 s grace
            assert f"synthetic traffic: {NOTHING_TO_CALL}" in evaluated.data["rationale"]
            await wait_for(stack.bus, EventType.DEPLOY_ROLLED_BACK, timeout_s=30)
            assert time.monotonic() - started < 25.0

    asyncio.run(scenario())


def test_real_requests_through_the_route_are_judged_when_the_plan_has_nothing_to_call(tmp_path: Path) -> None:
    async def client(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=2.0) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    await http.get("/version")
                await asyncio.sleep(0.01)

    async def scenario() -> None:
        settings = {"rollout_inconclusive_grace_s": 30.0, "canary_steps_percent": [50, 100]}
        async with Stack(tmp_path, AllowAll(), **settings) as stack:
            await seed_run(stack.bus, tmp_path, idle_after_s=60.0)
            await _lock_spec(stack, tmp_path)
            await publish_perf(stack.bus)
            started = await wait_for(stack.bus, EventType.DEPLOY_STARTED)
            users = asyncio.create_task(client(started.data["proxy_url"]))
            try:
                evaluated = await wait_for(stack.bus, EventType.SLO_EVALUATED, timeout_s=60)
            finally:
                users.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await users
            assert evaluated.data["healthy"] is True and evaluated.data["action"] == "continue"
            assert evaluated.data["canary"]["requests"] >= 20 and evaluated.data["baseline"]["requests"] >= 20

    asyncio.run(scenario())


def test_the_deployment_plan_follows_the_head_versions_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINY_TRAFFIC_KEY", "tiny-key-0123456789")

    async def scenario() -> None:
        stack = Stack(tmp_path, AllowAll())
        stack.agents = [DeploymentAgent(stack.ctx)]  # the plan only: nothing is launched
        stack.ctx.settings.traffic_credential_envs.append("TINY_TRAFFIC_KEY")  # the operator allows this variable
        async with stack:
            await seed_run(stack.bus, tmp_path, operations_added=["GET /notes/{note_id}"])
            (tmp_path / "versions" / "head" / "pilotage.yaml").write_text(
                "name: tiny\nstart: python -m uvicorn app.main:app --port {port}\n"
                "traffic:\n  writes: true\n  requests: ['GET /healthz']\n"
                "  credentials: {header: X-Api-Key, env: TINY_TRAFFIC_KEY}\n",
                encoding="utf-8",
            )
            await publish_perf(stack.bus)
            requested = await wait_for(stack.bus, EventType.DEPLOY_REQUESTED)
            traffic = requested.data["traffic"]
            ops = [(r["operation"], r["weight"]) for r in traffic["requests"]]
            assert ops == [
                ("GET /notes/{note_id}", 3),  # touched (spec.proposed): first
                ("GET /healthz", 3),  # the descriptor's own request
                ("GET /notes", 1),
                ("POST /notes", 1),
                ("GET /version", 1),
            ]
            assert traffic["requests"][0]["params"][0]["by"] == "POST /notes"
            assert traffic["credentials"] == {"header": "X-Api-Key", "env": "TINY_TRAFFIC_KEY"}
            assert "tiny-key-0123456789" not in str(requested.data)
            assert requested.data["traffic_paths"] == ["/healthz", "/notes", "/version"]
            assert await events_of(stack.bus, EventType.DEPLOY_STARTED) == []

    asyncio.run(scenario())
