"""The deployment agent: the risk table, the learned posterior, and a real healthy rollout that promotes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotage.agents.deployment import get_paths, seed_strategy, strategy_reasoning
from pilotage.errors import InputError
from pilotage.events import EventType, new_event
from pilotage.policy.rego import RegoPolicyEngine
from tests.fixtures.tiny_service.harness import (
    TINY,
    Stack,
    events_of,
    publish_perf,
    seed_run,
    wait_for,
)


def _inputs(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "lines_changed": 0,
        "endpoints_touched": 0,
        "new_dependencies": 0,
        "breaking_changes": 0,
        "perf_error_rate": 0.0,
        "slo_error_rate": 0.05,
        "posteriors": {},
    }
    return {**base, **over}


@pytest.mark.parametrize(
    ("over", "strategy", "risk"),
    [
        # 3 % of the code: the seed's minor change → canary; 0.15·(1/10) + 0.4·0.5 = 0.215 (size is the table's)
        ({"change_percent": 3.0, "lines_changed": 50, "endpoints_touched": 1}, "canary", 0.215),
        # 12 %: moderate → blue-green; 0.15·(4/10) + 0.4·0.5 = 0.26
        ({"change_percent": 12.0, "lines_changed": 300, "endpoints_touched": 4}, "blue-green", 0.26),
        # 30 %: major → feature flags, whatever the risk
        ({"change_percent": 30.0, "lines_changed": 50}, "feature-flag", 0.2),
        # a breaking change always goes behind a flag, even a minor one: 0.2 + 0.2
        ({"change_percent": 1.0, "lines_changed": 10, "breaking_changes": 1}, "feature-flag", 0.4),
        # minor by size, but risky: 0.15 + 0.05 + 0.05 + 0.4·0.5 = 0.45 → moved to blue-green
        (
            {
                "change_percent": 4.0,
                "lines_changed": 900,
                "endpoints_touched": 12,
                "new_dependencies": 5,
                "perf_error_rate": 0.2,
            },
            "blue-green",
            0.45,
        ),
        # a decision recorded before issue 16 (no change_percent) replays with the rule of that time
        ({"lines_changed": 50, "endpoints_touched": 1}, "blue-green", 0.2338),
        ({"lines_changed": 300, "endpoints_touched": 4}, "canary", 0.3725),
    ],
)
def test_seed_table_then_risk(over: dict[str, Any], strategy: str, risk: float) -> None:
    reasoning = strategy_reasoning(_inputs(**over))
    assert reasoning.action == strategy
    assert reasoning.score["risk"] == pytest.approx(risk, abs=1e-4)
    assert 0.0 <= reasoning.score["risk"] <= 1.0


def test_seed_table_boundaries_and_the_recorded_move() -> None:
    assert [seed_strategy(p) for p in (0.0, 5.0, 5.01, 20.0, 20.01, 300.0)] == [
        "canary",
        "canary",
        "blue-green",
        "blue-green",
        "feature-flag",
        "feature-flag",
    ]
    moved = strategy_reasoning(_inputs(change_percent=4.0, lines_changed=40, endpoints_touched=10))
    assert moved.score["table_strategy"] == "canary" and moved.action == "blue-green"
    assert "risk moved it from canary to the more cautious blue-green" in moved.rationale


def test_learned_posterior_changes_the_strategy() -> None:
    change = {"change_percent": 3.0, "lines_changed": 50, "endpoints_touched": 1}
    fresh = strategy_reasoning(_inputs(**change))
    assert fresh.action == "canary"
    # canary failed 8 of 9 times for this service: Beta(2, 9) failure mean 0.818 → its risk 0.342 ≥ 0.3
    burned = strategy_reasoning(_inputs(**change, posteriors={"canary": {"alpha": 2.0, "beta": 9.0}}))
    assert burned.score["risk_by_strategy"]["canary"] == pytest.approx(0.015 + 0.4 * 9 / 11, abs=1e-4)
    assert burned.action == "blue-green"
    assert burned.score["risk"] == pytest.approx(fresh.score["risk"])  # blue-green still has the Beta(1, 1) prior
    # a strategy with a perfect record never makes a change *less* cautious than the table says
    proven = strategy_reasoning(
        _inputs(
            change_percent=12.0,
            lines_changed=300,
            endpoints_touched=4,
            posteriors={"canary": {"alpha": 50.0, "beta": 1.0}},
        )
    )
    assert proven.action == "blue-green"


def test_graph_blast_radius_is_a_small_extra_weight() -> None:
    """Issue 4: blast_radius 0 leaves the score as before; it saturates at 10 for +0.05; risk stays <= 1."""
    change = {"lines_changed": 300, "endpoints_touched": 4}
    before = strategy_reasoning(_inputs(**change))
    zero = strategy_reasoning(_inputs(**change, blast_radius=0))
    assert (zero.action, zero.score["risk"], zero.score["change_risk"]) == (
        "canary",
        0.3725,
        before.score["change_risk"],
    )
    assert "graph_blast" not in before.score["features"] and zero.score["features"]["graph_blast"] == 0.0
    half = strategy_reasoning(_inputs(**change, blast_radius=5))
    assert half.score["risk"] == pytest.approx(0.3725 + 0.025) and "graph blast 0.50" in half.rationale
    full = strategy_reasoning(_inputs(**change, blast_radius=40))
    assert full.score["features"]["graph_blast"] == 1.0 and full.score["risk"] == pytest.approx(0.3725 + 0.05)
    worst = {"lines_changed": 900, "endpoints_touched": 12, "new_dependencies": 5, "perf_error_rate": 0.2}
    capped = strategy_reasoning(
        _inputs(
            **worst,
            breaking_changes=1,
            blast_radius=10,
            posteriors={s: {"alpha": 1.0, "beta": 99.0} for s in ("blue-green", "canary", "feature-flag")},
        )
    )
    assert capped.action == "feature-flag" and capped.score["risk"] == 1.0  # 0.6+0.2+0.05+0.4·0.99 capped


def test_blast_radius_from_the_ingested_code_enters_the_decision(tmp_path: Path) -> None:
    from pilotage.graph.ingest import ingest

    async def scenario() -> None:
        async with Stack(tmp_path, RegoPolicyEngine()) as stack:
            stack.graph.upsert_node("Model", "tiny/canary", {"alpha": 1.0, "beta": 30.0})
            await seed_run(stack.bus, tmp_path, tests_passed=False)
            ingest(stack.graph, tmp_path / "versions" / "head", service="tiny")
            await publish_perf(stack.bus, skipped=True)
            await wait_for(stack.bus, EventType.AGENT_FAILED)  # denied: the tests failed (as above)
            decision = (await events_of(stack.bus, EventType.DECISION))[0].data
            # app/main.py serves 6 endpoints of service tiny (app/models.py is not in the tiny service)
            assert decision["inputs"]["blast_radius"] == 7
            assert decision["inputs"]["blast_radius_affected"] == [
                "Endpoint:tiny GET /healthz",
                "Endpoint:tiny GET /metrics",
                "Endpoint:tiny GET /notes",
                "Endpoint:tiny GET /notes/{note_id}",
                "Endpoint:tiny GET /version",
                "Endpoint:tiny POST /notes",
                "Service:tiny",
            ]
            assert decision["score"]["features"]["graph_blast"] == 0.7
            assert decision["action"] == "blue-green"
            assert decision["score"]["risk"] == pytest.approx(0.045 + 0.05 * 0.7 + 0.4 * 0.5, abs=1e-4)

    asyncio.run(scenario())


def test_get_paths_keeps_parameterless_gets(tmp_path: Path) -> None:
    assert get_paths(TINY / "openapi.yaml") == ["/notes", "/version"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("openapi: 3.0.3\n", encoding="utf-8")
    with pytest.raises(InputError, match="has no paths"):
        get_paths(bad)


def test_posterior_from_the_graph_and_policy_deny_when_tests_failed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Stack(tmp_path, RegoPolicyEngine()) as stack:
            stack.graph.upsert_node("Model", "tiny/canary", {"alpha": 1.0, "beta": 30.0})
            await seed_run(stack.bus, tmp_path, tests_passed=False)
            await publish_perf(stack.bus, skipped=True)
            failed = await wait_for(stack.bus, EventType.AGENT_FAILED)
            assert failed.data["agent"] == "deployment" and failed.data["error_type"] == "PolicyDenied"
            assert "tests failed for commit bbbbbbbb" in failed.data["error"]
            decision = (await events_of(stack.bus, EventType.DECISION))[0].data
            assert decision["inputs"]["posteriors"]["canary"] == {"alpha": 1.0, "beta": 30.0}
            assert decision["inputs"]["tests_passed"] is False
            assert decision["inputs"]["blast_radius"] == 0  # issue 4: the graph does not know the code
            # 300 of 6,000 source lines (5 %): the table says canary; change risk 0.15·3/10 = 0.045, and canary's
            # bad record (Beta(1, 30), mean 0.968) raises its risk to 0.432 ≥ 0.3 → blue-green (prior: 0.245)
            assert decision["inputs"]["change_percent"] == 5.0
            assert decision["score"]["table_strategy"] == "canary" and decision["action"] == "blue-green"
            assert decision["score"]["risk_by_strategy"]["canary"] == pytest.approx(0.045 + 0.4 * 30 / 31, abs=1e-4)
            assert decision["score"]["risk"] == pytest.approx(0.245, abs=1e-4)
            verdict = (await events_of(stack.bus, EventType.POLICY_EVALUATED))[0].data
            assert verdict["action"] == "deploy" and verdict["allow"] is False
            assert await events_of(stack.bus, EventType.DEPLOY_STARTED) == []
            assert stack.runtime.instances() == []
            assert stack.graph.get_node(f"Deployment:{verdict['input']['deployment_id']}").props["outcome"] == "denied"

    asyncio.run(scenario())


def test_healthy_canary_is_promoted_then_scaled_to_zero(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Stack(tmp_path, RegoPolicyEngine()) as stack:
            await seed_run(stack.bus, tmp_path, fault_rate=0.0, idle_after_s=1.0)
            await publish_perf(stack.bus)
            promoted = await wait_for(stack.bus, EventType.DEPLOY_PROMOTED, timeout_s=90)
            started = (await events_of(stack.bus, EventType.DEPLOY_STARTED))[0].data
            dep_id = started["deployment_id"]
            assert started["strategy"] == "canary" and started["steps"] == [25, 50, 100]
            assert started["traffic_paths"] == ["/notes", "/version"]
            assert promoted.data == {
                "deployment_id": dep_id,
                "strategy": "canary",
                "version": "b" * 12,
                "commit": "b" * 40,
                "standby": {"version": "a" * 12, "standby_s": 300.0},  # issue 3: the previous version stays warm
            }
            steps = [e.data for e in await events_of(stack.bus, EventType.DEPLOY_STEP)]
            assert [(s["step"], s["weight"]) for s in steps] == [(0, 25), (1, 50), (2, 100)]
            evaluations = [e.data for e in await events_of(stack.bus, EventType.SLO_EVALUATED)]
            assert [e["healthy"] for e in evaluations] == [True, True, True]
            assert all(e["canary"]["requests"] >= 20 and e["canary"]["errors"] == 0 for e in evaluations)
            # the synthetic traffic is probes, split evenly whatever the weight (25 % here), not 75/25
            first = (evaluations[0]["baseline"]["requests"], evaluations[0]["canary"]["requests"])
            assert abs(first[0] - first[1]) <= max(4, 0.1 * sum(first)), first
            route = await stack.runtime.get_route(dep_id)
            baseline = route.backends["a" * 12] if route else None
            verdicts = {
                e.data["action"]: e.data["allow"] for e in await events_of(stack.bus, EventType.POLICY_EVALUATED)
            }
            assert verdicts == {"deploy": True, "promote": True}
            scaled = await wait_for(stack.bus, EventType.ENV_SCALED_DOWN, timeout_s=30)
            # the new version and the hot standby (kept warm for standby_s, stopped earlier when the env is idle)
            assert scaled.data["environment"] == dep_id and scaled.data["instances_stopped"] == 2
            assert scaled.data["saving_usd_per_hour"] == pytest.approx(2 * 0.0208)
            assert scaled.data["idle_s"] >= 1.0
            assert baseline is not None and not (await stack.runtime.health(baseline)).running
            assert stack.runtime.instances() == [] and await stack.runtime.get_route(dep_id) is None
            node = stack.graph.get_node(f"Deployment:{dep_id}")
            assert node is not None and node.props["outcome"] == "promoted" and node.props["strategy"] == "canary"
            assert {e.type for e, _ in stack.graph.neighbours(node.id)} == {"OF", "MEASURED", "RAN_IN"}
            assert [n.id for _, n in stack.graph.neighbours(node.id, "OF")] == ["Commit:" + "b" * 40]
            assert [n.id for _, n in stack.graph.neighbours("Service:tiny", "DEPLOYED")] == [node.id]
            assert len(stack.graph.nodes("MetricSample")) == 6

    asyncio.run(scenario())


def test_document_gaps_reach_the_deploy_policy_and_deny_only_when_the_operator_asks(tmp_path: Path) -> None:
    """Issue 18: tests.completed's contract gaps and the gap gate setting are in the deploy input."""
    gap = {"operation": "GET /notes/{note_id}", "status": 404, "reason": "RFC 9110 15.5.5",
           "fix": "declare 404 for GET /notes/{note_id} in the document"}  # fmt: skip

    async def scenario() -> None:
        async with Stack(tmp_path, RegoPolicyEngine(), testing_document_gap_gate="deny") as stack:
            await seed_run(stack.bus, tmp_path)
            contract = {"violations": 0, "checks": {}, "gate": "deny", "gaps": [gap], "gap_gate": "deny"}
            tested = {"commit": "b" * 40, "head_dir": str(tmp_path), "passed": True, "contract": contract}
            await stack.bus.publish(new_event(EventType.TESTS_COMPLETED, tested, source="test", subject="tiny",
                                              runid="run-1"))  # fmt: skip
            await publish_perf(stack.bus, skipped=True)
            failed = await wait_for(stack.bus, EventType.AGENT_FAILED)
            assert failed.data["agent"] == "deployment" and failed.data["error_type"] == "PolicyDenied"
            assert "document gap on GET /notes/{note_id}: status 404 is not declared" in failed.data["error"]
            verdict = (await events_of(stack.bus, EventType.POLICY_EVALUATED))[0].data
            assert verdict["input"]["contract"]["gaps"] == [gap]
            assert verdict["input"]["contract"]["gap_gate"] == "deny"

    asyncio.run(scenario())


