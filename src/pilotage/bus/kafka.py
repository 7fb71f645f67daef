"""``kafka://HOST:PORT[,HOST:PORT...][/TOPIC][?partitions=N]``: the bus on Apache Kafka (aiokafka, extra ``kafka``).

**Not run against a broker here**: no Kafka broker runs on the development or CI machines, so this adapter is
type-checked and its error path is tested, and the shared contract suite runs on it only when
``PILOTAGE_KAFKA_URL`` is set.

Mapping: one topic (default ``pilotage.events``, created by Pilotage with ``partitions`` partitions, default 1,
replication factor 1); the record key is the CloudEvents ``subject`` so Kafka's partitioner keeps a subject in one
partition (per-subject order, also across members: one member owns a partition); the value is the CloudEvents
JSON; the event id is the ``ce_id`` header. Offsets: ``kafka_offset * partitions + partition + 1`` (with one
partition: the Kafka offset + 1, a global order; with several, increasing per partition only).

Consumer groups are Kafka consumer groups (``enable_auto_commit=False``): members share the work *by
partition*, so a topic needs at least as many partitions as members that should work at once. A member keeps
its leases locally: a record not acknowledged within ``ack_timeout_s`` is handed out again by the next ``fetch``
(``deliveries`` + 1); a member that dies loses its partitions at the next rebalance and the new owner restarts
from the group's committed offset. The committed offset is the contiguous acknowledged prefix of a partition.

Durability: ``acks="all"`` with the idempotent producer: ``publish`` returns when every in-sync replica has the
record (Kafka relies on replication, not on fsync per write; ``log.flush.*`` broker settings control fsync).
Kafka does not deduplicate by event id across producers: this adapter deduplicates ids it published itself
(bounded memory) and subscribers skip ids their member already handled.
"""

from __future__ import annotations

import asyncio
import time as _time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from pilotage.bus.base import DEFAULT_ACK_TIMEOUT_S, Bus, Delivery, Record, redact_url
from pilotage.errors import BackendCorrupt, BackendUnavailable, ConfigError, InputError
from pilotage.events import CloudEvent, matches

__all__ = ["KafkaBus"]

_RECENT_IDS = 100_000


@dataclass
class _Member:
    """One group member: its Kafka consumer and its local leases (offset → [record, deadline, deliveries])."""

    consumer: Any
    leases: dict[int, list[Any]] = field(default_factory=dict)
    acked: set[int] = field(default_factory=set)


