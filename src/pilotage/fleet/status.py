"""The whole fleet's state at a glance: ``pilotage service list`` (issue #19, item 5).

Per managed service: its production commit, whether production serves, the delivery in progress and the stage it
is in, the deliveries queued behind it in ``pilotage serve`` (two deliveries of one service never run at once:
:mod:`pilotage.flows.admission`) and the outcome of the last delivery that ended. Everything is read from the log:
the fleet fold (:func:`~pilotage.fleet.registry.load_fleet`) plus, for each delivery in progress, its run's events
(the newest lifecycle event gives the stage, as the timeline names it: :func:`pilotage.report.stage_of`).
"""

from __future__ import annotations

from typing import Any

from pilotage.bus.base import Bus
from pilotage.bus.query import EventLog
from pilotage.events import EventType
from pilotage.fleet.registry import ManagedService, load_fleet
from pilotage.report import stage_of

__all__ = ["fleet_status", "service_status"]

#: Stages that say nothing about where a delivery is (choices, coordination, unknown types).
_NOT_STAGES = {"decision", "coord", "other"}


def service_status(service: ManagedService, stages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Return one service's state (pure).

    Args:
        service: the folded service.
        stages: run id → ``{"stage", "event", "at"}`` of its newest lifecycle event, for the runs in progress.

    Returns:
        ``name``, ``production_commit``, ``stable_url``, ``state`` (``up``, ``down`` or the reason it is down),
        ``in_progress`` (``{run_id, rev, started, stage, event, at}`` or None), ``queued`` (``[{run_id, rev,
        queued}]``, oldest first) and ``last_outcome`` (``{run_id, rev, status, outcome, closed, error}`` or None).
    """
    running = [d for d in service.deliveries if d["status"] == "running"]
    ended = [d for d in service.deliveries if d["status"] not in ("running", "queued")]
    current = running[-1] if running else None
    return {
        "name": service.name,
        "production_commit": service.production_commit,
        "stable_url": service.stable_url,
        "state": service.state,
        "in_progress": None
        if current is None
        else {**{k: current.get(k) for k in ("run_id", "rev", "started")}, **stages.get(current["run_id"], {})},
        "queued": [
            {k: d.get(k) for k in ("run_id", "rev", "queued")} for d in service.deliveries if d["status"] == "queued"
        ],
        "last_outcome": None
        if not ended
        else {k: ended[-1].get(k) for k in ("run_id", "rev", "status", "outcome", "closed", "error")},
    }


async def _stage(log: EventLog, run_id: str) -> dict[str, Any]:
    newest: dict[str, Any] = {"stage": "request", "event": "flow.started", "at": None}
    for event in await log.all(run=run_id):
        stage = stage_of(event)
        if stage not in _NOT_STAGES:
            newest = {"stage": stage, "event": event.type.removeprefix(EventType.PREFIX), "at": event.time}
    return newest


async def fleet_status(bus: Bus) -> tuple[dict[str, ManagedService], list[dict[str, Any]]]:
    """Return the folded fleet and :func:`service_status` of every managed service, by name."""
    fleet = await load_fleet(bus)
    log = EventLog(bus)
    stages = {
        d["run_id"]: await _stage(log, d["run_id"])
        for service in fleet.values()
        for d in service.deliveries
        if d["status"] == "running"
    }
    return fleet, [service_status(fleet[name], stages) for name in sorted(fleet)]
