"""``memory://``: an in-process bus for unit tests. Not durable; nothing survives the process.

It keeps the whole contract otherwise (consumer groups with leases, ack timeouts, subject affinity,
idempotent publish by event id, replay by offset and time), so agents and flows are tested on the same
semantics as on ``sqlite:///``.
"""

from __future__ import annotations

import asyncio
import bisect
import time as _time
from datetime import UTC, datetime

from pilotage.bus.base import DEFAULT_ACK_TIMEOUT_S, Bus, Delivery, Record
from pilotage.bus.leases import ClaimPlanner, Lease
from pilotage.events import CloudEvent, matches

__all__ = ["MemoryBus"]


class MemoryBus(Bus):
    """A list of events, a dict of group offsets and leases, and an asyncio wake-up for waiting members."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._log: list[CloudEvent] = []
        self._times: list[float] = []
        self._ids: dict[str, int] = {}
        self._offsets: dict[str, int] = {}
        self._leases: dict[str, dict[int, Lease]] = {}
        self._patterns: dict[str, str] = {}
        self._changed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _append(self, event: CloudEvent) -> int:
        existing = self._ids.get(event.id)
        if existing is not None:
            return existing
        self._log.append(event)
        self._times.append(max(_time.time(), self._times[-1] if self._times else 0.0))
        self._ids[event.id] = len(self._log)
        await self._notify()
        return len(self._log)

    async def _notify(self) -> None:
        cond = self._condition()
        async with cond:
            cond.notify_all()

    async def read(self, from_offset: int = 1, limit: int = 1000, pattern: str = "*") -> list[Record]:
        """Return up to ``limit`` records at or after ``from_offset`` whose type matches ``pattern``."""
        out: list[Record] = []
        for index in range(max(from_offset, 1) - 1, len(self._log)):
            event = self._log[index]
            if matches(pattern, event.type):
                out.append(Record(index + 1, event))
                if len(out) >= limit:
                    break
        return out

    async def last_offset(self) -> int:
        """Return the newest offset (0 for an empty log)."""
        return len(self._log)

    async def offset_at(self, time: datetime) -> int:
        """Return the first offset appended at or after ``time`` (naive = UTC); last offset + 1 if none."""
        stamp = (time if time.tzinfo else time.replace(tzinfo=UTC)).timestamp()
        return bisect.bisect_left(self._times, stamp) + 1

    async def committed(self, group: str) -> int:
        """Return the group's acknowledged prefix (0 if none)."""
        return self._offsets.get(group, 0)

    async def commit(self, group: str, offset: int) -> None:
        """Acknowledge every event up to ``offset`` for ``group`` (never moves backwards)."""
        self._offsets[group] = max(offset, self._offsets.get(group, 0))
        leases = self._leases.setdefault(group, {})
        for done in [o for o in leases if o <= self._offsets[group]]:
            del leases[done]

    async def seek(self, group: str, offset: int) -> None:
        """Make ``offset`` the group's next position; drop its leases."""
        self._offsets[group] = max(offset - 1, 0)
        self._leases[group] = {}

    async def group_exists(self, group: str) -> bool:
        """Return True when the group has a position."""
        return group in self._offsets

    async def fetch(
        self,
        group: str,
        pattern: str = "*",
        *,
        max_events: int = 100,
        ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S,
        consumer: str = "",
        wait_s: float = 0.0,
    ) -> list[Delivery]:
        """Lease up to ``max_events`` matching events to ``consumer`` (see :meth:`Bus.fetch`)."""
        deadline = _time.monotonic() + wait_s
        while True:
            out = self._claim(group, pattern, max_events, ack_timeout_s, consumer)
            remaining = deadline - _time.monotonic()
            if out or remaining <= 0:
                return out
            await self._wait(len(self._log), min(remaining, self.poll_interval_s))

    def _claim(self, group: str, pattern: str, max_events: int, ack_timeout_s: float, consumer: str) -> list[Delivery]:
        now = _time.time()
        self._patterns[group] = pattern
        committed = self._offsets.setdefault(group, 0)
        leases = self._leases.setdefault(group, {})
        planner = ClaimPlanner(leases, now, max_events)
        for index in range(committed, len(self._log)):
            event = self._log[index]
            if matches(pattern, event.type):
                planner.offer(index + 1, event.subject)
                if planner.full:
                    break
        self._offsets[group] = planner.new_committed(committed, len(self._log))
        for done in [o for o in leases if o <= self._offsets[group]]:
            del leases[done]
        out: list[Delivery] = []
        for offset in planner.claimed:
            previous = leases.get(offset)
            deliveries = (previous.deliveries if previous else 0) + 1
            subject = self._log[offset - 1].subject
            lease = Lease(consumer, now + ack_timeout_s, deliveries, subject=subject, timeout_s=ack_timeout_s)
            leases[offset] = lease
            out.append(Delivery(offset, self._log[offset - 1], group, lease.deliveries, token=consumer))
        return out

    def _lease(self, delivery: Delivery) -> Lease | None:
        return self._leases.get(delivery.group, {}).get(delivery.offset)

    async def ack(self, *deliveries: Delivery) -> None:
        """Mark ``deliveries`` done (also when their lease expired meanwhile: the work was done)."""
        for delivery in deliveries:
            if delivery.offset <= self._offsets.get(delivery.group, 0):
                continue
            lease = self._lease(delivery)
            if lease is None:
                lease = Lease(str(delivery.token), 0.0, delivery.deliveries, subject=delivery.event.subject)
                self._leases.setdefault(delivery.group, {})[delivery.offset] = lease
            lease.acked = True
        for group in {d.group for d in deliveries}:
            self._advance(group)

    def _advance(self, group: str) -> None:
        """Move the group's committed offset over the acknowledged events that directly follow it."""
        pattern = self._patterns.get(group, "*")
        leases = self._leases.get(group, {})
        committed = self._offsets.get(group, 0)
        new = len(self._log)
        for index in range(committed, len(self._log)):
            lease = leases.get(index + 1)
            if matches(pattern, self._log[index].type) and not (lease is not None and lease.acked):
                new = index
                break
        if new > committed:
            self._offsets[group] = new
            for done in [o for o in leases if o <= new]:
                del leases[done]

    async def nack(self, *deliveries: Delivery) -> None:
        """Release ``deliveries`` for immediate redelivery."""
        for delivery in deliveries:
            lease = self._lease(delivery)
            if lease is not None and not lease.acked and lease.consumer == delivery.token:
                lease.expires = 0.0
        await self._notify()

    async def extend(self, *deliveries: Delivery) -> None:
        """Renew leases still held by the delivering member for a full ack timeout from now."""
        now = _time.time()
        for delivery in deliveries:
            lease = self._lease(delivery)
            if lease is not None and not lease.acked and lease.consumer == delivery.token:
                lease.expires = max(lease.expires, now + lease.timeout_s)

    async def _wait(self, known_len: int, timeout_s: float) -> None:
        if len(self._log) > known_len:
            return
        cond = self._condition()
        try:
            async with asyncio.timeout(timeout_s), cond:
                await cond.wait_for(lambda: len(self._log) > known_len)
        except TimeoutError:
            return