def test_a_blue_green_plan_carries_production_s_traffic_plan_and_blue_is_fed_it(tmp_path: Path) -> None:
    """The production document lacks the notes: blue gets GET /version alone, green the head plan with the notes."""
    document = yaml.safe_load((TINY / "openapi.yaml").read_text(encoding="utf-8"))
    document["paths"] = {"/version": document["paths"]["/version"]}
    production = tmp_path / "production.yaml"
    production.write_text(yaml.safe_dump(document), encoding="utf-8")

    async def scenario() -> None:
        async with Stack(tmp_path, RegoPolicyEngine()) as stack:
            stack.graph.upsert_node("Model", "tiny/canary", {"alpha": 1.0, "beta": 30.0})  # → blue-green
            await seed_run(stack.bus, tmp_path)
            ops = ["GET /notes", "POST /notes", "GET /notes/{note_id}"]
            spec = {"spec_path": str(TINY / "openapi.yaml"), "base_spec_path": str(production), "resource": "notes",
                    "fields": {}, "operations_added": ops, "diff": {"added": ops, "removed": []}}  # fmt: skip
            await stack.bus.publish(new_event(EventType.SPEC_PROPOSED, spec, source="test", subject="tiny",
                                              runid="run-1"))  # fmt: skip
            await publish_perf(stack.bus)
            plan = (await wait_for(stack.bus, EventType.DEPLOY_REQUESTED)).data
            assert plan["strategy"] == "blue-green"
            head = {r["operation"]: (r["weight"], r["in_base"]) for r in plan["traffic"]["requests"]}
            assert head == {"GET /notes": (3, False), "GET /version": (1, True)}  # POST /notes: writes are off
            baseline = plan["baseline_traffic"]
            assert [(r["operation"], r["weight"], r["in_base"]) for r in baseline["requests"]] == [
                ("GET /version", 1, True)
            ]
            assert baseline["touched"] == plan["traffic"]["touched"] == sorted(ops)  # weighed alike
            started = (await wait_for(stack.bus, EventType.DEPLOY_STARTED, timeout_s=60)).data
            assert started["traffic_plans"] == {"a" * 12: "baseline_traffic", "b" * 12: "traffic"}

    asyncio.run(scenario())


def test_a_blue_green_plan_without_a_production_document_of_its_own_carries_none(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Stack(tmp_path, RegoPolicyEngine()) as stack:
            stack.graph.upsert_node("Model", "tiny/canary", {"alpha": 1.0, "beta": 30.0})
            await seed_run(stack.bus, tmp_path)  # base_spec_path is the head's document
            await publish_perf(stack.bus)
            plan = (await wait_for(stack.bus, EventType.DEPLOY_REQUESTED)).data
            assert plan["strategy"] == "blue-green" and "baseline_traffic" not in plan
            started = (await wait_for(stack.bus, EventType.DEPLOY_STARTED, timeout_s=60)).data
            assert started["traffic_plans"] == {"a" * 12: "traffic", "b" * 12: "traffic"}

    asyncio.run(scenario())
