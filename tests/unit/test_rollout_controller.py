"""The rollout controller's hands on a real runtime: each strategy launched, stepped, rolled back, re-created.

Real processes (two copies of ``tests/fixtures/tiny_service``), the real weighted proxy and the real OFREP flag
server; what the routes and the flag answer is checked over HTTP.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilotage.agent import AgentContext
from pilotage.agents.reliability import ReliabilityAgent
from pilotage.bus.memory import MemoryBus
from pilotage.errors import BackendError
from pilotage.events import EventType, new_event
from pilotage.flows.recovery import process_alive
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.observe.prometheus import ScrapeSource
from pilotage.observe.samples import Sample, increase
from pilotage.observe.slo import parse_slo
from pilotage.rollout.controller import RolloutController
from pilotage.rollout.observation import observe
from pilotage.runtime.local import LocalRuntime
from pilotage.runtime.traffic_registry import get_traffic, hold_traffic
from pilotage.settings import Settings
from tests.fixtures.tiny_service.harness import AllowAll, copy_service, wait_for


def _plan(tmp_path: Path, strategy: str, steps: list[int]) -> dict[str, Any]:
    base, head = copy_service(tmp_path / "v1"), copy_service(tmp_path / "v2")
    return {
        "deployment_id": f"dep-{strategy}",
        "service": "tiny",
        "strategy": strategy,
        "risk": 0.1,
        "steps": steps,
        "commit": "b" * 40,
        "baseline": {"version": "v1", "path": str(base), "env": {"TINY_VERSION": "v1"}},
        "canary": {"version": "v2", "path": str(head), "env": {"TINY_VERSION": "v2"}},
        "traffic_paths": ["/version"],
        "proxy_port": 0,
        "flag_key": f"tiny.dep-{strategy}" if strategy == "feature-flag" else "",
    }


async def _versions(url: str, n: int = 40) -> Counter[str]:
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as client:
        answers = [await client.get("/version") for _ in range(n)]
    return Counter(str(a.json().get("version")) for a in answers)


def _controller(tmp_path: Path) -> RolloutController:
    settings = Settings(synthetic_traffic_rps=20.0, service_ready_timeout_s=20.0)
    return RolloutController(LocalRuntime(log_dir=tmp_path / "logs"), settings)


def test_canary_steps_and_rolls_back_by_route_weight(tmp_path: Path) -> None:
    async def scenario() -> None:
        controller = _controller(tmp_path)
        plan = _plan(tmp_path, "canary", [25, 100])
        try:
            started = await controller.launch(plan)
            assert started["preview_url"] == "" and started["flag_key"] == ""
            assert await _versions(started["proxy_url"]) == {"v1": 40}  # the route starts at 100/0
            await controller.apply_step(plan, 50)
            assert set(await _versions(started["proxy_url"])) == {"v1", "v2"}
            done = await controller.roll_back(plan)
            assert await _versions(started["proxy_url"]) == {"v1": 40}
            assert done.protected_at > 0 and any("v1 100% / v2 0%" in a for a in done.actions)
            route = await controller.runtime.get_route("dep-canary")
            assert route is not None and not (await controller.runtime.health(route.backends["v2"])).running
            await controller.roll_back(plan)  # idempotent: a redelivered verdict finishes, it does not fail
            assert await controller.scale_down("dep-canary") == 1  # the baseline; the canary was stopped
            assert await controller.runtime.get_route("dep-canary") is None
            with pytest.raises(BackendError, match="route dep-canary is closed"):
                await controller.apply_step(plan, 100)
        finally:
            await controller.close()
            await controller.runtime.close()

    asyncio.run(scenario())


def _requests(sample: Sample) -> float:
    return sum(sample.statuses.values())


def test_a_fresh_canary_is_warmed_up_before_its_first_step_and_the_warm_up_is_not_judged(tmp_path: Path) -> None:
    availability = parse_slo({"objectives": [{"name": "availability", "sli": "availability", "target": 0.999}]})

    async def scenario() -> None:
        controller = _controller(tmp_path)  # rollout_warmup_requests: the default, 20
        plan = _plan(tmp_path, "canary", [50, 100])
        source = ScrapeSource()
        try:
            started = await controller.launch(plan)
            warm = started["warmup"]
            assert warm["version"] == "v2" and warm["requests"] == warm["sent"] == 20 and warm["duration_s"] > 0
            assert warm["statuses"] == {"200": 20} and warm["failures"] == warm["unfilled"] == 0
            route = await controller.runtime.get_route("dep-canary")
            assert route is not None
            canary, baseline = route.backends["v2"], route.backends["v1"]
            await asyncio.sleep(0.3)  # synthetic traffic runs, all of it to v1 at 100/0
            assert _requests(await source.sample("v2", canary.url)) == 20  # v2 counted the warm-up alone
            route_stats = await controller.runtime.route_stats("dep-canary")
            assert route_stats.versions["v2"].requests == 0  # sent at v2's own address, not through the route
            await controller.apply_step(plan, 50)
            seen = await observe(source, availability, canary, baseline, duration_s=1.0, poll_s=0.25)
            first, last = seen.canary[0], seen.canary[-1]
            judged = increase(seen.canary).requests  # what the step's verdict counts (samples are cumulative)
            assert _requests(first) >= 20 and judged == _requests(last) - _requests(first)
            assert 0 < judged <= _requests(last) - 20  # the warm-up came before the start sample: never judged
        finally:
            await source.aclose()
            await controller.close()
            await controller.runtime.close()

    asyncio.run(scenario())


def test_no_warm_up_when_it_is_turned_off(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = Settings(synthetic_traffic_rps=20.0, service_ready_timeout_s=20.0, rollout_warmup_requests=0)
        controller = RolloutController(LocalRuntime(log_dir=tmp_path / "logs"), settings)
        try:
            started = await controller.launch(_plan(tmp_path, "canary", [50, 100]))
            assert started["warmup"] is None
        finally:
            await controller.close()
            await controller.runtime.close()

    asyncio.run(scenario())


def test_blue_green_previews_green_then_switches_atomically_and_keeps_blue_warm(tmp_path: Path) -> None:
    async def scenario() -> None:
        controller = _controller(tmp_path)
        plan = _plan(tmp_path, "blue-green", [0, 100])
        try:
            started = await controller.launch(plan)
            preview = await controller.runtime.get_route("dep-blue-green#preview")  # green alone behind its proxy
            assert preview is not None and started["preview_url"] == preview.url != started["canary"]["url"]
            assert started["warmup"]["version"] == "v2" and started["warmup"]["statuses"] == {"200": 20}  # green
            assert list(preview.backends) == ["v2"]
            assert await _versions(started["proxy_url"]) == {"v1": 40}  # users stay on blue
            assert await _versions(started["preview_url"], 5) == {"v2": 5}  # green answers at its own address
            await asyncio.sleep(0.5)
            route_stats = await controller.runtime.route_stats("dep-blue-green")
            assert route_stats.versions["v2"].requests == 0  # the preview traffic does not go through the route
            await controller.apply_step(plan, 0)  # the preview step moves nothing
            await controller.apply_step(plan, 100)
            assert await controller.runtime.get_route("dep-blue-green#preview") is None  # closed at the switch
            assert await _versions(started["proxy_url"]) == {"v2": 40}  # one switch, every user
            route = await controller.runtime.get_route("dep-blue-green")
            assert route is not None and (await controller.runtime.health(route.backends["v1"])).running
            await controller.roll_back(plan)  # during the watch: straight back to the warm blue
            assert await _versions(started["proxy_url"]) == {"v1": 40}
        finally:
            await controller.close()
            await controller.runtime.close()

    asyncio.run(scenario())


def test_feature_flag_moves_the_flag_and_rollback_turns_it_off_without_a_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        controller = _controller(tmp_path)
        plan = _plan(tmp_path, "feature-flag", [5, 100])
        try:
            started = await controller.launch(plan)
            flags = await controller.flags()
            assert started["flags_url"] == flags.url and flags.get(plan["flag_key"]).percent == 0
            assert started["warmup"] is None  # the new version serves every request from the start: already warm
            assert await _versions(started["proxy_url"]) == {"v2": 40}  # the new code serves, its flag off
            await controller.apply_step(plan, 25)
            assert flags.get(plan["flag_key"]).percent == 25
            pid = started["canary"]["pid"]
            done = await controller.roll_back(plan)
            assert not flags.get(plan["flag_key"]).enabled and "off for every targeting key" in done.actions[0]
            route = await controller.runtime.get_route("dep-feature-flag")
            assert route is not None and route.backends["v2"].pid == pid
            assert (await controller.runtime.health(route.backends["v2"])).running  # no process restarted
            async with httpx.AsyncClient(timeout=5.0) as client:
                answer = await client.post(
                    f"{flags.url}/ofrep/v1/evaluate/flags/{plan['flag_key']}",
                    json={"context": {"targetingKey": "user-1"}},
                )
            assert answer.json()["value"] is False and answer.json()["reason"] == "DISABLED"
        finally:
            await controller.close()
            await controller.runtime.close()

    asyncio.run(scenario())


def test_recreate_brings_a_rollout_back_at_its_last_weight(tmp_path: Path) -> None:
    async def scenario() -> None:
        controller = _controller(tmp_path)
        plan = _plan(tmp_path, "canary", [25, 100])
        try:
            resumed = await controller.recreate(plan, phase="rollout", weight=100)
            assert resumed["phase"] == "rollout" and resumed["canary"]["version"] == "v2"
            assert resumed["warmup"]["sent"] == 20  # the re-started new version is warmed up again
            assert await _versions(resumed["proxy_url"]) == {"v2": 40}
            await controller.runtime.close_route("dep-canary")
            promoted = await controller.recreate(plan, phase="promoted", weight=100)
            assert promoted["baseline"] is None and await _versions(promoted["proxy_url"]) == {"v2": 40}
            assert promoted["warmup"] is None  # nothing is analysed before it: no warm-up
        finally:
            await controller.close()
            await controller.runtime.close()

    asyncio.run(scenario())


def test_an_event_of_a_foreign_shape_fails_its_run_with_a_clear_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        bus = MemoryBus()
        ctx = AgentContext(
            bus=bus,
            graph=SQLiteGraph("sqlite:///:memory:"),
            policy=AllowAll(),
            runtime=LocalRuntime(log_dir=tmp_path / "logs"),
            settings=Settings(),
        )
        agent = ReliabilityAgent(ctx)
        subs = await agent.start()
        try:
            # a deploy.step as another producer (or an older Pilotage) might write it: no weight
            step = {"deployment_id": "dep-x", "step": 0, "strategy": "canary"}
            await bus.publish(new_event(EventType.DEPLOY_STEP, step, source="/elsewhere", runid="run-1"))
            failed = await wait_for(bus, EventType.AGENT_FAILED, timeout_s=10)
            assert failed.data["agent"] == "reliability" and failed.data["error_type"] == "InputError"
            assert "dev.pilotage.deploy.step" in failed.data["error"] and "weight" in failed.data["error"]
        finally:
            for sub in subs:
                await sub.stop()
            await ctx.runtime.close()

    asyncio.run(scenario())


async def _production(controller: RolloutController, plan: dict[str, Any]) -> str:
    """Serve the plan's baseline as production on the stable route ``service:tiny`` (as the fleet keeper does)."""

    async def no_waker() -> None:
        return None

    _instance, route = await controller.serve_production("tiny", plan["baseline"], "service:tiny", 0, no_waker)
    return route.url


