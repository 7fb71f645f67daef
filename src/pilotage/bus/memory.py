"""``memory://``: an in-process bus for unit tests. Not durable; nothing survives the process.

It keeps the whole contract otherwise (consumer groups with leases, ack timeouts, subject affinity,
idempotent publish by event id, replay by offset and time), so agents and flows are tested on the same
semantics as on ``sqlite:///``.

Waiting members are woken, not polled: an appended event wakes only the members whose type pattern matches it,
an ack / nack / commit / seek wakes the members of that group (an ack can unblock the next event of a subject),
and a member with nothing to take sleeps until the earliest lease of its group expires (redelivery), or until its
fetch's ``wait_s`` ends. Everything that can make an event claimable happens in this process, so nothing is
missed; an idle member costs no CPU. (Polling every ``poll_interval_s`` made 3,000 idle consumers cost 60,000
wake-ups a second, and every event woke every consumer: see ``benchmarks/bench_coordination.py``.)
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import math
import time as _time
from collections.abc import Iterator
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
        # waiting members: type pattern -> group -> futures (woken by a matching append or a group change)
        self._waiters: dict[str, dict[str, set[asyncio.Future[None]]]] = {}
        self._type_hits: dict[str, list[str]] = {}
        # offsets per event type, and the types each pattern matches: reads and claims visit only matching events
        self._by_type: dict[str, list[int]] = {}
        self._pattern_types: dict[str, list[str]] = {}

    #: A subscription's fetch waits this long at most (wake-ups are exact; this only bounds the loop).
    FETCH_WAIT_S = 60.0

    def _fetch_wait_s(self) -> float:
        return self.FETCH_WAIT_S

    async def _append(self, event: CloudEvent) -> int:
        existing = self._ids.get(event.id)
        if existing is not None:
            return existing
        self._log.append(event)
        self._times.append(max(_time.time(), self._times[-1] if self._times else 0.0))
        self._ids[event.id] = len(self._log)
        if event.type not in self._by_type:
            self._by_type[event.type] = []
            self._pattern_types.clear()
        self._by_type[event.type].append(len(self._log))
        self._wake_type(event.type)
        return len(self._log)

    def _wake_type(self, event_type: str) -> None:
        """Wake the members whose pattern matches ``event_type`` (patterns checked once per distinct type)."""
        hits = self._type_hits.get(event_type)
        if hits is None:
            hits = [p for p in self._waiters if matches(p, event_type)]
            if len(self._type_hits) < 10_000:
                self._type_hits[event_type] = hits
        for pattern in hits:
            for futures in self._waiters.get(pattern, {}).values():
                for future in futures:
                    if not future.done():
                        future.set_result(None)

    def _wake_group(self, group: str) -> None:
        """Wake the waiting members of ``group`` (its leases or position changed)."""
        pattern = self._patterns.get(group)
        for future in self._waiters.get(pattern, {}).get(group, set()) if pattern is not None else ():
            if not future.done():
                future.set_result(None)

    def _matching(self, pattern: str, after: int) -> Iterator[int]:
        """Yield the offsets > ``after`` of events whose type matches ``pattern``, in log order."""
        if pattern == "*":
            yield from range(after + 1, len(self._log) + 1)
            return
        types = self._pattern_types.get(pattern)
        if types is None:
            types = self._pattern_types[pattern] = [t for t in self._by_type if matches(pattern, t)]
        lists = [self._by_type[t] for t in types]
        yield from heapq.merge(*(offsets[bisect.bisect_right(offsets, after) :] for offsets in lists))

    async def read(
        self, from_offset: int = 1, limit: int = 1000, pattern: str = "*", *, runid: str | None = None
    ) -> list[Record]:
        """Return up to ``limit`` records at or after ``from_offset`` whose type matches ``pattern``.

        ``runid`` (when not None) keeps the events of that run only.
        """
        out: list[Record] = []
        for offset in self._matching(pattern, max(from_offset, 1) - 1):
            event = self._log[offset - 1]
            if runid is not None and event.runid != runid:
                continue
            out.append(Record(offset, event))
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
        self._wake_group(group)

    async def seek(self, group: str, offset: int) -> None:
        """Make ``offset`` the group's next position; drop its leases."""
        self._offsets[group] = max(offset - 1, 0)
        self._leases[group] = {}
        self._wake_group(group)

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
            await self._wait(group, pattern, len(self._log), min(remaining, self._next_expiry_s(group)))

    def _next_expiry_s(self, group: str) -> float:
        """Return seconds until the group's earliest live, unacknowledged lease expires (inf when none)."""
        now = _time.time()
        pending = [lease.expires for lease in self._leases.get(group, {}).values() if not lease.acked]
        future = [expires - now for expires in pending if expires > now]
        return min(future) + 0.001 if future else math.inf

    def _claim(self, group: str, pattern: str, max_events: int, ack_timeout_s: float, consumer: str) -> list[Delivery]:
        now = _time.time()
        self._patterns[group] = pattern
        committed = self._offsets.setdefault(group, 0)
        leases = self._leases.setdefault(group, {})
        planner = ClaimPlanner(leases, now, max_events)
        for offset in self._matching(pattern, committed):
            planner.offer(offset, self._log[offset - 1].subject)
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
            self._wake_group(group)

    def _advance(self, group: str) -> None:
        """Move the group's committed offset over the acknowledged events that directly follow it."""
        pattern = self._patterns.get(group, "*")
        leases = self._leases.get(group, {})
        committed = self._offsets.get(group, 0)
        new = len(self._log)
        for offset in self._matching(pattern, committed):
            lease = leases.get(offset)
            if not (lease is not None and lease.acked):
                new = offset - 1
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
        for group in {d.group for d in deliveries}:
            self._wake_group(group)

    async def extend(self, *deliveries: Delivery) -> None:
        """Renew leases still held by the delivering member for a full ack timeout from now."""
        now = _time.time()
        for delivery in deliveries:
            lease = self._lease(delivery)
            if lease is not None and not lease.acked and lease.consumer == delivery.token:
                lease.expires = max(lease.expires, now + lease.timeout_s)

    async def _wait(self, group: str, pattern: str, known_len: int, timeout_s: float) -> None:
        """Sleep until a matching event is appended, the group changes, or ``timeout_s`` passes."""
        if len(self._log) > known_len:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if pattern not in self._waiters:
            self._type_hits.clear()  # a new pattern may match types already cached
        by_group = self._waiters.setdefault(pattern, {})
        by_group.setdefault(group, set()).add(future)
        try:
            await asyncio.wait_for(future, None if math.isinf(timeout_s) else timeout_s)
        except TimeoutError:
            return
        finally:
            futures = by_group.get(group)
            if futures is not None:
                futures.discard(future)
                if not futures:
                    del by_group[group]
            if not by_group:
                self._waiters.pop(pattern, None)