class KafkaBus(Bus):
    """CloudEvents log on one Kafka topic; consumer groups are Kafka consumer groups.

    Args:
        url: ``kafka://host:port[,host:port][/TOPIC][?partitions=N]``.

    Raises:
        ConfigError: the URL is malformed (constructor; no I/O happens there).
    """

    def __init__(self, url: str = "kafka://127.0.0.1:9092") -> None:
        parts = urlsplit(url)
        if parts.scheme != "kafka" or not parts.netloc:
            raise ConfigError(f"bus URL {redact_url(url)!r} is not kafka://HOST:PORT[/TOPIC]", url=redact_url(url))
        try:
            self.partitions = int(parse_qs(parts.query).get("partitions", ["1"])[0])
        except ValueError as exc:
            raise ConfigError(f"bus URL {redact_url(url)!r}: partitions must be an integer") from exc
        self.url = url
        self.topic = parts.path.strip("/") or "pilotage.events"
        self.servers = parts.netloc.rsplit("@", 1)[-1]
        self._producer: Any = None
        self._members: dict[tuple[str, str], _Member] = {}
        self._recent: OrderedDict[str, int] = OrderedDict()

    def _unavailable(self, what: str, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            f"Kafka at {redact_url(self.url)}: {what} failed: {type(exc).__name__}",
            hint="check that the brokers are reachable and the URL is right",
            url=redact_url(self.url),
        )

    def _encode(self, partition: int, offset: int) -> int:
        return offset * self.partitions + partition + 1

    def _decode_offset(self, encoded: int) -> tuple[int, int]:
        partition = (encoded - 1) % self.partitions
        return partition, (encoded - 1 - partition) // self.partitions

    async def open(self) -> None:
        """Start the producer and create the topic if needed. Raises BackendUnavailable (URL redacted)."""
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(bootstrap_servers=self.servers, acks="all", enable_idempotence=True)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.servers)
        try:
            await producer.start()
            await admin.start()
            try:
                await admin.create_topics([NewTopic(self.topic, self.partitions, 1)])
            except TopicAlreadyExistsError:
                pass
        except (KafkaError, OSError) as exc:
            await producer.stop()
            raise self._unavailable("connect", exc) from exc
        finally:
            await admin.close()
        self._producer = producer

    async def close(self) -> None:
        """Stop every member and the producer. Idempotent."""
        for member in self._members.values():
            await member.consumer.stop()
        self._members.clear()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    # -- writing --------------------------------------------------------------------------------------
    async def _send(self, event: CloudEvent) -> Any:
        key = event.subject.encode() if event.subject else None
        return await self._producer.send(
            self.topic, event.to_json().encode(), key=key, headers=[("ce_id", event.id.encode())]
        )

    async def _append(self, event: CloudEvent) -> int:
        return (await self._append_many([event]))[0]

    async def _append_many(self, events: list[CloudEvent]) -> list[int]:
        await self.open()
        try:
            fresh = [e for e in events if e.id not in self._recent]
            metas = await asyncio.gather(*[await self._send(e) for e in fresh])
        except KafkaError as exc:
            raise self._unavailable("publish", exc) from exc
        for event, meta in zip(fresh, metas, strict=True):
            self._recent[event.id] = self._encode(meta.partition, meta.offset)
            if len(self._recent) > _RECENT_IDS:
                self._recent.popitem(last=False)
        return [self._recent[e.id] for e in events]

    # -- reading --------------------------------------------------------------------------------------
    def _event(self, record: Any) -> CloudEvent:
        try:
            return CloudEvent.from_json(record.value)
        except InputError as exc:
            offset = self._encode(record.partition, record.offset)
            raise BackendCorrupt(
                f"Kafka topic {self.topic}: partition {record.partition} offset {record.offset} is not a CloudEvent",
                offset=offset,
                url=redact_url(self.url),
            ) from exc

    async def _reader(self) -> tuple[Any, list[TopicPartition]]:
        await self.open()
        consumer = AIOKafkaConsumer(bootstrap_servers=self.servers, enable_auto_commit=False)
        try:
            await consumer.start()
        except KafkaError as exc:
            raise self._unavailable("read", exc) from exc
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        consumer.assign(tps)
        return consumer, tps

    async def read(
        self, from_offset: int = 1, limit: int = 1000, pattern: str = "*", *, runid: str | None = None
    ) -> list[Record]:
        """Return up to ``limit`` records with encoded offset ≥ ``from_offset`` matching ``pattern``.

        ``runid`` (when not None) keeps the events of that run only (filtered here after decoding).
        """
        consumer, tps = await self._reader()
        out: list[Record] = []
        try:
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                start = max(0, -(-(from_offset - 1 - tp.partition) // self.partitions))
                if start >= ends[tp]:
                    continue
                consumer.seek(tp, start)
                got = 0
                while got < limit and await consumer.position(tp) < ends[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1000)
                    for record in batch.get(tp, []):
                        event = self._event(record)
                        wanted = matches(pattern, event.type) and (runid is None or event.runid == runid)
                        if record.offset < ends[tp] and wanted:
                            out.append(Record(self._encode(tp.partition, record.offset), event))
                            got += 1
        except KafkaError as exc:
            raise self._unavailable("read", exc) from exc
        finally:
            await consumer.stop()
        return sorted(out, key=lambda r: r.offset)[:limit]

    async def last_offset(self) -> int:
        """Return the highest encoded offset (0 for an empty topic)."""
        consumer, tps = await self._reader()
        try:
            ends = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
        return max([self._encode(tp.partition, end - 1) for tp, end in ends.items() if end > 0], default=0)

    async def offset_at(self, time: datetime) -> int:
        """Return the smallest encoded offset whose record timestamp is at or after ``time`` (naive = UTC)."""
        stamp = int((time if time.tzinfo else time.replace(tzinfo=UTC)).timestamp() * 1000)
        consumer, tps = await self._reader()
        try:
            found = await consumer.offsets_for_times({tp: stamp for tp in tps})
        finally:
            await consumer.stop()
        hits = [self._encode(tp.partition, v.offset) for tp, v in found.items() if v is not None]
        return min(hits) if hits else await self.last_offset() + 1

    # -- consumer groups ------------------------------------------------------------------------------
    async def _group_offsets(self, group: str) -> dict[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.servers)
        try:
            await admin.start()
            offsets = await admin.list_consumer_group_offsets(group)
        except KafkaError as exc:
            raise self._unavailable("group offsets", exc) from exc
        finally:
            await admin.close()
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == self.topic}

    async def committed(self, group: str) -> int:
        """Return the lowest acknowledged prefix over the partitions, encoded (0 when none)."""
        offsets = await self._group_offsets(group)
        if not offsets:
            return 0
        return min(self._encode(p, offsets.get(p, 0) - 1) if offsets.get(p, 0) > 0 else 0 for p in offsets)

    async def group_exists(self, group: str) -> bool:
        """Return True when the group has committed offsets on the topic."""
        return bool(await self._group_offsets(group))

    async def _set_group(self, group: str, next_offsets: dict[int, int]) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.servers, group_id=group, enable_auto_commit=False)
        try:
            await consumer.start()
            tps = {TopicPartition(self.topic, p): off for p, off in next_offsets.items()}
            consumer.assign(list(tps))
            await consumer.commit(tps)
        except KafkaError as exc:
            raise self._unavailable("commit", exc) from exc
        finally:
            await consumer.stop()

    def _next_offsets(self, offset: int) -> dict[int, int]:
        """Kafka next-offsets per partition so that every encoded offset ≤ ``offset`` is behind the group."""
        return {p: max(0, -(-(offset - p) // self.partitions)) for p in range(self.partitions)}

    async def commit(self, group: str, offset: int) -> None:
        """Move the group past ``offset`` on every partition (never backwards); call it while no member runs."""
        current = await self._group_offsets(group)
        wanted = {p: max(o, current.get(p, 0)) for p, o in self._next_offsets(offset).items()}
        await self._set_group(group, wanted)

    async def seek(self, group: str, offset: int) -> None:
        """Set the group's position to ``offset`` (backwards too); call it while no member runs."""
        await self._set_group(group, self._next_offsets(offset - 1))

    async def _member(self, group: str, consumer: str) -> _Member:
        key = (group, consumer)
        if key not in self._members:
            await self.open()
            kc = AIOKafkaConsumer(
                self.topic,
                bootstrap_servers=self.servers,
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            try:
                await kc.start()
            except KafkaError as exc:
                raise self._unavailable("join group", exc) from exc
            self._members[key] = _Member(kc)
        return self._members[key]

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
        """Hand out expired local leases first, then new records of the member's partitions."""
        member = await self._member(group, consumer)
        now = _time.time()
        out: list[Delivery] = []
        for offset, lease in sorted(member.leases.items()):
            if len(out) < max_events and lease[1] <= now:
                lease[1], lease[2] = now + ack_timeout_s, lease[2] + 1
                out.append(Delivery(offset, lease[0], group, lease[2], token=(consumer, ack_timeout_s)))
        if len(out) < max_events:
            try:
                batches = await member.consumer.getmany(
                    timeout_ms=int(wait_s * 1000), max_records=max_events - len(out)
                )
            except KafkaError as exc:
                raise self._unavailable("fetch", exc) from exc
            for records in batches.values():
                for record in records:
                    event, offset = self._event(record), self._encode(record.partition, record.offset)
                    if not matches(pattern, event.type):
                        member.acked.add(offset)
                        continue
                    member.leases[offset] = [event, now + ack_timeout_s, 1]
                    out.append(Delivery(offset, event, group, 1, token=(consumer, ack_timeout_s)))
        if member.acked:
            await self._commit_prefix(member)
        return sorted(out, key=lambda d: d.offset)

    async def _commit_prefix(self, member: _Member) -> None:
        """Commit, per partition, the offset after the contiguous acknowledged prefix."""
        commits: dict[TopicPartition, int] = {}
        for tp in member.consumer.assignment():
            position = (await member.consumer.committed(tp)) or 0
            while self._encode(tp.partition, position) in member.acked:
                member.acked.discard(self._encode(tp.partition, position))
                position += 1
            commits[tp] = position
        if commits:
            try:
                await member.consumer.commit(commits)
            except KafkaError as exc:
                raise self._unavailable("commit", exc) from exc

    async def ack(self, *deliveries: Delivery) -> None:
        """Mark ``deliveries`` done and commit each partition's acknowledged prefix."""
        touched: set[tuple[str, str]] = set()
        for d in deliveries:
            key = (d.group, d.token[0])
            member = self._members.get(key)
            if member is not None:
                member.leases.pop(d.offset, None)
                member.acked.add(d.offset)
                touched.add(key)
        for key in touched:
            await self._commit_prefix(self._members[key])

    async def nack(self, *deliveries: Delivery) -> None:
        """Make ``deliveries`` due at once (the member hands them out again at its next fetch)."""
        for d in deliveries:
            lease = self._members.get((d.group, d.token[0]), _Member(None)).leases.get(d.offset)
            if lease is not None:
                lease[1] = 0.0

    async def extend(self, *deliveries: Delivery) -> None:
        """Push the local deadlines of ``deliveries`` one ack timeout into the future."""
        for d in deliveries:
            lease = self._members.get((d.group, d.token[0]), _Member(None)).leases.get(d.offset)
            if lease is not None:
                lease[1] = _time.time() + d.token[1]

    async def _release(self, group: str, consumer: str) -> None:
        member = self._members.pop((group, consumer), None)
        if member is not None:
            await member.consumer.stop()  # leaves the group: its partitions go to the other members
