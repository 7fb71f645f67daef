"""Shared behaviour every bus backend must have; subclassed per backend (as kombu's integration suite does).

memory and sqlite always run; nats runs against the server at ``PILOTAGE_NATS_URL`` (default
nats://127.0.0.1:4222) and fails when it is unreachable in CI (``CI=true``), skips with the reason locally;
kafka runs only when ``PILOTAGE_KAFKA_URL`` is set.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from pilotage.bus.base import Bus, Delivery
from pilotage.bus.memory import MemoryBus
from pilotage.bus.sqlite import SQLiteBus
from pilotage.errors import BackendCorrupt, InputError
from pilotage.events import MAX_EVENT_BYTES, CloudEvent, new_event

NATS_URL = os.environ.get("PILOTAGE_NATS_URL", "nats://127.0.0.1:4222")
KAFKA_URL = os.environ.get("PILOTAGE_KAFKA_URL", "")


def ev(type_: str, n: int = 0, subject: str | None = "svc") -> CloudEvent:
    return new_event(type_, {"n": n}, source="/test", subject=subject, runid="r1")


async def wait_until(check: Callable[[], Awaitable[bool]], timeout_s: float = 15.0) -> None:
    """Poll ``check`` until it is true; fail the test (not a timing assertion) when it never becomes true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


