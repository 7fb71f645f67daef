"""The message-bus contract every backend implements (DESIGN.md section 4, 6).

A bus is an append-only log of :class:`~pilotage.events.CloudEvent` s. Each accepted event gets a
monotonically increasing integer *offset* (1-based). Consumers belong to a *group*; the group's committed
offset is stored by the backend, so a consumer that restarts resumes after the last event it acknowledged
(at-least-once delivery: an event whose handler did not return is delivered again).

Backends implement five primitives (``_append``, ``read``, ``committed``, ``commit``, ``_wait``) and get
``subscribe`` from this base class.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType

from pilotage.events import CloudEvent, matches

__all__ = ["Bus", "Handler", "Record", "Subscription"]

log = logging.getLogger(__name__)

Handler = Callable[[CloudEvent], Awaitable[None]]


@dataclass(frozen=True)
class Record:
    """One event as stored in the log: its offset (1-based) and the event."""

    offset: int
    event: CloudEvent


@dataclass
class Subscription:
    """A running consumer: a group reading events whose type matches ``pattern``.

    ``errors`` collects handler exceptions (the event is still acknowledged after the handler's own error
    handling; agents publish ``dev.pilotage.agent.failed`` themselves).
    """

    group: str
    pattern: str
    task: asyncio.Task[None] | None = None
    errors: list[BaseException] = field(default_factory=list)
    stopped: bool = False

    async def stop(self) -> None:
        """Stop delivering. An event whose handler was interrupted is not acknowledged (it is redelivered)."""
        self.stopped = True
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


class Bus(ABC):
    """Contract of a durable CloudEvents log with consumer groups.

    Use as an async context manager, or call :meth:`close`. Constructors have no side effects: the first
    I/O happens in :meth:`open` (called by ``async with`` and by the first operation).
    """

    url: str = ""
    #: Seconds between checks for new events when no in-process wake-up arrives (other processes).
    poll_interval_s: float = 0.05

    async def open(self) -> None:
        """Connect / create storage. Idempotent. Raises BackendUnavailable or BackendCorrupt."""

    async def publish(self, event: CloudEvent) -> int:
        """Append ``event`` durably and return its offset.

        Raises:
            InputError: the event is not serialisable or too large (nothing is written).
            BackendError: the log could not be written; the event was not accepted.
        """
        event.to_json()  # validates serialisability and size before anything is written
        return await self._append(event)

    @abstractmethod
    async def _append(self, event: CloudEvent) -> int:
        """Write one validated event; durable before returning; return its offset."""

    @abstractmethod
    async def read(self, from_offset: int = 1, limit: int = 1000, pattern: str = "*") -> list[Record]:
        """Return up to ``limit`` records with offset ≥ ``from_offset`` whose type matches ``pattern``."""

    @abstractmethod
    async def committed(self, group: str) -> int:
        """Return the last offset acknowledged by ``group`` (0 when it never acknowledged)."""

    @abstractmethod
    async def commit(self, group: str, offset: int) -> None:
        """Record that ``group`` has handled every event up to ``offset``."""

    @abstractmethod
    async def _wait(self, after_offset: int, timeout_s: float) -> None:
        """Return when an event after ``after_offset`` may exist, or after ``timeout_s``."""

    async def close(self) -> None:
        """Release connections and files. Idempotent."""

    async def __aenter__(self) -> Bus:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def last_offset(self) -> int:
        """Return the offset of the newest event (0 for an empty log)."""
        offset = 0
        while True:
            batch = await self.read(offset + 1, 10_000)
            if not batch:
                return offset
            offset = batch[-1].offset

    async def subscribe(
        self, pattern: str, handler: Handler, *, group: str, start_at_end_if_new: bool = False
    ) -> Subscription:
        """Start delivering events matching ``pattern`` to ``handler`` in log order, from the group's offset.

        A group that never acknowledged anything starts at the first event, or, with ``start_at_end_if_new``,
        after the newest event at the time of the call (as Kafka's ``auto.offset.reset=latest``).

        The group's offset is committed after each handled event (at-least-once). A handler exception is
        logged and kept in ``Subscription.errors``; the event is then acknowledged so one poison event cannot
        stall the group.
        """
        await self.open()
        if start_at_end_if_new and await self.committed(group) == 0:
            await self.commit(group, await self.last_offset())
        sub = Subscription(group=group, pattern=pattern)
        sub.task = asyncio.create_task(self._deliver(sub, handler), name=f"bus-consumer-{group}")
        return sub

    async def _deliver(self, sub: Subscription, handler: Handler) -> None:
        position = await self.committed(sub.group)
        while not sub.stopped:
            batch = await self.read(position + 1, 100)
            if not batch:
                await self._wait(position, self.poll_interval_s)
                continue
            for record in batch:
                if sub.stopped:
                    return
                if matches(sub.pattern, record.event.type):
                    try:
                        await handler(record.event)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - a consumer must survive one bad handler call
                        log.exception("handler of group %s failed on event %s", sub.group, record.event.id)
                        sub.errors.append(exc)
                position = record.offset
                await self.commit(sub.group, position)
