"""Contract-net participants: a worker host (group leader) and the worker members it hosts.

A :class:`WorkerHost` is what ``pilotage worker`` runs: one process, one set of bus subscriptions, one heartbeat,
and ``members`` workers (default 1). It is also the **hierarchical grouping** of the scaling design: a host
leads a group of members (e.g. every worker agent of one service), reads each call for proposals once, asks each
eligible member for its bid in-process, and sends **one** ``propose`` carrying the group's best bid by the award
rule (or one ``refuse``). A round with N workers in G groups costs 1 call + G answers + 1 accept + 1 reject event
instead of 1 + N + 1 + 1, and a member's bid never crosses the bus unless it is the group's best.

Topic partitioning: the host subscribes to ``dev.pilotage.cnet.cfp.<capability>`` for its capabilities only
(consumer group ``cnet.host.<host>.<capability>``), plus ``accept`` and ``cancel`` (it ignores those addressed
to other hosts). It never reads other hosts' proposals.

Each member runs one task at a time; accepted tasks queue behind it (``queue_length`` in its next bids).
Execution runs outside the bus handler (the accept is acknowledged at once); the result goes out as ``done``
(JSON result) or ``failure`` (one-line error). A ``cancel`` for a running task cancels it and nothing is sent.
A host publishes ``worker.heartbeat`` every ``heartbeat_s`` and ``worker.stopped`` when it stops cleanly; a host
killed without a word is found by its missing heartbeats (``ContractNetOptions.stale_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pilotage.bus.base import Bus, Subscription
from pilotage.catalogue import checked_event
from pilotage.coordination.messages import Bid, best_bid, cfp_type, coordination_id
from pilotage.errors import PilotageError
from pilotage.events import CloudEvent, EventType

__all__ = ["Capability", "Member", "WorkerHost"]

log = logging.getLogger(__name__)

TaskFunction = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Capability:
    """Something a worker can do.

    Attributes:
        name: capability name used in calls for proposals (``tests``, ``loadtest``, ``echo``).
        run: coroutine function taking the task payload (JSON object) and returning the result (JSON object).
        estimate_s: the worker's estimate of the task's duration in seconds, from the payload.
    """

    name: str
    run: TaskFunction
    estimate_s: Callable[[dict[str, Any]], float]


@dataclass
class Member:
    """One worker of a host: its id, capabilities and queue of accepted tasks."""

    id: str
    capabilities: list[str]
    queue_length: int = 0
    slot: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    done: int = 0


class WorkerHost:
    """A group leader hosting ``members`` workers with the same capabilities (see the module docstring).

    Args:
        bus: the event log (opened by :meth:`start`).
        host_id: unique id of the host (member ids are ``<host_id>/<n>``).
        capabilities: what the members can do, by name.
        members: number of workers hosted.
        heartbeat_s: seconds between two heartbeats.
        group: label of the group (e.g. the service the members serve), reported in heartbeats.
        on_report: called with ``(what, data)`` when a task is accepted, done, failed or cancelled (progress
            output of ``pilotage worker``); ``what`` is ``accepted``, ``done``, ``failure`` or ``cancelled``.
    """

    def __init__(
        self,
        bus: Bus,
        host_id: str,
        capabilities: dict[str, Capability],
        *,
        members: int = 1,
        heartbeat_s: float = 1.0,
        group: str = "",
        on_report: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.bus = bus
        self.on_report = on_report
        self.host_id = host_id
        self.capabilities = capabilities
        self.heartbeat_s = heartbeat_s
        self.group = group
        names = sorted(capabilities)
        self.members = [Member(f"{host_id}/{n}", names) for n in range(max(members, 1))]
        self._by_id = {m.id: m for m in self.members}
        self._subs: list[Subscription] = []
        self._running: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._accepted: set[tuple[str, int]] = set()
        self._beat: asyncio.Task[None] | None = None
        self.source = f"/pilotage/workers/{host_id}"

    def _report(self, what: str, data: dict[str, Any]) -> None:
        if self.on_report is not None:
            self.on_report(what, {k: v for k, v in data.items() if k not in ("payload", "result")})

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Subscribe (capability calls, accept, cancel), then announce the host with a first heartbeat."""
        await self.bus.open()
        for name in sorted(self.capabilities):
            self._subs.append(await self._subscribe(cfp_type(name), self._on_cfp, name))
        self._subs.append(await self._subscribe(EventType.CNET_ACCEPT, self._on_accept, "accept"))
        self._subs.append(await self._subscribe(EventType.CNET_CANCEL, self._on_cancel, "cancel"))
        await self.heartbeat()
        self._beat = asyncio.create_task(self._beats(), name=f"worker-heartbeat-{self.host_id}")

    async def _subscribe(
        self, pattern: str, handler: Callable[[CloudEvent], Awaitable[None]], part: str
    ) -> Subscription:
        return await self.bus.subscribe(
            pattern, handler, group=f"cnet.host.{self.host_id}.{part}", start_at_end_if_new=True, consumer=self.host_id
        )

    async def stop(self, *, announce: bool = True) -> None:
        """Stop consuming, cancel running tasks (their managers re-announce them) and publish ``worker.stopped``."""
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
            self._beat = None
        for sub in self._subs:
            await sub.stop()
        self._subs.clear()
        for task in list(self._running.values()):
            task.cancel()
        for task in list(self._running.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if announce:
            await self.bus.publish(
                self._event(EventType.WORKER_STOPPED, {"host": self.host_id, "sent_at": time.time()})
            )

    def _event(self, type_: str, data: dict[str, Any], event_id: str | None = None) -> CloudEvent:
        """Return the checked event (:func:`pilotage.catalogue.checked_event`), with id ``event_id`` when given."""
        return checked_event(type_, data, source=self.source, id=event_id)

    def heartbeat_data(self) -> dict[str, Any]:
        """Return the heartbeat: host, group, pid, hostname, capabilities, members, queued and running tasks."""
        return {
            "host": self.host_id,
            "group": self.group,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "capabilities": sorted(self.capabilities),
            "members": len(self.members),
            "queued": sum(m.queue_length for m in self.members),
            "running": [{"task_id": t, "round": r} for t, r in sorted(self._running)],
            "done": sum(m.done for m in self.members),
            "sent_at": time.time(),
        }

    async def heartbeat(self) -> None:
        """Publish one ``worker.heartbeat``."""
        await self.bus.publish(self._event(EventType.WORKER_HEARTBEAT, self.heartbeat_data()))

    async def _beats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self.heartbeat()
            except PilotageError as exc:  # a bus hiccup must not stop the heartbeat for good
                log.warning("worker %s: heartbeat failed: %s", self.host_id, exc.one_line())

    # -- participant side of the protocol -----------------------------------------------------------------
    async def _on_cfp(self, event: CloudEvent) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        task_id, round_ = str(data.get("task_id", "")), data.get("round")
        capability = self.capabilities.get(str(data.get("capability", "")))
        if not task_id or not isinstance(round_, int) or capability is None:
            return  # not a call this host can answer (malformed, or not for its capabilities)
        answer = {"task_id": task_id, "round": round_, "host": self.host_id, "group": self.group}
        refusal = ""
        excluded = set(data.get("excluded") or [])
        eligible = [m for m in self.members if m.id not in excluded]
        if time.time() > float(data.get("bid_deadline", 0.0) or 0.0):
            refusal = "bid deadline passed before the call was read"
        elif not eligible:
            refusal = "every member is excluded from this task"
        if refusal:
            await self.bus.publish(
                self._event(EventType.CNET_REFUSE, {**answer, "reason": refusal}, self._answer_id(task_id, round_))
            )
            return
        payload: dict[str, Any] = data["payload"] if isinstance(data.get("payload"), dict) else {}
        estimate = float(capability.estimate_s(payload))
        bids = [Bid.make(m.id, self.host_id, m.queue_length, estimate, m.capabilities).model_dump() for m in eligible]
        best = best_bid(bids)
        await self.bus.publish(
            self._event(
                EventType.CNET_PROPOSE,
                {**answer, "members": len(eligible), "bid": best},
                self._answer_id(task_id, round_),
            )
        )

    def _answer_id(self, task_id: str, round_: int) -> str:
        return coordination_id(task_id, "answer", round_, self.host_id)

    async def _on_accept(self, event: CloudEvent) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        if data.get("host") != self.host_id:
            return
        member = self._by_id.get(str(data.get("worker", "")))
        capability = self.capabilities.get(str(data.get("capability", "")))
        key = (str(data.get("task_id", "")), int(data.get("round", -1)))
        if member is None or capability is None or key in self._accepted:
            return
        self._accepted.add(key)
        member.queue_length += 1
        self._report("accepted", data)
        self._running[key] = asyncio.create_task(self._execute(member, capability, key, data), name=f"task-{key[0]}")

    async def _execute(
        self, member: Member, capability: Capability, key: tuple[str, int], data: dict[str, Any]
    ) -> None:
        task_id, round_ = key
        reply = {"task_id": task_id, "round": round_, "worker": member.id, "host": self.host_id,
                 "decision_id": data.get("decision_id")}  # fmt: skip
        try:
            async with member.slot:
                started = time.monotonic()
                payload: dict[str, Any] = data["payload"] if isinstance(data.get("payload"), dict) else {}
                try:
                    result = await capability.run(payload)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - any task error becomes a FIPA failure message
                    error = exc.one_line() if isinstance(exc, PilotageError) else f"{type(exc).__name__}: {exc}"
                    failure = {**reply, "error": error, "duration_s": round(time.monotonic() - started, 3)}
                    await self.bus.publish(
                        self._event(EventType.CNET_FAILURE, failure, coordination_id(task_id, "failure", round_))
                    )
                    self._report("failure", failure)
                    return
                done = {**reply, "result": result, "duration_s": round(time.monotonic() - started, 3)}
                await self.bus.publish(self._event(EventType.CNET_DONE, done, coordination_id(task_id, "done", round_)))
                member.done += 1
                self._report("done", done)
        finally:
            member.queue_length -= 1
            self._running.pop(key, None)

    async def _on_cancel(self, event: CloudEvent) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        if data.get("host") != self.host_id:
            return
        task = self._running.get((str(data.get("task_id", "")), int(data.get("round", -1))))
        if task is not None:
            log.info("worker %s: task %s cancelled by its manager (%s)", self.host_id, data.get("task_id"),
                     data.get("reason"))  # fmt: skip
            task.cancel()
            self._report("cancelled", data)