def test_feature_flag_on_a_stable_route_starts_beside_production_and_rolls_back_to_it_alone(tmp_path: Path) -> None:
    # issue 17: a generated service's run rolls out on its stable route like any delivery, flags included
    async def scenario() -> None:
        controller = _controller(tmp_path)
        plan = _plan(tmp_path, "feature-flag", [5, 100]) | {"route": "service:tiny"}
        try:
            url = await _production(controller, plan)
            production = await controller.runtime.get_route("service:tiny")
            assert production is not None
            production_pid = production.backends["v1"].pid
            started = await controller.launch(plan)
            assert started["proxy_url"] == url and started["baseline"]["pid"] == production_pid  # adopted
            assert await _versions(url) == {"v2": 40}  # the new code serves the route, its flag at 0 %
            done = await controller.roll_back(plan)
            assert "off for every targeting key" in done.actions[0] and "production v1 100%" in done.actions[1]
            route = await controller.runtime.get_route("service:tiny")
            assert route is not None and set(route.backends) == {"v1"} and route.backends["v1"].pid == production_pid
            assert await _versions(url) == {"v1": 40}
            assert not process_alive(int(started["canary"]["pid"]))  # the new version stopped
        finally:
            await controller.close()
            await controller.runtime.close()

    asyncio.run(scenario())


