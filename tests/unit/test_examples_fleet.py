"""The example fleet (examples/fleet) as Pilotage will meet it: descriptors, own tests, and the fixtures' commits.

Each service is prepared exactly as its ``pilotage.yaml`` says (the ``prepare`` command, rendered with
``render_command``, run by ``/bin/sh`` with the sandbox environment in a copy of the repository); the venv is made
once per test session per content of the ``prepare.inputs`` files (the requirements' sha256). The orders service
needs the real PostgreSQL on 127.0.0.1:5432 (``scripts/test`` starts it).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from pilotage.fleet.descriptor import ServiceDescriptor, load_descriptor, render_command
from pilotage.observe.prometheus import parse_exposition
from pilotage.runtime.proxy import bind_local
from pilotage.runtime.sandbox import launch_options, sandbox_env
from pilotage.spec.load import load_spec, validate_spec
from tests.fixtures.fleet import (
    EXAMPLES,
    bad_change,
    commit_files,
    ensure_postgres_database,
    make_httpbin_repo,
    make_service_repo,
    trivial_change,
    upgrade_httpbin,
)

#: The orders service's database while these tests run it (its own tests make and drop their own).
ORDERS_DB = "pilotage_fleet_example_orders"
SERVICES = [
    pytest.param("catalog", id="catalog"),
    pytest.param("orders", id="orders", marks=pytest.mark.integration),
]
Prepare = Callable[[Path], Path]


def _shell(command: str, cwd: Path, env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    options = launch_options(cwd, sandbox_env(env))
    return subprocess.run(  # noqa: S603 - the example's own descriptor command
        ["/bin/sh", "-c", command], capture_output=True, text=True, timeout=timeout_s, check=False, **options
    )


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepare:
    """Return ``prepare(repo) -> {prepared}``: run the descriptor's prepare command once per inputs' sha256."""
    root = tmp_path_factory.mktemp("fleet-prepared")

    def prepare(repo: Path) -> Path:
        descriptor = load_descriptor(repo)
        assert descriptor.prepare is not None
        digest = hashlib.sha256()
        for name in descriptor.prepare.inputs:
            digest.update(name.encode() + b"\0" + (repo / name).read_bytes() + b"\0")
        folder = root / digest.hexdigest()[:16]
        if not (folder / ".done").exists():
            folder.mkdir(exist_ok=True)
            command = render_command(descriptor.prepare.command, prepared=folder)
            done = _shell(command, repo, descriptor.env, descriptor.prepare.timeout_s)
            assert done.returncode == 0, done.stderr[-3000:]
            (folder / ".done").touch()
        return folder

    return prepare


def _service_env(service: str, tmp_path: Path) -> dict[str, str]:
    """Environment overrides for running ``service`` here: a private SQLite file, or the test's database."""
    if service == "catalog":
        return {"CATALOG_DB_PATH": str(tmp_path / "catalog.db")}
    ensure_postgres_database(ORDERS_DB)
    return {"ORDERS_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{ORDERS_DB}"}


@contextmanager
def _serving(repo: Path, folder: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """Run the descriptor's start command as Pilotage's local runtime does; yield its base URL once healthy."""
    descriptor = load_descriptor(repo)
    sock = bind_local(0)
    port = sock.getsockname()[1]
    sock.close()
    command = "exec " + render_command(descriptor.start, port=port, prepared=folder)
    with log.open("wb") as out:
        options = launch_options(repo, sandbox_env({**descriptor.env, **env}))
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdout=out, stderr=subprocess.STDOUT, **options)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30.0
        while not _answers(url + descriptor.health):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("service", ["catalog", "orders"])
def test_descriptor_is_valid(service: str) -> None:
    descriptor = load_descriptor(EXAMPLES / service)
    assert descriptor.name == service
    assert descriptor.prepare is not None and descriptor.prepare.inputs == ("requirements.txt",)
    assert descriptor.health == "/healthz" and descriptor.test
    assert "{prepared}/venv/bin/python -m uvicorn app.main:app" in descriptor.start


def test_catalog_is_judged_by_its_proxy_from_its_openapi_file() -> None:
    descriptor = load_descriptor(EXAMPLES / "catalog")
    assert descriptor.proxy_metrics and descriptor.openapi == "openapi.yaml" and not descriptor.openapi_served
    doc = load_spec(EXAMPLES / "catalog" / "openapi.yaml")
    assert set(doc["paths"]) == {"/healthz", "/products", "/products/{product_id}"}
    assert "GET /products/1" in descriptor.traffic.requests and not descriptor.traffic.writes


