"""`pilotage init`: discovery on small real repositories, the rendered descriptor, its start command run for real."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jsonschema
import pytest

from pilotage.errors import InputError
from pilotage.fleet.descriptor import (
    ServiceDescriptor,
    descriptor_schema,
    load_descriptor,
    parse_descriptor_text,
    render_command,
)
from pilotage.fleet.init import discover, render_descriptor
from tests.e2e.conftest import run_cli

FASTAPI_MAIN = """\
from fastapi import FastAPI

from app.routes import router

app: FastAPI = FastAPI(title="orders")
app.include_router(router)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/metrics")
def metrics() -> str:
    return "orders_up 1\\n"
"""

FASTAPI_ROUTES = """\
from fastapi import APIRouter

router = APIRouter()


@router.get("/orders/{order_id}")
def get_order(order_id: int) -> dict[str, int]:
    return {"id": order_id}


@router.post("/orders")
def create_order() -> dict[str, int]:
    return {"id": 1}
"""

OPENAPI = """\
openapi: 3.0.3
info: {title: orders, version: "1.0"}
paths:
  /orders/{order_id}:
    get:
      parameters: [{name: order_id, in: path, required: true, schema: {type: integer}}]
      responses: {"200": {description: ok}}
"""

FLASK_APP = """\
from flask import Flask

app = Flask(__name__)


@app.route("/health")
def health():
    return "ok"


@app.route("/items/<int:item_id>", methods=["GET", "DELETE"])
def item(item_id):
    return {"id": item_id}
"""

FLASK_FACTORY = """\
import flask


