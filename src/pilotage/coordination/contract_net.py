"""Contract-net task allocation over any bus backend: the manager's state machine and the worker directory.

A manager with a task (a capability name and a JSON payload) runs rounds of the FIPA Contract Net Interaction
Protocol (:mod:`pilotage.coordination.messages` maps the performatives to event types):

1. **announce**: publish a call for proposals (``cfp``) with a bid deadline (now + ``bid_window_s``) and the
   execution timeout; the task state goes NEW → ANNOUNCED;
2. **collect**: read ``propose`` / ``refuse`` events of the round from the log until the deadline, or earlier
   once every live host with the capability answered (hosts announce themselves with ``worker.heartbeat``);
3. **award**: record the ``cnet.award`` decision (:func:`~pilotage.coordination.messages.award_reasoning` on the
   bids it saw), publish ``accept`` to the winner and one batched ``reject`` to the others → AWARDED; with no
   eligible bid → UNALLOCATED (the caller runs the task in-process);
4. **execute**: wait for the winner's ``done`` (→ DONE, the result is returned) or ``failure``, until the
   execution deadline. A failure, a timeout or a lost winner (its host stopped, or no heartbeat for
   ``stale_s``) excludes that worker from the task: the manager publishes ``cancel`` to it (timeout, lost) and
   re-announces (→ ANNOUNCED, round + 1) until ``max_rounds`` calls were made (→ FAILED).

Exactly once: the manager accepts only the ``done`` of the worker it awarded in the current round; a ``done``
of a cancelled round is ignored (and the cancel makes a live worker stop). Bids read after the round closed are
*late*: not considered, and rejected with reason ``late`` when the task ends.

Crash safety: every message the manager publishes has an id derived from the task id and round
(:func:`~pilotage.coordination.messages.coordination_id`), the deadlines are read back from the stored events,
and the award decision already recorded is the one acted on; so a manager that runs again on the same task id
(a redelivered event) joins the task where it stood instead of starting another.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pilotage.bus.base import Bus
from pilotage.bus.query import EventLog, data_matches
from pilotage.catalogue import checked_event
from pilotage.coordination.messages import (
    award_reasoning,
    cfp_type,
    coordination_id,
    parse_bid,
    record_decision,
)
from pilotage.events import CloudEvent, EventType

__all__ = [
    "ContractNetManager",
    "ContractNetOptions",
    "IllegalTransition",
    "TaskOutcome",
    "TaskState",
    "WorkerDirectory",
]

log = logging.getLogger(__name__)

MANAGER_SOURCE = "/pilotage/coordination/contract-net"


@dataclass(frozen=True)
class ContractNetOptions:
    """Timing of the protocol (``Settings.cnet_*``; defaults and their reasons in ``pilotage.settings``).

    Attributes:
        bid_window_s: seconds from the call for proposals to its bid deadline.
        stale_s: a host whose newest heartbeat is older is not live.
        heartbeat_s: seconds between heartbeats of a worker host.
        max_rounds: calls for proposals per task before giving up.
        poll_s: seconds between two reads of the log while the manager waits.
    """

    bid_window_s: float = 0.5
    stale_s: float = 3.0
    heartbeat_s: float = 1.0
    max_rounds: int = 3
    poll_s: float = 0.02

    @classmethod
    def from_settings(cls, settings: Any) -> ContractNetOptions:
        """Return the options of :class:`pilotage.settings.Settings` ``settings``."""
        return cls(
            bid_window_s=settings.cnet_bid_window_s,
            stale_s=settings.cnet_worker_stale_s,
            heartbeat_s=settings.cnet_heartbeat_s,
            max_rounds=settings.cnet_max_rounds,
        )


class TaskState(StrEnum):
    """States of a task on the manager's side."""

    NEW = "new"
    ANNOUNCED = "announced"
    AWARDED = "awarded"
    DONE = "done"
    UNALLOCATED = "unallocated"
    FAILED = "failed"


