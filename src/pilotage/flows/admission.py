"""Admission of runs into ``pilotage serve``: many deliveries at once, one per service (issue #19, item 5).

A run handed to the control plane (``pilotage deliver`` / ``run --submit`` while ``pilotage serve`` serves the
folder) is first *queued*: the client publishes ``flow.queued`` with the run's :class:`~pilotage.agent.RunSpec`.
The :class:`Admission` of the control plane starts it — publishes ``flow.started`` with the same data, which the
agents act on — when

* fewer than ``Settings.max_concurrent_deliveries`` runs are *active* (started, not closed), and
* no active run has the same service (two deliveries of one service are never in progress at once: they would
  contend for its stable route and its production commit).

Queued runs are admitted oldest first; a run whose service is busy is skipped, so a later run of another service
may start before it (no head-of-line blocking). :func:`admit` is the pure rule; :class:`RunQueue` is the state
folded from the ``flow.*`` events of the log, so nothing is kept that a restart cannot recompute.

**Exactly once.** ``flow.started`` of an admitted run has a deterministic id (:func:`started_id`): a control
plane that crashed after publishing it and starts again folds it from the log and does not admit the run twice,
and a publish repeated after a crash is not stored twice (the bus is idempotent by id). A queued run is never
dropped: it stays queued in the log until admitted, across restarts.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from pilotage.bus.base import Bus
from pilotage.bus.query import EventLog
from pilotage.catalogue import checked_event
from pilotage.events import CloudEvent, EventType

__all__ = ["ADMISSION_TYPES", "Admission", "QueuedRun", "RunQueue", "admit", "started_id"]

#: Namespace of the deterministic ``flow.started`` ids of admitted runs.
STARTED_NAMESPACE = uuid.UUID("6f0c54a2-9a1e-4d77-b3c5-1e2f8d9a0b41")
#: Events that end a run (and free its place).
_CLOSED = (EventType.FLOW_COMPLETED, EventType.FLOW_FAILED)
#: Events after which the admission checks again: a run queued, a run closed.
ADMISSION_TYPES = (EventType.FLOW_QUEUED, *_CLOSED)


def started_id(run_id: str) -> str:
    """Return the id of the one ``flow.started`` the admission publishes for ``run_id``."""
    return str(uuid.uuid5(STARTED_NAMESPACE, f"{run_id}/started"))


@dataclass(frozen=True)
class QueuedRun:
    """A run waiting for admission.

    Attributes:
        run_id: the run.
        service: its service (the ``subject`` of its events).
        event: the ``flow.queued`` event (its data is the run's RunSpec).
    """

    run_id: str
    service: str
    event: CloudEvent


def admit(queued: list[QueuedRun], active: dict[str, str], limit: int) -> list[QueuedRun]:
    """Return the queued runs to start now, oldest first (pure).

    Args:
        queued: runs waiting, in queue (log) order.
        active: run id → service of the runs in progress.
        limit: most runs in progress at once (``max_concurrent_deliveries``, ≥ 1).

    A run is admitted while fewer than ``limit`` runs are active and no active or already admitted run has its
    service; a run whose service is busy waits without holding back the runs behind it.
    """
    busy = set(active.values())
    free = max(0, limit - len(active))
    chosen: list[QueuedRun] = []
    for run in queued:
        if len(chosen) >= free:
            break
        if run.service in busy:
            continue
        chosen.append(run)
        busy.add(run.service)
    return chosen


@dataclass
class RunQueue:
    """The queue folded from ``flow.*`` events: queued runs (in order), active runs, closed runs.

    Attributes:
        queued: run id → the queued run, in queue order (insertion order).
        active: run id → service of the runs started and not closed.
        closed: ids of the runs closed.
        offset: the newest log offset folded.
    """

    queued: dict[str, QueuedRun] = field(default_factory=dict)
    active: dict[str, str] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)
    offset: int = 0

    def take(self, event: CloudEvent) -> None:
        """Fold one ``flow.*`` event (any order of redelivery is harmless: the first fact of a run wins)."""
        run_id = event.runid
        if not run_id or run_id in self.closed:
            return
        if event.type == EventType.FLOW_QUEUED and run_id not in self.active:
            self.queued.setdefault(run_id, QueuedRun(run_id, str(event.subject or ""), event))
        elif event.type == EventType.FLOW_STARTED:
            self.queued.pop(run_id, None)
            self.active[run_id] = str(event.subject or "")
        elif event.type in _CLOSED:
            self.queued.pop(run_id, None)
            self.active.pop(run_id, None)
            self.closed.add(run_id)

    async def refresh(self, bus: Bus) -> RunQueue:
        """Fold the ``flow.*`` events logged since the last call; return self."""
        for record in await EventLog(bus).records(EventType.PREFIX + "flow.*", after=self.offset):
            self.take(record.event)
            self.offset = record.offset
        return self


class Admission:
    """Starts queued runs of a control plane within its concurrency limit (see the module docstring).

    The control plane's :class:`~pilotage.flows.supervisor.FlowSupervisor` calls :meth:`check` when a run is
    queued or closed, and every second.

    Args:
        bus: the event log.
        limit: most runs in progress at once (``Settings.max_concurrent_deliveries``).
    """

    def __init__(self, bus: Bus, *, limit: int) -> None:
        self.bus = bus
        self.limit = max(1, limit)
        self.queue = RunQueue()
        self._lock = asyncio.Lock()

    async def check(self) -> list[str]:
        """Fold the log, publish ``flow.started`` for every run :func:`admit` chooses; return their ids."""
        async with self._lock:
            await self.queue.refresh(self.bus)
            chosen = admit(list(self.queue.queued.values()), self.queue.active, self.limit)
            for run in chosen:
                started = checked_event(
                    EventType.FLOW_STARTED,
                    run.event.data,
                    source=run.event.source,
                    subject=run.service,
                    runid=run.run_id,
                    id=started_id(run.run_id),
                )
                await self.bus.publish(started)
                self.queue.take(started)  # counted at once: the next check must not admit past the limit
            return [run.run_id for run in chosen]
