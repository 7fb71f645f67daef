"""Bad input through the CLI: one-line error naming the input and the fix, exit ≠ 0, the log stays readable."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import FAST, of_type, read_log, run_cli

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
    (tmp_path / "pilotage.toml").write_text(FAST, encoding="utf-8")  # short stages: the crash is the point
    result = run_cli(tmp_path, "run", "--spec", str(checkout), "--request", REQUEST, "--crash", "--idle-after", "1")
    assert result.code == 1
    line = one_line_error(result.stderr)
    assert "crash" in line and "fix:" in line
    events = read_log(tmp_path)
    failed = of_type(events, "agent.failed")
    assert failed and failed[0].data["agent"] == "rollout"  # the rollout controller starts the new version
    assert of_type(events, "tests.completed"), "events accepted before the crash must still be in the log"
    assert of_type(events, "flow.failed")
    assert_log_readable(tmp_path)


def test_resource_that_already_exists_is_bad_input(tmp_path: Path, petstore: Path) -> None:
    result = run_cli(tmp_path, "run", "--spec", str(petstore), "--request", "Add pet support with fields nick:string")
    assert result.code == 2
    line = one_line_error(result.stderr)
    assert "already has the schema Pet" in line and "did you mean 'Add a nick field to pet'" in line
    assert "fix:" in line
    assert not (tmp_path / ".pilotage" / "events.db").exists()  # refused before anything was written


def test_the_seeds_words_are_refused_with_the_closest_reading(tmp_path: Path, checkout: Path) -> None:
    """Issue #18: this request was promoted as a resource discount-code-support-to-the-checkout-services."""
    request = "Add discount code support to the checkout service"
    result = run_cli(tmp_path, "run", "--spec", str(checkout), "--request", request)
    assert result.code == 2
    line = one_line_error(result.stderr)
    assert "did you mean 'Add discount code support with fields NAME:TYPE, ...'" in line and "fix:" in line
    assert not (tmp_path / ".pilotage" / "events.db").exists()


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "run", "--port", "abc")
    assert result.code == 2
    assert "--port" in one_line_error(result.stderr)
    missing = run_cli(tmp_path, "run", "--request", "Add x support")
    assert missing.code == 2 and "--spec" in one_line_error(missing.stderr)