#: Allowed transitions; anything else is a bug (:class:`IllegalTransition`).
TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.NEW: frozenset({TaskState.ANNOUNCED}),
    TaskState.ANNOUNCED: frozenset({TaskState.AWARDED, TaskState.UNALLOCATED}),
    TaskState.AWARDED: frozenset({TaskState.DONE, TaskState.ANNOUNCED, TaskState.FAILED}),
    TaskState.DONE: frozenset(),
    TaskState.UNALLOCATED: frozenset(),
    TaskState.FAILED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A task was moved along a transition :data:`TRANSITIONS` does not allow (a programming error)."""


@dataclass
class TaskOutcome:
    """A task as the manager tracks it, and how it ended.

    Attributes:
        task_id: id shared by every message of the task.
        capability: what the task needs.
        state: current :class:`TaskState`.
        round: current round (0-based; -1 before the first call).
        worker: the worker that did it (DONE), else the last one awarded, else None.
        result: the ``done`` result (JSON object) when DONE.
        reason: why the task is UNALLOCATED or FAILED.
        decision_ids: the ``cnet.award`` decisions, one per round.
        excluded: workers that failed, timed out or were lost on this task.
        history: ``(state, round, note)`` for every transition.
    """

    task_id: str
    capability: str
    state: TaskState = TaskState.NEW
    round: int = -1
    worker: str | None = None
    result: dict[str, Any] | None = None
    reason: str = ""
    decision_ids: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    history: list[tuple[str, int, str]] = field(default_factory=list)

    def advance(self, new: TaskState, note: str = "") -> None:
        """Move to ``new``; raise :class:`IllegalTransition` when the protocol does not allow it."""
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"task {self.task_id}: {self.state} -> {new} is not a contract-net transition")
        self.state = new
        self.history.append((new.value, self.round, note))


class WorkerDirectory:
    """Which worker hosts are live, from their ``worker.heartbeat`` and ``worker.stopped`` events.

    It reads the log incrementally (the first read starts at the log time ``now - stale_s``). Host clocks are
    compared with this process's clock: hosts on other machines need clocks synchronised well within ``stale_s``.

    Args:
        bus: the event log.
        stale_s: a host whose newest heartbeat is older than this is not live.
    """

    def __init__(self, bus: Bus, stale_s: float = 3.0) -> None:
        self.bus = bus
        self.stale_s = stale_s
        self._next: int | None = None
        self._beats: dict[str, tuple[float, dict[str, Any]]] = {}
        self._stopped: dict[str, float] = {}

    async def refresh(self) -> None:
        """Read the heartbeats and stops logged since the last call."""
        from datetime import UTC, datetime

        if self._next is None:
            self._next = await self.bus.offset_at(datetime.fromtimestamp(time.time() - self.stale_s, UTC))
        records = await EventLog(self.bus).records(EventType.PREFIX + "worker.*", after=self._next - 1)
        for record in records:
            data = record.event.data if isinstance(record.event.data, dict) else {}
            host = str(data.get("host", ""))
            sent = float(data.get("sent_at", 0.0) or 0.0)
            if record.event.type == EventType.WORKER_HEARTBEAT and host:
                if sent >= self._beats.get(host, (0.0, {}))[0]:
                    self._beats[host] = (sent, data)
            elif record.event.type == EventType.WORKER_STOPPED and host:
                self._stopped[host] = max(sent, self._stopped.get(host, 0.0))
        if records:
            self._next = records[-1].offset + 1

    def is_live(self, host: str, now: float | None = None) -> bool:
        """Return True when ``host`` sent a heartbeat within ``stale_s`` and did not stop after it."""
        now = time.time() if now is None else now
        sent, _ = self._beats.get(host, (0.0, {}))
        return sent >= now - self.stale_s and self._stopped.get(host, 0.0) < sent

    async def live(self, capability: str | None = None) -> dict[str, dict[str, Any]]:
        """Return ``{host: newest heartbeat data}`` of the live hosts (with ``capability`` when given)."""
        await self.refresh()
        now = time.time()
        return {
            host: data
            for host, (_, data) in self._beats.items()
            if self.is_live(host, now) and (capability is None or capability in (data.get("capabilities") or []))
        }


@dataclass
class _Answers:
    """Proposals and refusals of one round, read incrementally from the log."""

    bids: list[dict[str, Any]] = field(default_factory=list)
    hosts: set[str] = field(default_factory=set)
    invalid: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)
    workers: set[str] = field(default_factory=set)

    def take(self, offset: int, event: CloudEvent) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        host = str(data.get("host", ""))
        if event.type == EventType.CNET_REFUSE:
            self.hosts.add(host)
            self.refusals.append({"host": host, "reason": str(data.get("reason", ""))})
            return
        bid, problem = parse_bid(data.get("bid"))
        if bid is None:
            self.invalid.append({"event_id": event.id, "host": host, "reason": problem})
            return
        self.hosts.add(bid.host)
        if bid.worker in self.workers:
            self.duplicates.append({"event_id": event.id, "worker": bid.worker, "host": bid.host})
            return
        self.workers.add(bid.worker)
        self.bids.append({**bid.model_dump(), "offset": offset})


class ContractNetManager:
    """Runs contract-net rounds for tasks (see the module docstring for the protocol and its guarantees).

    Args:
        bus: the event log.
        options: timing (:class:`ContractNetOptions`).
        directory: the worker directory to use (default: a new one on ``bus``).
        source: CloudEvents source of the manager's messages.
        subject: subject of its events (the service), or None.
        run_id: run of its events ("" outside a lifecycle run).
        cause_event_id: the event that made the task necessary (recorded in the award decisions).
    """

    def __init__(
        self,
        bus: Bus,
        *,
        options: ContractNetOptions | None = None,
        directory: WorkerDirectory | None = None,
        source: str = MANAGER_SOURCE,
        subject: str | None = None,
        run_id: str = "",
        cause_event_id: str = "",
    ) -> None:
        self.bus = bus
        self.options = options or ContractNetOptions()
        self.directory = directory or WorkerDirectory(bus, self.options.stale_s)
        self.source = source
        self.subject = subject
        self.run_id = run_id
        self.cause_event_id = cause_event_id

    def _event(self, event_id: str, type_: str, data: dict[str, Any]) -> CloudEvent:
        """Return the checked event (:func:`pilotage.catalogue.checked_event`) with id ``event_id``."""
        return checked_event(type_, data, source=self.source, subject=self.subject, runid=self.run_id, id=event_id)

    async def _publish_stored(self, event: CloudEvent) -> tuple[int, dict[str, Any]]:
        """Publish ``event``; return its offset and the data the log holds (the first copy when run again)."""
        offset = await self.bus.publish(event)
        stored = await EventLog(self.bus).at(offset)
        if stored is not None and stored.id == event.id and isinstance(stored.data, dict):
            return offset, stored.data
        return offset, dict(event.data)

    async def run(
        self, task_id: str, capability: str, payload: dict[str, Any], *, exec_timeout_s: float = 600.0
    ) -> TaskOutcome:
        """Allocate the task and wait for it to be done; return how it ended (DONE, UNALLOCATED or FAILED).

        Args:
            task_id: id of the task (deterministic when the caller may run again on the same event).
            capability: the capability workers need (``tests``, ``loadtest``, ``echo`` …).
            payload: JSON object handed to the winner.
            exec_timeout_s: seconds the winner has from the award to ``done``.
        """
        task = TaskOutcome(task_id=task_id, capability=capability)
        reason: dict[str, Any] | None = None
        while True:
            task.round += 1
            task.advance(TaskState.ANNOUNCED, "re-announced" if reason else "announced")
            offset, cfp = await self._announce(task, payload, exec_timeout_s, reason)
            answers = await self._collect(task, offset, float(cfp["bid_deadline"]))
            inputs = {
                "task_id": task_id,
                "round": task.round,
                "capability": capability,
                "bids": answers.bids,
                "excluded": sorted(task.excluded),
                "invalid": answers.invalid,
                "duplicates": answers.duplicates,
                "refusals": answers.refusals,
                "late": [],
            }
            decision = await record_decision(
                self.bus,
                event_id=coordination_id(task_id, "award", task.round),
                kind="cnet.award",
                inputs=inputs,
                reasoning=award_reasoning(inputs),
                source=self.source,
                cause_event_id=self.cause_event_id,
                run_id=self.run_id,
                subject=self.subject,
            )
            task.decision_ids.append(decision.id)
            if decision.action != "award":
                task.advance(TaskState.UNALLOCATED, decision.rationale)
                task.reason = decision.rationale
                return task
            winner, host = str(decision.score["winner"]), str(decision.score["host"])
            task.worker = winner
            accept_offset = await self._award(task, decision.id, winner, host, payload, exec_timeout_s, decision.inputs)
            task.advance(TaskState.AWARDED, f"awarded to {winner}")
            ended, reason = await self._await_result(task, winner, host, accept_offset)
            await self._reject_late(task, offset, decision.inputs)
            if ended:
                return task
            task.excluded.append(winner)
            if task.round + 1 >= self.options.max_rounds:
                task.advance(TaskState.FAILED, str(reason))
                task.reason = f"no worker completed the task in {self.options.max_rounds} round(s); last: {reason}"
                return task

    async def _announce(
        self, task: TaskOutcome, payload: dict[str, Any], exec_timeout_s: float, reason: dict[str, Any] | None
    ) -> tuple[int, dict[str, Any]]:
        data = {
            "task_id": task.task_id,
            "round": task.round,
            "capability": task.capability,
            "payload": payload,
            "bid_deadline": round(time.time() + self.options.bid_window_s, 6),
            "exec_timeout_s": exec_timeout_s,
            "excluded": sorted(task.excluded),
            "reannounced_because": reason,
        }
        event = self._event(coordination_id(task.task_id, "cfp", task.round), cfp_type(task.capability), data)
        return await self._publish_stored(event)

    async def _collect(self, task: TaskOutcome, after: int, deadline: float) -> _Answers:
        """Read the round's answers until ``deadline`` or until every live capable host answered."""
        answers = _Answers()
        positions = {EventType.CNET_PROPOSE: after, EventType.CNET_REFUSE: after}
        log = EventLog(self.bus)
        while True:
            for type_, position in positions.items():
                for record in await log.records(type_, after=position):
                    positions[type_] = record.offset
                    if data_matches(record.event, {"task_id": task.task_id, "round": task.round}):
                        answers.take(record.offset, record.event)
            now = time.time()
            if now >= deadline:
                return answers
            expected = set(await self.directory.live(task.capability))
            if expected and expected <= answers.hosts:
                return answers
            await asyncio.sleep(min(self.options.poll_s, max(deadline - now, 0.0)))

    async def _award(
        self,
        task: TaskOutcome,
        decision_id: str,
        winner: str,
        host: str,
        payload: dict[str, Any],
        exec_timeout_s: float,
        inputs: dict[str, Any],
    ) -> int:
        accept = {
            "task_id": task.task_id,
            "round": task.round,
            "capability": task.capability,
            "worker": winner,
            "host": host,
            "decision_id": decision_id,
            "payload": payload,
            "exec_deadline": round(time.time() + exec_timeout_s, 6),
        }
        offset, _ = await self._publish_stored(
            self._event(coordination_id(task.task_id, "accept", task.round), EventType.CNET_ACCEPT, accept)
        )
        rejected = [
            {"worker": b["worker"], "host": b["host"], "reason": "outbid"}
            for b in inputs.get("bids") or []
            if b["worker"] != winner
        ]
        rejected += [
            {"worker": None, "host": b.get("host"), "reason": "malformed"} for b in inputs.get("invalid") or []
        ]
        rejected += [{"worker": b["worker"], "host": b["host"], "reason": "duplicate"} for b in inputs["duplicates"]]
        if rejected:
            reject = {"task_id": task.task_id, "round": task.round, "decision_id": decision_id, "rejected": rejected}
            await self.bus.publish(
                self._event(coordination_id(task.task_id, "reject", task.round), EventType.CNET_REJECT, reject)
            )
        return offset

    async def _await_result(
        self, task: TaskOutcome, winner: str, host: str, accept_offset: int
    ) -> tuple[bool, dict[str, Any] | None]:
        """Wait for the winner's done/failure; return (True, None) when DONE, else (False, why it failed)."""
        log = EventLog(self.bus)
        stored = await log.at(accept_offset)
        deadline = float(stored.data["exec_deadline"]) if stored is not None else time.time()
        position = accept_offset
        next_liveness = 0.0
        mine = {"task_id": task.task_id, "round": task.round, "worker": winner}
        while True:
            for record in await log.records(EventType.PREFIX + "cnet.*", after=position):
                position = record.offset
                data = record.event.data if isinstance(record.event.data, dict) else {}
                if not data_matches(record.event, mine):
                    continue
                if record.event.type == EventType.CNET_DONE:
                    task.result = data.get("result") if isinstance(data.get("result"), dict) else {}
                    task.advance(TaskState.DONE, f"done by {winner}")
                    return True, None
                if record.event.type == EventType.CNET_FAILURE:
                    return False, {"worker": winner, "reason": "failure", "error": str(data.get("error", ""))}
            now = time.time()
            why = None
            if now >= deadline:
                why = "timeout"
            elif now >= next_liveness:
                next_liveness = now + self.options.heartbeat_s
                await self.directory.refresh()
                if not self.directory.is_live(host, now):
                    why = "lost"
            if why is not None:
                cancel = {"task_id": task.task_id, "round": task.round, "worker": winner, "host": host, "reason": why}
                await self.bus.publish(
                    self._event(coordination_id(task.task_id, "cancel", task.round), EventType.CNET_CANCEL, cancel)
                )
                return False, {"worker": winner, "reason": why, "error": ""}
            await asyncio.sleep(self.options.poll_s)

    async def _reject_late(self, task: TaskOutcome, cfp_offset: int, inputs: dict[str, Any]) -> None:
        """Reject (reason ``late``) the round's proposals that reached the log after the round closed."""
        considered = {b["worker"] for b in inputs.get("bids") or []} | {d["worker"] for d in inputs["duplicates"]}
        invalid = {i["event_id"] for i in inputs.get("invalid") or []} | {d["event_id"] for d in inputs["duplicates"]}
        late: list[dict[str, Any]] = []
        proposals = EventLog(self.bus).all(
            EventType.CNET_PROPOSE, after=cfp_offset, task_id=task.task_id, round=task.round
        )
        for event in await proposals:
            data = event.data
            if event.id in invalid:
                continue
            bid: dict[str, Any] = data["bid"] if isinstance(data.get("bid"), dict) else {}
            if bid.get("worker") not in considered:
                late.append({"worker": bid.get("worker"), "host": data.get("host"), "reason": "late"})
        if late:
            reject = {
                "task_id": task.task_id,
                "round": task.round,
                "decision_id": task.decision_ids[-1],
                "rejected": late,
            }
            await self.bus.publish(
                self._event(coordination_id(task.task_id, "late", task.round), EventType.CNET_REJECT, reject)
            )
