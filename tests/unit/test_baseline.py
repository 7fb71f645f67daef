"""Issue 18: a failure the baseline (production) has too is a baseline problem, reported and not gating."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pilotage.runtime.local import LocalRuntime
from pilotage.testing.baseline import (
    check_baseline,
    classify,
    classify_schemathesis,
    replay_server_errors,
    rerun_failing,
    schemathesis_on_baseline,
    server_error_requests,
    signature,
)
from pilotage.testing.pytest_runner import run_pytest
from pilotage.testing.schemathesis_results import OperationResult, SchemathesisResult
from pilotage.testing.suite import parse_cases
from pilotage.testing.verdict import discount_baseline, verdict_reasoning, why_failed

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SHARED = 'def test_shared() -> None:\n    assert 1 + 1 == 3, "the shared bug"\n'
HEAD_BUG = 'def test_changed() -> None:\n    assert "x".upper() == "x", "the change broke upper"\n'
BASE_OK = 'def test_changed() -> None:\n    assert "x".upper() == "X"\n'


def _checkout(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / "tests").mkdir(parents=True, exist_ok=True)
        (root / "tests" / name).write_text(text)
    return root


def _failures(head: Path, out: Path) -> list[dict[str, Any]]:
    result = asyncio.run(run_pytest(head, out / "head.junit.xml", timeout_s=60))
    return [c for c in parse_cases(result.junit_path, head) if c["outcome"] in ("failed", "error")]


def _inputs(failures: list[dict[str, Any]], baseline: dict[str, Any]) -> dict[str, Any]:
    return {
        "commit": "c" * 40,
        "schemathesis": {"requests": 5, "failures": 0, "server_errors": 0, "complete": True, "checks_failed": []},
        "unit": {
            "passed": 0,
            "failed": len(failures),
            "errors": 0,
            "exit_code": 1,
            "tests": [why_failed(f) for f in failures],
        },
        "baseline": baseline,
    }


def test_real_pytest_on_two_checkouts_tells_a_baseline_problem_from_a_regression(tmp_path: Path) -> None:
    head = _checkout(
        tmp_path / "head", {"test_a.py": SHARED + HEAD_BUG, "test_new.py": SHARED.replace("shared", "new")}
    )
    base = _checkout(tmp_path / "base", {"test_a.py": SHARED + BASE_OK})
    failures = _failures(head, tmp_path)
    assert sorted(f["nodeid"] for f in failures) == [
        "tests/test_a.py::test_changed", "tests/test_a.py::test_shared", "tests/test_new.py::test_new"
    ]  # fmt: skip
    cases, untested = asyncio.run(rerun_failing(failures, head, base, tmp_path / "baseline", {}))
    assert untested == [{"test": "tests/test_new.py::test_new", "reason": "the baseline has no such test"}]
    assert {n: c["outcome"] for n, c in cases.items()} == {
        "tests/test_a.py::test_changed": "passed", "tests/test_a.py::test_shared": "failed"
    }  # fmt: skip
    problems, differs = classify(failures, cases)
    assert problems == [{"test": "tests/test_a.py::test_shared", "kind": "unit", "outcome": "failed",
                         "message": "AssertionError: the shared bug"}]  # fmt: skip
    assert differs == [{"test": "tests/test_a.py::test_changed", "reason": "on the baseline it passes"}]
    shared = [f for f in failures if f["nodeid"].endswith("test_shared")]
    passing = verdict_reasoning(_inputs(shared, {"problems": problems, "untested": []}))
    assert passing.action == "pass" and passing.score["unit_failed"] == 0
    assert passing.rationale.startswith("Pass: no server error and no failing unit test the change is to blame for.")
    assert "unit: 0 passed, 1 failed, 0 errors" in passing.rationale  # the counts as they were
    assert (
        "Baseline problem: tests/test_a.py::test_shared fails on production too: AssertionError: the shared bug."
        in passing.rationale
    )
    failing = verdict_reasoning(_inputs(failures, {"problems": problems, "untested": untested}))
    assert failing.action == "fail" and failing.score["unit_failed"] == 2
    assert "test_changed: AssertionError: the change broke upper" in failing.rationale
    assert "test_a.py::test_shared: " not in failing.rationale.split("Fail: ", 1)[1].split(". ", 1)[0]
    assert "Not checked on the baseline (still gating): tests/test_new.py::test_new: the baseline has no such test" in (
        failing.rationale
    )


def test_a_failure_for_another_reason_on_the_baseline_still_gates() -> None:
    head = {
        "nodeid": "tests/test_crud.py::test_pets",
        "kind": "crud",
        "outcome": "failed",
        "message": "AssertionError: [oracle create/status] POST /pets answered 500, not 2xx\nReproduce:\ncurl",
    }
    base = {**head, "message": "AssertionError: [oracle create/status] POST /pets answered 404, not 2xx\n"}
    problems, differs = classify([head], {head["nodeid"]: base})
    assert problems == []
    assert differs[0]["reason"] == "on the baseline it failed: AssertionError: [oracle create/status] POST /pets " \
        "answered 404, not 2xx"  # fmt: skip
    same = {**head, "message": "AssertionError: [oracle create/status] POST /pets answered 500, not 2xx (id 8812)"}
    again = {**head, "message": head["message"].replace("2xx", "2xx (id 17)")}
    assert classify([same], {head["nodeid"]: {**same, "message": same["message"].replace("8812", "9931")}})[0]
    assert classify([again], {head["nodeid"]: base})[0] == []


def test_signature_masks_ports_and_ids_but_keeps_statuses() -> None:
    assert signature("\nE   AssertionError: GET http://127.0.0.1:43117/pets answered 500") == (
        "AssertionError: GET http://127.0.0.1:#/pets answered 500"
    )
    assert signature("item 3fa85f64-5717-4562-b3fc-2c963f66afa6 missing") == "item # missing"


def _st(ops: list[OperationResult], ndjson: Path = Path("/tmp/none")) -> dict[str, Any]:
    result = SchemathesisResult(ops, 0, 1, False, True, "42", 1.0, ndjson, ndjson, ndjson)
    return result.to_dict()


def _scenario(label: str, method: str, uri: str, status: int, body: bytes | None = None) -> str:
    """One ``ScenarioFinished`` line as schemathesis 4 writes it (trimmed to the keys Pilotage reads)."""
    check = {"name": "not_a_server_error", "status": "failure" if status >= 500 else "success"}
    request = {
        "method": method,
        "uri": uri,
        "headers": {"X-Schemathesis-TestCaseId": ["wWbaAn"], "X-Token": ["[masked]"]},
        "body": {"$base64": base64.b64encode(body).decode()} if body else None,
    }
    recorder = {"label": label, "cases": {"c1": {"value": {"method": method, "path": "/pets"}}},
                "checks": {"c1": [check]},
                "interactions": {"c1": {"request": request, "response": {"status_code": status}}}}  # fmt: skip
    return json.dumps({"ScenarioFinished": {"phase": "fuzzing", "recorder": recorder}})


class _Production(BaseHTTPRequestHandler):
    """The baseline: ``GET /pets?limit=0`` answers 500 as on the head; ``POST /pets`` works (the change broke it)."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._answer(500 if self.path == "/pets?limit=0" and self.headers["X-Token"] == "t0k" else 200)

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(201)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_schemathesis_requests_that_fail_on_production_too_are_baseline_problems(tmp_path: Path) -> None:
    ndjson = tmp_path / "schemathesis.ndjson"
    head_url = "http://127.0.0.1:35565"
    ndjson.write_text("\n".join([
        _scenario("GET /pets", "GET", f"{head_url}/pets?limit=0", 500),
        _scenario("POST /pets", "POST", f"{head_url}/pets", 500, b'{"name": ""}'),
        _scenario("POST /pets", "POST", f"{head_url}/pets", 201, b'{"name": "Rex"}'),
    ]) + "\n")  # fmt: skip
    head = _st([
        OperationResult("GET /pets", requests=40, failures=3, server_errors=3, checks_failed=["not_a_server_error"]),
        OperationResult("POST /pets", requests=30, failures=2, server_errors=2, checks_failed=["not_a_server_error"]),
        OperationResult("GET /pets/{petId}", requests=20),
    ], ndjson)  # fmt: skip
    recorded = server_error_requests(ndjson, {"GET /pets", "POST /pets"})
    assert {op: [r["uri"] for r in reqs] for op, reqs in recorded.items()} == {
        "GET /pets": [f"{head_url}/pets?limit=0"], "POST /pets": [f"{head_url}/pets"]
    }  # fmt: skip
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Production)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base_url = f"http://127.0.0.1:{server.server_address[1]}"
        replayed = asyncio.run(replay_server_errors(recorded, base_url, {"X-Token": "t0k"}))
    finally:
        server.shutdown()
        server.server_close()
    assert replayed == {
        "GET /pets": {"replayed": 1, "server_errors": 1},
        "POST /pets": {"replayed": 1, "server_errors": 0},
    }
    problems = classify_schemathesis(head, replayed)
    why = "1 of 1 replayed requests answered 5xx on the baseline too"
    assert problems == [
        {
            "test": "schemathesis not_a_server_error GET /pets",
            "kind": "schemathesis",
            "server_errors": 3,
            "message": why,
        }
    ]
    inputs = {"schemathesis": {"requests": 90, "server_errors": 5, "complete": True}, "unit": {},
              "baseline": {"problems": problems}}  # fmt: skip
    discounted, note = discount_baseline(inputs)
    assert discounted["schemathesis"]["server_errors"] == 2  # POST /pets is the change's: it still gates
    assert note.startswith(" Baseline problem: schemathesis not_a_server_error GET /pets fails on production too")
    assert verdict_reasoning(inputs).action == "fail"
    assert classify_schemathesis(head, {}) == []  # nothing replayed: nothing is excused


