"""The message-bus contract every backend implements (DESIGN.md sections 4 and 6).

A bus is an append-only log of :class:`~pilotage.events.CloudEvent` s. Each accepted event gets a
monotonically increasing integer *offset* (1-based; gaps are allowed, order is not broken) and a *log time*
(when the backend appended it). Guarantees every backend gives (``tests/contract/test_bus.py`` checks them):

- **Durable publish**: ``publish`` returns only once the backend has stored the event (each backend's module
  says what "stored" costs: fsync policy, replication).
- **Type patterns**: subscribers and readers select events with shell-style globs on the CloudEvents
  ``type`` (``dev.pilotage.deploy.*``).
- **Consumer groups, competing consumers**: the members of one group (any number of ``subscribe`` / ``fetch``
  callers, in any process) share the group's events; each event is leased to one member at a time.
- **At-least-once, explicit ack**: a leased event is done only when acknowledged (:meth:`Bus.ack`); an event
  not acknowledged within ``ack_timeout_s`` seconds is delivered again (``Delivery.deliveries`` counts the
  attempts). ``subscribe`` acknowledges when the handler returns and renews leases while it runs.
- **Per-subject order**: events with the same CloudEvents ``subject`` are delivered to a group in publish
  order. Backends with ``ORDERED_ACROSS_MEMBERS`` also never lease an event while an earlier event of the
  same subject is leased to another member (subject affinity, as Kafka's partitioning by key gives).
- **Replay**: ``read`` from any offset, ``read_since`` from a log time, ``seek`` moves a group back or forth.
- **Idempotence by event id**: publishing an event whose ``id`` is already in the log does not deliver it
  again; ``subscribe`` also skips an id its member already handled.

Backends implement ``_append``, ``read``, ``offset_at``, ``committed``, ``commit``, ``seek``, ``group_exists``,
``fetch``, ``ack``, ``nack`` and ``extend``; ``subscribe`` is built here on ``fetch``/``ack``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar

from pilotage.errors import BackendCorrupt, BackendError, InputError, PilotageError
from pilotage.events import CloudEvent
from pilotage.secrets import masker

__all__ = [
    "DEFAULT_ACK_TIMEOUT_S",
    "Bus",
    "Delivery",
    "FatalListener",
    "Handler",
    "Record",
    "Subscription",
    "redact_url",
]

log = logging.getLogger(__name__)

Handler = Callable[[CloudEvent], Awaitable[None]]
#: Called once with the error that makes a bus unusable for its control plane (see :meth:`Bus.on_fatal`).
FatalListener = Callable[[PilotageError], None]

#: Default seconds a member may hold an event without acknowledging it (NATS JetStream's AckWait default).
DEFAULT_ACK_TIMEOUT_S = 30.0
#: Event ids remembered per subscription to skip duplicates that reach it (bounded memory).
_SEEN_IDS = 100_000


def redact_url(url: str) -> str:
    """Return ``url`` with the password of its user-info replaced by ``***`` (for error messages).

    ``nats://user:secret@host:4222`` → ``nats://user:***@host:4222``; URLs without a password are unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    userinfo, _, hostpart = rest.partition("@")
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{hostpart}"


@dataclass(frozen=True)
class Record:
    """One event as stored in the log: its offset (1-based) and the event."""

    offset: int
    event: CloudEvent


@dataclass(frozen=True)
class Delivery:
    """One event leased to one member of a consumer group by :meth:`Bus.fetch`.

    Attributes:
        offset: the event's offset in the log.
        event: the event.
        group: the consumer group.
        deliveries: attempts so far, 1 on first delivery (> 1 means the event may have been handled before).
        token: backend handle used by ack/nack (a NATS message, a lease owner); opaque to callers.
    """

    offset: int
    event: CloudEvent
    group: str
    deliveries: int = 1
    token: Any = field(default=None, compare=False, repr=False)