def create_app():
    app = flask.Flask(__name__)

    @app.get("/status")
    def status():
        return {"ok": True}

    return app
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def fastapi_repo(root: Path) -> Path:
    return write(
        root,
        {
            "app/__init__.py": "",
            "app/main.py": FASTAPI_MAIN,
            "app/routes.py": FASTAPI_ROUTES,
            "requirements.txt": "fastapi>=0.100  # the framework\nuvicorn[standard]==0.30\n",
            "requirements-dev.txt": "pytest>=8\n",
            "openapi.yaml": OPENAPI,
            "docs/swagger.yaml": 'swagger: "2.0"\ninfo: {title: old, version: "1"}\npaths: {}\n',
            "tests/test_orders.py": "def test_nothing():\n    assert True\n",
        },
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fake_venv(prepared: Path) -> Path:
    """A test double of the prepared venv: ``venv/bin/python`` runs this interpreter (fastapi, uvicorn, flask)."""
    (prepared / "venv" / "bin").mkdir(parents=True)
    python = prepared / "venv" / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n', encoding="utf-8")
    python.chmod(0o755)
    return prepared


@contextmanager
def serving(repo: Path, descriptor: ServiceDescriptor, prepared: Path) -> Iterator[str]:
    """Run the descriptor's start command as the local runtime does (``/bin/sh -c 'exec …'``); yield its URL."""
    port = free_port()
    line = render_command(descriptor.start, port=port, prepared=prepared, python=sys.executable)
    log = (prepared / "service.log").open("w")
    proc = subprocess.Popen(
        ["/bin/sh", "-c", f"exec {line}"], cwd=repo, env={**os.environ, **descriptor.env}, stdout=log, stderr=log
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def get(url: str, deadline_s: float = 30.0) -> tuple[int, bytes]:
    """GET ``url``, retrying connection errors until ``deadline_s``; return (status, body)."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - a local test server
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


def value(found: dict[str, object], key: str) -> object:
    fields = found["fields"]
    assert isinstance(fields, dict)
    return fields[key]["value"]


def test_fastapi_repository(tmp_path: Path) -> None:
    repo = fastapi_repo(tmp_path / "orders")
    found = discover(repo)
    app = found["app"]
    assert app["framework"] == "fastapi" and app["target"] == "app.main:app" and app["file"] == "app/main.py"
    assert {"GET /healthz", "GET /metrics", "GET /orders/{order_id}", "POST /orders"} <= set(found["routes"])
    assert value(found, "name") == "orders"
    assert value(found, "prepare") == {
        "command": "python3 -m venv {prepared}/venv && {prepared}/venv/bin/pip install -q -r requirements.txt "
        "-r requirements-dev.txt",
        "inputs": ["requirements.txt", "requirements-dev.txt"],
    }
    assert value(found, "start") == "{prepared}/venv/bin/python -m uvicorn app.main:app --host 127.0.0.1 --port {port}"
    assert (value(found, "health"), value(found, "metrics")) == ("/healthz", "/metrics")
    assert value(found, "openapi") == "openapi.yaml"  # the Swagger 2 file is not an OpenAPI 3 document
    assert value(found, "test") == "{prepared}/venv/bin/python -m pytest -q"
    assert value(found, "traffic") == {"writes": False}
    assert "env" not in found["fields"]

    text = render_descriptor(found)
    descriptor = parse_descriptor_text(text, path=str(repo / "pilotage.yaml"))
    assert descriptor.start == value(found, "start") and descriptor.openapi == "openapi.yaml"
    assert descriptor.prepare is not None and descriptor.prepare.inputs == ("requirements.txt", "requirements-dev.txt")
    assert descriptor.test == value(found, "test") and descriptor.metrics == "/metrics"
    assert descriptor.traffic.writes is False and "writes: false" in text
    assert "found app.main:app (FastAPI) by graph ingest in app/main.py" in text
    assert "health: /healthz  # found route GET /healthz (app.main.healthz) by graph ingest" in text
    assert "# providesApis:" in text and "# credentials:" in text

    # the start command runs for real (the venv is a test double: the prepare step needs PyPI)
    prepared = fake_venv(tmp_path / "prepared")
    with serving(repo, descriptor, prepared) as url:
        assert get(url + descriptor.health) == (200, b'{"status":"ok"}')
        assert get(url + "/orders/7") == (200, b'{"id":7}')


def test_fastapi_without_dependency_files_serves_its_openapi(tmp_path: Path) -> None:
    repo = write(
        tmp_path / "tiny",
        {
            "main.py": FASTAPI_MAIN.replace("from app.routes import router\n", "").replace(
                "app.include_router(router)\n", ""
            )
        },
    )
    found = discover(repo)
    assert "prepare" not in found["fields"] and "test" not in found["fields"]
    assert value(found, "start") == "{python} -m uvicorn main:app --host 127.0.0.1 --port {port}"
    assert value(found, "openapi") == "/openapi.json"
    text = render_descriptor(found)
    assert "# prepare: " in text and "# test: " in text  # shown commented out
    descriptor = parse_descriptor_text(text)
    assert descriptor.openapi_served and descriptor.prepare is None
    with serving(repo, descriptor, tmp_path) as url:
        assert get(url + "/healthz")[0] == 200
        status, body = get(url + "/openapi.json")
        assert status == 200 and json.loads(body)["info"]["title"] == "orders"


def test_flask_repository_with_gunicorn(tmp_path: Path) -> None:
    repo = write(tmp_path / "shop", {"app.py": FLASK_APP, "requirements.txt": "Flask==3.1\ngunicorn\n"})
    found = discover(repo)
    assert found["app"]["framework"] == "flask" and found["app"]["target"] == "app:app"
    assert "GET /items/{item_id}" in found["routes"] and "DELETE /items/{item_id}" in found["routes"]
    assert value(found, "start") == "{prepared}/venv/bin/python -m gunicorn --bind 127.0.0.1:{port} app:app"
    assert value(found, "prepare") == {
        "command": "python3 -m venv {prepared}/venv && {prepared}/venv/bin/pip install -q -r requirements.txt",
        "inputs": ["requirements.txt"],
    }
    assert (value(found, "health"), value(found, "metrics")) == ("/health", "proxy")
    assert "openapi" not in found["fields"] and "test" not in found["fields"]
    text = render_descriptor(found)
    descriptor = parse_descriptor_text(text)
    assert descriptor.health == "/health" and descriptor.proxy_metrics and descriptor.openapi is None
    assert "metrics: proxy  # no /metrics route found" in text and "# openapi: openapi.yaml" in text


def test_flask_factory_in_a_src_layout_runs(tmp_path: Path) -> None:
    repo = write(
        tmp_path / "inventory",
        {
            "src/inventory/__init__.py": "",
            "src/inventory/web.py": FLASK_FACTORY,
            "pyproject.toml": '[project]\nname = "inventory"\ndependencies = ["flask>=3"]\n'
            '[project.optional-dependencies]\ntest = ["pytest"]\n[tool.pytest.ini_options]\naddopts = "-q"\n',
        },
    )
    found = discover(repo)
    assert found["app"]["target"] == "inventory.web:create_app" and found["app"]["factory"] is True
    assert value(found, "env") == {"PYTHONPATH": "src"}
    assert value(found, "start") == (
        "{prepared}/venv/bin/python -m flask --app 'inventory.web:create_app()' run --host 127.0.0.1 --port {port}"
    )
    assert value(found, "prepare") == {
        "command": "python3 -m venv {prepared}/venv && {prepared}/venv/bin/pip install -q '.[test]'",
        "inputs": ["pyproject.toml"],
    }
    assert value(found, "test") == "{prepared}/venv/bin/python -m pytest -q"
    assert value(found, "health") == "/status"
    descriptor = parse_descriptor_text(render_descriptor(found))
    assert descriptor.env == {"PYTHONPATH": "src"}
    prepared = fake_venv(tmp_path / "prepared")
    with serving(repo, descriptor, prepared) as url:
        assert get(url + "/status") == (200, b'{"ok":true}\n')


def test_no_app_still_renders_a_valid_descriptor(tmp_path: Path) -> None:
    repo = write(tmp_path / "Odd name!", {"tool.py": "print('not a web app')\n", "broken.py": "def (:\n"})
    found = discover(repo)
    assert found["app"] is None and value(found, "name") == "Odd-name"
    assert [s["path"] for s in found["skipped"]] == ["broken.py"]
    text = render_descriptor(found)
    descriptor = parse_descriptor_text(text)
    assert "{port}" in descriptor.start and "CHECK: no FastAPI or Flask app found" in text
    assert "CHECK: no GET /healthz, /health, /livez, /status route found" in text


def test_owner_from_git_config(tmp_path: Path) -> None:
    repo = write(tmp_path / "billing", {"app.py": FLASK_APP})
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "config", "user.email", "billing-team@example.com"], check=True)
    found = discover(repo)
    assert value(found, "owner") == "billing-team@example.com"
    assert parse_descriptor_text(render_descriptor(found)).owner == "billing-team@example.com"


def test_discover_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(FLASK_APP, encoding="utf-8")
    with pytest.raises(InputError, match="is not a folder"):
        discover(tmp_path / "app.py")


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_cli_writes_refuses_overwrite_and_forces(tmp_path: Path) -> None:
    repo = fastapi_repo(tmp_path / "orders")
    done = run_cli(tmp_path, "init", "orders")
    assert done.code == 0, done.stderr
    assert "git add pilotage.yaml && git commit" in done.stdout and "pilotage service add orders" in done.stdout
    assert "found app.main:app (FastAPI) by graph ingest" in done.stdout
    written = (repo / "pilotage.yaml").read_text(encoding="utf-8")
    assert load_descriptor(repo).start.endswith("-m uvicorn app.main:app --host 127.0.0.1 --port {port}")

    again = run_cli(tmp_path, "init", "orders")
    assert again.code == 2 and again.stdout == ""
    assert f"{repo / 'pilotage.yaml'} already exists" in one_line_error(again.stderr)
    (repo / "pilotage.yaml").write_text("name: mine\nstart: run {port}\n", encoding="utf-8")
    printed = run_cli(tmp_path, "init", "orders", "--print")
    assert printed.code == 0 and printed.stdout == written  # printed, not written
    assert load_descriptor(repo).name == "mine"
    forced = run_cli(tmp_path, "init", "orders", "--force", "--json")
    assert forced.code == 0, forced.stderr
    doc = forced.json()
    assert doc["path"] == str(repo / "pilotage.yaml") and doc["written"] is True
    assert doc["found"]["app"]["target"] == "app.main:app" and doc["descriptor"] == load_descriptor(repo).to_dict()


def test_cli_schema_and_bad_paths(tmp_path: Path) -> None:
    schema = run_cli(tmp_path, "init", "--schema")
    assert schema.code == 0 and schema.json() == descriptor_schema()
    jsonschema.Draft202012Validator.check_schema(schema.json())
    (tmp_path / "file.py").write_text("x = 1\n", encoding="utf-8")
    for target in ("file.py", "missing"):
        bad = run_cli(tmp_path, "init", target)
        assert bad.code == 2 and f"error: {target} is not a folder" in one_line_error(bad.stderr)