def test_orders_serves_its_metrics_and_openapi_and_depends_on_catalog() -> None:
    descriptor = load_descriptor(EXAMPLES / "orders")
    assert descriptor.metrics == "/metrics" and descriptor.openapi == "/openapi.json" and descriptor.openapi_served
    assert descriptor.traffic.writes
    assert descriptor.consumes_apis == ("catalog",) and descriptor.depends_on == ("component:catalog",)
    assert descriptor.env["ORDERS_DATABASE_URL"] == "postgresql://postgres@127.0.0.1:5432/orders"


def test_service_repo_commits(tmp_path: Path) -> None:
    repo = make_service_repo("catalog", tmp_path)
    assert repo == tmp_path / "catalog" and (repo / "pilotage.yaml").is_file()
    assert _log(repo) == ["initial"]
    first, second = trivial_change(repo), trivial_change(repo)
    assert first != second and len(second) == 40
    assert "# trivial change 2: no behaviour changes" in (repo / "app" / "main.py").read_text()
    sha = commit_files(repo, {"NOTES.md": "notes\n", "README.md": None}, "Notes instead of README")
    assert (repo / "NOTES.md").is_file() and not (repo / "README.md").exists()
    assert _log(repo)[0] == "Notes instead of README" and sha == _head(repo)
    with pytest.raises(FileExistsError):
        make_service_repo("catalog", tmp_path)
    with pytest.raises(FileNotFoundError, match="known: catalog, orders"):
        make_service_repo("billing", tmp_path)


def test_httpbin_repo(tmp_path: Path) -> None:
    repo = make_httpbin_repo(tmp_path, "0.10.3")
    descriptor: ServiceDescriptor = load_descriptor(repo)
    assert descriptor.name == "httpbin" and descriptor.proxy_metrics and descriptor.openapi is None
    assert descriptor.health == "/status/200" and "GET /uuid" in descriptor.traffic.requests
    assert (repo / "requirements.txt").read_text().splitlines() == ["httpbin==0.10.3", "gunicorn==23.0.0"]
    sha = upgrade_httpbin(repo, "0.10.4")
    assert sha == _head(repo) and _log(repo) == ["Upgrade httpbin to 0.10.4", "initial"]
    assert (repo / "requirements.txt").read_text().splitlines()[0] == "httpbin==0.10.4"
    assert trivial_change(repo) != sha and "Revision 1." in (repo / "README.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("service", SERVICES)
def test_example_passes_its_own_tests(service: str, tmp_path: Path, prepared: Prepare) -> None:
    repo = make_service_repo(service, tmp_path)
    descriptor = load_descriptor(repo)
    assert descriptor.test is not None
    done = _shell(render_command(descriptor.test, prepared=prepared(repo)), repo, descriptor.env, 300.0)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


#: Per service: requests (and their status) that must keep working after the bad change, and the one it breaks.
ROUTES = {
    "catalog": (
        {"GET /healthz": 200, "GET /products": 200, "PATCH /products/1": 200, "POST /products": 201},
        "GET /products/1",
    ),
    "orders": (
        {"GET /healthz": 200, "GET /orders": 200, "POST /orders/1/cancel": 200, "POST /orders": 201},
        "GET /orders/1",
    ),
}
BODIES = {
    "/products": {"name": "Filter papers", "price_cents": 399},
    "/products/1": {"price_cents": 900},
    "/orders": {"product_id": 1, "quantity": 2},
}


def _status(url: str, request: str) -> int:
    method, path = request.split(" ", 1)
    return httpx.request(method, url + path, json=BODIES.get(path) if method != "GET" else None).status_code


@pytest.mark.slow
@pytest.mark.parametrize("service", SERVICES)
def test_bad_change_breaks_exactly_one_operation(service: str, tmp_path: Path, prepared: Prepare) -> None:
    repo = make_service_repo(service, tmp_path)
    env = _service_env(service, tmp_path)
    kept, broken = ROUTES[service]
    with _serving(repo, prepared(repo), env, tmp_path / "good.log") as url:
        if service == "orders":
            assert _status(url, "POST /orders") == 201  # so that order 1 exists
            validate_spec(httpx.get(url + "/openapi.json").json(), path="/openapi.json")
        assert {r: _status(url, r) for r in kept} == kept
        assert _status(url, broken) == 200
    bad_change(repo, service)
    with _serving(repo, prepared(repo), env, tmp_path / "bad.log") as url:
        assert _status(url, broken) == 500
        assert {r: _status(url, r) for r in kept} == kept
        if service == "orders":  # the judge reads the 500 from the service's own /metrics
            sample = parse_exposition(httpx.get(url + "/metrics").text)
            assert sample.statuses == {"500": 1, "200": 2, "201": 1} and sample.latency_count == 4


def _log(repo: Path) -> list[str]:
    out = subprocess.run(["git", "log", "--format=%s"], cwd=repo, capture_output=True, text=True, check=True)  # noqa: S607
    return out.stdout.splitlines()


def _head(repo: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)  # noqa: S607
    return out.stdout.strip()
