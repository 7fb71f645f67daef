"""Real Locust runs (subprocess) against the ok fixture service: figures, injected errors, timeout."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from pathlib import Path

import pytest

from pilotage.errors import InputError
from pilotage.perf.locust_runner import LoadTestResult, build_command, run_load_test
from pilotage.runtime.base import Workload
from pilotage.runtime.local import LocalRuntime

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _load(
    tmp_path: Path, *, fault_rate: float = 0.0, users: int = 5, duration_s: float = 2.0, timeout_s: float | None = None
) -> LoadTestResult:
    service = shutil.copytree(FIXTURES / "ok_service", tmp_path / "svc")

    async def scenario() -> LoadTestResult:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            env = {"PILOTAGE_DB_PATH": str(tmp_path / "svc.db"), "PILOTAGE_FAULT_ERROR_RATE": str(fault_rate)}
            instance = await runtime.start(Workload("ok", "t", service, env=env))
            return await run_load_test(
                service / "openapi.yaml",
                instance.url,
                tmp_path / "perf",
                users=users,
                duration_s=duration_s,
                timeout_s=timeout_s,
            )

    return asyncio.run(scenario())


def test_load_test_measures_every_target(tmp_path: Path) -> None:
    result = _load(tmp_path)
    by = {e.endpoint: e for e in result.endpoints}
    assert set(by) == {"GET /pets", "POST /pets"}
    assert result.total.requests > 0 and result.total.p95_ms is not None and result.total.p95_ms > 0
    assert result.total.requests == sum(e.requests for e in result.endpoints)  # the final CSV write is complete
    assert by["GET /pets"].requests > by["POST /pets"].requests  # weights 3:1
    assert result.total.failures == 0 and result.error_rate == 0.0
    assert result.exit_code == 0 and not result.timed_out and result.duration_s == 2.0
    assert result.total.rps > 0 and result.wall_s < 30
    payload = result.to_dict()
    assert payload["total"]["requests"] == result.total.requests and payload["error_rate"] == 0.0


def test_failed_requests_are_counted(tmp_path: Path) -> None:
    result = _load(tmp_path, fault_rate=0.5)
    assert result.total.failures > 0
    assert 0.3 < result.error_rate < 0.7, result.to_dict()
    assert result.exit_code == 0  # failures are results, not a crashed run


def test_timeout_kills_locust(tmp_path: Path) -> None:
    started = time.monotonic()
    result = _load(tmp_path, duration_s=60, timeout_s=4.0)
    assert result.timed_out and time.monotonic() - started < 25


def test_zero_users_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="users must be >= 1"):
        asyncio.run(run_load_test(FIXTURES / "ok_service" / "openapi.yaml", "http://127.0.0.1:9", tmp_path, users=0))


def test_command_is_headless_bounded_and_local() -> None:
    argv = build_command(
        Path("/x/locustfile.py"), "http://127.0.0.1:8000", Path("/x/locust"), users=10, spawn_rate=10, duration_s=5
    )
    assert argv[:3] == [sys.executable, "-m", "locust"]
    joined = " ".join(argv)
    for part in ("--headless", "-u 10", "-r 10", "-t 5s", "--host http://127.0.0.1:8000", "--csv /x/locust"):
        assert part in joined
    assert "--only-summary" in argv and "--otel" not in argv
    assert "locust" not in sys.modules  # the control plane never imports locust (gevent monkey-patching)


# --- issue 17: the service's traffic credentials --------------------------------------------------------------

SECURED_APP = """
import os

from fastapi import FastAPI, Header, HTTPException

app = FastAPI()


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@app.get("/open")
def open_() -> dict:
    return {"ok": True}


@app.get("/things")
def things(x_api_key: str = Header(default="")) -> list:
    if x_api_key != os.environ["THINGS_EXPECTED_KEY"]:
        raise HTTPException(status_code=401, detail="bad key")
    return [{"id": 1}]
"""

SECURED_SPEC = """
openapi: 3.0.3
info: {title: things, version: "1"}
paths:
  /open:
    get:
      responses: {"200": {description: ok}}
  /things:
    get:
      security: [{key: []}]
      responses: {"200": {description: things}, "401": {description: no key}}
components:
  securitySchemes:
    key: {type: apiKey, in: header, name: X-Api-Key}
