"""The performance agent on the memory bus with a real runtime and a real Locust run; the advice rules."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotage.agent import AgentContext, RunSpec
from pilotage.agents.performance import PerformanceAgent, assess
from pilotage.bus.memory import MemoryBus
from pilotage.events import CloudEvent, EventType, new_event
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.runtime.local import LocalRuntime
from pilotage.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
THRESHOLDS = {"error_rate_max": 0.0, "p95_high_ms": 200.0, "tail_ratio": 5.0, "tail_min_ms": 100.0}


class Strict(PerformanceAgent):
    """Every endpoint is 'slow' (p95 > 0 ms), so the advice path runs on a fast service."""

    p95_high_ms = 0.0


def _run(tmp_path: Path, body: Callable[[AgentContext], Awaitable[None]]) -> None:
    async def scenario() -> None:
        ctx = AgentContext(
            bus=MemoryBus(),
            graph=SQLiteGraph("sqlite:///:memory:"),
            policy=None,  # type: ignore[arg-type]  # the performance agent asks no policy question
            runtime=LocalRuntime(log_dir=tmp_path / "logs"),
            settings=Settings.model_validate({"load_test_users": 5, "load_test_duration_s": 2.0}),
        )
        try:
            await body(ctx)
        finally:
            await ctx.runtime.close()

    asyncio.run(scenario())


async def _tests_completed(ctx: AgentContext, tmp_path: Path, *, passed: bool) -> CloudEvent:
    head = shutil.copytree(FIXTURES / "ok_service", tmp_path / "versions" / COMMIT[:12])
    run = RunSpec(
        run_id="r2", service="pets", spec_path=str(head / "openapi.yaml"), request="x", workdir=str(tmp_path / "work")
    )
    await ctx.bus.publish(new_event(EventType.FLOW_STARTED, run.model_dump(), source="/t", subject="pets", runid="r2"))
    data = {
        "commit": COMMIT,
        "head_dir": str(head),
        "spec_path": str(head / "openapi.yaml"),
        "passed": passed,
        "schemathesis": {"server_errors": 0 if passed else 3},
        "unit": {"passed": 4, "failed": 0 if passed else 1, "errors": 0},
    }
    event = new_event(EventType.TESTS_COMPLETED, data, source="/t", subject="pets", runid="r2")
    await ctx.bus.publish(event)
    return event


async def _events(ctx: AgentContext, pattern: str) -> list[CloudEvent]:
    return [r.event for r in await ctx.bus.read(1, 10_000, pattern=pattern)]


def test_failed_tests_skip_the_load_test(tmp_path: Path) -> None:
    async def scenario(ctx: AgentContext) -> None:
        event = await _tests_completed(ctx, tmp_path, passed=False)
        await PerformanceAgent(ctx).handle(event)
        [measured] = await _events(ctx, EventType.PERF_MEASURED)
        data = measured.data
        assert data["skipped"] is True and data["commit"] == COMMIT
        assert data["reason"] == "tests did not pass: 3 server errors, 1 unit tests failed, 0 errored"
        assert data["endpoints"] == [] and data["total"]["requests"] == 0 and data["error_rate"] == 0.0
        [decision] = [e.data for e in await _events(ctx, EventType.DECISION)]
        assert decision["kind"] == "perf.assessment" and decision["action"] == "skip"
        assert not (tmp_path / "work" / "artifacts" / "perf").exists()  # no service was started
        assert ctx.graph.nodes("MetricSample") == []

    _run(tmp_path, scenario)


def test_a_document_with_nothing_callable_skips_the_load_test_with_the_reason(tmp_path: Path) -> None:
    from pilotage.perf.locustfile import NO_TARGET

    async def scenario(ctx: AgentContext) -> None:
        event = await _tests_completed(ctx, tmp_path, passed=True)
        spec = Path(event.data["spec_path"])  # every operation now needs credentials, and none are configured
        doc = yaml.safe_load(spec.read_text(encoding="utf-8"))
        doc["security"] = [{"key": []}]
        doc.setdefault("components", {})["securitySchemes"] = {"key": {"type": "apiKey", "in": "header", "name": "K"}}
        spec.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        await PerformanceAgent(ctx).handle(event)
        [measured] = await _events(ctx, EventType.PERF_MEASURED)
        assert measured.data["skipped"] is True and measured.data["reason"] == f"openapi.yaml: {NO_TARGET}"
        [decision] = [e.data for e in await _events(ctx, EventType.DECISION)]
        assert decision["kind"] == "perf.assessment" and decision["action"] == "skip"
        assert not (tmp_path / "work" / "artifacts" / "perf").exists()  # no service was started
        assert await _events(ctx, EventType.AGENT_FAILED) == []

    _run(tmp_path, scenario)


def test_measures_records_samples_and_advises(tmp_path: Path) -> None:
    async def scenario(ctx: AgentContext) -> None:
        event = await _tests_completed(ctx, tmp_path, passed=True)
        agent = Strict(ctx)
        await agent.handle(event)
        assert ctx.runtime.instances() == []  # type: ignore[attr-defined]
        [measured] = await _events(ctx, EventType.PERF_MEASURED)
        data = measured.data
        assert data["skipped"] is False and data["users"] == 5 and data["duration_s"] == 2.0
        by = {(e["method"], e["name"]): e for e in data["endpoints"]}
        assert set(by) == {("GET", "/pets"), ("POST", "/pets")}
        for endpoint in data["endpoints"]:
            assert set(endpoint) >= {"method", "name", "requests", "failures", "p50_ms", "p95_ms", "p99_ms", "rps"}
        total = data["total"]
        assert total["requests"] > 0 and total["p95_ms"] > 0 and data["error_rate"] == 0.0
        assert total["requests"] == sum(e["requests"] for e in data["endpoints"])
        decisions = [e.data for e in await _events(ctx, EventType.DECISION)]
        # issue 8: the load-test slot is auctioned first (a lone bidder wins at once at price 0)
        assert [d["kind"] for d in decisions] == ["perf.slot_bid", "market.auction", "perf.assessment"]
        assert data["slot"]["price"] == 0 and data["slot"]["decision_id"] == decisions[1]["id"]
        decision = decisions[2]
        assert decision["kind"] == "perf.assessment" and decision["action"] == "advise"
        assert decision["inputs"]["thresholds"]["p95_high_ms"] == 0.0 and decision["id"] == data["decision_id"]
        assert agent.reason("perf.assessment", decision["inputs"]).action == "advise"  # replayable from inputs
        [advice] = await _events(ctx, EventType.PERF_ADVICE)
        latency = [a for a in advice.data["advice"] if a["rule"] == "latency"]
        assert {a["endpoint"] for a in latency} == {"GET /pets", "POST /pets"}
        assert latency[0]["evidence"]["p95_ms"] == by[("GET", "/pets")]["p95_ms"]
        samples = {n.key: n for n in ctx.graph.nodes("MetricSample")}
        assert set(samples) == {f"r2/{COMMIT}/GET /pets", f"r2/{COMMIT}/POST /pets", f"r2/{COMMIT}/total"}
        assert samples[f"r2/{COMMIT}/total"].props["requests"] == total["requests"]
        measured_edges = ctx.graph.neighbours(f"Commit:{COMMIT}", "MEASURED")
        assert {other.key for _, other in measured_edges} == set(samples)
        before = len(await _events(ctx, "*"))
        await agent.handle(event)  # redelivered: not measured twice
        assert len(await _events(ctx, "*")) == before

    _run(tmp_path, scenario)


def _endpoint(name: str, **over: Any) -> dict[str, Any]:
    base = {"endpoint": name, "method": name.split()[0], "requests": 100, "failures": 0, "p50_ms": 5, "p95_ms": 20,
            "p99_ms": 40}  # fmt: skip
    return {**base, **over}


@pytest.mark.parametrize(
    ("endpoint", "rules"),
    [
        (_endpoint("GET /pets"), []),
        (_endpoint("GET /pets", failures=2), ["errors"]),
        (_endpoint("GET /pets", p95_ms=250), ["latency"]),
        (_endpoint("POST /pets", p50_ms=20, p95_ms=90, p99_ms=150), ["tail"]),
        (_endpoint("GET /pets", p50_ms=1, p95_ms=5, p99_ms=60), []),  # ratio 60 but under 100 ms: noise
        (_endpoint("GET /pets", failures=100, p95_ms=300, p50_ms=10, p99_ms=900), ["errors", "latency", "tail"]),
    ],
)
def test_assess_rules(endpoint: dict[str, Any], rules: list[str]) -> None:
    advice = assess({"endpoints": [endpoint], "thresholds": THRESHOLDS})
    assert [a["rule"] for a in advice] == rules
    for item in advice:
        assert item["endpoint"] == endpoint["endpoint"] and item["evidence"] and item["recommendation"]


def test_latency_advice_is_specific_to_the_method() -> None:
    [get] = assess({"endpoints": [_endpoint("GET /pets", p95_ms=500)], "thresholds": THRESHOLDS})
    [post] = assess({"endpoints": [_endpoint("POST /pets", p95_ms=500)], "thresholds": THRESHOLDS})
    assert "index" in get["recommendation"] and "transaction" in post["recommendation"]
    assert get["evidence"] == {"p95_ms": 500, "p95_high_ms": 200.0, "requests": 100}


def test_reason_accepts_within_thresholds() -> None:
    inputs = {
        "skipped": False,
        "endpoints": [_endpoint("GET /pets")],
        "total": {"requests": 100, "p95_ms": 20},
        "error_rate": 0.0,
        "thresholds": THRESHOLDS,
    }
    ctx = AgentContext(
        bus=MemoryBus(),
        graph=SQLiteGraph("sqlite:///:memory:"),
        policy=None,  # type: ignore[arg-type]  # reason() is pure: no backend is used
        runtime=None,  # type: ignore[arg-type]
        settings=Settings.model_validate({}),
    )
    reasoning = PerformanceAgent(ctx).reason("perf.assessment", inputs)
    assert reasoning.action == "accept" and reasoning.score == {"p95_ms": 20, "error_rate": 0.0, "advice": 0}
