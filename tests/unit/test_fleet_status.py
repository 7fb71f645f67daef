"""`pilotage service list` (issue 19, item 5): per service the delivery in progress and its stage, the queue and
the last outcome, folded from a real log (memory://) through the admission that starts queued runs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pilotage.bus.memory import MemoryBus
from pilotage.catalogue import checked_event
from pilotage.events import CloudEvent, EventType
from pilotage.fleet.status import fleet_status
from pilotage.flows.admission import Admission
from tests.unit.test_fleet_registry import DESCRIPTOR, _add, make_repo


def _run(run_id: str, rev: str) -> dict[str, object]:
    return {"run_id": run_id, "service": "shop", "spec_path": "", "request": "deliver", "workdir": "/tmp/x",
            "kind": "deliver", "rev": rev}  # fmt: skip


def test_service_list_shows_the_delivery_in_progress_its_stage_the_queue_and_the_last_outcome(tmp_path: Path) -> None:
    bus = MemoryBus()
    repo = make_repo(tmp_path / "shop", {"pilotage.yaml": DESCRIPTOR})
    _add(tmp_path, bus, repo)

    async def scenario() -> list[dict[str, object]]:
        for run_id, rev in (("run-1", "a" * 40), ("run-2", "b" * 40), ("run-3", "c" * 40)):
            queued = checked_event(EventType.FLOW_QUEUED, _run(run_id, rev), source="t", subject="shop", runid=run_id)
            await bus.publish(queued)
        admission = Admission(bus, limit=4)
        assert await admission.check() == ["run-1"]  # one delivery of a service at a time
        tested = CloudEvent(type=EventType.TESTS_COMPLETED, source="t", subject="shop", runid="run-1", data={})
        await bus.publish(tested)  # the newest lifecycle event of run-1: its stage
        _, rows = await fleet_status(bus)
        closed = {"run_id": "run-1", "status": "completed", "outcome": "promoted", "error": None}
        await bus.publish(checked_event(EventType.FLOW_COMPLETED, closed, source="t", subject="shop", runid="run-1"))
        assert await admission.check() == ["run-2"]
        _, after = await fleet_status(bus)
        return [rows[0], after[0]]

    during, after = asyncio.run(scenario())
    assert during["name"] == "shop" and during["state"] == "down"
    assert during["in_progress"]["run_id"] == "run-1" and during["in_progress"]["stage"] == "test"
    assert [q["run_id"] for q in during["queued"]] == ["run-2", "run-3"] and during["last_outcome"] is None
    assert after["in_progress"]["run_id"] == "run-2" and after["in_progress"]["stage"] == "request"
    assert [q["run_id"] for q in after["queued"]] == ["run-3"]
    assert after["last_outcome"]["outcome"] == "promoted" and after["last_outcome"]["rev"] == "a" * 40