@dataclass
class Subscription:
    """A running consumer: one member of ``group`` handling events whose type matches ``pattern``.

    ``errors`` collects handler exceptions (the event is still acknowledged after the handler's own error
    handling; agents publish ``dev.pilotage.agent.failed`` themselves) and the error that stopped the member, if
    one did (also reported to :meth:`Bus.on_fatal`). ``handled`` counts handler calls.
    """

    group: str
    pattern: str
    consumer: str = ""
    task: asyncio.Task[None] | None = None
    errors: list[BaseException] = field(default_factory=list)
    handled: int = 0
    stopped: bool = False

    async def stop(self) -> None:
        """Stop delivering. Events leased but not handled are released at once for redelivery."""
        self.stopped = True
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def coerce_event(event: CloudEvent | Mapping[str, Any] | str | bytes) -> CloudEvent:
    """Return ``event`` as a validated :class:`CloudEvent`, serialisable, within the size limit, secrets masked.

    Every publish goes through here, so no registered secret (:func:`pilotage.secrets.masker`) reaches a log:
    its values in ``data`` and ``subject`` become ``[masked]`` (issue #15).

    Args:
        event: an event, a decoded CloudEvents JSON object, or CloudEvents JSON text.

    Raises:
        InputError: not JSON, not a CloudEvents 1.0 event, data not JSON-serialisable, or over
            :data:`pilotage.events.MAX_EVENT_BYTES`.
    """
    if isinstance(event, str | bytes):
        parsed = CloudEvent.from_json(event)
    elif isinstance(event, CloudEvent):
        parsed = event
    elif isinstance(event, Mapping):
        parsed = CloudEvent.from_dict(dict(event))
    else:
        raise InputError(f"cannot publish a {type(event).__name__}", hint="publish a CloudEvent or CloudEvents JSON")
    text = parsed.to_json()  # serialisability and size, before anything is written
    return _masked(parsed, text)


def _masked(event: CloudEvent, text: str) -> CloudEvent:
    """Return ``event`` with secrets masked in ``data`` and ``subject`` (``text``: its JSON, searched once)."""
    secrets = masker()
    if not secrets.contains_secret(text):
        return event
    return event.model_copy(update={"data": secrets.mask(event.data), "subject": secrets.mask(event.subject)})


