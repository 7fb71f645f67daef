"""Issue 18 item 9: `pilotage run` stops within 2 s on SIGTERM/Ctrl-C, even while it computes on a large document."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
#: The bound the issue sets, in seconds, from the signal to the end of the process.
STOP_WITHIN_S = 2.0


def _large_document(path: Path, resources: int) -> int:
    """Write an OpenAPI document with ``resources`` collections (list + create each) and return its size (bytes)."""
    paths, schemas = {}, {}
    for i in range(resources):
        schemas[f"Thing{i}"] = {
            "type": "object", "required": ["name"],
            "properties": {"id": {"type": "integer", "readOnly": True}, "name": {"type": "string", "maxLength": 50},
                           "tags": {"type": "array", "items": {"type": "string"}}},
        }  # fmt: skip
        ref = {"$ref": f"#/components/schemas/Thing{i}"}
        listed = {"application/json": {"schema": {"type": "array", "items": ref}}}
        paths[f"/things{i}"] = {
            "get": {"operationId": f"list{i}", "responses": {"200": {"description": "ok", "content": listed}}},
            "post": {
                "operationId": f"create{i}",
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref}}},
                "responses": {"201": {"description": "created"}},
            },  # fmt: skip
        }
    doc = {"openapi": "3.0.3", "info": {"title": "big", "version": "1"}, "paths": paths,
           "components": {"schemas": schemas}}  # fmt: skip
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path.stat().st_size


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _stop(proc: subprocess.Popen[str], sig: signal.Signals) -> tuple[float, int, str]:
    """Send ``sig``; return (seconds until the process ended, its exit code, its stderr)."""
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the process ignored {sig.name} for 30 s")
    return time.monotonic() - sent, proc.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_run_on_a_large_document_stops_within_2_s_while_validating_it(tmp_path: Path, sig: signal.Signals) -> None:
    spec = tmp_path / "big.json"
    assert _large_document(spec, 2500) > 1_500_000
    argv = [sys.executable, "-m", "pilotage", "run", "--spec", str(spec), "--request",
            "Add a notes field to Thing1", "--workdir", str(tmp_path / "wd")]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # printed just before the validation starts
    assert "reading and validating big.json" in line, line
    time.sleep(1.0)  # well inside the validation (it takes seconds)
    assert proc.poll() is None, "the validation ended before the signal: make the document larger"
    elapsed, code, err = _stop(proc, sig)
    assert elapsed < STOP_WITHIN_S and code == 130, (elapsed, code, err)
    assert err.strip().splitlines()[-1].startswith(f"error: interrupted by {sig.name} before run "), err


BUSY_LOOP = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from pilotage.cli.interrupt import RunStopper

    async def main(stopper):
        task = asyncio.current_task()
        stopper.attach(asyncio.get_running_loop(), lambda name: task.cancel())
        print("busy", flush=True)
        end = time.monotonic() + 60
        while time.monotonic() < end:  # synchronous work inside the loop, as an agent validating a document
            sum(range(1000))

    with RunStopper(Path(sys.argv[1]), "run-x").installed() as stopper:
        asyncio.run(main(stopper))
    """
)


def test_work_that_holds_the_event_loop_does_not_delay_the_stop(tmp_path: Path) -> None:
    """Inside the loop the clean stop cannot run while the work holds it: the watchdog ends the process in time."""
    script = tmp_path / "busy.py"
    script.write_text(BUSY_LOOP, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "busy"
    time.sleep(0.3)
    elapsed, code, err = _stop(proc, signal.SIGTERM)
    assert elapsed < STOP_WITHIN_S and code == 130, (elapsed, code, err)
    assert "run run-x interrupted by SIGTERM while it was busy" in err