def test_work_folder_that_cannot_be_created(tmp_path: Path, checkout: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli(tmp_path, "run", "--spec", str(checkout), "--request", REQUEST, "--workdir", str(blocker / "x"))
    assert result.code == 2
    line = one_line_error(result.stderr)
    assert "cannot create the work folder" in line and "a-file" in line


@pytest.mark.slow
def test_sigterm_stops_the_run_records_it_and_leaves_no_process(tmp_path: Path, checkout: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTAGE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pilotage", "run", "--spec", str(checkout), "--request", REQUEST],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the run is in its test stage (a service process is up)
        if (tmp_path / ".pilotage" / "events.db").exists() and of_type(read_log(tmp_path), "policy.evaluated"):
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    line = one_line_error(stderr)
    assert "interrupted by SIGTERM" in line
    events = read_log(tmp_path)
    failed = of_type(events, "flow.failed")
    assert failed and failed[-1].data["error"] == "interrupted by SIGTERM"
    assert_log_readable(tmp_path)
    leftovers = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                continue
            if cwd.startswith(str(tmp_path)):
                leftovers.append(pid)
    assert leftovers == [], f"processes left running in {tmp_path}: {leftovers}"


@pytest.mark.slow
def test_second_run_in_the_same_folder_is_refused(tmp_path: Path, checkout: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTAGE_")}
    first = subprocess.Popen(
        [sys.executable, "-m", "pilotage", "run", "--spec", str(checkout), "--request", REQUEST, "--idle-after", "1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / ".pilotage" / "events.db").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        second = run_cli(tmp_path, "run", "--spec", str(checkout), "--request", REQUEST)
        assert second.code == 3
        line = one_line_error(second.stderr)
        assert f"pid {first.pid}" in line and "another `pilotage run`" in line
    finally:
        first.send_signal(signal.SIGTERM)  # the refusal is what is tested; the first run stops (exit 130)
        first.wait(timeout=120)
    assert first.returncode == 130


def test_malformed_slo_beside_the_spec_fails_before_the_run(tmp_path: Path, checkout: Path) -> None:
    """Issue 3: the SLO is read at the first rollout step; a broken one is reported before anything starts."""
    folder = tmp_path / "svc"
    folder.mkdir()
    spec = folder / "openapi.yaml"
    spec.write_text(checkout.read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "slo.yaml").write_text("objectives:\n  - name: availability\n    sli: availability\n    target: 1.5\n")
    result = run_cli(tmp_path, "run", "--spec", str(spec), "--request", REQUEST)
    assert result.code == 2
    line = one_line_error(result.stderr)
    assert "slo.yaml" in line and "target must be in (0, 1), got 1.5" in line
    assert not (tmp_path / ".pilotage" / "events.db").exists()  # nothing was started or written


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("incident_repository", "not a repo", "owner/name"),
        ("metrics_source_url", "foo://x", "unknown metrics source"),
    ],
)
def test_bad_rollout_settings_are_configuration_errors(
    tmp_path: Path, checkout: Path, key: str, value: str, expected: str
) -> None:
    (tmp_path / "pilotage.toml").write_text(f'{key} = "{value}"\n', encoding="utf-8")
    result = run_cli(tmp_path, "run", "--spec", str(checkout), "--request", REQUEST)
    assert result.code == 3
    line = one_line_error(result.stderr)
    assert key in line and expected in line


# --- issue 15, finding 8: resource exhaustion and bad values from input ------------------------------------------


def _alias_bomb() -> str:
    """Billion laughs: 9 levels of 9 aliases (387 million strings once expanded) in well under 2 KB."""
    lines = ['openapi: 3.0.3\ninfo: {title: x, version: "1"}\npaths: {}', 'x-a: &a ["lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"x-{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        ("bomb.yaml", _alias_bomb(), "expands its YAML aliases too far"),
        ("deep.json", '{"openapi": "3.0.3", "x": ' + "[" * 20_000 + "]" * 20_000 + "}", "nests too deep"),
        ("long.yaml", 'openapi: 3.0.3\ninfo: {title: x, version: "1"}\npaths: {}\nx: ' + "9" * 5000, "number too long"),
    ],
)
def test_documents_over_the_limits_are_one_line_input_errors(tmp_path: Path, name: str, text: str, said: str) -> None:
    (tmp_path / name).write_text(text, encoding="utf-8")
    t0 = time.monotonic()
    result = run_cli(tmp_path, "run", "--spec", name, "--request", REQUEST)
    assert time.monotonic() - t0 < 60, "refused before any expansion (was 161 s and 1.2 GB for the bomb)"
    assert result.code == 2, result.stderr
    line = one_line_error(result.stderr)
    assert name in line and said in line and "the limit is" in line and "fix:" in line
    assert not (tmp_path / ".pilotage" / "events.db").exists()


def test_an_oversize_document_is_a_one_line_input_error(tmp_path: Path) -> None:
    from pilotage.spec.load import MAX_DOCUMENT_BYTES

    with (tmp_path / "big.yaml").open("w", encoding="utf-8") as out:
        out.write("openapi: 3.0.3\nx: '" + "a" * MAX_DOCUMENT_BYTES + "'\n")
    result = run_cli(tmp_path, "run", "--spec", "big.yaml", "--request", REQUEST)
    assert result.code == 2
    line = one_line_error(result.stderr)
    assert "big.yaml is too large" in line and f"{MAX_DOCUMENT_BYTES:,} bytes" in line


@pytest.mark.parametrize("service", ["../..", "../escape", "a/b", "-x"])
def test_a_service_name_that_is_a_path_is_refused(tmp_path: Path, checkout: Path, service: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    result = run_cli(work, "run", "--spec", str(checkout), "--request", REQUEST, f"--service={service}")
    assert result.code == 2
    line = one_line_error(result.stderr)
    assert "--service" in line and service in line and "fix:" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"] and not (work / ".pilotage").exists()


@pytest.mark.parametrize(
    ("toml", "setting"),
    [
        ("rollout_poll_s = inf", "rollout_poll_s"),
        ("load_test_users = 1e23", "load_test_users"),
        ("load_test_users = 1_000_000_000_000_000", "load_test_users"),
        ("standby_s = nan", "standby_s"),
    ],
)
def test_numeric_settings_out_of_range_are_config_errors(tmp_path: Path, toml: str, setting: str) -> None:
    (tmp_path / "pilotage.toml").write_text(toml + "\n", encoding="utf-8")
    result = run_cli(tmp_path, "events", "tail", "-n", "1")
    assert result.code == 3
    line = one_line_error(result.stderr)
    assert f"setting {setting!r}" in line and "pilotage.toml" in line


def test_a_usage_error_of_a_sub_command_names_its_whole_path(tmp_path: Path) -> None:
    # from a user trial: `events tail -n abc` pointed at `pilotage tail --help`, a command that does not exist
    result = run_cli(tmp_path, "events", "tail", "-n", "abc", timeout_s=60)
    assert result.code == 2
    assert "(fix: see `pilotage events tail --help`)" in one_line_error(result.stderr)
    negative = run_cli(tmp_path, "events", "tail", "-n", "-3", timeout_s=60)  # printed nothing, exit 0
    assert negative.code == 2 and "greater than or equal to 1" in one_line_error(negative.stderr)


def test_json_mode_prints_a_document_on_failure_and_version_flag(tmp_path: Path) -> None:
    # issue 18 (item 9): scripts get a JSON document on failure too; `pilotage --version`
    failed = run_cli(tmp_path, "run", "--spec", str(tmp_path / "nowhere.yaml"), "--request", REQUEST, "--json")
    assert failed.code == 2 and "nowhere.yaml not found" in one_line_error(failed.stderr)
    doc = json.loads(failed.stdout)
    assert doc["status"] == "error" and doc["exit_code"] == 2 and doc["error_type"] == "InputError"
    assert "nowhere.yaml not found" in doc["error"] and doc["hint"]
    version = run_cli(tmp_path, "--version")
    assert version.code == 0 and version.stdout.strip().count(".") == 2


@pytest.mark.slow
def test_workdir_holds_the_log_and_every_run(tmp_path: Path, checkout: Path) -> None:
    # issue 18 (item 9): --workdir DIR puts the event log, graph, lock and each run in DIR; nothing in the cwd
    (tmp_path / "pilotage.toml").write_text(FAST, encoding="utf-8")  # short stages: where things go is the point
    state = tmp_path / "state"
    first = run_cli(tmp_path, "run", "--spec", str(checkout), "--request", REQUEST, "--workdir", str(state), "--json")
    assert first.code == 0, first.stderr
    assert not (tmp_path / ".pilotage").exists()
    assert (state / "events.db").is_file() and (state / "graph.db").is_file()
    summary = first.json()
    assert summary["workdir"] == str(state / "runs" / summary["run_id"]) and summary["event_log"].endswith("events.db")
    assert Path(summary["report"]).is_file() and str(state) in summary["report"]
