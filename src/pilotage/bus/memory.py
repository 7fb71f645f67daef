"""``memory://``: an in-process bus for unit tests. Not durable; nothing survives the process."""

from __future__ import annotations

import asyncio

from pilotage.bus.base import Bus, Record
from pilotage.events import CloudEvent, matches

__all__ = ["MemoryBus"]


class MemoryBus(Bus):
    """A list of events and a dict of group offsets, with an asyncio wake-up for subscribers."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._log: list[CloudEvent] = []
        self._offsets: dict[str, int] = {}
        self._changed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _append(self, event: CloudEvent) -> int:
        self._log.append(event)
        cond = self._condition()
        async with cond:
            cond.notify_all()
        return len(self._log)

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

    async def committed(self, group: str) -> int:
        """Return the group's last acknowledged offset (0 if none)."""
        return self._offsets.get(group, 0)

    async def commit(self, group: str, offset: int) -> None:
        """Acknowledge every event up to ``offset`` for ``group`` (never moves backwards)."""
        self._offsets[group] = max(offset, self._offsets.get(group, 0))

    async def _wait(self, after_offset: int, timeout_s: float) -> None:
        if len(self._log) > after_offset:
            return
        cond = self._condition()
        try:
            async with asyncio.timeout(timeout_s), cond:
                await cond.wait_for(lambda: len(self._log) > after_offset)
        except TimeoutError:
            return
