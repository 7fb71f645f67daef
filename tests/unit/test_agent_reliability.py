"""The reliability agent: the SLO judgement rule, and a real 30 %-fault canary that is rolled back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pilotage.agents.reliability import judge
from pilotage.events import EventType
from pilotage.policy.rego import RegoPolicyEngine
from tests.fixtures.tiny_service.harness import Stack, events_of, publish_perf, seed_run, wait_for


def _window(requests: int, errors: int) -> dict[str, float]:
    return {"requests": requests, "errors": errors, "error_rate": errors / requests if requests else 0.0}


@pytest.mark.parametrize(
    ("canary", "action"),
    [
        ((100, 5), "continue"),  # exactly at the 5 % threshold: not above it
        ((100, 6), "rollback"),  # 6 % > 5 %
        ((20, 2), "rollback"),  # 10 % with exactly min_requests
        ((10, 0), "continue"),  # too few to judge, nothing failed
        ((10, 1), "continue"),  # too few: 1 / 20 = 5 % is not above the threshold
        ((10, 2), "rollback"),  # too few, but 2 / 20 = 10 % even if every missing request succeeded
        ((0, 0), "continue"),
    ],
)
def test_judgement_rule(canary: tuple[int, int], action: str) -> None:
    inputs = {
        "canary": _window(*canary),
        "baseline": _window(300, 3),
        "slo_error_rate": 0.05,
        "min_requests": 20,
    }
    reasoning = judge(inputs)
    assert reasoning.action == action
    assert reasoning.score["excess_over_baseline"] == pytest.approx(_window(*canary)["error_rate"] - 0.01)


def test_faulty_canary_is_rolled_back_with_an_incident_report(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Stack(tmp_path, RegoPolicyEngine()) as stack:
            run = await seed_run(stack.bus, tmp_path, fault_rate=0.3, idle_after_s=5.0)  # baseline up while asserted
            await publish_perf(stack.bus)
            rolled = await wait_for(stack.bus, EventType.DEPLOY_ROLLED_BACK, timeout_s=90)
            started = (await events_of(stack.bus, EventType.DEPLOY_STARTED))[0].data
            dep_id = started["deployment_id"]
            route = await stack.runtime.get_route(dep_id)
            assert route is not None and route.weights == {"a" * 12: 100, "b" * 12: 0}
            canary = route.backends["b" * 12]
            assert not (await stack.runtime.health(canary)).running
            assert (await stack.runtime.health(route.backends["a" * 12])).running

            evaluation = (await events_of(stack.bus, EventType.SLO_EVALUATED))[0].data
            assert evaluation["step"] == 0 and evaluation["weight"] == 25 and evaluation["healthy"] is False
            canary_window = evaluation["canary"]
            # the first poll whose assessment fails ends the step (fast rollback): few requests are enough
            assert canary_window["requests"] > 0 and canary_window["source"] == "metrics"
            assert canary_window["errors"] >= 1 and canary_window["error_rate"] > 0.05
            assert evaluation["outcome"] == "fail" and evaluation["action"] == "rollback" and evaluation["reasons"]
            assert evaluation["phase"] == "step"
            # issue 21: the sequential evidence of each metric rides on the event (what `pilotage explain` shows)
            errors_evidence = next(e for e in evaluation["evidence"] if e["metric"] == "error_rate")
            assert errors_evidence["gate"] and errors_evidence["e_threshold"] == pytest.approx(1 / 0.006, rel=1e-5)
            assert errors_evidence["upper_bound"] > errors_evidence["tolerance"]
            assert (
                0.001 <= errors_evidence["tolerance"] <= 0.05
            )  # between the SLO's budget and slo_error_rate and errors_evidence["mde"] > 0
            assert evaluation["baseline"]["errors"] == 0 and evaluation["baseline"]["requests"] > 0
            # the scrape agrees with what the proxy saw go to each version (the proxy's window opens just before the
            # first scrape and closes just after the last: on a busy machine a few more requests fall inside it)
            assert canary_window["requests"] - 2 <= canary_window["proxy"]["requests"] <= canary_window["requests"] + 12
            assert canary_window["errors"] - 2 <= canary_window["proxy"]["errors"] <= canary_window["errors"] + 6
            decision = next(
                e.data for e in await events_of(stack.bus, EventType.DECISION) if e.data["kind"] == "slo.assessment"
            )
            assert decision["action"] == "rollback" and len(decision["inputs"]["canary_series"]) >= 2
            assert decision["score"]["assessment"]["outcome"] == "fail"

            breach = (await events_of(stack.bus, EventType.SLO_BREACH))[0].data
            assert breach["deployment_id"] == dep_id and breach["slo_error_rate"] == 0.05
            verdicts = [
                (e.data["action"], e.data["allow"]) for e in await events_of(stack.bus, EventType.POLICY_EVALUATED)
            ]
            assert verdicts == [("deploy", True), ("rollback", True)]
            assert [e.data["step"] for e in await events_of(stack.bus, EventType.DEPLOY_STEP)] == [0]
            assert await events_of(stack.bus, EventType.DEPLOY_PROMOTED) == []

            incident = (await events_of(stack.bus, EventType.INCIDENT_OPENED))[0].data
            assert rolled.data["incident_id"] == incident["incident_id"]
            assert rolled.data["version"] == "b" * 12 and rolled.data["strategy"] == "canary"
            report = Path(incident["report_path"])
            assert report == run.artifacts_path / "incidents" / f"{incident['incident_id']}.md"
            text = report.read_text(encoding="utf-8")
            assert f"# Incident {incident['incident_id']}" in text
            assert f"| canary | {'b' * 12} | {canary_window['requests']} | {canary_window['errors']} |" in text
            assert "## Canary judge" in text and "## Canary log (last lines)" in text
            assert (
                incident["summary"].endswith(f"rolled back to {'a' * 12}") and incident["github_payload_path"] is None
            )

            graph = stack.graph
            dep = graph.get_node(f"Deployment:{dep_id}")
            assert dep is not None and dep.props["outcome"] == "rolled_back"
            caused = graph.neighbours(dep.id, "CAUSED")
            assert [n.id for _, n in caused] == [f"Incident:{incident['incident_id']}"]
            samples = {n.props["role"]: n.props for n in graph.nodes("MetricSample")}
            assert samples["canary"]["errors"] == canary_window["errors"] and samples["canary"]["weight"] == 25
            assert samples["baseline"]["weight"] == 75

            scaled = await wait_for(stack.bus, EventType.ENV_SCALED_DOWN, timeout_s=30)
            assert scaled.data["instances_stopped"] == 1  # the baseline; the canary was stopped by the rollback
            assert stack.runtime.instances() == []

    asyncio.run(scenario())
