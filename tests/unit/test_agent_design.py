"""DesignAgent on the memory bus and an in-memory SQLite graph, with real spec files."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pilotage.agent import AgentContext, RunSpec
from pilotage.agents.design import DesignAgent
from pilotage.bus.memory import MemoryBus
from pilotage.events import CloudEvent, EventType, new_event
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.settings import Settings
from pilotage.spec.load import load_spec, spec_key
from tests.fixtures import CHECKOUT_SPEC

CHECKOUT = CHECKOUT_SPEC
REQUEST = "Add discount code support with fields code:string, percent:integer"


def make_ctx() -> AgentContext:
    return AgentContext(
        bus=MemoryBus(),
        graph=SQLiteGraph("sqlite:///:memory:"),
        policy=None,  # type: ignore[arg-type]  # the design agent asks no policy
        runtime=None,  # type: ignore[arg-type]  # nor a runtime
        settings=Settings(),
    )


def started(tmp_path: Path, request: str = REQUEST, spec: Path = CHECKOUT) -> CloudEvent:
    run = RunSpec(
        run_id="run-design-1", service="checkout", spec_path=str(spec), request=request, workdir=str(tmp_path)
    )
    return new_event(EventType.FLOW_STARTED, run.model_dump(), source="/test", subject="checkout", runid=run.run_id)


async def run_agent(ctx: AgentContext, event: CloudEvent) -> list[CloudEvent]:
    await ctx.bus.publish(event)
    await DesignAgent(ctx).handle(event)
    return [record.event for record in await ctx.bus.read(1, 1000)]


def of(events: list[CloudEvent], type_: str) -> list[Any]:
    return [e.data for e in events if e.type == type_]


def test_proposes_and_validates_the_new_spec(tmp_path: Path) -> None:
    ctx = make_ctx()
    events = asyncio.run(run_agent(ctx, started(tmp_path)))
    types = [e.type for e in events]
    assert types == [EventType.FLOW_STARTED, EventType.DECISION, EventType.SPEC_PROPOSED, EventType.SPEC_VALIDATED]
    assert all(e.runid == "run-design-1" and e.subject == "checkout" for e in events[1:])

    decision = of(events, EventType.DECISION)[0]
    assert decision["kind"] == "design.change" and decision["action"] == "add-resource"
    assert decision["inputs"]["request"]["resource"] == "DiscountCode"
    assert decision["inputs"]["change"]["operations"][0] == "GET /discount-codes"
    assert decision["inputs"]["refusal"] is None
    replay = DesignAgent(ctx).reason("design.change", decision["inputs"])
    assert (replay.action, replay.rule, replay.score) == (decision["action"], decision["rule"], decision["score"])

    proposed = of(events, EventType.SPEC_PROPOSED)[0]
    artifacts = (tmp_path / "artifacts").resolve()
    assert proposed["spec_path"] == str(artifacts / "openapi.next.yaml")
    assert proposed["base_spec_path"] == str(artifacts / "openapi.base.yaml")
    assert proposed["resource"] == "DiscountCode"
    assert proposed["fields"] == {"code": "string", "percent": "integer"}
    assert proposed["operations_added"] == [
        "GET /discount-codes",
        "POST /discount-codes",
        "GET /discount-codes/{id}",
        "PUT /discount-codes/{id}",
        "DELETE /discount-codes/{id}",
    ]
    assert proposed["diff"]["classification"] == "non-breaking" and proposed["diff"]["removed"] == []

    validated = of(events, EventType.SPEC_VALIDATED)[0]
    assert validated == {
        "spec_path": proposed["spec_path"],
        "base_spec_path": proposed["base_spec_path"],
        "openapi_version": "3.0.3",
        "operation_count": 15,
        "valid": True,
    }
    assert load_spec(validated["spec_path"])["paths"]["/discount-codes/{id}"]["get"]["operationId"] == "getDiscountCode"
    assert load_spec(validated["base_spec_path"]) == load_spec(CHECKOUT)


def test_writes_the_graph(tmp_path: Path) -> None:
    ctx = make_ctx()
    asyncio.run(run_agent(ctx, started(tmp_path)))
    graph = ctx.graph
    next_key = spec_key("checkout", load_spec(tmp_path / "artifacts" / "openapi.next.yaml"))
    specs = {n.key: n for _, n in graph.neighbours("Service:checkout", "HAS_SPEC")}
    assert len(specs) == 2 and next_key in specs
    assert specs[next_key].props["version"] == "1.0.0"
    assert specs[next_key].props["path"].endswith("openapi.next.yaml")
    endpoints = {n.key for _, n in graph.neighbours(f"Spec:{next_key}", "DEFINES")}
    assert len(endpoints) == 15 and "checkout POST /discount-codes" in endpoints
    assert [n.key for _, n in graph.neighbours(f"Spec:{next_key}", "SUPERSEDES")] == [
        spec_key("checkout", load_spec(CHECKOUT))
    ]


@pytest.mark.parametrize(
    ("request_text", "error"),
    [
        ("make it faster please", "not understood"),
        ("Add cart support", "not understood"),
        ("Add cart support with fields note:string", "cannot be applied"),
    ],
)
def test_bad_requests_become_agent_failed(tmp_path: Path, request_text: str, error: str) -> None:
    ctx = make_ctx()
    events = asyncio.run(run_agent(ctx, started(tmp_path, request_text)))
    failed = of(events, EventType.AGENT_FAILED)
    assert len(failed) == 1 and failed[0]["agent"] == "design" and failed[0]["error_type"] == "InputError"
    assert error in failed[0]["error"]
    assert not of(events, EventType.SPEC_VALIDATED)


def test_refusal_is_a_recorded_decision(tmp_path: Path) -> None:
    ctx = make_ctx()
    events = asyncio.run(run_agent(ctx, started(tmp_path, "Add cart support with fields note:string")))
    decision = of(events, EventType.DECISION)[0]
    assert decision["action"] == "refuse" and decision["rule"] == "no-overwrite"
    assert "schema Cart" in decision["rationale"]
    assert "did you mean 'Add a note field to carts'" in decision["rationale"]
    replay = DesignAgent(ctx).reason("design.change", decision["inputs"])
    assert (replay.action, replay.rule) == ("refuse", "no-overwrite")


def test_missing_spec_file(tmp_path: Path) -> None:
    ctx = make_ctx()
    events = asyncio.run(run_agent(ctx, started(tmp_path, spec=tmp_path / "nope.yaml")))
    assert "nope.yaml not found" in of(events, EventType.AGENT_FAILED)[0]["error"]
