"""Runs that fail instead of hanging (issue #15, finding 7).

Any exception in a handler becomes ``agent.failed`` with a one-line reason (the run fails at once, not at its time
budget); a publish the event log refuses, or a corrupt row a consumer fetches, makes the bus fatal so the control
plane stops naming the log (and the offset); a 0-byte log is corrupt, not a new empty log. Real SQLite logs: the
publish failure is a real SQLite error raised by a trigger stored in the log file, not a mock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import ClassVar

import pytest

from pilotage.agent import MAX_REASON_CHARS, Agent, AgentContext, RunSpec
from pilotage.agents.design import DesignAgent
from pilotage.bus.memory import MemoryBus
from pilotage.bus.sqlite import SQLiteBus
from pilotage.errors import BackendCorrupt, BackendError, PilotageError
from pilotage.events import CloudEvent, EventType, new_event
from pilotage.flows.feature_delivery import run_feature_delivery
from pilotage.flows.supervisor import FlowSupervisor
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.settings import Settings

BUDGET_S = 60.0


class Raiser(Agent):
    """A handler with a bug: raises ValueError (not a PilotageError) on flow.started."""

    name = "raiser"
    subscribes: ClassVar[tuple[str, ...]] = (EventType.FLOW_STARTED,)

    async def on_event(self, event: CloudEvent) -> None:
        raise ValueError("bad value\nsecond line of the message")


class Emitter(Agent):
    """Publishes one event per flow.started (its publish is what a full log refuses)."""

    name = "emitter"
    subscribes: ClassVar[tuple[str, ...]] = (EventType.FLOW_STARTED,)

    async def on_event(self, event: CloudEvent) -> None:
        await self.emit(EventType.DESIGN_COMPLETED, {"ok": True}, cause=event)


def make_ctx(bus: MemoryBus | SQLiteBus) -> AgentContext:
    return AgentContext(
        bus=bus,
        graph=SQLiteGraph("sqlite:///:memory:"),
        policy=None,  # type: ignore[arg-type]
        runtime=None,  # type: ignore[arg-type]
        settings=Settings(),
    )


def run_spec(tmp_path: Path, run_id: str = "run-test") -> RunSpec:
    return RunSpec(run_id=run_id, service="svc", spec_path="/x.yaml", request="Add x support", workdir=str(tmp_path))


def test_a_handler_raising_value_error_fails_the_run_at_once_with_one_line(tmp_path: Path) -> None:
    ctx = make_ctx(MemoryBus())
    t0 = time.monotonic()
    result = asyncio.run(run_feature_delivery(ctx, run_spec(tmp_path), [Raiser(ctx)], budget_s=BUDGET_S))
    assert time.monotonic() - t0 < 10, "the run must fail at once, not at its time budget"
    assert result.status == "failed"
    assert result.error == "raiser: ValueError: bad value second line of the message"
    [failed] = [e for e in result.events if e.type == EventType.AGENT_FAILED]
    assert failed.data["error_type"] == "ValueError"
    assert "Traceback" not in failed.to_json() and "\\n" not in failed.data["error"]


def test_a_reason_is_cut_to_its_limit(tmp_path: Path) -> None:
    class Long(Raiser):
        name = "long"

        async def on_event(self, event: CloudEvent) -> None:
            raise RuntimeError("x" * 5000)

    ctx = make_ctx(MemoryBus())
    result = asyncio.run(run_feature_delivery(ctx, run_spec(tmp_path), [Long(ctx)], budget_s=BUDGET_S))
    [failed] = [e for e in result.events if e.type == EventType.AGENT_FAILED]
    assert failed.data["error"].startswith("RuntimeError: xxx") and len(failed.data["error"]) == MAX_REASON_CHARS


def test_an_event_of_the_wrong_shape_fails_its_run_with_a_one_line_reason() -> None:
    """A well-formed flow.started whose data is not a RunSpec: the design agent's pydantic error fails the run."""

    async def go() -> list[CloudEvent]:
        bus = MemoryBus()
        ctx = make_ctx(bus)
        supervisor = FlowSupervisor(bus, budget_s=BUDGET_S)
        subs = [*await DesignAgent(ctx).start(), await supervisor.start()]
        wrong = {"run_id": "run-wrong", "service": ["not", "a", "name"]}  # no request, spec_path, workdir
        await bus.publish(new_event(EventType.FLOW_STARTED, wrong, source="/test", subject="svc", runid="run-wrong"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            events = [r.event for r in await bus.read(1, 100) if r.event.runid == "run-wrong"]
            if any(e.type == EventType.FLOW_FAILED for e in events):
                break
            await asyncio.sleep(0.05)
        await supervisor.stop()
        for sub in subs:
            await sub.stop()
        return events

    events = asyncio.run(go())
    [failed] = [e for e in events if e.type == EventType.AGENT_FAILED]
    assert failed.data["agent"] == "design" and failed.data["error_type"] == "ValidationError"
    assert failed.data["error"].startswith("ValidationError: ") and "\n" not in failed.data["error"]
    closing = events[-1]
    assert closing.type == EventType.FLOW_FAILED, "the run must close failed, not wait for its budget"
    assert closing.data["error"].startswith("design: ValidationError: ")


def refuse_inserts(path: Path, runid: str) -> None:
    """Make the log itself refuse every event of ``runid`` except its flow.started (a real SQLite error)."""
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TRIGGER full BEFORE INSERT ON events "
        f"WHEN NEW.runid = '{runid}' AND NEW.type != '{EventType.FLOW_STARTED}' "
        "BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END"
    )
    conn.commit()
    conn.close()


def test_a_publish_the_log_refuses_stops_an_in_process_run_naming_the_path(tmp_path: Path) -> None:
    db = tmp_path / "events.db"

    async def go() -> None:
        async with SQLiteBus(f"sqlite:///{db}") as bus:
            refuse_inserts(db, "run-full")
            ctx = make_ctx(bus)
            await run_feature_delivery(ctx, run_spec(tmp_path, "run-full"), [Emitter(ctx)], budget_s=BUDGET_S)

    t0 = time.monotonic()
    with pytest.raises(BackendError) as info:
        asyncio.run(go())
    assert time.monotonic() - t0 < 20, "the run must stop at once, not at its time budget"
    assert str(db) in info.value.one_line() and "disk is full" in info.value.one_line()


def test_a_corrupt_row_stops_the_consumer_loudly_with_its_offset(tmp_path: Path) -> None:
    db = tmp_path / "events.db"

    async def go() -> tuple[PilotageError | None, list[PilotageError]]:
        heard: list[PilotageError] = []
        async with SQLiteBus(f"sqlite:///{db}") as bus:
            bus.on_fatal(heard.append)
            handled: list[str] = []

            async def handler(event: CloudEvent) -> None:
                handled.append(event.id)

            sub = await bus.subscribe("*", handler, group="g")
            await bus.publish(new_event("t.ok", {}, source="/test"))
            while not handled:
                await asyncio.sleep(0.01)
            conn = sqlite3.connect(db)
            conn.execute(
                "INSERT INTO events(id, type, subject, runid, time, body) VALUES ('x', 't.bad', '', '', '', '{garbage')"
            )
            conn.commit()
            conn.close()
            deadline = time.monotonic() + 10
            while bus.fatal is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await sub.stop()  # must not raise: the member said why it stopped
            assert sub.task is not None and sub.task.done() and sub.errors == [bus.fatal]
            return bus.fatal, heard

    fatal, heard = asyncio.run(go())
    assert isinstance(fatal, BackendCorrupt) and fatal.offset == 2  # type: ignore[attr-defined]
    assert heard == [fatal]
    assert "offset 2" in fatal.one_line() and str(db) in fatal.one_line()


def test_an_empty_log_file_is_corrupt_not_a_new_log(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    db.write_bytes(b"")

    async def go() -> None:
        async with SQLiteBus(f"sqlite:///{db}") as bus:
            await bus.publish(new_event("t.x", {}, source="/test"))

    with pytest.raises(BackendCorrupt) as info:
        asyncio.run(go())
    assert str(db) in info.value.one_line() and "0 bytes" in info.value.one_line()
    assert db.stat().st_size == 0, "the empty file must be left as it was"


def test_a_missing_log_is_created_without_leftovers(tmp_path: Path) -> None:
    db = tmp_path / "state" / "events.db"

    async def go() -> int:
        async with SQLiteBus(f"sqlite:///{db}") as bus:
            return await bus.publish(new_event("t.x", {}, source="/test"))

    assert asyncio.run(go()) == 1
    assert db.stat().st_size > 0
    assert sorted(p.name for p in db.parent.iterdir() if p.name.startswith(".")) == []