class Bus(ABC):
    """Contract of a durable CloudEvents log with consumer groups.

    Use as an async context manager, or call :meth:`close`. Constructors have no side effects: the first
    I/O happens in :meth:`open` (called by ``async with`` and by the first operation).
    """

    url: str = ""
    #: Seconds between checks for new events when no in-process wake-up arrives (other processes).
    poll_interval_s: float = 0.05
    #: True when the backend never leases an event while an earlier same-subject event is leased in the group.
    ORDERED_ACROSS_MEMBERS: ClassVar[bool] = True
    #: The first error that made this bus unusable for a control plane (None while healthy): a publish that
    #: could not be written, a consumer stopped by a corrupt row or a failing log. See :meth:`on_fatal`.
    fatal: PilotageError | None = None

    def on_fatal(self, listener: FatalListener) -> None:
        """Call ``listener`` with the first fatal error of this bus (at once when there already is one).

        A control plane (``pilotage serve``, an in-process ``pilotage run``) registers here and stops with that
        error (issue #15, finding 7): its agents can no longer record what they do, or a consumer is gone, so
        waiting for the run's time budget would only hide the failure.
        """
        listeners: list[FatalListener] = self.__dict__.setdefault("_fatal_listeners", [])
        listeners.append(listener)
        if self.fatal is not None:
            listener(self.fatal)

    def _set_fatal(self, exc: BaseException, where: str) -> PilotageError:
        """Record ``exc`` as the fatal error (the first one wins), tell the listeners, return it as a PilotageError.

        ``where`` says what failed (``publish``, ``consumer group G``) for errors that are not PilotageErrors.
        """
        if isinstance(exc, PilotageError):
            error = exc
        else:
            error = BackendError(f"event log {redact_url(self.url)}: {where} failed: {type(exc).__name__}: {exc}")
        if self.fatal is None:
            self.fatal = error
            log.error("event log %s is unusable: %s", redact_url(self.url), error.one_line())
            for listener in list(self.__dict__.get("_fatal_listeners", [])):
                listener(error)
        return error

    async def open(self) -> None:
        """Connect / create storage. Idempotent. Raises BackendUnavailable or BackendCorrupt."""

    async def close(self) -> None:
        """Release connections and files. Idempotent."""

    async def __aenter__(self) -> Bus:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- writing ----------------------------------------------------------------------------------------
    async def publish(self, event: CloudEvent | Mapping[str, Any] | str | bytes) -> int:
        """Append ``event`` durably and return its offset (the existing offset when its id is already logged).

        Raises:
            InputError: not JSON, not CloudEvents 1.0, not serialisable or too large (nothing is written).
            BackendError: the log could not be written; the event was not accepted.
        """
        checked = coerce_event(event)
        try:
            return await self._append(checked)
        except BackendError as exc:
            self._set_fatal(exc, "publish")
            raise

    async def publish_many(self, events: Sequence[CloudEvent | Mapping[str, Any] | str | bytes]) -> list[int]:
        """Append ``events`` durably (batched where the backend can) and return their offsets in order.

        Raises:
            InputError: one event is invalid; nothing is written.
            BackendError: the log could not be written.
        """
        checked = [coerce_event(e) for e in events]
        try:
            return await self._append_many(checked)
        except BackendError as exc:
            self._set_fatal(exc, "publish")
            raise

    @abstractmethod
    async def _append(self, event: CloudEvent) -> int:
        """Write one validated event; durable before returning; return its offset."""

    async def _append_many(self, events: list[CloudEvent]) -> list[int]:
        return [await self._append(e) for e in events]

    # -- reading ----------------------------------------------------------------------------------------
    @abstractmethod
    async def read(
        self, from_offset: int = 1, limit: int = 1000, pattern: str = "*", *, runid: str | None = None
    ) -> list[Record]:
        """Return up to ``limit`` records with offset ≥ ``from_offset`` whose type matches ``pattern``.

        ``runid`` (when not None) keeps only the events whose ``runid`` extension equals it (``""``: the events
        of no run); the backend filters, so ``limit`` counts matching records. Queries over the log:
        :class:`pilotage.bus.query.EventLog`.
        """

    @abstractmethod
    async def offset_at(self, time: datetime) -> int:
        """Return the offset of the first event appended at or after ``time`` (last offset + 1 if none).

        ``time`` is the log's append time (the backend's clock), not the CloudEvents ``time`` attribute.
        A naive datetime is taken as UTC.
        """

    async def read_since(self, time: datetime, limit: int = 1000, pattern: str = "*") -> list[Record]:
        """Return up to ``limit`` records appended at or after ``time`` whose type matches ``pattern``."""
        return await self.read(await self.offset_at(time), limit, pattern)

    async def last_offset(self) -> int:
        """Return the offset of the newest event (0 for an empty log)."""
        offset = 0
        while True:
            batch = await self.read(offset + 1, 10_000)
            if not batch:
                return offset
            offset = batch[-1].offset

    # -- consumer groups ----------------------------------------------------------------------------------
    @abstractmethod
    async def committed(self, group: str) -> int:
        """Return the offset up to which ``group`` has acknowledged every event (0 when none)."""

    @abstractmethod
    async def commit(self, group: str, offset: int) -> None:
        """Mark every event up to ``offset`` as handled by ``group`` (never moves the group backwards)."""

    @abstractmethod
    async def seek(self, group: str, offset: int) -> None:
        """Reposition ``group`` so its next delivery is the first matching event at or after ``offset``.

        Moves backwards too (replay); leases and acknowledgements after the new position are dropped. Call
        it while no member of the group is consuming.
        """

    @abstractmethod
    async def group_exists(self, group: str) -> bool:
        """Return True when ``group`` has a stored position (it fetched, committed or was positioned)."""

    @abstractmethod
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
        """Lease up to ``max_events`` matching events of ``group`` to ``consumer``, oldest first.

        Args:
            group: consumer group name.
            pattern: type glob; one group always uses the same pattern.
            max_events: most events returned.
            ack_timeout_s: seconds until an unacknowledged event is given to a member again.
            consumer: name of the member (for diagnostics and lease ownership).
            wait_s: seconds to wait for an event when none is available now (0 = return at once).

        Returns:
            The leased events in log order (empty after ``wait_s`` without one).
        """

    @abstractmethod
    async def ack(self, *deliveries: Delivery) -> None:
        """Mark ``deliveries`` as handled; they are not delivered to the group again."""

    @abstractmethod
    async def nack(self, *deliveries: Delivery) -> None:
        """Release ``deliveries`` unhandled: they are delivered again at once (to any member)."""

    @abstractmethod
    async def extend(self, *deliveries: Delivery) -> None:
        """Renew the leases of ``deliveries`` for another ``ack_timeout_s`` (work in progress)."""

    async def subscribe(
        self,
        pattern: str,
        handler: Handler,
        *,
        group: str,
        start_at_end_if_new: bool = False,
        ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S,
        batch: int = 16,
        consumer: str | None = None,
    ) -> Subscription:
        """Start one member of ``group`` delivering events matching ``pattern`` to ``handler``.

        A group that does not exist yet starts at the first event, or, with ``start_at_end_if_new``, after the
        newest event at the time of the call (as Kafka's ``auto.offset.reset=latest``). Several subscriptions
        with the same group (in one process or many) share the events (competing consumers).

        The event is acknowledged when ``handler`` returns. A handler exception is logged and kept in
        ``Subscription.errors``; the event is then acknowledged so one poison event cannot stall the group. A
        :class:`~pilotage.errors.BackendCorrupt` from the handler, or any error that ends the member itself (a
        corrupt row it fetched, a log it cannot read or write), is fatal: it is kept in ``errors`` and reported
        to :meth:`on_fatal` listeners, and the member stops (it never dies silently).
        While the handler runs, the leases of this member are renewed every ``ack_timeout_s / 2`` seconds, so
        only a member that crashed or hangs its event loop has its events redelivered.

        Args:
            pattern: type glob.
            handler: coroutine called once per event.
            group: consumer group name.
            start_at_end_if_new: a new group skips the events already in the log.
            ack_timeout_s: seconds of silence after which this member's leases expire.
            batch: events leased per fetch (a member's share of the work in flight).
            consumer: member name (default: derived from the task).
        """
        await self.open()
        if start_at_end_if_new and not await self.group_exists(group):
            await self.commit(group, await self.last_offset())
        sub = Subscription(group=group, pattern=pattern, consumer=consumer or f"{group}#{id(handler):x}")
        sub.task = asyncio.create_task(
            self._deliver(sub, handler, ack_timeout_s, max(batch, 1)), name=f"bus-consumer-{group}"
        )
        return sub

    async def _deliver(self, sub: Subscription, handler: Handler, ack_timeout_s: float, batch: int) -> None:
        seen: OrderedDict[str, None] = OrderedDict()
        pending: list[Delivery] = []
        try:
            while not sub.stopped:
                pending = await self.fetch(
                    sub.group,
                    sub.pattern,
                    max_events=batch,
                    ack_timeout_s=ack_timeout_s,
                    consumer=sub.consumer,
                    wait_s=self._fetch_wait_s(),
                )
                while pending and not sub.stopped:
                    delivery = pending[0]
                    if delivery.event.id not in seen:
                        await self._call(sub, handler, delivery, pending, ack_timeout_s)
                        seen[delivery.event.id] = None
                        if len(seen) > _SEEN_IDS:
                            seen.popitem(last=False)
                    await self.ack(delivery)
                    pending.pop(0)
        except Exception as exc:  # noqa: BLE001 - a member that stops must say why, not die silently
            log.exception("consumer %s of group %s stopped", sub.consumer, sub.group)
            sub.errors.append(exc)
            self._set_fatal(exc, f"consumer group {sub.group}")
        finally:
            with contextlib.suppress(Exception):
                if pending:
                    await asyncio.shield(self.nack(*pending))
                await asyncio.shield(self._release(sub.group, sub.consumer))

    def _fetch_wait_s(self) -> float:
        return self.poll_interval_s

    async def _release(self, group: str, consumer: str) -> None:
        """Forget a stopped member (backends that keep per-member state override this)."""

    async def _call(
        self, sub: Subscription, handler: Handler, delivery: Delivery, pending: list[Delivery], ack_timeout_s: float
    ) -> None:
        task = asyncio.ensure_future(handler(delivery.event))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=ack_timeout_s / 2)
                if done:
                    break
                await self.extend(*pending)
            task.result()
        except asyncio.CancelledError:
            task.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - a consumer must survive one bad handler call
            log.exception("handler of group %s failed on event %s", sub.group, delivery.event.id)
            sub.errors.append(exc)
            if isinstance(exc, BackendCorrupt):
                self._set_fatal(exc, f"consumer group {sub.group}")
        finally:
            sub.handled += 1
