"""EventLog queries on the memory and SQLite buses: run filter, data match, paging past one read, ids, offsets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from pilotage.bus.base import Bus
from pilotage.bus.memory import MemoryBus
from pilotage.bus.query import PAGE, EventLog
from pilotage.bus.sqlite import SQLiteBus
from pilotage.events import CloudEvent, EventType, new_event

STEP, STARTED = EventType.DEPLOY_STEP, EventType.DEPLOY_STARTED


def step(run: str, deployment_id: str, n: int) -> CloudEvent:
    data = {"deployment_id": deployment_id, "step": n, "weight": 10 * (n + 1), "strategy": "canary"}
    return new_event(STEP, data, source="/t", subject="svc", runid=run)


@pytest.fixture(params=["memory", "sqlite"])
def make_bus(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Bus]:
    return MemoryBus if request.param == "memory" else (lambda: SQLiteBus(f"sqlite:///{tmp_path / 'events.db'}"))


def run(make_bus: Callable[[], Bus], body: Callable[[Bus, EventLog], Awaitable[None]]) -> None:
    async def go() -> None:
        async with make_bus() as bus:
            await body(bus, EventLog(bus))

    asyncio.run(go())


def test_latest_exists_first_and_all_filter_by_run_and_data(make_bus: Callable[[], Bus]) -> None:
    async def body(bus: Bus, log: EventLog) -> None:
        for n in range(3):
            await bus.publish(step("r1", "d1", n))
            await bus.publish(step("r2", "d2", n))
        await bus.publish(new_event(STARTED, {"deployment_id": "d1"}, source="/t", runid="r1"))
        newest = await log.latest(STEP, run="r1")
        assert newest is not None and newest.data["step"] == 2 and newest.runid == "r1"
        assert (await log.latest(STEP, run="r1", step=1)).data["weight"] == 20  # type: ignore[union-attr]
        assert (await log.first(STEP, run="r2")).data["step"] == 0  # type: ignore[union-attr]
        assert await log.exists(STEP, run="r2", deployment_id="d2", step=2)
        assert not await log.exists(STEP, run="r1", deployment_id="d2")  # d2 is in r2 only
        assert not await log.exists(STEP, run="r1", step=3)
        assert await log.latest(STEP, run="r-none") is None
        assert [e.data["step"] for e in await log.all(STEP, deployment_id="d2")] == [0, 1, 2]
        assert [e.type for e in await log.all(run="r1")] == [STEP] * 3 + [STARTED]
        assert len(await log.all("dev.pilotage.deploy.*")) == 7

    run(make_bus, body)


def test_records_after_an_offset_follow_the_log(make_bus: Callable[[], Bus]) -> None:
    async def body(bus: Bus, log: EventLog) -> None:
        first = [await bus.publish(step("r1", "d1", n)) for n in range(3)]
        seen = await log.records(STEP, run="r1")
        assert [r.offset for r in seen] == first
        await bus.publish(step("r1", "d1", 3))
        later = await log.records(STEP, run="r1", after=seen[-1].offset)
        assert [r.event.data["step"] for r in later] == [3]
        assert await log.records(STEP, run="r1", after=later[-1].offset) == []

    run(make_bus, body)


def test_scans_page_past_one_read(make_bus: Callable[[], Bus]) -> None:
    total = PAGE * 2 + 7

    async def body(bus: Bus, log: EventLog) -> None:
        await bus.publish_many([step("r1", f"d{n}", n) for n in range(total)])
        assert len(await log.all(STEP, run="r1")) == total
        newest = await log.latest(STEP, run="r1")
        assert newest is not None and newest.data["step"] == total - 1  # found beyond the first two pages
        assert await log.exists(STEP, run="r1", deployment_id=f"d{total - 1}")

    run(make_bus, body)


def test_by_id_and_at(make_bus: Callable[[], Bus]) -> None:
    async def body(bus: Bus, log: EventLog) -> None:
        events = [step("r1", "d1", n) for n in range(3)]
        offsets = [await bus.publish(e) for e in events]
        found = await log.by_id(events[1].id)
        assert found is not None and found.offset == offsets[1] and found.event == events[1]
        assert await log.by_id(events[1].id, STARTED) is None  # narrowed to another type
        assert await log.by_id("no-such-id") is None
        assert await log.at(offsets[2]) == events[2]
        assert await log.at(offsets[2] + 1) is None

    run(make_bus, body)


def test_a_match_on_an_event_without_object_data_never_holds(make_bus: Callable[[], Bus]) -> None:
    async def body(bus: Bus, log: EventLog) -> None:
        await bus.publish(new_event("test.plain", ["not", "an", "object"], source="/t", runid="r1"))
        assert await log.exists("test.plain", run="r1")
        assert not await log.exists("test.plain", run="r1", step=0)

    run(make_bus, body)