"""


def _app_service(tmp_path: Path, app: str, document: str) -> tuple[Path, Path]:
    """``(service folder, document)`` of a one-module FastAPI service (``app/main.py`` = ``app``) under ``tmp_path``."""
    service = tmp_path / "svc"
    (service / "app").mkdir(parents=True)
    (service / "app" / "__init__.py").write_text("", encoding="utf-8")
    (service / "app" / "main.py").write_text(app, encoding="utf-8")
    spec = tmp_path / "openapi.yaml"
    spec.write_text(document, encoding="utf-8")
    return service, spec


def _secured_service(tmp_path: Path) -> tuple[Path, Path]:
    """``(service folder, document)`` of the secured service (SECURED_APP, SECURED_SPEC) under ``tmp_path``."""
    return _app_service(tmp_path, SECURED_APP, SECURED_SPEC)


def test_secured_operations_are_load_tested_with_the_credentials_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "l0ad-test-key-" + tmp_path.name[-6:]
    service, spec = _secured_service(tmp_path)
    creds = {"header": "X-Api-Key", "env": "THINGS_API_KEY"}

    async def scenario(with_key: bool) -> LoadTestResult:
        if with_key:
            monkeypatch.setenv("THINGS_API_KEY", secret)
        else:
            monkeypatch.delenv("THINGS_API_KEY", raising=False)
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            instance = await runtime.start(Workload("things", "t", service, env={"THINGS_EXPECTED_KEY": secret}))
            out = tmp_path / ("perf-key" if with_key else "perf-nokey")
            return await run_load_test(spec, instance.url, out, users=2, duration_s=1.0, credentials=creds)

    result = asyncio.run(scenario(True))
    by = {e.endpoint: e for e in result.endpoints}
    assert set(by) == {"GET /open", "GET /things"}
    assert by["GET /things"].requests > 0 and by["GET /things"].failures == 0  # every request had the key
    text = result.locustfile.read_text(encoding="utf-8")
    assert "THINGS_API_KEY" in text and secret not in text  # the file names the variable, never the value
    assert secret not in result.log_path.read_text(encoding="utf-8")
    unset = asyncio.run(scenario(False))  # the variable is not set: the secured operation is left out
    assert [e.endpoint for e in unset.endpoints] == ["GET /open"]


def test_secured_operations_are_load_tested_with_the_run_s_test_principal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18: no traffic.credentials, the run's principal set: the secured GET is a target, and authenticated."""
    principal = "pilotage:" + "q" * 12 + tmp_path.name[-6:]
    service, spec = _secured_service(tmp_path)
    monkeypatch.setenv("PILOTAGE_TEST_PRINCIPAL", principal)

    async def scenario() -> LoadTestResult:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            instance = await runtime.start(Workload("things", "t", service, env={"THINGS_EXPECTED_KEY": principal}))
            return await run_load_test(spec, instance.url, tmp_path / "perf", users=2, duration_s=2.0)

    result = asyncio.run(scenario())
    by = {e.endpoint: e for e in result.endpoints}
    assert by["GET /things"].requests > 0 and by["GET /things"].failures == 0  # every request had the principal
    assert principal not in result.locustfile.read_text(encoding="utf-8")


STUB_APP = """
from fastapi import FastAPI
from fastapi.responses import JSONResponse

app = FastAPI()


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@app.get("/stub")
def stub() -> JSONResponse:
    return JSONResponse({"detail": "not implemented: stub; edit app/handlers.py"}, status_code=501)


@app.get("/broken")
def broken() -> JSONResponse:
    return JSONResponse({"detail": "boom"}, status_code=500)
"""

STUB_SPEC = """
openapi: 3.0.3
info: {title: stub, version: "1"}
paths:
  /stub:
    get:
      responses: {"200": {description: ok}, "501": {description: not implemented}}
  /broken:
    get:
      responses: {"200": {description: ok}}
"""


def test_a_501_not_implemented_is_no_load_test_failure_a_500_is(tmp_path: Path) -> None:
    """Issue 18: a generated service's unwritten operation (501) is not an error of the service under load."""
    service, spec = _app_service(tmp_path, STUB_APP, STUB_SPEC)

    async def scenario() -> LoadTestResult:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            instance = await runtime.start(Workload("stub", "t", service))
            return await run_load_test(spec, instance.url, tmp_path / "perf", users=2, duration_s=1.0)

    by = {e.endpoint: e for e in asyncio.run(scenario()).endpoints}
    assert by["GET /stub"].requests > 0 and by["GET /stub"].failures == 0
    assert by["GET /broken"].requests > 0 and by["GET /broken"].failures == by["GET /broken"].requests
