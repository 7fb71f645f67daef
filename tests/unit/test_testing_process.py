"""Bounded tool processes: exit codes, output tail, timeout and cancellation kill the whole process group."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from pilotage.errors import BackendError
from pilotage.runtime.sandbox import sandbox_env
from pilotage.testing.process import run_process

# a parent that starts a grandchild and prints its pid, then both sleep: the group kill must reach both
SPAWNER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_exit_code_and_output_tail(tmp_path: Path) -> None:
    code = "import sys; print('line one'); print('line two', file=sys.stderr); sys.exit(3)"
    outcome = asyncio.run(
        run_process([sys.executable, "-c", code], cwd=tmp_path, timeout_s=30, log_path=tmp_path / "l")
    )
    assert outcome.exit_code == 3 and not outcome.timed_out
    assert outcome.output_tail == ["line one", "line two"]


def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    log = tmp_path / "spawn.log"
    started = time.monotonic()
    outcome = asyncio.run(run_process([sys.executable, "-c", SPAWNER], cwd=tmp_path, timeout_s=1.5, log_path=log))
    assert outcome.timed_out and outcome.exit_code is not None and outcome.exit_code < 0
    assert time.monotonic() - started < 10
    grandchild = int(outcome.output_tail[0])
    assert _wait_gone(grandchild), "the grandchild survived the group kill"


def test_cancellation_kills_the_process(tmp_path: Path) -> None:
    log = tmp_path / "spawn.log"

    async def scenario() -> None:
        task = asyncio.create_task(
            run_process([sys.executable, "-c", SPAWNER], cwd=tmp_path, timeout_s=60, log_path=log)
        )
        while not log.exists() or not log.read_text().strip():
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert _wait_gone(int(log.read_text().split()[0]))


def test_missing_program_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="cannot start"):
        asyncio.run(run_process(["/no/such/program"], cwd=tmp_path, timeout_s=5, log_path=tmp_path / "l"))


def test_sandbox_env_is_local_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    env = sandbox_env({"EXTRA": "1"})
    assert "HTTPS_PROXY" not in env and env["NO_PROXY"] == "127.0.0.1,localhost"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["EXTRA"] == "1"


def test_a_flooding_tools_log_is_cut_and_its_tail_read_from_the_end(tmp_path: Path) -> None:
    # a consumer test printing 300 MB on one line left a 300 MB log and pushed the delivery to 852 MB RSS
    from pilotage.testing.process import MAX_LOG_BYTES

    code = "import sys; sys.stdout.write('begin\\n' + 'x' * 40_000_000 + '\\nlast line\\n')"
    log = tmp_path / "flood.log"
    outcome = asyncio.run(run_process([sys.executable, "-c", code], cwd=tmp_path, timeout_s=60, log_path=log))
    assert outcome.exit_code == 0
    text = log.read_text()
    assert len(text) < MAX_LOG_BYTES + 200 and text.startswith("begin\n") and text.endswith("\nlast line\n")
    assert "bytes of output cut here" in text
    assert outcome.output_tail[-1] == "last line" and all(len(line) <= 2000 for line in outcome.output_tail)
