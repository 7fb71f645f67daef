"""Issue 18 item 8: contract findings by check, the deploy gate on them, 501 as "not implemented", skipped tests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotage.agents.testing import verdict_inputs, verdict_reasoning
from pilotage.policy.rego import RegoPolicyEngine
from pilotage.runtime.base import Workload
from pilotage.runtime.local import LocalRuntime
from pilotage.testing.schemathesis_runner import run_schemathesis

OK = {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}
#: Four operations: one that keeps its word, one not implemented yet (501), one answering an undocumented status,
#: one whose bearer security the service does not enforce.
DOC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "contract", "version": "1"},
    "components": {"securitySchemes": {"jwt": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/fine": {"get": {"responses": {"200": OK}}},
        "/stub": {"get": {"responses": {"200": OK}}},
        "/teapot": {"get": {"responses": {"200": OK}}},
        "/private": {"get": {"security": [{"jwt": []}], "responses": {"200": OK, "401": {"description": "no"}}}},
    },
}
APP = """
from fastapi import FastAPI
from fastapi.responses import JSONResponse

app = FastAPI()


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


@app.get("/fine")
def fine():
    return {"ok": True}


@app.get("/stub")
def stub():
    problem = {"title": "Not Implemented", "status": 501, "detail": "write it in app/handlers.py"}
    return JSONResponse(problem, status_code=501, media_type="application/problem+json")


@app.get("/teapot")
def teapot():
    return JSONResponse({"short": "and stout"}, status_code=418)


@app.get("/private")
def private():
    return {"secret": "anyone sees it"}