def test_recreate_on_a_stable_route_starts_the_new_version_beside_production(tmp_path: Path) -> None:
    async def scenario() -> None:
        controller = _controller(tmp_path)
        plan = _plan(tmp_path, "canary", [50, 100]) | {"route": "service:tiny"}
        try:
            url = await _production(controller, plan)
            resumed = await controller.recreate(plan, phase="rollout", weight=50)
            assert resumed["proxy_url"] == url and resumed["weight"] == 50
            route = await controller.runtime.get_route("service:tiny")
            assert route is not None and route.weights == {"v1": 50, "v2": 50}
            assert set(await _versions(url)) == {"v1", "v2"}
        finally:
            await controller.close()
            await controller.runtime.close()

    asyncio.run(scenario())


def test_blue_green_feeds_blue_production_s_plan_and_green_the_head_plan_then_green_the_head_plan(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        controller = _controller(tmp_path)
        plan = _plan(tmp_path, "blue-green", [0, 100]) | {"baseline_traffic": ["/healthz"]}  # head: /version
        try:
            started = await controller.launch(plan)
            assert started["traffic_plans"] == {"v1": "baseline_traffic", "v2": "traffic"}
            route, preview = get_traffic("dep-blue-green"), get_traffic("dep-blue-green#preview")
            assert route is not None and preview is not None
            assert (route.base_url, route.paths) == (started["proxy_url"], ["/healthz"])  # blue: production's plan
            assert (preview.base_url, preview.paths) == (started["preview_url"], ["/version"])  # green: the head's
            await asyncio.sleep(0.5)
            assert set(route.stats.by_operation) == {"GET /healthz"} and set(preview.stats.by_operation) == {
                "GET /version"
            }
            assert await hold_traffic(["dep-blue-green", "dep-blue-green#preview"], True) == [
                "dep-blue-green",
                "dep-blue-green#preview",
            ]  # between steps, as the analysis slot does
            await asyncio.sleep(0.1)  # a launch under way when it was held
            sent_before = route.stats.sent
            await controller.apply_step(plan, 100)
            switched = get_traffic("dep-blue-green")
            assert switched is not None and switched is not route and get_traffic("dep-blue-green#preview") is None
            assert (switched.base_url, switched.paths, switched.held) == (started["proxy_url"], ["/version"], True)
            await asyncio.sleep(0.3)
            assert switched.stats.sent == sent_before  # held across the restart: nothing sent
            await controller.apply_step(plan, 100)  # idempotent: the same generator goes on
            assert get_traffic("dep-blue-green") is switched
            await hold_traffic(["dep-blue-green"], False)
            await asyncio.sleep(0.5)
            stats = await controller.promote(plan)
            assert stats is not None and stats.sent > sent_before
            assert set(stats.by_operation) == {"GET /healthz", "GET /version"}  # blue's then green's, summed
            assert list(stats.by_operation["GET /version"]) == [200]  # through the route, green answers them
        finally:
            await controller.close()
            await controller.runtime.close()

    asyncio.run(scenario())


def test_blue_green_without_a_production_plan_feeds_both_the_head_plan(tmp_path: Path) -> None:
    async def scenario() -> None:
        controller = _controller(tmp_path)
        plan = _plan(tmp_path, "blue-green", [0, 100])  # an older plan: no baseline_traffic
        try:
            started = await controller.launch(plan)
            assert started["traffic_plans"] == {"v1": "traffic", "v2": "traffic"}
            route = get_traffic("dep-blue-green")
            assert route is not None and route.paths == ["/version"]
            await controller.apply_step(plan, 100)
            assert get_traffic("dep-blue-green") is route  # the same plan: nothing restarted
        finally:
            await controller.stop_traffic("dep-blue-green")
            await controller.close()
            await controller.runtime.close()

    asyncio.run(scenario())
