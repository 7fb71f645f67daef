"""``pilotage serve`` stops, naming the log, when its event log becomes unusable (issue #15, finding 7).

Before: a corrupt row killed every consumer task silently and a publish the log refused was logged and
acknowledged, so the control plane kept running and every run waited for its time budget. Both conditions are
real: a garbage row written into the ``events`` table, and a trigger stored in the log that makes SQLite refuse
the inserts of one run (SQLite's own error, raised inside the control plane's publish).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pilotage.agent import RunSpec
from pilotage.events import EventType, new_event
from tests.e2e.conftest import run_cli
from tests.e2e.test_bad_input import one_line_error

pytestmark = pytest.mark.e2e

#: Generous bound for `pilotage serve` to start, and to stop after the failure, on a loaded 2-core machine.
START_LIMIT_S = 180.0
STOP_LIMIT_S = 60.0


def _serve(cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTAGE_")}
    env["COLUMNS"] = "200"
    with (cwd / "serve.out").open("w") as out, (cwd / "serve.err").open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "pilotage", "serve", "--json"], cwd=cwd, env=env, stdout=out, stderr=err, text=True
        )


def _wait_serving(cwd: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_LIMIT_S
    out = cwd / "serve.out"
    while '"serving": true' not in out.read_text(encoding="utf-8"):
        assert proc.poll() is None, (cwd / "serve.err").read_text(encoding="utf-8")
        assert time.monotonic() < deadline, "pilotage serve did not start"
        time.sleep(0.2)


def _exit_of(cwd: Path, proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        code = proc.wait(timeout=STOP_LIMIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(
            f"pilotage serve kept running {STOP_LIMIT_S:.0f} s after its log became unusable"
        ) from None
    return code, (cwd / "serve.err").read_text(encoding="utf-8")


def _sql(db: Path, statement: str, *args: object) -> None:
    conn = sqlite3.connect(db)
    conn.execute(statement, args)
    conn.commit()
    conn.close()


def _insert_garbage(db: Path, event_id: str, event_type: str) -> int:
    """Write a row whose body is not JSON into the log, as a damaged disk or a foreign writer would; its offset."""
    _sql(
        db,
        "INSERT INTO events(id, type, subject, runid, time, body) VALUES (?, ?, '', '', '', '{garbage')",
        event_id,
        event_type,
    )
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT offset FROM events WHERE id = ?", (event_id,)).fetchone()[0])


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_a_corrupt_row_stops_serve_naming_its_offset(tmp_path: Path) -> None:
    proc = _serve(tmp_path)
    try:
        _wait_serving(tmp_path, proc)
        db = tmp_path / ".pilotage" / "events.db"
        offset = _insert_garbage(db, "corrupt-1", "dev.pilotage.flow.started")
        code, stderr = _exit_of(tmp_path, proc)
    finally:
        _kill(proc)
    assert code == 5, stderr
    line = one_line_error(stderr)
    assert f"offset {offset}" in line and ".pilotage/events.db" in line


def test_a_publish_the_log_refuses_stops_serve_naming_the_path(tmp_path: Path, checkout: Path) -> None:
    proc = _serve(tmp_path)
    try:
        _wait_serving(tmp_path, proc)
        db = tmp_path / ".pilotage" / "events.db"
        _sql(
            db,
            "CREATE TRIGGER full BEFORE INSERT ON events WHEN NEW.runid = 'run-full' "
            f"AND NEW.type != '{EventType.FLOW_STARTED}' BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END",
        )
        run = RunSpec(
            run_id="run-full",
            service="checkout",
            spec_path=str(checkout),
            request="Add coupon support with fields code:string",
            workdir=str(tmp_path / "runs" / "run-full"),
        )
        start = new_event(
            EventType.FLOW_STARTED, run.model_dump(), source="/test", subject="checkout", runid="run-full"
        )
        _sql(
            db,
            "INSERT INTO events(id, type, subject, runid, time, body) VALUES (?, ?, ?, ?, ?, ?)",
            start.id,
            start.type,
            start.subject,
            start.runid,
            start.time,
            start.to_json(),
        )
        code, stderr = _exit_of(tmp_path, proc)
    finally:
        _kill(proc)
    assert code == 5, stderr
    line = one_line_error(stderr)
    assert ".pilotage/events.db" in line and "disk is full" in line and "publish" in line


def test_serve_refuses_an_empty_log(tmp_path: Path) -> None:
    (tmp_path / ".pilotage").mkdir()
    (tmp_path / ".pilotage" / "events.db").write_bytes(b"")
    result = run_cli(tmp_path, "serve", timeout_s=START_LIMIT_S)
    assert result.code == 5
    line = one_line_error(result.stderr)
    assert "events.db" in line and "0 bytes" in line


def test_a_corrupt_row_stops_a_worker_naming_its_offset(tmp_path: Path) -> None:
    # `pilotage worker` listens to the same fatal errors as serve: a garbage contract-net call stops it (exit 5)
    db = tmp_path / ".pilotage" / "events.db"
    db.parent.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTAGE_")}
    argv = [sys.executable, "-m", "pilotage", "worker", "--capabilities", "echo", "--bus", f"sqlite:///{db}", "--json"]
    with (tmp_path / "worker.err").open("w") as err:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        assert proc.stdout is not None and '"ready"' in proc.stdout.readline()
        offset = _insert_garbage(db, "corrupt-cfp", f"{EventType.CNET_CFP}.echo")
        code = proc.wait(timeout=STOP_LIMIT_S)
    finally:
        _kill(proc)
        assert proc.stdout is not None
        proc.stdout.close()
    stderr = (tmp_path / "worker.err").read_text(encoding="utf-8")
    assert code == 5, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]  # after the empty-log warning
    assert len(errors) == 1 and f"offset {offset}" in errors[0], stderr
