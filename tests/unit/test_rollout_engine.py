from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from pilotage.errors import InputError
from pilotage.observe.prometheus import ScrapeSource
from pilotage.observe.slo import default_slo, parse_slo
from pilotage.rollout.engine import Rollout, RolloutConfig
from pilotage.rollout.incident import write_incident
from pilotage.runtime.base import Workload
from pilotage.runtime.faults import FaultSpec, get_faults, set_faults
from pilotage.runtime.local import LocalRuntime
from pilotage.runtime.traffic import start_traffic, stop_traffic
from tests.fixtures.tiny_service.harness import copy_service


async def rollout_env(tmp_path: Path, config: RolloutConfig, slo: Any = None) -> tuple[Rollout, LocalRuntime, list]:
    runtime = LocalRuntime(log_dir=tmp_path / "logs")
    insts = []
    for v in ("v1", "v2"):
        env = {"PILOTAGE_FAULT_ADMIN": "1", "PILOTAGE_DB_PATH": str(tmp_path / f"{v}.db")}
        insts.append(await runtime.start(Workload("tiny", v, copy_service(tmp_path / v), env=env)))
    route = await runtime.create_route(tmp_path.name, {"v1": insts[0], "v2": insts[1]}, {"v1": 100, "v2": 0})
    start_traffic(tmp_path.name, route.url, ["/version"], 80)
    events: list = []

    async def sink(kind: str, data: dict[str, Any]) -> None:
        events.append((kind, data))

    rollout = Rollout(
        runtime,
        route,
        insts[0],
        insts[1],
        ScrapeSource(),
        slo or default_slo("tiny"),
        config,
        on_event=sink,
        alive=runtime.is_running,
    )
    return rollout, runtime, events


async def close(rollout: Rollout, runtime: LocalRuntime, name: str) -> None:
    await stop_traffic(name)
    await rollout.source.aclose()
    await runtime.close()


def test_fault_switch_roundtrip_and_validation(tmp_path: Path) -> None:
    async def scenario() -> None:
        rollout, runtime, _ = await rollout_env(tmp_path, RolloutConfig())
        try:
            state = await set_faults(rollout.canary.url, FaultSpec(error_rate=0.25, latency_ms=5))
            assert state["error_rate"] == 0.25 and state["latency_ms"] == 5
            assert (await get_faults(rollout.baseline.url))["error_rate"] == 0.0
        finally:
            await close(rollout, runtime, tmp_path.name)

    asyncio.run(scenario())
    with pytest.raises(InputError):
        FaultSpec(error_rate=2.0)


def test_canary_fault_rolls_back_fast_and_skips_remaining_steps(tmp_path: Path) -> None:
    config = RolloutConfig(steps=(25, 50, 100), pause_s=20.0, watch_s=0)

    async def scenario() -> None:
        rollout, runtime, events = await rollout_env(tmp_path, config)
        try:
            await set_faults(rollout.canary.url, FaultSpec(error_rate=0.3))
            result = await rollout.run()
            assert result.outcome == "rolled_back"
            assert result.step == 0 and result.weight == 25
            assert rollout.route.weights == {"v1": 100, "v2": 0}
            assert [k for k, _ in events].count("step") == 1  # steps 50 and 100 were skipped
            assert not (await runtime.health(rollout.canary)).running
            assert result.assessment is not None
            evidence = {
                "service": "tiny",
                "deployment_id": "d1",
                "phase": result.phase,
                "step": 0,
                "weight": 25,
                **result.assessment.to_dict(),
            }
            files = write_incident(
                tmp_path / "inc", "inc-1", result.reason, evidence, ["weights v1 100"], repository="acme/tiny"
            )
            text = files.markdown.read_text()
            assert "p-value" in text and "fisher" in text.lower() or "burn rate" in text
            assert files.github_payload is not None
            payload = json.loads(files.github_payload.read_text())
            assert set(payload) == {"title", "body", "labels"} and "incident" in payload["labels"]
        finally:
            await close(rollout, runtime, tmp_path.name)

    asyncio.run(scenario())


def test_post_promotion_watch_rolls_back_to_the_hot_standby(tmp_path: Path) -> None:
    config = RolloutConfig(strategy="blue-green", watch_s=20.0, standby_s=60.0)

    async def scenario() -> None:
        rollout, runtime, events = await rollout_env(tmp_path, config)
        try:
            task = asyncio.create_task(rollout.run())
            while not any(k == "promoted" for k, _ in events):
                await asyncio.sleep(0.05)
            assert rollout.route.weights == {"v1": 0, "v2": 100}
            assert (await runtime.health(rollout.baseline)).running  # standby kept warm
            await set_faults(rollout.canary.url, FaultSpec(error_rate=0.3))
            result = await task
            assert result.outcome == "rolled_back" and result.phase == "watch"
            assert rollout.route.weights == {"v1": 100, "v2": 0}
        finally:
            await close(rollout, runtime, tmp_path.name)

    asyncio.run(scenario())


def test_inconclusive_policy_pause_holds_the_weight(tmp_path: Path) -> None:
    slo = parse_slo({"objectives": [{"name": "q", "sli": "availability", "metric": "queue_depth", "target": 0.99}]})
    config = RolloutConfig(steps=(10, 100), pause_s=1.0, inconclusive_grace_s=1.0, on_inconclusive="pause", watch_s=0)

    async def scenario() -> None:
        rollout, runtime, _ = await rollout_env(tmp_path, config, slo)
        try:
            result = await rollout.run()
            assert result.outcome == "paused"
            assert result.assessment is not None
            assert any("unknown metric 'queue_depth'" in r for r in result.assessment.reasons)
            assert rollout.route.weights == {"v1": 90, "v2": 10}
        finally:
            await close(rollout, runtime, tmp_path.name)

    asyncio.run(scenario())


def test_crashed_canary_is_a_fail_not_a_pass(tmp_path: Path) -> None:
    config = RolloutConfig(steps=(25, 100), pause_s=20.0, watch_s=0)

    async def scenario() -> None:
        rollout, runtime, _ = await rollout_env(tmp_path, config)
        try:
            await set_faults(rollout.canary.url, FaultSpec(crash=True))
            result = await rollout.run()
            assert result.outcome == "rolled_back"
            assert "process exited" in result.reason or "metrics:" in result.reason
        finally:
            await close(rollout, runtime, tmp_path.name)

    asyncio.run(scenario())
