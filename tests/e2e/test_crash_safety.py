"""Crash safety (issue #7, item 5): SIGKILL the control plane mid-rollout, restart it, and check the log.

``pilotage serve`` runs in a subprocess, ``pilotage demo --submit`` hands it the demo run, and the control plane is
killed with SIGKILL once the blue-green rollout has taken its second step (the switch to green: service processes
running, proxy and traffic in memory). A second ``pilotage serve`` must kill the orphaned service processes,
re-create the rollout's environment from the log and let the agents finish the run, without doing anything twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import IO

import pytest

from tests.e2e.conftest import of_type, read_log

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: Generous bound on how long one stage may take on a loaded 2-core machine (a wait, not an assertion on time).
STAGE_LIMIT_S = 300.0

#: Short stages, but not conftest's FAST: the 10 s post-promotion watch (default) is the window the SIGKILL must land
#: in (the switch to green is the watch's step), and 1 s analysis windows reach it sooner.
FAST = """
analysis_window_s = 1.0
load_test_duration_s = 2.0
schemathesis_max_examples = 3
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTAGE_")}
    env["COLUMNS"] = "200"
    return env


def _start(cwd: Path, out: IO[str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pilotage", *args],
        cwd=cwd,
        env=_env(),
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(what: str, predicate: object, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + STAGE_LIMIT_S
    while not predicate():  # type: ignore[operator]
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def _serving(path: Path) -> bool:
    return path.exists() and '"serving": true' in path.read_text(encoding="utf-8")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def test_sigkill_mid_rollout_resumes_without_acting_twice(tmp_path: Path) -> None:
    (tmp_path / "pilotage.toml").write_text(FAST, encoding="utf-8")
    log1, log2 = tmp_path / "serve1.out", tmp_path / "serve2.out"
    acks = tmp_path / "acks.jsonl"
    with log1.open("w") as out1:
        serve1 = _start(tmp_path, out1, "serve", "--json", "--ack-journal", str(acks))
    _wait_for("the first control plane", lambda: _serving(log1), serve1)
    client_out = tmp_path / "client.out"
    with client_out.open("w") as out:
        client = _start(tmp_path, out, "demo", "--submit", "--json")

    def second_step_taken() -> bool:
        return any(e.data["step"] >= 1 for e in of_type(read_log(tmp_path), "deploy.step"))

    try:
        _wait_for("the switch to green", second_step_taken, serve1)
        serve1.send_signal(signal.SIGKILL)
        assert serve1.wait(timeout=30) == -signal.SIGKILL
        killed_at = read_log(tmp_path)
        logged = {e.id for e in killed_at}
        acked = [json.loads(line)["id"] for line in acks.read_text(encoding="utf-8").splitlines()]
        assert len(acked) > 20, "the journal should hold every publish of the first control plane"
        assert [i for i in acked if i not in logged] == []  # every acknowledged event survived the SIGKILL
        (started,) = of_type(killed_at, "deploy.started")
        service_pids = [started.data["baseline"]["pid"], started.data["canary"]["pid"]]
        assert all(_alive(pid) for pid in service_pids), "the services should outlive the killed control plane"
        assert client.poll() is None, "the submitting client keeps following the run"

        with log2.open("w") as out2:
            serve2 = _start(tmp_path, out2, "serve", "--json")
        try:
            _wait_for("the second control plane", lambda: _serving(log2), serve2)
            assert not any(_alive(pid) for pid in service_pids), "orphaned services must be stopped"
            assert client.wait(timeout=STAGE_LIMIT_S) == 0, client_out.read_text(encoding="utf-8")
        finally:
            serve2.send_signal(signal.SIGTERM)
            assert serve2.wait(timeout=60) == 0, log2.read_text(encoding="utf-8")[-2000:]
    finally:
        for proc in (serve1, client):
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    summary = json.loads(client_out.read_text(encoding="utf-8"))
    assert summary["status"] == "completed" and summary["outcome"] == "promoted"
    events = [e for e in read_log(tmp_path) if e.runid == summary["run_id"]]
    types = Counter(e.type.removeprefix("dev.pilotage.") for e in events)
    # resumed, not restarted: every stage before the rollout happened once
    for once in ("flow.started", "spec.validated", "code.generated", "tests.completed", "perf.measured"):
        assert types[once] == 1, f"{once}: {types[once]}"
    # no action twice: one launch, one promotion, no rollback, one verdict per gated action, each step once
    assert types["deploy.started"] == 1 and types["deploy.promoted"] == 1 and types["deploy.rolled_back"] == 0
    verdicts = Counter(e.data["action"] for e in of_type(events, "policy.evaluated"))
    assert verdicts["deploy"] == 1 and verdicts["promote"] == 1 and verdicts["scale"] == 1
    # the demo's change is moderate: blue-green, preview (step 0) then the switch (step 1, watched)
    steps = [e.data["step"] for e in of_type(events, "deploy.step")]
    assert sorted(steps) == [0, 1] and len(steps) == len(set(steps))
    judged = Counter(e.data["step"] for e in of_type(events, "slo.evaluated"))
    assert judged == Counter({0: 1, 1: 1})
    kinds = Counter(e.data["kind"] for e in of_type(events, "decision.made"))
    assert kinds["deploy.strategy"] == 1 and kinds["slo.assessment"] == 2 and kinds["cost.scale"] == 1
    moves = [e.data["action"] for e in of_type(events, "decision.made") if e.data["kind"] == "rollout.next"]
    assert moves == ["advance", "promote"]  # the controller's decisions, each once
    assert types["flow.completed"] == 1 and types["flow.failed"] == 0 and types["agent.failed"] == 0
    # the rollout's environment was re-created from the log, and the orphans were reported
    (resumed,) = of_type(events, "deploy.resumed")
    assert resumed.data["phase"] == "rollout" and resumed.data["deployment_id"] == started.data["deployment_id"]
    assert resumed.data["weight"] == 100 and resumed.data["canary"]["pid"] not in service_pids
    recovered = [e for e in read_log(tmp_path) if e.type == "dev.pilotage.controlplane.recovered"]
    killed = {o["pid"] for o in recovered[-1].data["orphans_killed"]}
    assert set(service_pids) <= killed
