"""Bad input through the CLI: one-line error naming the input and the fix, exit ≠ 0, the log stays readable."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.e2e.conftest import of_type, read_log, run_cli

pytestmark = pytest.mark.e2e

REQUEST = "Add coupon support with fields code:string, percent:integer"


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got: {stderr!r}"
    assert lines[0].startswith("error: ")
    return lines[0]


def assert_log_readable(cwd: Path) -> None:
    """Every event accepted so far is still there and parses; `events tail --json` reads them."""
    log = cwd / ".pilotage" / "events.db"
    if not log.exists():
        return
    events = read_log(cwd)
    tail = run_cli(cwd, "events", "tail", "-n", "100000", "--json")
    assert tail.code == 0, tail.stderr
    lines = [json.loads(line) for line in tail.stdout.splitlines() if line.strip()]
    assert [line["id"] for line in lines] == [e.id for e in events]


def test_missing_spec_file(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "run", "--spec", "nope.yaml", "--request", REQUEST)
    assert result.code == 2
    line = one_line_error(result.stderr)
    assert "nope.yaml" in line and "fix:" in line


def test_invalid_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("openapi: 3.0.3\ninfo: [unclosed\n")
    result = run_cli(tmp_path, "run", "--spec", str(bad), "--request", REQUEST)
    assert result.code == 2
    line = one_line_error(result.stderr)
    assert "bad.yaml" in line and "line" in line


def test_yaml_that_is_not_openapi(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  web:\n    image: nginx\n")
    result = run_cli(tmp_path, "run", "--spec", str(bad), "--request", REQUEST)
    assert result.code == 2
    line = one_line_error(result.stderr)
    assert "compose.yaml" in line and "OpenAPI" in line


def test_request_outside_the_grammar(tmp_path: Path, checkout: Path) -> None:
    result = run_cli(tmp_path, "run", "--spec", str(checkout), "--request", "make it faster please")
    assert result.code == 2
    line = one_line_error(result.stderr)
    assert "make it faster please" in line and "Add" in line  # the grammar is shown


def test_broken_rego_policy(tmp_path: Path, checkout: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "broken.rego").write_text("package pilotage.deploy\n\ndeny contains msg if {\n")
    result = run_cli(tmp_path, "run", "--spec", str(checkout), "--request", REQUEST)
    assert result.code == 2
    line = one_line_error(result.stderr)
    assert "broken.rego" in line
    assert_log_readable(tmp_path)


def test_port_already_in_use(tmp_path: Path, checkout: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(tmp_path, "run", "--spec", str(checkout), "--request", REQUEST, "--port", str(port))
    assert result.code == 3
    line = one_line_error(result.stderr)
    assert str(port) in line and "fix:" in line
    assert_log_readable(tmp_path)


@pytest.mark.slow
def test_generated_service_that_crashes_on_start(tmp_path: Path, checkout: Path) -> None:
    result = run_cli(tmp_path, "run", "--spec", str(checkout), "--request", REQUEST, "--crash", "--idle-after", "1")
    assert result.code == 1
    line = one_line_error(result.stderr)
    assert "crash" in line and "fix:" in line
    events = read_log(tmp_path)
    failed = of_type(events, "agent.failed")
    assert failed and failed[0].data["agent"] == "deployment"
    assert of_type(events, "tests.completed"), "events accepted before the crash must still be in the log"
    assert of_type(events, "flow.failed")
    assert_log_readable(tmp_path)
