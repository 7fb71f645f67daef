"""``nats://[USER:PASSWORD@]HOST:PORT[/STREAM]``: the bus on NATS JetStream (nats-py, extra ``nats``).

Pilotage creates what it needs (no hand-made set-up): a file-stored stream ``STREAM`` (default ``PILOTAGE``)
on the subjects ``pilotage.<stream>.>``, and one durable pull consumer per consumer group. Mapping:

- offset = the stream sequence; log time = the server's timestamp of the message;
- an event of type ``dev.pilotage.deploy.step`` goes to the subject ``pilotage.<stream>.dev.pilotage.deploy.step``
  (characters NATS does not allow in a token become ``_``); a pattern becomes a subject filter that selects a
  superset (``dev.pilotage.deploy.*`` → ``….dev.pilotage.deploy.>``) and is then matched exactly in the client;
- the event id is the ``Nats-Msg-Id`` header, so a re-published id within the stream's duplicate window
  (:data:`DUPLICATE_WINDOW_S`, 1 hour) returns the original sequence and is stored once;
- a group is a durable consumer with explicit ack; ``ack_timeout_s`` is its ``ack_wait``; ``Delivery.deliveries``
  is JetStream's ``num_delivered``; ``nack`` is ``-NAK``, ``extend`` is ``+WPI`` (in progress).

Durability is JetStream's: ``publish`` returns when the server acknowledged the write to its file store. The
server syncs its files to disk on its own schedule (every 2 minutes by default; ``sync_interval: always`` in
the server configuration, NATS ≥ 2.10, makes each write fsync), so a server *process* crash loses nothing but a
power loss may lose the last interval unless the stream is replicated (R3) or the server syncs always.

Limits: JetStream does not hold back an event while an earlier event of the same subject is unacknowledged by
another member, so per-subject order holds per member, not across competing members
(``ORDERED_ACROSS_MEMBERS = False``). ``publish_many`` is pipelined, not atomic.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.js import api

from pilotage.bus.base import DEFAULT_ACK_TIMEOUT_S, Bus, Delivery, Handler, Record, Subscription, redact_url
from pilotage.errors import BackendCorrupt, BackendUnavailable, ConfigError, InputError, PilotageError
from pilotage.events import CloudEvent, matches

__all__ = ["DUPLICATE_WINDOW_S", "NatsBus"]

#: Seconds during which JetStream remembers a ``Nats-Msg-Id`` to drop a re-published event.
DUPLICATE_WINDOW_S = 3600.0
_TOKEN = re.compile(r"[^A-Za-z0-9_-]")
_REQUEST_TIMEOUT_S = 5.0


def _tokens(text: str) -> str:
    return ".".join(_TOKEN.sub("_", token) or "_" for token in text.split("."))


class NatsBus(Bus):
    """CloudEvents log on a JetStream stream, consumer groups as durable pull consumers.

    Args:
        url: ``nats://[user:password@]host:port[/STREAM]``.

    Raises:
        ConfigError: the URL is not ``nats://host[:port][/STREAM]`` (constructor; no I/O happens there).
    """

    ORDERED_ACROSS_MEMBERS = False

    def __init__(self, url: str = "nats://127.0.0.1:4222") -> None:
        parts = urlsplit(url)
        stream = parts.path.strip("/") or "PILOTAGE"
        if parts.scheme != "nats" or not parts.hostname or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", stream):
            raise ConfigError(
                f"bus URL {redact_url(url)!r} is not nats://HOST[:PORT][/STREAM]",
                hint="use nats://127.0.0.1:4222 (stream names: letters, digits, - and _)",
                url=redact_url(url),
            )
        self.url = url
        self.stream = stream
        self.prefix = f"pilotage.{stream.lower()}"
        self._server = f"nats://{parts.netloc}"
        self._nc: Any = None
        self._js: Any = None
        self._pulls: dict[tuple[str, str], Any] = {}
        self._patterns: dict[str, str] = {}

    # -- connection -----------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _translate(self, what: str) -> AsyncIterator[None]:
        """Turn nats-py errors into BackendUnavailable naming the (redacted) URL."""
        try:
            yield
        except PilotageError:
            raise
        except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
            raise BackendUnavailable(
                f"NATS at {redact_url(self.url)}: {what} failed: {type(exc).__name__}",
                hint="check that nats-server runs with JetStream (-js) and the URL is right",
                url=redact_url(self.url),
            ) from exc

    async def open(self) -> None:
        """Connect and create the stream if it does not exist.

        Raises:
            BackendUnavailable: the server cannot be reached or has no JetStream (URL in the message, password
                hidden).
        """
        if self._js is not None:
            return

        async def _quiet(exc: Exception) -> None:  # nats-py prints connection errors otherwise
            return None

        async with self._translate("connect"):
            # max_reconnect_attempts=0 makes nats-py retry the first connection for ever; 1 tries each server once
            async with asyncio.timeout(10):
                nc = await nats.connect(
                    servers=[self.url],
                    connect_timeout=2,
                    allow_reconnect=False,
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0.2,
                    error_cb=_quiet,
                    name="pilotage",
                )
            js = nc.jetstream(timeout=_REQUEST_TIMEOUT_S)
            try:
                await js.stream_info(self.stream)
            except nats.js.errors.NotFoundError:
                await js.add_stream(
                    api.StreamConfig(
                        name=self.stream,
                        subjects=[f"{self.prefix}.>"],
                        storage=api.StorageType.FILE,
                        retention=api.RetentionPolicy.LIMITS,
                        duplicate_window=DUPLICATE_WINDOW_S,
                    )
                )
            except Exception:
                await nc.close()
                raise
            self._nc, self._js = nc, js

    async def close(self) -> None:
        """Unsubscribe every member and close the connection. Idempotent."""
        for psub in list(self._pulls.values()):
            with contextlib.suppress(Exception):
                await psub.unsubscribe()
        self._pulls.clear()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        self._nc = self._js = None

    async def delete_stream(self) -> None:
        """Delete the stream and every consumer of it (tests and benchmarks clean up with this)."""
        await self.open()
        async with self._translate("delete stream"):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self._js.delete_stream(self.stream)

    # -- mapping --------------------------------------------------------------------------------------
    def subject_of(self, event_type: str) -> str:
        """Return the NATS subject an event of ``event_type`` is published on."""
        return f"{self.prefix}.{_tokens(event_type)}"

    def filter_of(self, pattern: str) -> str:
        """Return a NATS subject filter selecting a superset of the events whose type matches ``pattern``."""
        if pattern != "*" and not any(c in pattern for c in "*?["):
            return self.subject_of(pattern)
        if pattern.endswith(".*") and not any(c in pattern[:-2] for c in "*?["):
            return f"{self.subject_of(pattern[:-2])}.>"
        return f"{self.prefix}.>"

    @staticmethod
    def durable_of(group: str) -> str:
        """Return the durable consumer name of ``group`` (NATS names allow no dots or wildcards)."""
        digest = hashlib.sha1(group.encode(), usedforsecurity=False).hexdigest()[:10]
        return f"{_TOKEN.sub('_', group)[:48]}-{digest}"

    def _decode(self, msg: Any) -> CloudEvent:
        try:
            return CloudEvent.from_json(msg.data)
        except InputError as exc:
            offset = msg.metadata.sequence.stream
            raise BackendCorrupt(
                f"NATS stream {self.stream}: the message at sequence {offset} is not a valid CloudEvent: {exc}",
                hint=f"inspect it with `nats stream get {self.stream} {offset}`",
                offset=offset,
                url=redact_url(self.url),
            ) from exc

    # -- writing --------------------------------------------------------------------------------------
    async def _append(self, event: CloudEvent) -> int:
        await self.open()
        async with self._translate("publish"):
            try:
                ack = await self._js.publish(
                    self.subject_of(event.type), event.to_json().encode(), headers={"Nats-Msg-Id": event.id}
                )
            except nats.errors.MaxPayloadError as exc:
                raise InputError(f"event {event.id} is larger than the NATS server's max_payload") from exc
        return int(ack.seq)

    async def _append_many(self, events: list[CloudEvent]) -> list[int]:
        await self.open()
        async with self._translate("publish"):
            futures = [
                await self._js.publish_async(
                    self.subject_of(e.type), e.to_json().encode(), headers={"Nats-Msg-Id": e.id}
                )
                for e in events
            ]
            acks = await asyncio.gather(*futures)
        return [int(a.seq) for a in acks]

    # -- reading --------------------------------------------------------------------------------------
    async def last_offset(self) -> int:
        """Return the stream's last sequence (0 for an empty stream)."""
        await self.open()
        async with self._translate("stream info"):
            info = await self._js.stream_info(self.stream)
        return int(info.state.last_seq)

    async def _ephemeral(self, config: api.ConsumerConfig, limit: int) -> list[Any]:
        """Read up to ``limit`` messages (and at most the pending ones) through a short-lived ordered consumer."""
        config.ack_policy = api.AckPolicy.NONE
        config.inactive_threshold = 10.0
        psub = await self._js.pull_subscribe(
            config.filter_subject or f"{self.prefix}.>", stream=self.stream, config=config
        )
        try:
            info = await psub.consumer_info()
            want = min(limit, int(info.num_pending))
            out: list[Any] = []
            while len(out) < want:
                out.extend(await psub.fetch(min(want - len(out), 1000), timeout=_REQUEST_TIMEOUT_S))
            return out
        finally:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()
            with contextlib.suppress(Exception):
                await self._js.delete_consumer(self.stream, info.name)

    async def read(
        self, from_offset: int = 1, limit: int = 1000, pattern: str = "*", *, runid: str | None = None
    ) -> list[Record]:
        """Return up to ``limit`` records at or after ``from_offset`` whose type matches ``pattern``.

        ``runid`` (when not None) keeps the events of that run only (filtered here: subjects carry the type only).

        Raises:
            BackendCorrupt: a message is not a valid CloudEvent (``offset`` names its sequence).
            BackendUnavailable: the server cannot be reached.
        """
        out: list[Record] = []
        position = max(from_offset, 1)
        last = await self.last_offset()
        async with self._translate("read"):
            while len(out) < limit and position <= last:
                config = api.ConsumerConfig(
                    deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=position,
                    filter_subject=self.filter_of(pattern),
                )
                msgs = await self._ephemeral(config, min(limit - len(out), 10_000))
                if not msgs:
                    break
                for msg in msgs:
                    event = self._decode(msg)
                    if matches(pattern, event.type) and (runid is None or event.runid == runid):
                        out.append(Record(int(msg.metadata.sequence.stream), event))
                position = int(msgs[-1].metadata.sequence.stream) + 1
        return out[:limit]

    async def offset_at(self, time: datetime) -> int:
        """Return the first sequence the server stored at or after ``time`` (naive = UTC); last + 1 if none."""
        await self.open()
        start = time if time.tzinfo else time.replace(tzinfo=UTC)
        async with self._translate("read by time"):
            config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_TIME, opt_start_time=start)
            msgs = await self._ephemeral(config, 1)
        if msgs and msgs[0].metadata.timestamp >= start:  # the server cannot represent times after 2262
            return int(msgs[0].metadata.sequence.stream)
        return await self.last_offset() + 1

    # -- consumer groups ------------------------------------------------------------------------------
    async def _info(self, group: str) -> Any:
        await self.open()
        async with self._translate("consumer info"):
            try:
                return await self._js.consumer_info(self.stream, self.durable_of(group))
            except nats.js.errors.NotFoundError:
                return None

    async def committed(self, group: str) -> int:
        """Return the consumer's ack floor, or the stream's last sequence when it has nothing pending."""
        last = await self.last_offset()
        info = await self._info(group)
        if info is None:
            return 0
        if int(info.num_pending) == 0 and int(info.num_ack_pending) == 0:
            return max(last, int(info.ack_floor.stream_seq))
        return int(info.ack_floor.stream_seq)

    async def group_exists(self, group: str) -> bool:
        """Return True when the group's durable consumer exists."""
        return await self._info(group) is not None

    async def _create(self, group: str, start_seq: int, ack_timeout_s: float, pattern: str) -> None:
        config = api.ConsumerConfig(
            durable_name=self.durable_of(group),
            description=f"pilotage group {group}",
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(start_seq, 1),
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=ack_timeout_s,
            max_deliver=-1,
            max_ack_pending=10_000,
            filter_subject=self.filter_of(pattern),
        )
        async with self._translate("create consumer"):
            await self._js.add_consumer(self.stream, config)

    async def _recreate(self, group: str, start_seq: int) -> None:
        info = await self._info(group)
        for key in [k for k in self._pulls if k[0] == group]:
            with contextlib.suppress(Exception):
                await self._pulls.pop(key).unsubscribe()
        ack_wait = DEFAULT_ACK_TIMEOUT_S
        if info is not None:
            ack_wait = float(info.config.ack_wait or DEFAULT_ACK_TIMEOUT_S)
            async with self._translate("delete consumer"):
                await self._js.delete_consumer(self.stream, self.durable_of(group))
        await self._create(group, start_seq, ack_wait, self._patterns.get(group, "*"))

    async def commit(self, group: str, offset: int) -> None:
        """Move the group past ``offset`` (recreates its consumer; call it while no member consumes)."""
        if await self.group_exists(group) and await self.committed(group) >= offset:
            return
        await self._recreate(group, offset + 1)

    async def seek(self, group: str, offset: int) -> None:
        """Recreate the group's consumer starting at ``offset`` (replay); call it while no member consumes."""
        await self._recreate(group, offset)

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
        """See :meth:`Bus.subscribe`; remembers the group's pattern for its consumer's subject filter."""
        self._patterns[group] = pattern
        return await super().subscribe(
            pattern,
            handler,
            group=group,
            start_at_end_if_new=start_at_end_if_new,
            ack_timeout_s=ack_timeout_s,
            batch=batch,
            consumer=consumer,
        )

    async def _pull(self, group: str, pattern: str, consumer: str, ack_timeout_s: float) -> Any:
        key = (group, consumer)
        if key in self._pulls:
            return self._pulls[key]
        self._patterns.setdefault(group, pattern)
        info = await self._info(group)
        if info is None:
            with contextlib.suppress(nats.js.errors.BadRequestError):  # another member created it first
                await self._create(group, 1, ack_timeout_s, pattern)
        elif abs(float(info.config.ack_wait or 0) - ack_timeout_s) > 1e-3:
            info.config.ack_wait = ack_timeout_s
            async with self._translate("update consumer"):
                await self._js.add_consumer(self.stream, info.config)
        async with self._translate("bind consumer"):
            psub = await self._js.pull_subscribe_bind(durable=self.durable_of(group), stream=self.stream)
        self._pulls[key] = psub
        return psub

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
        """Pull up to ``max_events`` from the group's durable consumer (see :meth:`Bus.fetch`).

        Raises:
            BackendCorrupt: a message is not a valid CloudEvent (it stays unacknowledged).
            BackendUnavailable: the server cannot be reached.
        """
        psub = await self._pull(group, pattern, consumer, ack_timeout_s)
        async with self._translate("fetch"):
            try:
                msgs = await psub.fetch(max_events, timeout=max(wait_s, 0.05))
            except (nats.errors.TimeoutError, TimeoutError):  # nothing available within the wait
                return []
            out: list[Delivery] = []
            for msg in msgs:
                event = self._decode(msg)
                if not matches(pattern, event.type):
                    await msg.ack()  # outside the group's pattern: done for this group
                    continue
                meta = msg.metadata
                out.append(Delivery(int(meta.sequence.stream), event, group, int(meta.num_delivered), token=msg))
        return out

    def _fetch_wait_s(self) -> float:
        return 0.5  # a server-side long poll: new messages arrive at once, so a longer wait costs nothing

    async def ack(self, *deliveries: Delivery) -> None:
        """Send ``+ACK`` for each delivery."""
        async with self._translate("ack"):
            for d in deliveries:
                if not d.token.is_acked:
                    await d.token.ack()

    async def nack(self, *deliveries: Delivery) -> None:
        """Send ``-NAK`` (redeliver now) for each delivery."""
        async with self._translate("nak"):
            for d in deliveries:
                if not d.token.is_acked:
                    await d.token.nak()

    async def extend(self, *deliveries: Delivery) -> None:
        """Send ``+WPI`` (work in progress: restart the ack timer) for each delivery."""
        async with self._translate("in progress"):
            for d in deliveries:
                if not d.token.is_acked:
                    await d.token.in_progress()

    async def _release(self, group: str, consumer: str) -> None:
        """Stop one member: unbind its pull subscription and NAK what it had received but not handled."""
        psub = self._pulls.pop((group, consumer), None)
        if psub is None:
            return
        queue = psub._sub._pending_queue  # messages received for this member but not yet fetched
        while not queue.empty():
            msg = queue.get_nowait()
            if msg.reply and not JetStreamStatus.is_status(msg):
                with contextlib.suppress(Exception):
                    await msg.nak()
        with contextlib.suppress(Exception):
            await psub.unsubscribe()


class JetStreamStatus:
    """Recognise JetStream status messages (no messages, timeouts, heartbeats) among pulled messages."""

    @staticmethod
    def is_status(msg: Any) -> bool:
        """Return True when ``msg`` is a status message, not an event."""
        return bool(msg.headers and msg.headers.get("Status"))
