"""Many deliveries at once under ``pilotage serve`` (issue 19, item 5): the admission rule and its queue.

The rule (:func:`admit`) is checked on plain values; the queue and :class:`Admission` on a real memory:// log:
the limit holds, two runs of one service never run at once, nothing is lost or started twice across a restart.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from pilotage.bus.memory import MemoryBus
from pilotage.catalogue import checked_event
from pilotage.events import CloudEvent, EventType
from pilotage.flows.admission import Admission, QueuedRun, RunQueue, admit, started_id
from pilotage.flows.supervisor import FlowSupervisor


def queued(run_id: str, service: str) -> QueuedRun:
    event = CloudEvent(type=EventType.FLOW_QUEUED, source="/t", subject=service, runid=run_id, data={})
    return QueuedRun(run_id, service, event)


def test_admit_fills_free_places_oldest_first() -> None:
    waiting = [queued("r1", "a"), queued("r2", "b"), queued("r3", "c")]
    assert [r.run_id for r in admit(waiting, {}, 2)] == ["r1", "r2"]
    assert [r.run_id for r in admit(waiting, {"r0": "z"}, 2)] == ["r1"]
    assert admit(waiting, {"r0": "z", "r9": "y"}, 2) == []


def test_admit_never_starts_two_runs_of_one_service_and_skips_past_a_busy_one() -> None:
    waiting = [queued("r1", "orders"), queued("r2", "orders"), queued("r3", "payments")]
    # r2 waits behind r1 (same service), r3 is not held back by it
    assert [r.run_id for r in admit(waiting, {}, 4)] == ["r1", "r3"]
    # orders busy with r0: neither orders run starts; payments does
    assert [r.run_id for r in admit(waiting, {"r0": "orders"}, 4)] == ["r3"]


def run_spec(run_id: str, service: str) -> dict[str, object]:
    return {"run_id": run_id, "service": service, "spec_path": "", "request": "deliver HEAD", "workdir": "/tmp/x",
            "kind": "deliver", "rev": "0" * 40, "service_repo": "/tmp/x"}  # fmt: skip


async def submit(bus: MemoryBus, run_id: str, service: str) -> None:
    data = run_spec(run_id, service)
    await bus.publish(checked_event(EventType.FLOW_QUEUED, data, source="/t", subject=service, runid=run_id))


async def close(bus: MemoryBus, run_id: str, service: str) -> None:
    data = {"run_id": run_id, "status": "completed", "outcome": "promoted", "error": None, "duration_s": 1.0}
    await bus.publish(checked_event(EventType.FLOW_COMPLETED, data, source="/t", subject=service, runid=run_id))


async def started(bus: MemoryBus) -> list[CloudEvent]:
    return [r.event for r in await bus.read(1, 1000, pattern=EventType.FLOW_STARTED)]


def test_admission_keeps_the_limit_serialises_a_service_and_admits_as_runs_close() -> None:
    async def main() -> None:
        bus = MemoryBus()
        await bus.open()
        for run_id, service in [("r1", "orders"), ("r2", "orders"), ("r3", "payments"), ("r4", "catalog")]:
            await submit(bus, run_id, service)
        admission = Admission(bus, limit=2)
        assert await admission.check() == ["r1", "r3"]
        assert await admission.check() == []  # full: 2 active
        first = await started(bus)
        assert [(e.runid, e.subject, e.id) for e in first] == [("r1", "orders", started_id("r1")),
                                                               ("r3", "payments", started_id("r3"))]  # fmt: skip
        assert first[0].data["service"] == "orders" and first[0].data["kind"] == "deliver"  # the RunSpec, as queued
        await close(bus, "r1", "orders")
        assert await admission.check() == ["r2"]  # orders free again; r2 is older than r4
        await close(bus, "r3", "payments")
        assert await admission.check() == ["r4"]
        queue = await RunQueue().refresh(bus)
        assert queue.queued == {} and queue.active == {"r2": "orders", "r4": "catalog"}

    asyncio.run(main())


def test_a_restarted_admission_starts_nothing_twice_and_loses_nothing() -> None:
    async def main() -> None:
        bus = MemoryBus()
        await bus.open()
        for n in range(5):
            await submit(bus, f"r{n}", f"s{n}")
        assert await Admission(bus, limit=3).check() == ["r0", "r1", "r2"]
        # a control plane that crashed after its publishes: a new one folds them from the log
        again = Admission(bus, limit=3)
        assert await again.check() == []
        # a publish repeated after a crash is not stored twice (deterministic id)
        repeat = (await started(bus))[0]
        await bus.publish(repeat)
        for n in range(3):
            await close(bus, f"r{n}", f"s{n}")
        assert await Admission(bus, limit=3).check() == ["r3", "r4"]
        ids = Counter(e.runid for e in await started(bus))
        assert ids == Counter({f"r{n}": 1 for n in range(5)})

    asyncio.run(main())


def test_the_supervisor_admits_a_run_queued_after_it_started_and_the_next_when_one_closes() -> None:
    async def main() -> None:
        bus = MemoryBus()
        await bus.open()
        supervisor = FlowSupervisor(bus, check_every_s=30.0, admission=Admission(bus, limit=1))
        sub = await supervisor.start()

        async def started_runs(count: int) -> list[str]:
            for _ in range(300):
                runs = [e.runid for e in await started(bus)]
                if len(runs) >= count:
                    return runs
                await asyncio.sleep(0.01)
            return runs

        try:
            await submit(bus, "r1", "orders")
            await submit(bus, "r2", "payments")
            assert await started_runs(1) == ["r1"]
            await asyncio.sleep(0.1)
            assert [e.runid for e in await started(bus)] == ["r1"]  # limit 1: r2 waits
            await close(bus, "r1", "orders")
            assert await started_runs(2) == ["r1", "r2"]
        finally:
            await supervisor.stop()
            await sub.stop()

    asyncio.run(main())