def test_a_baseline_that_cannot_be_tested_excuses_nothing(tmp_path: Path) -> None:
    failure = {"nodeid": "tests/test_a.py::test_x", "kind": "unit", "outcome": "failed", "message": "boom"}
    result = {"failures": [failure], "schemathesis": _st([])}
    request = {"service": "pets", "commit": "c" * 40, "head_dir": str(tmp_path), "headers": {},
               "out_dir": str(tmp_path / "out"), "ready_timeout_s": 5.0}  # fmt: skip

    async def check(base_dir: str) -> dict[str, Any]:
        runtime = LocalRuntime(log_dir=tmp_path / "logs")
        try:
            return await check_baseline(runtime, {**request, "base_dir": base_dir}, result)
        finally:
            await runtime.close()

    assert asyncio.run(check("")) == {"problems": [], "differs": [], "untested": [
        {"test": "baseline", "reason": "code.generated names no baseline checkout (base_dir)"}]}  # fmt: skip
    (tmp_path / "empty").mkdir()
    broken = asyncio.run(check(str(tmp_path / "empty")))  # no app to start
    assert broken["problems"] == [] and broken["untested"][0]["reason"].startswith("the baseline could not be tested")
    assert asyncio.run(check_baseline(LocalRuntime(log_dir=tmp_path), request, {"failures": []})) == {}


