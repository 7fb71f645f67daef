"""Issue #5, bad input: each case ends with a clear finding from run_test_suite, never a hang."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from pilotage.testing.suite import run_test_suite

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
pytestmark = pytest.mark.timeout(240)


def _service(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "ok_service", tmp_path / "svc"))


def _run(tmp_path: Path, service: Path, **extra: Any) -> dict[str, Any]:
    request = {
        "service_dir": str(service),
        "spec_path": str(service / "openapi.yaml"),
        "out_dir": str(tmp_path / "out"),
        "max_examples": 3,
        "crud_examples": 2,
        "flaky_reruns": 0,
        **extra,
    }
    return asyncio.run(run_test_suite(request))


def _kinds(result: dict[str, Any]) -> list[str]:
    return [f["kind"] for f in result["findings"]]


def test_spec_schemathesis_cannot_load(tmp_path: Path) -> None:
    service = _service(tmp_path)
    (service / "openapi.yaml").write_text("openapi: 3.0.3\npaths: [not, a, mapping\n")
    result = _run(tmp_path, service)
    assert _kinds(result) == ["spec_unloadable"] and result["ok"] is False
    assert "openapi.yaml" in result["findings"][0]["message"] and result["schemathesis"] is None


def test_hanging_service_hits_the_per_request_timeout(tmp_path: Path) -> None:
    service = _service(tmp_path)
    main = service / "app" / "main.py"
    main.write_text(
        main.read_text()
        + "\n\n@app.middleware('http')\nasync def hang(request: Request, call_next: Callable[[Request], "
        "Awaitable[Response]]) -> Response:\n    import asyncio\n\n    if request.url.path.startswith('/pets'):\n"
        "        await asyncio.sleep(3600)\n    return await call_next(request)\n"
    )
    result = _run(tmp_path, service, request_timeout_s=0.25, timeout_s=40, unit_timeout_s=5, generate=False)
    assert "request_timeouts" in _kinds(result)
    assert result["schemathesis"]["errors"] > 0 and result["schemathesis"]["server_errors"] == 0


def test_hanging_test_suite_hits_the_global_timeout(tmp_path: Path) -> None:
    service = _service(tmp_path)
    (service / "tests" / "test_hang.py").write_text(
        "import time\n\n\ndef test_hangs() -> None:\n    time.sleep(3600)\n"
    )
    result = _run(tmp_path, service, unit_timeout_s=8, generate=False)
    assert "suite_timeout" in _kinds(result)
    assert result["unit"]["timed_out"] is True and result["unit"]["errors"] >= 1


def test_tests_that_do_not_import(tmp_path: Path) -> None:
    service = _service(tmp_path)
    (service / "tests" / "test_broken.py").write_text(
        "import no_such_module_here\n\n\ndef test_x() -> None:\n    pass\n"
    )
    result = _run(tmp_path, service, generate=False)
    findings = [f for f in result["findings"] if f["kind"] == "import_error"]
    assert findings and "no_such_module_here" in findings[0]["message"]
    assert "tests/test_broken.py" in findings[0]["message"] and result["unit"]["errors"] >= 1