"""
#: A schemathesis run that found nothing (the verdict's shape).
CLEAN_SCHEMATHESIS = {
    "requests": 9,
    "failures": 0,
    "server_errors": 0,
    "errors": 0,
    "complete": True,
    "checks_failed": [],
}
SCAN = {"tool": "bandit", "status": "completed", "issues": {"high": 0, "medium": 0, "low": 0}}


def _schemathesis(tmp_path: Path) -> dict[str, Any]:
    service = tmp_path / "svc"
    (service / "app").mkdir(parents=True)
    (service / "app" / "__init__.py").write_text("")
    (service / "app" / "main.py").write_text(APP)
    spec = tmp_path / "openapi.yaml"
    spec.write_text(yaml.safe_dump(DOC))

    async def scenario() -> dict[str, Any]:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            instance = await runtime.start(Workload("contract", "t", service))
            result = await run_schemathesis(spec, instance.url, tmp_path / "st", max_examples=2, seed=7)
            return result.to_dict()

    return asyncio.run(scenario())


def test_contract_violations_are_listed_by_check_and_a_501_is_not_a_server_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PILOTAGE_TEST_PRINCIPAL", "pilotage:contract-principal-0123")
    st = _schemathesis(tmp_path)
    assert st["server_errors"] == 0 and st["not_implemented"] == ["GET /stub"]
    contract = st["contract"]
    assert contract["status_code_conformance"]["operations"] == ["GET /teapot"]
    assert contract["ignored_auth"]["operations"] == ["GET /private"]
    assert "not refused" in contract["ignored_auth"]["meaning"]
    assert "GET /fine" not in {op for entry in contract.values() for op in entry["operations"]}
    assert st["contract_violations"] == sum(len(e["operations"]) for e in contract.values())
    assert "pilotage:contract-principal-0123" not in (tmp_path / "st" / "schemathesis.toml").read_text()
    # the verdict: no server error, so the tests pass; the summary names the violations and the 501
    result = {"schemathesis": st, "unit": {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "exit_code": 0},
              "failures": [], "flaky": [], "generated": {}, "skipped": []}  # fmt: skip
    inputs = verdict_inputs("c0ffee", result) | {"contract": verdict_inputs("c0ffee", result)["contract"]}
    reasoning = verdict_reasoning(inputs)
    assert reasoning.action == "pass", reasoning.rationale
    assert "Contract violations (the deploy policy denies): ignored_auth on GET /private" in reasoning.rationale
    assert "Not implemented (501, app/handlers.py): GET /stub." in reasoning.rationale


def _deploy(contract: dict[str, Any] | None) -> Any:
    engine = RegoPolicyEngine(policy_dirs=[])
    payload = {"commit": "c0ffee", "tests_passed": True, "security_scan": SCAN}
    return engine.evaluate("deploy", payload | ({"contract": contract} if contract is not None else {}))


def test_the_bundled_deploy_rule_denies_contract_violations_unless_the_gate_is_warn() -> None:
    checks = {"status_code_conformance": ["GET /teapot"], "ignored_auth": ["GET /private", "GET /me"]}
    denied = _deploy({"violations": 3, "checks": checks, "gate": "deny"})
    assert denied.allow is False
    assert sorted(r.split(":")[0] for r in denied.reasons) == [
        "contract violation ignored_auth on GET /private, GET /me",
        "contract violation status_code_conformance on GET /teapot",
    ]
    assert _deploy({"violations": 3, "checks": checks}).allow is False  # no gate given: the default, deny
    assert _deploy({"violations": 3, "checks": checks, "gate": "warn"}).allow is True
    assert _deploy({"violations": 0, "checks": {}, "gate": "deny"}).allow is True
    assert _deploy(None).allow is True  # a run recorded before issue 18


def test_skipped_tests_are_named_and_a_run_where_most_skipped_does_not_pass() -> None:
    unit = {"passed": 1, "failed": 0, "errors": 0, "skipped": 0, "exit_code": 0}
    st = dict(CLEAN_SCHEMATHESIS)
    skipped = [
        {"nodeid": "tests/test_pilotage_api_crud.py::test_crud_notes", "kind": "crud",
         "reason": "POST /notes answered 401 without credentials (set PILOTAGE_TEST_PRINCIPAL ...)"},
        {"nodeid": "tests/test_pilotage_api_crud.py::test_update_notes", "kind": "crud",
         "reason": "PUT /notes/{id} answered 401 without credentials"},
        {"nodeid": "tests/test_pilotage_api_crud.py::test_crud_tags", "kind": "crud",
         "reason": "not implemented: POST /tags answered 501 (write it in app/handlers.py)"},
    ]  # fmt: skip
    result = {"schemathesis": st, "unit": unit, "failures": [], "flaky": [], "skipped": skipped,
              "generated": {"crud": {"passed": 0, "failed": 0, "errors": 0, "skipped": 3}}}  # fmt: skip
    reasoning = verdict_reasoning(verdict_inputs("c0ffee", result))
    assert reasoning.action == "pass"  # 2 of 4 skipped (the 501 does not count): not most
    assert "2 tests skipped: tests/test_pilotage_api_crud.py::test_crud_notes: POST /notes answered 401" in (
        reasoning.rationale
    )
    result["unit"] = {**unit, "passed": 0}
    reasoning = verdict_reasoning(verdict_inputs("c0ffee", result))
    assert reasoning.action == "fail"
    assert "2 of 3 tests skipped (tests/test_pilotage_api_crud.py::test_crud_notes: POST /notes answered 401" in (
        reasoning.rationale
    )
    assert "Not implemented (501, app/handlers.py): tests/test_pilotage_api_crud.py::test_crud_tags" in (
        reasoning.rationale
    )


def test_the_summary_says_which_tests_failed_and_why() -> None:
    unit = {"passed": 3, "failed": 1, "errors": 0, "skipped": 0, "exit_code": 1}
    st = dict(CLEAN_SCHEMATHESIS)
    failures = [
        {"nodeid": "tests/test_pilotage_api_crud.py::test_crud_notes", "kind": "crud",
         "message": "AssertionError: [oracle read/compare] GET /notes/{id} does not return what was sent\nReproduce:"},
        {"nodeid": "tests/test_app.py::test_total", "kind": "unit", "message": "E   assert 3 == 4\nmore"},
    ]  # fmt: skip
    result = {"schemathesis": st, "unit": unit, "failures": failures, "flaky": [], "skipped": [], "generated": {}}
    rationale = verdict_reasoning(verdict_inputs("c0ffee", result)).rationale
    assert "1 unit tests failed and 0 errored (tests/test_app.py::test_total: assert 3 == 4)" in rationale
    assert (
        "1 generated tests failed (tests/test_pilotage_api_crud.py::test_crud_notes: AssertionError: [oracle "
        "read/compare] GET /notes/{id} does not return what was sent)" in rationale
    )