def test_the_suites_schemathesis_run_against_a_scratch_baseline_and_a_baseline_that_cannot_be_tested(
    tmp_path: Path,
) -> None:
    base_dir = Path(shutil.copytree(FIXTURES / "ok_service", tmp_path / "base"))
    request = {"service": "pets", "commit": "c" * 40, "base_dir": str(base_dir), "out_dir": str(tmp_path / "out"),
               "spec_path": str(base_dir / "openapi.yaml"), "ready_timeout_s": 30.0, "max_examples": 2, "seed": 7,
               "timeout_s": 120.0}  # fmt: skip

    async def on_baseline(**changed: Any) -> dict[str, Any]:
        runtime = LocalRuntime(log_dir=tmp_path / "logs")
        try:
            return await schemathesis_on_baseline(runtime, {**request, **changed})
        finally:
            await runtime.close()

    found = asyncio.run(on_baseline())
    st = found["schemathesis"]
    assert [op["operation"] for op in st["operations"]] == ["GET /pets", "POST /pets", "GET /pets/{petId}"]
    assert st["requests"] > 0 and all(op["requests"] > 0 for op in st["operations"])
    assert st["server_errors"] == 0 and st["contract"] == {} and st["complete"] is True and st["seed"] == "7"
    assert Path(st["ndjson_path"]) == (tmp_path / "out" / "schemathesis.ndjson").resolve()
    assert (tmp_path / "out" / "instance" / "service.db").is_file()  # the scratch instance's own data
    assert asyncio.run(on_baseline(base_dir="")) == {"error": "code.generated names no baseline checkout (base_dir)"}
    (tmp_path / "empty").mkdir()
    broken = asyncio.run(on_baseline(base_dir=str(tmp_path / "empty"), ready_timeout_s=5.0))  # no app to start
    assert set(broken) == {"error"} and broken["error"].startswith("the baseline could not be tested: ")
    unloadable = asyncio.run(on_baseline(spec_path=str(tmp_path / "missing.yaml")))
    assert unloadable["error"].startswith("the baseline could not be tested: OpenAPI file")
