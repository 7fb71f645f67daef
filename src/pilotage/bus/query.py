"""Questions to the event log: "has this happened yet?", "what is the newest X of this run?".

Agents, flows and tools derive their state from the log instead of memory (crash safety, issue #7), so they ask
the same few questions: the newest event of a type in a run whose data has some values, whether one exists, all
of them, the event with an id. :class:`EventLog` answers them over any :class:`~pilotage.bus.base.Bus`, paging
through :meth:`Bus.read <pilotage.bus.base.Bus.read>` with the type glob and the run filter done by the backend
(``runid=``: an indexed ``WHERE runid = ?`` in SQLite), so one owner holds the scan loop.

``match`` keyword arguments compare the event's ``data``: ``deployment_id="d1", step=0`` keeps the events whose
``data`` is an object holding both keys with those values (``==``); an event whose data is not an object never
matches a non-empty ``match``.

Cost: each question reads the matching part of the log once (no reverse read exists in the bus contract), in
pages of :data:`PAGE` records.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pilotage.bus.base import Bus, Record
from pilotage.events import CloudEvent

__all__ = ["PAGE", "EventLog", "data_matches"]

#: Records fetched per ``Bus.read`` call (the size the hand-written scans used).
PAGE = 1000


def data_matches(event: CloudEvent, match: dict[str, Any]) -> bool:
    """Return True when ``event.data`` holds every ``key: value`` of ``match`` (always True for an empty match)."""
    if not match:
        return True
    data = event.data
    return isinstance(data, dict) and all(key in data and data[key] == value for key, value in match.items())


class EventLog:
    """Read-only queries over the log of ``bus``.

    Args:
        bus: the event log (opened by its first read when not open yet).

    Every method takes ``type`` (a glob on the CloudEvents type, ``"*"`` = any), ``run`` (the ``runid``
    extension; None = any run, ``""`` = events of no run) and ``after`` (only offsets > ``after``) where it
    applies. Errors are the bus's: ``BackendCorrupt`` for a stored event that is not a CloudEvent (naming its
    offset), ``BackendUnavailable`` for a server that cannot be reached.
    """

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def _scan(self, type: str, run: str | None, after: int, match: dict[str, Any]) -> AsyncIterator[Record]:
        """Yield the matching records with offset > ``after``, in log order."""
        offset = after + 1
        while True:
            batch = await self.bus.read(offset, PAGE, pattern=type, runid=run)
            if not batch:
                return
            for record in batch:
                if data_matches(record.event, match):
                    yield record
            offset = batch[-1].offset + 1

    async def records(
        self,
        type: str = "*",
        *,
        run: str | None = None,
        after: int = 0,
        limit: int | None = None,
        subject: str | None = None,
        **match: Any,
    ) -> list[Record]:
        """Return the matching records (offset and event) with offset > ``after``, in log order.

        ``limit`` stops after that many records (a page; None = all); ``subject`` keeps the events whose CloudEvents
        ``subject`` (the service, for most events) is that. Readers that follow the log keep ``records[-1].offset``
        and pass it as ``after`` next time.
        """
        found: list[Record] = []
        async for record in self._scan(type, run, after, match):
            if subject is None or record.event.subject == subject:
                found.append(record)
                if limit is not None and len(found) >= limit:
                    break
        return found

    async def all(self, type: str = "*", *, run: str | None = None, after: int = 0, **match: Any) -> list[CloudEvent]:
        """Return every matching event with offset > ``after``, in log order."""
        return [record.event async for record in self._scan(type, run, after, match)]

    async def first(
        self, type: str = "*", *, run: str | None = None, after: int = 0, **match: Any
    ) -> CloudEvent | None:
        """Return the oldest matching event with offset > ``after`` (stops reading there), or None."""
        async for record in self._scan(type, run, after, match):
            return record.event
        return None

    async def latest(self, type: str, *, run: str | None = None, **match: Any) -> CloudEvent | None:
        """Return the newest matching event, or None."""
        found: CloudEvent | None = None
        async for record in self._scan(type, run, 0, match):
            found = record.event
        return found

    async def exists(self, type: str, *, run: str | None = None, **match: Any) -> bool:
        """Return True when the log holds a matching event (stops reading at the first)."""
        return await self.first(type, run=run, **match) is not None

    async def by_id(self, event_id: str, type: str = "*", *, run: str | None = None) -> Record | None:
        """Return the record of the event with id ``event_id`` (``type``/``run`` narrow the scan), or None."""
        async for record in self._scan(type, run, 0, {}):
            if record.event.id == event_id:
                return record
        return None

    async def at(self, offset: int) -> CloudEvent | None:
        """Return the event stored at ``offset`` (None when that offset holds none, e.g. a gap).

        Publishers use it to read back what the log kept for an id they published (idempotent publish: the
        first copy wins, so a handler run again after a crash acts on what was recorded).
        """
        stored = await self.bus.read(offset, 1)
        return stored[0].event if stored and stored[0].offset == offset else None
