"""Bad input to `pilotage service add` and `pilotage deliver` (issue #17): one line naming the file and the field,
exit 2 (bad input) or 3 (configuration), nothing deployed, production untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import of_type, read_log, run_cli
from tests.fixtures.notes_repo import DESCRIPTOR, commit_files, git, make_notes_repo

pytestmark = pytest.mark.e2e

GOOD = DESCRIPTOR.format(name="notes")


def _work(tmp_path: Path, port: int) -> Path:
    work = tmp_path / "ops"
    work.mkdir()
    settings = f"fleet_port_base = {port}\nservice_ready_timeout_s = 4.0\ntesting_api_tests = false\n"
    (work / "pilotage.toml").write_text(settings, encoding="utf-8")
    return work


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize(
    ("descriptor", "expected"),
    [
        (GOOD + "replicas: 3\n", r"pilotage.yaml@[0-9a-f]{12}: \(top level\): unknown key 'replicas'"),
        (
            GOOD.replace("writes: true", "writes: maybe"),
            r"pilotage.yaml@[0-9a-f]{12}: traffic.writes: .maybe. is not of type",
        ),
        ("\n".join(line for line in GOOD.splitlines() if not line.startswith("start:")), r"'start' is a required"),
    ],
    ids=["unknown-key", "wrong-type", "no-start"],
)
def test_a_bad_descriptor_is_refused_when_the_service_is_added(tmp_path: Path, descriptor: str, expected: str) -> None:
    repo = make_notes_repo(tmp_path / "notes", descriptor=descriptor)
    work = _work(tmp_path, 18700)
    result = run_cli(work, "service", "add", str(repo))
    assert result.code == 3
    line = _one_line(result.stderr)
    assert str(repo) in line
    import re

    assert re.search(expected, line), line
    assert run_cli(work, "service", "list", "--json").json() == []


def test_not_a_git_repository_and_a_taken_name_are_bad_input(tmp_path: Path) -> None:
    work = _work(tmp_path, 18710)
    plain = tmp_path / "plain"
    plain.mkdir()
    result = run_cli(work, "service", "add", str(plain))
    assert result.code == 2 and "plain is not a git repository" in _one_line(result.stderr)
    assert run_cli(work, "service", "add", str(make_notes_repo(tmp_path / "notes"))).code == 0
    twin = make_notes_repo(tmp_path / "twin")
    result = run_cli(work, "service", "add", str(twin))
    assert result.code == 2
    assert "service name 'notes'" in _one_line(result.stderr) and "already taken" in result.stderr


def test_a_revision_that_does_not_exist_and_a_missing_openapi_file(tmp_path: Path) -> None:
    repo = make_notes_repo(tmp_path / "notes")
    work = _work(tmp_path, 18720)
    assert run_cli(work, "service", "add", str(repo)).code == 0
    result = run_cli(work, "deliver", "notes", "v9.9")
    assert result.code == 2 and "revision 'v9.9' not found in" in _one_line(result.stderr)
    missing = commit_files(repo, {"pilotage.yaml": GOOD.replace("openapi: openapi.yaml", "openapi: api/v2.yaml")}, "x")
    result = run_cli(work, "deliver", "notes", missing)
    assert result.code == 3
    line = _one_line(result.stderr)
    assert "pilotage.yaml" in line and "openapi: api/v2.yaml is not a file of the commit" in line
    assert run_cli(work, "service", "add", str(repo)).code == 2  # the name stays taken; nothing else changed
    assert not of_type(read_log(work), "flow.started")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("start", "health", "expected"),
    [
        ("sh -c 'echo config missing >&2; exit 4' {port}", "/healthz", r"start: .*crashed on start \(exit code 4\)"),
        ("sleep 30 # {port}", "/healthz", r"start: .*port \d+ never opened"),
        (None, "/ready", r"health: .*GET /ready answered 404, not 200"),
    ],
    ids=["start-exits", "port-never-opens", "health-never-200"],
)
def test_a_commit_that_does_not_start_is_not_deployed(
    tmp_path: Path, start: str | None, health: str, expected: str
) -> None:
    import re

    repo = make_notes_repo(tmp_path / "notes")
    production = git(repo, "rev-parse", "HEAD")
    work = _work(tmp_path, 18730)
    assert run_cli(work, "service", "add", str(repo)).code == 0
    descriptor = GOOD.replace("health: /healthz", f"health: {health}")
    if start is not None:
        descriptor = "\n".join(
            f'start: "{start}"' if line.startswith("start:") else line for line in descriptor.splitlines()
        )
    rev = commit_files(repo, {"pilotage.yaml": descriptor + "\n"}, "new start")
    result = run_cli(work, "deliver", "notes", rev, timeout_s=300)
    assert result.code == 3, result.stdout[-2000:] + result.stderr
    line = _one_line(result.stderr)
    assert re.search(expected, line), line
    assert f"production {production[:12]} keeps serving" in line
    events = read_log(work)
    assert not of_type(events, "deploy.started")
    shown = run_cli(work, "service", "show", "notes", "--json").json()
    assert shown["production_commit"] == production
