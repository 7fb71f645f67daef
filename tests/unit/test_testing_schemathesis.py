"""schemathesis runner: spec loading errors, NDJSON parsing, curl lines, and real runs against the fixture services."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pilotage.errors import InputError
from pilotage.runtime.base import Workload
from pilotage.runtime.local import LocalRuntime
from pilotage.spec.openapi import form_bodies_nesting_objects
from pilotage.testing.curl import curl_command
from pilotage.testing.schemathesis_results import SchemathesisResult, parse_ndjson
from pilotage.testing.schemathesis_runner import load_documented_statuses, load_operations, run_schemathesis

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _run_against(name: str, tmp_path: Path, *, timeout_s: float = 120.0, max_examples: int = 10) -> SchemathesisResult:
    service = shutil.copytree(FIXTURES / name, tmp_path / name)

    async def scenario() -> SchemathesisResult:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            instance = await runtime.start(
                Workload(name, "t", service, env={"PILOTAGE_DB_PATH": str(tmp_path / "svc.db")})
            )
            return await run_schemathesis(
                service / "openapi.yaml",
                instance.url,
                tmp_path / "report",
                max_examples=max_examples,
                timeout_s=timeout_s,
                seed=1234,
            )

    return asyncio.run(scenario())


# -- spec loading --------------------------------------------------------------------------------------------------


def test_load_operations_lists_the_spec_operations() -> None:
    assert load_operations(FIXTURES / "ok_service" / "openapi.yaml") == ["GET /pets", "POST /pets", "GET /pets/{petId}"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("openapi: 3.0.3\ninfo: {title: x}\npaths: [1, 2\n", "schemathesis cannot load"),
        ("openapi: 3.0.3\ninfo: {title: x, version: '1'}\npaths: {}\n", "defines no API operation"),
    ],
)
def test_unloadable_spec_is_an_input_error_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text(text)
    with pytest.raises(InputError) as info:
        load_operations(spec)
    assert message in str(info.value) and str(spec) in str(info.value)
    assert info.value.context["path"] == spec


def test_missing_spec_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        asyncio.run(run_schemathesis(tmp_path / "nope.yaml", "http://127.0.0.1:9", tmp_path / "r"))


# -- curl lines and NDJSON parsing ---------------------------------------------------------------------------------


def test_curl_command_quotes_headers_and_bodies() -> None:
    body = base64.b64encode(b'{"name": "it\'s"}').decode()
    curl = curl_command(
        {
            "method": "POST",
            "uri": "http://127.0.0.1:1/pets?a=1&b=2",
            "headers": {"Content-Type": ["application/json"], "X-Schemathesis-TestCaseId": ["abc"]},
            "body": {"$base64": body},
        }
    )
    assert curl == (
        "curl -X POST -H 'Content-Type: application/json' -d '{\"name\": \"it'\"'\"'s\"}' "
        "'http://127.0.0.1:1/pets?a=1&b=2'"
    )
    binary = curl_command(
        {"method": "POST", "uri": "http://h/p", "body": {"$base64": base64.b64encode(b"\xe4'\x01").decode()}}
    )
    assert binary == "curl -X POST -d $'\\xe4\\'\\x01' http://h/p"


def _scenario(phase: str, label: str, cases: list[tuple[str, str, int | None, list[str], str]]) -> str:
    case_map: dict[str, Any] = {}
    check_map: dict[str, Any] = {}
    interactions: dict[str, Any] = {}
    recorder = {"label": label, "cases": case_map, "checks": check_map, "interactions": interactions}
    for case_id, method, status, failed, uri in cases:
        path = uri.split("//", 1)[1].split("/", 1)[1].split("?")[0]
        case_map[case_id] = {"value": {"method": method, "path": "/" + path, "id": case_id}}
        checks: list[dict[str, Any]] = [{"name": "not_a_server_error", "status": "success"}]
        checks += [
            {"name": n, "status": "failure", "failure_info": {"failure": {"operation": label if " " in label else ""}}}
            for n in failed
        ]
        check_map[case_id] = checks
        if status is not None:
            interactions[case_id] = {
                "request": {"method": method, "uri": uri, "headers": {}},
                "response": {"status_code": status},
            }
    return json.dumps({"ScenarioFinished": {"phase": phase, "status": "failure", "recorder": recorder}})


def test_parse_ndjson_counts_per_operation_and_keeps_the_shortest_example(tmp_path: Path) -> None:
    lines = [
        json.dumps({"Initialize": {"seed": 42}}),
        _scenario(
            "fuzzing",
            "GET /pets",
            [
                ("a", "GET", 200, [], "http://h/pets?limit=5"),
                ("b", "GET", 500, ["not_a_server_error"], "http://h/pets?limit=0&x=long-long"),
                ("c", "GET", 500, ["not_a_server_error", "status_code_conformance"], "http://h/pets?limit=0"),
                ("d", "GET", None, [], "http://h/pets"),  # no response: not a request counted
            ],
        ),
        _scenario("stateful", "Stateful tests", [("e", "POST", 503, [], "http://h/pets")]),
        json.dumps({"NonFatalError": {"value": {}}}),
        json.dumps({"EngineFinished": {}}),
        '{"ScenarioFinished": {"cut',  # a killed run leaves a partial last line
    ]
    path = tmp_path / "s.ndjson"
    path.write_text("\n".join(lines) + "\n")
    ops, meta = parse_ndjson(path, ["GET /pets", "POST /pets", "GET /pets/{petId}"])
    by = {op.operation: op for op in ops}
    assert [op.operation for op in ops] == ["GET /pets", "POST /pets", "GET /pets/{petId}"]
    assert (by["GET /pets"].requests, by["GET /pets"].failures, by["GET /pets"].server_errors) == (3, 2, 2)
    assert by["GET /pets"].checks_failed == ["not_a_server_error", "status_code_conformance"]
    assert by["GET /pets"].examples == [
        {"check": "not_a_server_error", "curl": "curl -X GET 'http://h/pets?limit=0'", "status": 500},
        {"check": "status_code_conformance", "curl": "curl -X GET 'http://h/pets?limit=0'", "status": 500},
    ]
    # the stateful 503 had no failed check recorded: the 5xx still counts, under the operation it called
    assert (by["POST /pets"].requests, by["POST /pets"].server_errors, by["POST /pets"].failures) == (1, 1, 1)
    assert by["GET /pets/{petId}"].requests == 0
    assert meta == {"errors": 1, "complete": True, "seed": "42", "fatal": None}


def test_a_501_is_not_implemented_not_a_server_error(tmp_path: Path) -> None:
    """Issue 18: a generated service answers 501 for an operation still to write in app/handlers.py."""
    lines = [
        _scenario(
            "fuzzing",
            "GET /stats",
            [("a", "GET", 501, ["not_a_server_error"], "http://h/stats"), ("b", "GET", 500, [], "http://h/stats")],
        )
    ]
    path = tmp_path / "s.ndjson"
    path.write_text("\n".join(lines) + "\n")
    ops, _ = parse_ndjson(path, ["GET /stats"])
    assert (ops[0].requests, ops[0].not_implemented, ops[0].server_errors, ops[0].failures) == (2, 1, 1, 1)


def test_parse_ndjson_of_a_missing_file_is_empty_and_incomplete(tmp_path: Path) -> None:
    ops, meta = parse_ndjson(tmp_path / "none.ndjson", ["GET /x"])
    assert [op.requests for op in ops] == [0] and meta["complete"] is False


# -- real runs -----------------------------------------------------------------------------------------------------


def test_finds_the_planted_server_errors_in_the_buggy_service(tmp_path: Path) -> None:
    result = _run_against("buggy_service", tmp_path)
    by = {op.operation: op for op in result.operations}
    assert result.complete and not result.timed_out and result.exit_code == 1
    assert by["GET /pets"].server_errors > 0 and by["POST /pets"].server_errors > 0
    assert by["GET /pets/{petId}"].server_errors == 0 and by["GET /pets/{petId}"].requests > 0
    assert result.server_errors == sum(op.server_errors for op in result.operations)
    get_example = next(e["curl"] for e in by["GET /pets"].examples if e["check"] == "not_a_server_error")
    post_example = next(e["curl"] for e in by["POST /pets"].examples if e["check"] == "not_a_server_error")
    assert "limit=0" in get_example and get_example.startswith("curl -X GET")
    assert '"name": ""' in post_example
    junit = ET.parse(result.junit_path).getroot()
    assert int(junit.get("failures", 0)) > 0
    payload = result.to_dict()
    assert payload["server_errors"] == result.server_errors and payload["junit_path"] == str(result.junit_path)
    json.dumps(payload)  # JSON-serialisable event data


def test_ok_service_has_no_server_error(tmp_path: Path) -> None:
    result = _run_against("ok_service", tmp_path)
    assert result.complete and result.server_errors == 0
    assert all(op.requests > 0 for op in result.operations), result.to_dict()
    assert "not_a_server_error" not in result.checks_failed
    assert result.junit_path.is_file() and result.seed == "1234"


def test_global_timeout_kills_the_run(tmp_path: Path) -> None:
    started = time.monotonic()
    result = _run_against("ok_service", tmp_path, timeout_s=0.5, max_examples=1000)
    assert result.timed_out and not result.complete
    assert result.exit_code is not None and result.exit_code < 0  # ended by a signal
    assert time.monotonic() - started < 15


# -- secrets (issue #15, finding 4) ---------------------------------------------------------------------------------

TENANT_SECRET = "tenant-secret-3c9e1f"


def _cmdlines() -> list[str]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    return out


def test_test_headers_reach_the_service_but_no_command_line_and_no_report(tmp_path: Path) -> None:
    """``X-Tenant`` is not a name schemathesis masks: its value must still be in no argv and no file it writes."""
    service = shutil.copytree(FIXTURES / "buggy_service", tmp_path / "svc")
    seen_in_argv: list[str] = []

    async def watch(stop: asyncio.Event) -> None:
        while not stop.is_set():
            seen_in_argv.extend(c for c in _cmdlines() if TENANT_SECRET in c)
            await asyncio.sleep(0.05)

    async def scenario() -> SchemathesisResult:
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(stop))
        try:
            async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
                instance = await runtime.start(
                    Workload("buggy", "t", service, env={"PILOTAGE_DB_PATH": str(tmp_path / "svc.db")})
                )
                return await run_schemathesis(
                    service / "openapi.yaml",
                    instance.url,
                    tmp_path / "report",
                    max_examples=10,
                    timeout_s=120,
                    seed=1234,
                    headers={"X-Tenant": TENANT_SECRET},
                )
        finally:
            stop.set()
            await watcher

    result = asyncio.run(scenario())
    assert result.complete and result.failures > 0  # a real run, with failing cases and their curl lines
    assert seen_in_argv == []
    curls = [e["curl"] for op in result.operations for e in op.examples]
    assert curls and all("X-Tenant: [masked]" in c for c in curls), curls  # sent on every request, masked
    assert TENANT_SECRET not in json.dumps(result.to_dict())
    for path in (tmp_path / "report").rglob("*"):
        if path.is_file():
            assert TENANT_SECRET.encode() not in path.read_bytes(), path
    assert (tmp_path / "report" / "schemathesis.toml").stat().st_mode & 0o777 == 0o600


def test_a_valid_request_refused_with_a_documented_4xx_is_the_contract(tmp_path: Path) -> None:
    """A 402 the operation documents (payment declined) is not "a valid request rejected"; a 400 it does not is."""
    lines = [
        _scenario(
            "fuzzing",
            "POST /pay",
            [
                ("a", "POST", 402, ["positive_data_acceptance"], "http://h/pay"),
                ("b", "POST", 400, ["positive_data_acceptance"], "http://h/pay"),
                ("c", "POST", 418, ["positive_data_acceptance", "status_code_conformance"], "http://h/pay"),
            ],
        )
    ]
    path = tmp_path / "s.ndjson"
    path.write_text("\n".join(lines) + "\n")
    documented = {"POST /pay": frozenset({"200", "402"})}
    [op], _ = parse_ndjson(path, ["POST /pay"], documented)
    assert op.failures == 2  # b and c; a is the documented refusal
    assert op.checks_failed == ["positive_data_acceptance", "status_code_conformance"]
    assert [e["curl"] for e in op.examples] == ["curl -X POST http://h/pay"] * 2
    [undocumented], _ = parse_ndjson(path, ["POST /pay"])  # without the document every finding counts
    assert undocumented.failures == 3
    by_class = {"POST /pay": frozenset({"200", "4XX"})}
    [ranged], _ = parse_ndjson(path, ["POST /pay"], by_class)
    assert ranged.failures == 1 and ranged.checks_failed == ["status_code_conformance"]  # 4XX covers 400 and 418


def test_documented_statuses_come_from_schemathesis_loader(tmp_path: Path) -> None:
    spec = tmp_path / "pay.yaml"
    spec.write_text(
        "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /pay:\n    post:\n      responses:\n"
        "        '200': {description: ok}\n        '402': {description: declined}\n"
        "  /x:\n    get:\n      responses:\n        default: {description: any}\n"
    )
    assert load_documented_statuses(spec) == {
        "POST /pay": frozenset({"200", "402"}),
        "GET /x": frozenset({"DEFAULT"}),
    }


def _form_scenario(case_id: str, content_type: str) -> dict[str, Any]:
    scenario = json.loads(
        _scenario("fuzzing", "POST /pet", [(case_id, "POST", 422, ["positive_data_acceptance"], "http://h/pet")])
    )
    recorder = scenario["ScenarioFinished"]["recorder"]
    recorder["interactions"][case_id]["request"]["headers"] = {"Content-Type": [content_type]}
    return scenario


def test_a_form_body_nesting_objects_refused_is_not_a_contract_violation(tmp_path: Path) -> None:
    """OpenAPI's form style cannot carry Petstore's ``tags: [Tag]``: schemathesis' encoding of it is not valid data."""
    doc = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/pet": {
                "post": {
                    "requestBody": {
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Pet"}},
                            "application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/Pet"}},
                        }
                    },
                    "responses": {"200": {"description": "ok"}},
                }
            },
            "/user": {
                "post": {
                    "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
                        "type": "object",
                        "properties": {"s": {"type": "string"}, "n": {"type": "array", "items": {"type": "number"}}},
                    }}}},
                    "responses": {"200": {"description": "ok"}},
                }
            },
        },
        "components": {"schemas": {
            "Tag": {"type": "object", "properties": {"id": {"type": "integer"}}},
            "Pet": {"type": "object", "properties": {
                "name": {"type": "string"},
                "tags": {"type": "array", "items": {"$ref": "#/components/schemas/Tag"}},
            }},
        }},
    }  # fmt: skip
    assert form_bodies_nesting_objects(doc) == {"POST /pet"}  # /user's form holds primitives and their arrays
    lines = [
        json.dumps(_form_scenario("a", "application/x-www-form-urlencoded")),
        json.dumps(_form_scenario("b", "application/json")),  # JSON can carry the objects: a real refusal
    ]
    path = tmp_path / "s.ndjson"
    path.write_text("\n".join(lines) + "\n")
    [op], _ = parse_ndjson(path, ["POST /pet"], {}, {"POST /pet"})
    assert (op.requests, op.failures, op.checks_failed) == (2, 1, ["positive_data_acceptance"])
    assert op.examples == [
        {
            "check": "positive_data_acceptance",
            "curl": "curl -X POST -H 'Content-Type: application/json' http://h/pet",
            "status": 422,
        }
    ]
