"""Issue 18: an undocumented status HTTP forces is a gap of the document, anything else undocumented a contract break.

The NDJSON lines below carry what schemathesis 4 records per case (``meta.generation.mode``, ``meta.components``,
``meta.phase.data.scenario``; seen in real runs of ``../shared/specs/oai-v3.0-link-example.yaml``), parsed against
a small document written here (:func:`pilotage.testing.schemathesis_runner.document_facts` reads it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotage.events import CloudEvent, EventType
from pilotage.policy.rego import RegoPolicyEngine
from pilotage.report import _gap_lines, summarize
from pilotage.testing.forced_status import OperationFacts, forced_reason, gap_fix
from pilotage.testing.schemathesis_results import SchemathesisResult, parse_ndjson
from pilotage.testing.schemathesis_runner import document_facts, load_documented_statuses
from pilotage.testing.verdict import verdict_inputs, verdict_reasoning

OK = {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}
#: Every operation documents its success only, as many real documents do.
DOC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "gaps", "version": "1"},
    "components": {"securitySchemes": {"jwt": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/pets": {
            "get": {"responses": {"200": OK}},
            "post": {
                "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {"200": OK},
            },
        },
        "/pets/{petId}": {
            "parameters": [{"name": "petId", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "get": {"responses": {"200": OK}},
        },
        "/me": {"get": {"security": [{"jwt": []}], "responses": {"200": OK}}},
    },
}
POSITIVE = {"generation": {"time": 0.01, "mode": "positive"}, "components": {"path": {"mode": "positive"}}}
NEGATIVE_QUERY = {
    "generation": {"time": 0.01, "mode": "negative"},
    "components": {"path": {"mode": "positive"}, "query": {"mode": "negative"}},
    "phase": {"name": "coverage", "data": {"scenario": "invalid_enum_value", "description": "x"}},
}
NEGATIVE_BODY = {"generation": {"time": 0.01, "mode": "negative"}, "components": {"body": {"mode": "negative"}}}


def _line(label: str, cases: list[tuple[str, str, int, dict[str, Any], dict[str, list[str]]]]) -> str:
    """A ``ScenarioFinished`` line: (case id, method, status, meta, request headers) per case; each case failed
    ``status_code_conformance`` (and ``not_a_server_error`` for a 5xx), as schemathesis records it."""
    method, path = label.split(" ", 1)
    recorder: dict[str, Any] = {"label": label, "cases": {}, "checks": {}, "interactions": {}}
    for case_id, sent, status, meta, headers in cases:
        recorder["cases"][case_id] = {"value": {"method": method, "path": path, "id": case_id, "meta": meta}}
        failed = ["status_code_conformance", *(["not_a_server_error"] if status >= 500 else [])]
        recorder["checks"][case_id] = [
            {"name": name, "status": "failure", "failure_info": {"failure": {"operation": label}}} for name in failed
        ]
        uri = "http://127.0.0.1:8000" + path.replace("{petId}", "7")
        recorder["interactions"][case_id] = {
            "request": {"method": sent, "uri": uri, "headers": headers},
            "response": {"status_code": status},
        }
    return json.dumps({"ScenarioFinished": {"phase": "fuzzing", "status": "failure", "recorder": recorder}})


def _parse(tmp_path: Path, lines: list[str]) -> SchemathesisResult:
    spec = tmp_path / "openapi.yaml"
    spec.write_text(yaml.safe_dump(DOC))
    documented = load_documented_statuses(spec)
    _, nesting, facts = document_facts(spec)
    (tmp_path / "s.ndjson").write_text("\n".join(lines) + "\n")
    ops, _ = parse_ndjson(tmp_path / "s.ndjson", list(documented), documented, nesting, facts)
    return SchemathesisResult(ops, 0, 0, False, True, "7", 1.0, spec, spec, spec)


def test_a_404_on_an_item_path_documenting_only_200_is_a_gap_a_201_and_a_500_are_breaks(tmp_path: Path) -> None:
    result = _parse(
        tmp_path,
        [
            _line("GET /pets/{petId}", [("a", "GET", 404, POSITIVE, {})]),
            _line("POST /pets", [("b", "POST", 201, POSITIVE, {"Content-Type": ["application/json"]})]),
            _line("GET /pets", [("c", "GET", 500, POSITIVE, {}), ("d", "GET", 404, POSITIVE, {})]),
        ],
    )
    assert result.document_gaps == [
        {
            "operation": "GET /pets/{petId}",
            "status": 404,
            "reason": "the path parameter names no resource the service holds: RFC 9110 15.5.5",
            "fix": "declare 404 for GET /pets/{petId} in the document",
        }
    ]
    by_label = {op.operation: op for op in result.operations}
    assert by_label["GET /pets/{petId}"].failures == 0 and by_label["GET /pets/{petId}"].checks_failed == []
    # 201 is a success the document does not list; 500 a server error; 404 on a path without a parameter: the route
    assert result.contract["status_code_conformance"]["operations"] == ["GET /pets", "POST /pets"]
    assert by_label["GET /pets"].failures == 2 and by_label["GET /pets"].server_errors == 1
    assert result.to_dict()["contract_violations"] == 2
    assert result.to_dict()["document_gaps"][0]["fix"] == "declare 404 for GET /pets/{petId} in the document"


def test_a_400_is_a_gap_for_a_negative_case_only(tmp_path: Path) -> None:
    json_body = {"Content-Type": ["application/json"]}
    result = _parse(
        tmp_path,
        [
            _line("GET /pets", [("a", "GET", 400, NEGATIVE_QUERY, {})]),
            _line(
                "POST /pets", [("b", "POST", 422, NEGATIVE_BODY, json_body), ("c", "POST", 400, POSITIVE, json_body)]
            ),
        ],
    )
    assert [(g["operation"], g["status"], g["reason"]) for g in result.document_gaps] == [
        ("GET /pets", 400, "the request was generated invalid (query): RFC 9110 15.5.1"),
        ("POST /pets", 422, "the request was generated invalid (body): RFC 9110 15.5.21"),
    ]
    assert result.contract["status_code_conformance"]["operations"] == ["POST /pets"]  # the valid body's 400


def test_a_401_is_a_gap_without_credentials_on_a_secured_operation_only(tmp_path: Path) -> None:
    bearer = {"Authorization": ["[masked]"]}
    result = _parse(
        tmp_path,
        [
            _line("GET /me", [("a", "GET", 401, POSITIVE, {}), ("b", "GET", 403, POSITIVE, bearer)]),
            _line("GET /pets", [("c", "GET", 401, POSITIVE, {})]),  # no security: refusing it breaks the contract
        ],
    )
    assert [(g["operation"], g["status"]) for g in result.document_gaps] == [("GET /me", 401)]
    assert result.document_gaps[0]["reason"] == (
        "the request carried no credentials for a secured operation: RFC 9110 15.5.2"
    )
    assert result.contract["status_code_conformance"]["operations"] == ["GET /me", "GET /pets"]  # document order


def test_a_501_is_a_gap_whose_fix_names_the_handler_and_not_a_server_error(tmp_path: Path) -> None:
    result = _parse(tmp_path, [_line("GET /pets", [("a", "GET", 501, POSITIVE, {})])])
    assert result.server_errors == 0 and result.not_implemented == ["GET /pets"] and result.contract == {}
    assert result.document_gaps[0]["fix"] == (
        "declare 501 for GET /pets in the document (or write its handler in app/handlers.py)"
    )
    assert gap_fix("GET /x", 404) == "declare 404 for GET /x in the document"


NEGATIVE_BODY_CASE = {"meta": NEGATIVE_BODY}
FACTS = OperationFacts(
    method="POST",
    request_media=frozenset({"application/json"}),
    response_media=frozenset({"application/json"}),
)


@pytest.mark.parametrize(
    ("status", "case", "request_", "forced"),
    [
        (405, {}, {"method": "DELETE"}, "DELETE is not a method of the operation: RFC 9110 15.5.6"),
        (405, {}, {"method": "POST"}, None),
        (406, {}, {"headers": {"Accept": ["text/xml"]}}, "Accept 'text/xml' names no media type the responses "
                                                         "declare: RFC 9110 15.5.7"),
        (406, {}, {"headers": {"Accept": ["application/*"]}}, None),
        (415, {}, {"headers": {"content-type": ["text/plain; charset=utf-8"]}},
         "Content-Type 'text/plain' is not one the request body declares: RFC 9110 15.5.16"),
        (415, {}, {"headers": {"Content-Type": ["application/json"]}}, None),
        (400, {"meta": {"phase": {"data": {"scenario": "malformed_content_type"}}}}, {},
         "the request's Content-Type is malformed: RFC 9110 15.5.1"),
        (400, {"meta": {"components": ["body"], "generation": "negative"}}, {}, None),  # a meta it cannot read
        (409, NEGATIVE_BODY_CASE, {}, None),  # a conflict is not forced by the request
        (302, NEGATIVE_BODY_CASE, {}, None),
        (503, NEGATIVE_BODY_CASE, {}, None),
    ],
)  # fmt: skip
def test_forced_reason_by_status(
    status: int, case: dict[str, Any], request_: dict[str, Any], forced: str | None
) -> None:
    assert forced_reason(status, case, request_, FACTS) == forced
    assert forced_reason(status, case, request_, None) is None  # an operation the document does not have


SCAN = {"tool": "bandit", "status": "completed", "issues": {"high": 0, "medium": 0, "low": 0}}
GAPS = [{"operation": "GET /pets/{petId}", "status": 404, "reason": "r",
         "fix": "declare 404 for GET /pets/{petId} in the document"}]  # fmt: skip


def _deploy(contract: dict[str, Any]) -> Any:
    engine = RegoPolicyEngine(policy_dirs=[])
    return engine.evaluate(
        "deploy", {"commit": "c0ffee", "tests_passed": True, "security_scan": SCAN} | {"contract": contract}
    )


def test_the_bundled_deploy_rule_denies_gaps_only_when_the_operator_asks() -> None:
    none: dict[str, Any] = {"violations": 0, "checks": {}, "gate": "deny"}
    assert _deploy(none | {"gaps": GAPS, "gap_gate": "report"}).allow is True
    assert _deploy(none | {"gaps": GAPS}).allow is True  # no gap gate given: the default, report
    denied = _deploy(none | {"gaps": GAPS, "gap_gate": "deny"})
    assert denied.allow is False
    assert denied.reasons == [
        "document gap on GET /pets/{petId}: status 404 is not declared (testing_document_gap_gate = deny): "
        "declare 404 for GET /pets/{petId} in the document"
    ]
    also_warned = _deploy(none | {"gate": "warn", "gaps": GAPS, "gap_gate": "deny"})  # the gap gate stands alone
    assert also_warned.allow is False
    unreadable = _deploy(none | {"gaps": [{"operation": "GET /x"}], "gap_gate": "deny"})  # fail closed
    assert unreadable.reasons == [
        "document gaps listed in a shape this policy cannot read (testing_document_gap_gate = deny)"
    ]
    breaks = _deploy({"violations": 1, "checks": {"status_code_conformance": ["POST /pets"]}, "gaps": GAPS})
    assert breaks.allow is False and breaks.reasons[0].startswith("contract violation status_code_conformance on ")


def test_the_verdict_and_the_run_report_name_each_gap_with_its_fix(tmp_path: Path) -> None:
    st = _parse(tmp_path, [_line("GET /pets/{petId}", [("a", "GET", 404, POSITIVE, {})])]).to_dict()
    result = {"schemathesis": st, "unit": {"passed": 1, "failed": 0, "errors": 0, "skipped": 0, "exit_code": 0},
              "failures": [], "flaky": [], "generated": {}, "skipped": []}  # fmt: skip
    inputs = verdict_inputs("c0ffee", result)
    assert inputs["contract"]["checks"] == {} and inputs["contract"]["gaps"] == st["document_gaps"]
    rationale = verdict_reasoning(inputs).rationale
    assert (
        "1 document gaps, statuses HTTP forces that the document does not declare (reported, not denied): "
        "declare 404 for GET /pets/{petId} in the document." in rationale
    )
    data = {"commit": "c0ffee", "passed": True, "schemathesis": st, "unit": result["unit"],
            "contract": {**inputs["contract"], "gap_gate": "report"}}  # fmt: skip
    event = CloudEvent(type=EventType.TESTS_COMPLETED, source="pilotage/testing", subject="svc", data=data)
    assert summarize(event).endswith("; contract breaks 0, document gaps 1")
    # a failed CRUD test of Pilotage's is named on the progress line (it showed only zeros: a new user's complaint)
    failed = {**data, "passed": False, "generated": {"crud": {"passed": 3, "failed": 1, "errors": 0, "skipped": 0}}}
    line = summarize(CloudEvent(type=EventType.TESTS_COMPLETED, source="pilotage/testing", subject="svc", data=failed))
    assert "; Pilotage's generated tests: CRUD 1 failed (report.md); contract breaks 0" in line
    assert _gap_lines([event])[-1] == (
        "- GET /pets/{petId} → 404: the path parameter names no resource the service holds: RFC 9110 15.5.5; "
        "fix: declare 404 for GET /pets/{petId} in the document"
    )
