"""Contract-net with `pilotage worker` OS processes, over SQLite and over NATS JetStream (127.0.0.1:4222).

A worker is SIGKILLed mid-task: its missing heartbeats get it cancelled, the task is re-announced and done exactly
once by the other worker. The performance agent hands its load test to a worker process. CLI errors of the worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pilotage.agent import AgentContext, RunSpec
from pilotage.agents.performance import PerformanceAgent
from pilotage.bus.base import Bus
from pilotage.bus.sqlite import SQLiteBus
from pilotage.coordination import ContractNetManager, ContractNetOptions, TaskState
from pilotage.events import CloudEvent, EventType, new_event
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.runtime.local import LocalRuntime
from pilotage.settings import Settings
from tests.contract.test_bus import NATS_URL, _require_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OPTIONS = ContractNetOptions(bid_window_s=2.0, stale_s=2.0, heartbeat_s=0.3, max_rounds=3, poll_s=0.02)


class Workers:
    """`pilotage worker` processes on one bus; stopped (SIGTERM, then SIGKILL) at the end."""

    def __init__(self, url: str, cwd: Path) -> None:
        self.url, self.cwd = url, cwd
        self.procs: dict[str, subprocess.Popen[str]] = {}

    def start(self, worker_id: str, capabilities: str = "echo") -> None:
        env = {**os.environ, "PILOTAGE_CNET_HEARTBEAT_S": "0.3"}
        argv = [sys.executable, "-m", "pilotage", "worker", "--capabilities", capabilities, "--bus", self.url,
                "--id", worker_id, "--json"]  # fmt: skip
        err = self.cwd / f"{worker_id}.stderr"
        with err.open("w") as stderr:
            proc = subprocess.Popen(argv, cwd=self.cwd, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        self.procs[worker_id] = proc
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the worker subscribed and sent its first heartbeat
        assert line, f"worker {worker_id} did not start: {err.read_text()}"
        assert json.loads(line)["event"] == "ready"

    def kill(self, worker_id: str) -> None:
        self.procs[worker_id].send_signal(signal.SIGKILL)
        self.procs[worker_id].communicate(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


async def _of_type(bus: Bus, type_: str) -> list[CloudEvent]:
    return [r.event for r in await bus.read(1, 100_000, pattern=type_)]


async def _handle_on_sqlite(
    url: str, tmp_path: Path, settings: dict[str, Any], events: list[CloudEvent], agent_class: Any, result_type: str
) -> dict[str, Any]:
    """Publish ``events`` on the SQLite log and let ``agent_class`` handle the last one.

    Returns its one ``result_type`` event's data and every decision (real SQLite bus, in-memory graph, local
    runtime, no policy engine: these agents ask no policy question here).
    """
    ctx = AgentContext(
        bus=SQLiteBus(url),
        graph=SQLiteGraph("sqlite:///:memory:"),
        policy=None,  # type: ignore[arg-type]
        runtime=LocalRuntime(log_dir=tmp_path / "logs"),
        settings=Settings.model_validate(settings),
    )
    try:
        async with ctx.bus:
            for event in events:
                await ctx.bus.publish(event)
            await agent_class(ctx).handle(events[-1])
            assert not await _of_type(ctx.bus, EventType.AGENT_FAILED)
            [result] = await _of_type(ctx.bus, result_type)
            decisions = [e.data for e in await _of_type(ctx.bus, EventType.DECISION)]
            return {"result": result.data, "decisions": decisions}
    finally:
        await ctx.runtime.close()
        ctx.graph.close()


async def _kill_winner_mid_task(bus: Bus, workers: Workers) -> None:
    async with bus:
        manager = ContractNetManager(bus, options=OPTIONS)
        quick = await manager.run("warm-up", "echo", {"n": 1}, exec_timeout_s=30)
        assert quick.state is TaskState.DONE and quick.result == {"echo": {"n": 1}}
        job = asyncio.create_task(manager.run("victim", "echo", {"sleep_s": 2.0}, exec_timeout_s=60))
        while not [e for e in await _of_type(bus, EventType.CNET_ACCEPT) if e.data["task_id"] == "victim"]:
            await asyncio.sleep(0.02)
        accept = [e for e in await _of_type(bus, EventType.CNET_ACCEPT) if e.data["task_id"] == "victim"][0]
        doomed = accept.data["host"]
        workers.kill(doomed)  # SIGKILL mid-task: no failure, no worker.stopped, heartbeats stop
        outcome = await job
        assert outcome.state is TaskState.DONE and outcome.round == 1
        assert outcome.worker is not None and not outcome.worker.startswith(doomed)
        assert outcome.excluded == [f"{doomed}/0"]
        done = [e for e in await _of_type(bus, EventType.CNET_DONE) if e.data["task_id"] == "victim"]
        assert len(done) == 1 and done[0].data["worker"] == outcome.worker  # done exactly once
        cancels = [e.data for e in await _of_type(bus, EventType.CNET_CANCEL) if e.data["task_id"] == "victim"]
        assert [(c["host"], c["reason"]) for c in cancels] == [(doomed, "lost")]
        decisions = [e.data for e in await _of_type(bus, EventType.DECISION) if e.data["inputs"]["task_id"] == "victim"]
        assert [d["score"]["winner"] for d in decisions] == [f"{doomed}/0", outcome.worker]
        assert decisions[1]["inputs"]["excluded"] == [f"{doomed}/0"]


def test_sqlite_worker_killed_mid_task_is_replaced_and_the_task_done_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    workers = Workers(url, tmp_path)
    try:
        workers.start("w-a")
        workers.start("w-b")
        asyncio.run(_kill_winner_mid_task(SQLiteBus(url), workers))
    finally:
        workers.stop_all()


@pytest.fixture
def nats_url() -> Iterator[str]:
    pytest.importorskip("nats", reason="nats-py is in the dev extra; install 'pilotage[nats]'")
    _require_server(NATS_URL, f"NATS JetStream at {NATS_URL}")
    from pilotage.bus.nats import NatsBus

    url = f"{NATS_URL}/C{uuid.uuid4().hex[:12]}"
    yield url

    async def drop() -> None:
        bus = NatsBus(url)
        try:
            await bus.delete_stream()
        finally:
            await bus.close()

    asyncio.run(drop())


def test_nats_worker_killed_mid_task_is_replaced_and_the_task_done_once(tmp_path: Path, nats_url: str) -> None:
    from pilotage.bus.nats import NatsBus

    workers = Workers(nats_url, tmp_path)
    try:

        async def create_stream() -> None:  # the stream exists before the workers subscribe
            async with NatsBus(nats_url):
                pass

        asyncio.run(create_stream())
        workers.start("n-a")
        workers.start("n-b")
        asyncio.run(_kill_winner_mid_task(NatsBus(nats_url), workers))
    finally:
        workers.stop_all()


def test_the_performance_agent_hands_its_load_test_to_a_worker_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/events.db"
    workers = Workers(url, tmp_path)
    head = shutil.copytree(FIXTURES / "ok_service", tmp_path / "versions" / "abc123")

    async def scenario() -> dict[str, Any]:
        settings = {
            "load_test_users": 3,
            "load_test_duration_s": 2.0,
            "cnet_bid_window_s": 2.0,
            "cnet_heartbeat_s": 0.3,
        }
        run = RunSpec(run_id="r9", service="pets", spec_path=str(head / "openapi.yaml"), request="x",
                      workdir=str(tmp_path / "work"))  # fmt: skip
        start = new_event(EventType.FLOW_STARTED, run.model_dump(), source="/t", subject="pets", runid="r9")
        data = {"commit": "abc123" * 6, "head_dir": str(head), "spec_path": str(head / "openapi.yaml"), "passed": True}
        tested = new_event(EventType.TESTS_COMPLETED, data, source="/t", subject="pets", runid="r9")
        out = await _handle_on_sqlite(
            url, tmp_path, settings, [start, tested], PerformanceAgent, EventType.PERF_MEASURED
        )
        return {"measured": out["result"], "decisions": out["decisions"]}

    try:
        workers.start("lt-1", "loadtest,echo")
        out = asyncio.run(scenario())
    finally:
        workers.stop_all()
    measured = out["measured"]
    assert measured["executed_by"] == "worker:lt-1/0" and measured["allocation"]["rounds"] == 1
    assert measured["total"]["requests"] > 0 and measured["users"] == 3
    kinds = [(d["agent"], d["kind"]) for d in out["decisions"]]
    # the load-test slot is auctioned first (a lone bidder wins at once), then the test is allocated to the worker
    assert kinds == [
        ("performance", "perf.slot_bid"),
        ("coordination", "market.auction"),
        ("coordination", "cnet.award"),
        ("performance", "perf.assessment"),
    ]
    award = out["decisions"][2]
    assert award["id"] == measured["allocation"]["decision_ids"][0]
    assert award["cause_event_id"] and award["run_id"] == "r9"
    assert measured["slot"]["price"] == 0 and measured["slot"]["decision_id"] == out["decisions"][1]["id"]


def test_worker_cli_errors_name_the_capability_and_the_bus(tmp_path: Path) -> None:
    def worker(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "pilotage", "worker", *args]
        return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)

    unknown = worker("--capabilities", "echo,fly", "--bus", f"sqlite:///{tmp_path}/e.db")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: unknown capability 'fly' (fix: use some of echo, loadtest, tests)"
    unreachable = worker("--capabilities", "echo", "--bus", "nats://user:pw@127.0.0.1:1")
    assert unreachable.returncode == 5
    assert "nats://user:***@127.0.0.1:1" in unreachable.stderr and "pw" not in unreachable.stderr
    assert len(unreachable.stderr.strip().splitlines()) == 1
    started = time.monotonic()
    scheme = worker("--capabilities", "echo", "--bus", "amqp://x")
    assert scheme.returncode == 3 and "unknown bus URL scheme" in scheme.stderr
    assert time.monotonic() - started < 60
    private = worker("--capabilities", "echo", "--bus", "memory://")
    assert private.returncode == 3 and "private to this worker" in private.stderr


def test_the_testing_agent_hands_its_test_run_to_a_worker_process(tmp_path: Path) -> None:
    """Issue 8 × 5: with a live `tests` worker the suite runs there (it starts the head version itself)."""
    from pilotage.agents.testing import TestingAgent

    url = f"sqlite:///{tmp_path}/events.db"
    workers = Workers(url, tmp_path)
    head = shutil.copytree(FIXTURES / "ok_service", tmp_path / "versions" / "abc123")

    async def scenario() -> dict[str, Any]:
        settings = {
            "schemathesis_max_examples": 3,
            "cnet_bid_window_s": 2.0,
            "cnet_heartbeat_s": 0.3,
            "testing_generate": False,
        }
        spec = str(head / "openapi.yaml")
        run = RunSpec(run_id="r8", service="pets", spec_path=spec, request="x", workdir=str(tmp_path / "work"))
        code = {"commit": "abc123" * 6, "head_dir": str(head), "files_changed": []}
        merge = {"action": "merge", "allow": True, "agent": "governance", "reasons": [], "policies": []}
        events = [
            new_event(EventType.FLOW_STARTED, run.model_dump(), source="/t", subject="pets", runid="r8"),
            new_event(EventType.CODE_GENERATED, code, source="/t", subject="pets", runid="r8"),
            new_event(EventType.SPEC_VALIDATED, {"spec_path": spec}, source="/t", subject="pets", runid="r8"),
            new_event(EventType.POLICY_EVALUATED, merge, source="/t", subject="pets", runid="r8"),
        ]
        out = await _handle_on_sqlite(url, tmp_path, settings, events, TestingAgent, EventType.TESTS_COMPLETED)
        return {"completed": out["result"], "decisions": out["decisions"]}

    try:
        workers.start("t-1", "tests")
        out = asyncio.run(scenario())
    finally:
        workers.stop_all()
    completed = out["completed"]
    assert completed["executed_by"] == "worker:t-1/0" and completed["allocation"]["rounds"] == 1
    assert completed["passed"] is True and completed["schemathesis"]["requests"] > 0
    assert completed["unit"]["passed"] > 0 and completed["unit"]["failed"] == 0
    kinds = [(d["agent"], d["kind"]) for d in out["decisions"]]
    assert kinds == [("coordination", "cnet.award"), ("testing", "tests.verdict")]
