"""Cross-service impact (issue #19): a provider commit's breaking changes mapped to the live consumers that use the
operations, and the bundled deploy policy asking a person to approve them, on real repositories and real Rego."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pilotage.bus.memory import MemoryBus
from pilotage.fleet.documents import DocumentSource
from pilotage.fleet.impact import impact_of_rev
from pilotage.fleet.onboard import add_services
from pilotage.fleet.registry import load_fleet
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.policy.rego import RegoPolicyEngine
from pilotage.settings import Settings
from tests.fixtures.consumer_repo import breaking_notes_change, make_consumer_repo, make_pair
from tests.fixtures.notes_repo import trivial_change

SCAN = {"status": "completed", "issues": {"high": 0, "medium": 0, "low": 0}}


@pytest.fixture(scope="module")
def rego() -> RegoPolicyEngine:
    engine = RegoPolicyEngine(policy_dirs=[], data={"license_allowlist": Settings().license_allowlist})
    engine.check()
    return engine


def _impact(tmp_path: Path, change: Any) -> dict[str, Any]:
    """notes, digest (uses three operations) and audit (uses only GET /healthz) managed; ``change`` committed to
    notes; the impact of that commit."""
    notes, digest = make_pair(tmp_path / "repos")
    audit = make_consumer_repo(tmp_path / "repos" / "audit", name="audit", operations='["GET /healthz"]')
    settings = Settings(home=tmp_path / "state", fleet_port_base=18980)

    async def go() -> dict[str, Any]:
        bus = MemoryBus()
        graph = SQLiteGraph(f"sqlite:///{tmp_path}/graph.db")
        await add_services(bus, graph, settings, None, [notes, digest, audit])
        sha = change(notes)
        return await impact_of_rev(DocumentSource(settings), await load_fleet(bus), "notes", sha)

    return asyncio.run(go())


def test_a_breaking_change_is_mapped_to_the_consumers_that_use_its_operations(tmp_path: Path) -> None:
    impact = _impact(tmp_path, breaking_notes_change)
    assert [(b["rule"], b["operation"]) for b in impact["breaking"]] == [
        ("response-required-property-removed", "GET /notes"),
        ("response-required-property-removed", "POST /notes"),
        ("response-required-property-removed", "GET /notes/{note_id}"),
    ]
    [digest] = impact["consumers"]
    assert (digest["service"], digest["env"]) == ("digest", "NOTES_URL")
    assert [(op["operation"], op["declared_as"], op["changes"]) for op in digest["operations"]] == [
        ("GET /notes", "GET /notes",
         [{"rule": "response-required-property-removed", "detail": "response 200 property 'items/text' removed"}]),
        ("GET /notes/{note_id}", "get_note_notes__note_id__get",
         [{"rule": "response-required-property-removed", "detail": "response 200 property 'text' removed"}]),
    ]  # fmt: skip
    assert impact["unaffected"] == ["audit"]  # it calls only GET /healthz, which did not change
    assert impact["summary"] == ("3 breaking change(s) of notes; used by digest (GET /notes, GET /notes/{note_id})")
    assert impact["documents"]["production"].startswith("file openapi.yaml of notes at ")
    assert impact["production_commit"] != impact["commit"]


def test_the_deploy_policy_asks_a_person_naming_the_consumer_and_an_approval_lets_it_through(
    tmp_path: Path, rego: RegoPolicyEngine
) -> None:
    impact = _impact(tmp_path, breaking_notes_change)
    payload = {"commit": impact["commit"], "tests_passed": True, "security_scan": SCAN, "cross_service": impact}
    verdict = rego.evaluate("deploy", payload)
    assert verdict.awaits_approval and not verdict.allow
    assert verdict.needs_approval == [
        "breaking API change of notes used by live consumer digest (NOTES_URL): GET /notes: response 200 property "
        "'items/text' removed [response-required-property-removed]; GET /notes/{note_id}: response 200 property "
        "'text' removed [response-required-property-removed]"
    ]
    approval = {"id": "apr-1", "granted": True, "by": "ops", "approved": verdict.needs_approval}
    assert rego.evaluate("deploy", {**payload, "approval": approval}).allow is True


def test_a_compatible_change_affects_no_consumer_and_passes_the_gate(tmp_path: Path, rego: RegoPolicyEngine) -> None:
    impact = _impact(tmp_path, trivial_change)
    assert impact["breaking"] == [] and impact["consumers"] == []
    assert impact["unaffected"] == ["audit", "digest"]
    payload = {"commit": impact["commit"], "tests_passed": True, "security_scan": SCAN, "cross_service": impact}
    assert rego.evaluate("deploy", payload).allow is True


@pytest.mark.parametrize(
    ("cross_service", "reason"),
    [
        (None, "deploy input cross_service is not an object with a consumers list"),
        ({"provider": "notes", "consumers": "digest"}, "deploy input cross_service is not an object"),
        ({"provider": "notes", "consumers": [{"service": "digest", "operations": []}]},
         "deploy input cross_service.consumers[0] has no service name or no operations"),
    ],
)  # fmt: skip
def test_a_malformed_cross_service_input_denies(rego: RegoPolicyEngine, cross_service: Any, reason: str) -> None:
    verdict = rego.evaluate(
        "deploy", {"commit": "c" * 40, "tests_passed": True, "security_scan": SCAN, "cross_service": cross_service}
    )
    assert not verdict.allow and not verdict.awaits_approval
    assert any(r.startswith(reason) for r in verdict.reasons), verdict.reasons