class BusContract:
    """Subclasses provide ``make_bus``; ``ack_timeout_s`` is the short ack timeout the redelivery tests use."""

    ack_timeout_s = 0.5

    def make_bus(self, tmp_path: Path) -> Bus:
        raise NotImplementedError

    def run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run(coro)

    # -- log: publish, read, patterns ------------------------------------------------------------------
    def test_publish_assigns_increasing_offsets_and_read_returns_in_order(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                offsets = [await bus.publish(ev("dev.pilotage.a", i)) for i in range(5)]
                assert offsets == sorted(offsets) and len(set(offsets)) == 5
                records = await bus.read(1, 100)
                assert [r.event.data["n"] for r in records] == [0, 1, 2, 3, 4]
                assert [r.offset for r in records] == offsets
                assert await bus.last_offset() == offsets[-1]

        self.run(go())

    def test_read_filters_by_type_pattern_and_offset(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                for i in range(3):
                    await bus.publish(ev("dev.pilotage.deploy.step", i))
                    await bus.publish(ev("dev.pilotage.slo.evaluated", i))
                steps = await bus.read(1, 100, pattern="dev.pilotage.deploy.*")
                assert [r.event.data["n"] for r in steps] == [0, 1, 2]
                later = await bus.read(steps[1].offset, 100, pattern="dev.pilotage.deploy.step")
                assert [r.event.data["n"] for r in later] == [1, 2]
                glob = await bus.read(1, 2, pattern="dev.*.evaluated")
                assert [r.event.data["n"] for r in glob] == [0, 1]

        self.run(go())

    def test_read_filters_by_runid_and_limit_counts_matches(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                for i in range(4):
                    for run in ("r1", "r2", ""):
                        await bus.publish(new_event("dev.pilotage.deploy.step", {"n": i}, source="/t", runid=run))
                await bus.publish(new_event("dev.pilotage.slo.evaluated", {"n": 9}, source="/t", runid="r2"))
                r2 = await bus.read(1, 100, runid="r2")
                assert [(r.event.type[-4:], r.event.data["n"]) for r in r2] == [("step", i) for i in range(4)] + [
                    ("ated", 9)
                ]
                assert all(r.event.runid == "r2" for r in r2)
                typed = await bus.read(r2[1].offset, 2, pattern="dev.pilotage.deploy.*", runid="r2")
                assert [r.event.data["n"] for r in typed] == [1, 2]  # limit counts the run's events only
                none = await bus.read(1, 100, runid="")
                assert [r.event.data["n"] for r in none] == [0, 1, 2, 3] and all(not r.event.runid for r in none)
                assert await bus.read(1, 100, runid="r-unknown") == []
                assert len(await bus.read(1, 100)) == 13  # None: every run

        self.run(go())

    def test_publish_many_returns_offsets_in_order(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                await bus.publish(ev("t.x", -1))
                offsets = await bus.publish_many([ev("t.x", i) for i in range(50)])
                assert offsets == sorted(offsets) and len(set(offsets)) == 50
                records = await bus.read(offsets[0], 100)
                assert [r.event.data["n"] for r in records] == list(range(50))

        self.run(go())

    def test_concurrent_publishers_all_get_distinct_offsets(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:

                async def publisher(p: int) -> list[int]:
                    return [await bus.publish(ev("t.x", p * 100 + i)) for i in range(20)]

                results = await asyncio.gather(*(publisher(p) for p in range(16)))
                offsets = [o for r in results for o in r]
                assert len(set(offsets)) == 320
                assert all(r == sorted(r) for r in results)  # each publisher's events keep its order
                assert len(await bus.read(1, 1000)) == 320

        self.run(go())

    # -- bad input (issue 7 item 7) ------------------------------------------------------------------
    def test_publish_accepts_cloudevents_json_text_and_objects(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                text = ev("t.json", 1).to_json()
                await bus.publish(text)
                await bus.publish({"specversion": "1.0", "id": "x-1", "source": "/t", "type": "t.dict"})
                assert [r.event.type for r in await bus.read(1, 10)] == ["t.json", "t.dict"]

        self.run(go())

    def test_malformed_events_are_rejected_and_nothing_written(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                await bus.publish(ev("t.x", 1))
                with pytest.raises(InputError, match="JSON-serialisable"):
                    await bus.publish(new_event("t.x", {"bad": object()}, source="/t"))
                with pytest.raises(InputError, match="not valid JSON"):
                    await bus.publish('{"specversion": "1.0", "id": ')
                with pytest.raises(InputError, match="not a CloudEvents 1.0 event: type"):
                    await bus.publish({"specversion": "1.0", "id": "a", "source": "/t"})
                with pytest.raises(InputError, match="specversion"):
                    await bus.publish({"specversion": "0.3", "id": "a", "source": "/t", "type": "t"})
                with pytest.raises(InputError, match="over the"):
                    await bus.publish(new_event("t.big", "x" * MAX_EVENT_BYTES, source="/t"))
                with pytest.raises(InputError):
                    await bus.publish_many([ev("t.ok", 2), new_event("t.x", {"bad": {1, 2}}, source="/t")])
                assert [r.event.data["n"] for r in await bus.read(1, 100)] == [1]

        self.run(go())

    # -- idempotence --------------------------------------------------------------------------------
    def test_duplicate_id_is_stored_and_delivered_once(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                event = ev("t.x", 1)
                first = await bus.publish(event)
                assert await bus.publish(event) == first
                await bus.publish(ev("t.x", 2))
                assert [r.event.data["n"] for r in await bus.read(1, 10)] == [1, 2]
                got: list[int] = []

                async def handler(e: CloudEvent) -> None:
                    got.append(e.data["n"])

                sub = await bus.subscribe("*", handler, group="g")
                await wait_until(lambda: asyncio.sleep(0, len(got) >= 2))
                await bus.publish(event)  # a producer retrying after the event was consumed
                await asyncio.sleep(0.2)
                await sub.stop()
                assert got == [1, 2]

        self.run(go())

    # -- subscribe -----------------------------------------------------------------------------------
    def test_subscriber_gets_matching_events_and_group_offset_is_committed(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                got: list[int] = []

                async def handler(event: CloudEvent) -> None:
                    got.append(event.data["n"])

                sub = await bus.subscribe("dev.pilotage.deploy.*", handler, group="g1")
                for i in range(4):
                    await bus.publish(ev("dev.pilotage.deploy.step" if i % 2 == 0 else "dev.pilotage.other", i))

                async def done() -> bool:
                    return len(got) == 2 and await bus.committed("g1") == await bus.last_offset()

                await wait_until(done)
                await sub.stop()
                assert got == [0, 2]

        self.run(go())

    def test_restarted_group_resumes_after_last_ack(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                offsets = [await bus.publish(ev("t.x", i)) for i in range(3)]
                await bus.commit("g", offsets[1])
                got: list[int] = []

                async def handler(event: CloudEvent) -> None:
                    got.append(event.data["n"])

                sub = await bus.subscribe("*", handler, group="g")
                await wait_until(lambda: asyncio.sleep(0, bool(got)))
                await sub.stop()
                assert got == [2]

        self.run(go())

    def test_new_group_can_start_at_end_and_keeps_its_place_after_restart(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                await bus.publish(ev("t.x", 1))
                got: list[int] = []

                async def handler(event: CloudEvent) -> None:
                    got.append(event.data["n"])

                sub = await bus.subscribe("*", handler, group="late", start_at_end_if_new=True)
                await bus.publish(ev("t.x", 2))
                await wait_until(lambda: asyncio.sleep(0, bool(got)))
                await sub.stop()
                await bus.publish(ev("t.x", 3))  # published while the member is down
                sub = await bus.subscribe("*", handler, group="late", start_at_end_if_new=True)
                await wait_until(lambda: asyncio.sleep(0, len(got) >= 2))
                await sub.stop()
                assert got == [2, 3]

        self.run(go())

    def test_handler_error_is_recorded_and_delivery_continues(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                got: list[int] = []

                async def handler(event: CloudEvent) -> None:
                    if event.data["n"] == 0:
                        raise RuntimeError("boom")
                    got.append(event.data["n"])

                sub = await bus.subscribe("*", handler, group="g")
                await bus.publish(ev("t.x", 0))
                await bus.publish(ev("t.x", 1))
                await wait_until(lambda: asyncio.sleep(0, bool(got)))
                await sub.stop()
                assert got == [1]
                assert [str(e) for e in sub.errors] == ["boom"]

        self.run(go())

    # -- consumer groups: competing consumers, explicit ack, redelivery -----------------------------------
    def test_members_of_a_group_get_disjoint_events(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                await bus.publish_many([ev("t.x", i, subject=f"s{i}") for i in range(20)])
                a = await bus.fetch("g", "*", max_events=8, consumer="a", ack_timeout_s=30)
                b = await bus.fetch("g", "*", max_events=8, consumer="b", ack_timeout_s=30)
                c = await bus.fetch("g", "*", max_events=8, consumer="c", ack_timeout_s=30)
                assert [d.event.data["n"] for d in a] == list(range(8))
                assert [d.event.data["n"] for d in b] == list(range(8, 16))
                assert [d.event.data["n"] for d in c] == list(range(16, 20))
                assert all(d.deliveries == 1 for d in a + b + c)
                other = await bus.fetch("other", "*", max_events=100, consumer="z")  # groups are independent
                assert len(other) == 20

        self.run(go())

    def test_competing_subscribers_share_the_work_each_event_handled_once(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                handled: dict[str, list[int]] = {"a": [], "b": [], "c": []}

                def handler_for(name: str) -> Callable[[CloudEvent], Awaitable[None]]:
                    async def handler(event: CloudEvent) -> None:
                        await asyncio.sleep(0.01)
                        handled[name].append(event.data["n"])

                    return handler

                subs = [
                    await bus.subscribe("t.*", handler_for(n), group="workers", consumer=n, batch=2) for n in handled
                ]
                await bus.publish_many([ev("t.x", i, subject=f"s{i}") for i in range(60)])
                await wait_until(lambda: asyncio.sleep(0, sum(map(len, handled.values())) >= 60), 30)
                await asyncio.sleep(0.1)
                for sub in subs:
                    await sub.stop()
                every = sorted(n for got in handled.values() for n in got)
                assert every == list(range(60))  # each event once, none lost
                assert sum(1 for got in handled.values() if got) >= 2

        self.run(go())

    def test_unacked_event_is_redelivered_after_ack_timeout(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                offset = await bus.publish(ev("t.x", 1))
                [first] = await bus.fetch("g", "*", consumer="a", ack_timeout_s=self.ack_timeout_s)
                assert (first.offset, first.deliveries) == (offset, 1)
                assert await bus.fetch("g", "*", consumer="b", ack_timeout_s=self.ack_timeout_s) == []
                again: list[Delivery] = []

                async def redelivered() -> bool:
                    again.extend(await bus.fetch("g", "*", consumer="b", ack_timeout_s=self.ack_timeout_s))
                    return bool(again)

                await wait_until(redelivered)
                assert [(d.offset, d.event.id, d.deliveries) for d in again] == [(offset, first.event.id, 2)]
                await bus.ack(*again)
                await asyncio.sleep(self.ack_timeout_s * 2)
                assert await bus.fetch("g", "*", consumer="c", ack_timeout_s=self.ack_timeout_s) == []
                await wait_until(lambda: _eq(bus.committed("g"), offset))

        self.run(go())

    def test_nack_redelivers_at_once(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                await bus.publish(ev("t.x", 1))
                [first] = await bus.fetch("g", "*", consumer="a", ack_timeout_s=60)
                await bus.nack(first)
                again: list[Delivery] = []

                async def redelivered() -> bool:
                    again.extend(await bus.fetch("g", "*", consumer="b", ack_timeout_s=60))
                    return bool(again)

                await wait_until(redelivered, 10)  # well below the 60 s ack timeout
                assert [(d.event.id, d.deliveries) for d in again] == [(first.event.id, 2)]

        self.run(go())

    def test_subscriber_renews_its_lease_while_the_handler_runs(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                calls: list[str] = []

                async def slow(event: CloudEvent) -> None:
                    calls.append("slow")
                    await asyncio.sleep(self.ack_timeout_s * 4)

                sub = await bus.subscribe("*", slow, group="g", ack_timeout_s=self.ack_timeout_s, consumer="a")
                await bus.publish(ev("t.x", 1))
                await wait_until(lambda: asyncio.sleep(0, bool(calls)))
                stolen: list[Delivery] = []
                for _ in range(6):
                    await asyncio.sleep(self.ack_timeout_s / 2)
                    stolen += await bus.fetch("g", "*", consumer="b", ack_timeout_s=self.ack_timeout_s)
                await wait_until(lambda: asyncio.sleep(0, sub.handled == 1))
                await sub.stop()
                assert stolen == []
                assert calls == ["slow"]

        self.run(go())

    # -- order ------------------------------------------------------------------------------------------
    def test_per_subject_order_for_a_member(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                await bus.publish_many([ev("t.x", i, subject="abc"[i % 3]) for i in range(30)])
                got: dict[str, list[int]] = {"a": [], "b": [], "c": []}

                async def handler(event: CloudEvent) -> None:
                    assert event.subject is not None
                    got[event.subject].append(event.data["n"])

                sub = await bus.subscribe("*", handler, group="g", batch=4)
                await wait_until(lambda: asyncio.sleep(0, sum(map(len, got.values())) == 30))
                await sub.stop()
                assert got == {s: list(range(k, 30, 3)) for k, s in enumerate("abc")}

        self.run(go())

    def test_subject_affinity_across_members_is_as_declared(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                await bus.publish_many([ev("t.x", 0, "a"), ev("t.x", 1, "a"), ev("t.x", 2, "b"), ev("t.x", 3, None)])
                [a0] = await bus.fetch("g", "*", max_events=1, consumer="m1", ack_timeout_s=30)
                rest = await bus.fetch("g", "*", max_events=10, consumer="m2", ack_timeout_s=30)
                assert a0.event.data["n"] == 0
                if bus.ORDERED_ACROSS_MEMBERS:  # a1 waits until a0 is acknowledged
                    assert [d.event.data["n"] for d in rest] == [2, 3]
                    await bus.ack(a0)
                    [a1] = await bus.fetch("g", "*", max_events=10, consumer="m2", ack_timeout_s=30)
                    assert a1.event.data["n"] == 1
                else:  # documented limit (JetStream): subject order holds per member only
                    assert [d.event.data["n"] for d in rest] == [1, 2, 3]

        self.run(go())

    # -- replay -------------------------------------------------------------------------------------------
    def test_seek_replays_a_group_from_an_offset(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                offsets = await bus.publish_many([ev("t.x", i) for i in range(5)])
                first = await bus.fetch("g", "*", max_events=10, consumer="a")
                await bus.ack(*first)
                await wait_until(lambda: _eq(bus.committed("g"), offsets[-1]))
                await bus.seek("g", offsets[2])
                again = await bus.fetch("g", "*", max_events=10, consumer="a", wait_s=2)
                assert [d.event.data["n"] for d in again] == [2, 3, 4]

        self.run(go())

    def test_read_since_a_time_replays_from_that_moment(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                await bus.publish_many([ev("t.x", i) for i in range(3)])
                await asyncio.sleep(0.05)
                moment = datetime.now(UTC)
                await asyncio.sleep(0.05)
                later = await bus.publish_many([ev("t.x", i) for i in range(3, 5)])
                assert await bus.offset_at(moment) == later[0]
                assert [r.event.data["n"] for r in await bus.read_since(moment)] == [3, 4]
                assert await bus.offset_at(datetime.now(UTC).replace(year=2999)) == later[-1] + 1
                assert len(await bus.read_since(datetime(2000, 1, 1))) == 5  # naive = UTC

        self.run(go())


async def _eq(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


class TestMemoryBus(BusContract):
    def make_bus(self, tmp_path: Path) -> Bus:
        return MemoryBus()


class TestSQLiteBus(BusContract):
    def make_bus(self, tmp_path: Path) -> Bus:
        return SQLiteBus(f"sqlite:///{tmp_path}/events.db")

    def test_events_offsets_and_leases_survive_reopening(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                first = ev("t.x", 7)
                await bus.publish(first)
                await bus.publish(ev("t.x", 8))
                await bus.commit("g", 1)
                [held] = await bus.fetch("g", "*", consumer="a", ack_timeout_s=600)
                assert held.event.data["n"] == 8
            async with self.make_bus(tmp_path) as bus:
                records = await bus.read(1, 10)
                assert records[0].event == first
                assert await bus.committed("g") == 1
                assert await bus.fetch("g", "*", consumer="b") == []  # the lease is in the file

        self.run(go())

    def test_concurrent_publishers_share_fsyncs(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                assert isinstance(bus, SQLiteBus)

                async def publisher(p: int) -> None:
                    for i in range(20):
                        await bus.publish(ev("t.x", p * 100 + i))

                await asyncio.gather(*(publisher(p) for p in range(16)))
                assert await bus.last_offset() == 320
                assert bus.commits <= 320 // 8  # group commit: ~16 events per fsync, never one each

        self.run(go())

    def test_publish_many_is_one_transaction(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                assert isinstance(bus, SQLiteBus)
                offsets = await bus.publish_many([ev("t.x", i) for i in range(50)])
                assert offsets == list(range(1, 51))
                assert bus.commits == 1

        self.run(go())

    def test_log_of_the_previous_schema_is_upgraded(self, tmp_path: Path) -> None:
        event = ev("t.old", 1)
        conn = sqlite3.connect(tmp_path / "events.db")
        conn.executescript(
            "CREATE TABLE events (offset INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
            " type TEXT NOT NULL, subject TEXT, runid TEXT NOT NULL DEFAULT '', time TEXT NOT NULL,"
            " body TEXT NOT NULL);"
            "CREATE TABLE consumer_offsets (grp TEXT PRIMARY KEY, offset INTEGER NOT NULL);"
        )
        conn.execute(
            "INSERT INTO events(id, type, subject, runid, time, body) VALUES (?,?,?,?,?,?)",
            (event.id, event.type, event.subject, event.runid, event.time, event.to_json()),
        )
        conn.commit()
        conn.close()

        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                moment = datetime.now(UTC)
                await bus.publish(ev("t.new", 2))
                assert [r.event.type for r in await bus.read(1, 10)] == ["t.old", "t.new"]
                assert await bus.offset_at(moment) == 2

        self.run(go())

    def test_corrupt_file_is_backend_corrupt(self, tmp_path: Path) -> None:
        (tmp_path / "events.db").write_bytes(b"this is not a sqlite database" * 100)

        async def go() -> None:
            bus = self.make_bus(tmp_path)
            with pytest.raises(BackendCorrupt, match="events.db"):
                await bus.open()

        self.run(go())

    def test_corrupt_row_names_its_offset_on_read_and_on_fetch(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                await bus.publish(ev("t.x", 1))
                await bus.publish(ev("t.x", 2))
            conn = sqlite3.connect(tmp_path / "events.db")
            conn.execute("UPDATE events SET body = '{broken' WHERE offset = 2")
            conn.commit()
            conn.close()
            async with self.make_bus(tmp_path) as bus:
                with pytest.raises(BackendCorrupt) as info:
                    await bus.read(1, 10)
                assert info.value.offset == 2  # type: ignore[attr-defined]
                with pytest.raises(BackendCorrupt) as info:
                    await bus.fetch("g", "*", consumer="a")
                assert info.value.offset == 2  # type: ignore[attr-defined]
                assert await bus.committed("g") == 0  # nothing was skipped

        self.run(go())


def _reachable(url: str) -> str | None:
    """Return None when ``url``'s host:port accepts TCP connections, else the reason."""
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), timeout=2).close()
    except OSError as exc:
        return f"{parts.hostname}:{parts.port} unreachable: {exc}"
    return None


def _require_server(url: str, what: str) -> None:
    reason = _reachable(url)
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI: {reason}")
    pytest.skip(f"{what} not running locally ({reason}); CI starts it and fails without it")


@pytest.mark.integration
class TestNatsBus(BusContract):
    ack_timeout_s = 1.0

    @pytest.fixture(autouse=True)
    def _nats(self) -> Iterator[None]:
        pytest.importorskip("nats", reason="nats-py is in the dev extra; install 'pilotage[nats]'")
        _require_server(NATS_URL, f"NATS JetStream at {NATS_URL}")
        self._made: list[Any] = []
        yield
        for bus in self._made:
            asyncio.run(_drop_stream(bus))

    def make_bus(self, tmp_path: Path) -> Bus:
        from pilotage.bus.nats import NatsBus

        bus = NatsBus(f"{NATS_URL}/T{uuid.uuid4().hex[:12]}")
        self._made.append(NatsBus(bus.url))
        return bus


async def _drop_stream(bus: Any) -> None:
    async with bus:
        await bus.delete_stream()


@pytest.mark.integration
@pytest.mark.skipif(not KAFKA_URL, reason="PILOTAGE_KAFKA_URL is not set (no Kafka broker on this machine)")
class TestKafkaBus(BusContract):
    ack_timeout_s = 1.0

    @pytest.fixture(autouse=True)
    def _kafka(self) -> None:
        pytest.importorskip("aiokafka", reason="install 'pilotage[kafka]'")
        _require_server(KAFKA_URL.replace("kafka://", "tcp://"), f"Kafka at {KAFKA_URL}")

    def make_bus(self, tmp_path: Path) -> Bus:
        from pilotage.bus.kafka import KafkaBus

        return KafkaBus(f"{KAFKA_URL.rstrip('/')}/pilotage-test-{uuid.uuid4().hex[:12]}")
