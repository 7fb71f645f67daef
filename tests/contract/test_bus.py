"""Shared behaviour every bus backend must have; subclassed per backend (as kombu's integration suite does)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pilotage.bus.base import Bus
from pilotage.bus.memory import MemoryBus
from pilotage.bus.sqlite import SQLiteBus
from pilotage.errors import InputError
from pilotage.events import CloudEvent, new_event


def ev(type_: str, n: int = 0, subject: str = "svc") -> CloudEvent:
    return new_event(type_, {"n": n}, source="/test", subject=subject, runid="r1")


class BusContract:
    """Subclasses provide ``make_bus``."""

    def make_bus(self, tmp_path: Path) -> Bus:
        raise NotImplementedError

    def run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run(coro)

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

    def test_subscriber_gets_matching_events_and_group_offset_is_committed(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                got: list[int] = []

                async def handler(event: CloudEvent) -> None:
                    got.append(event.data["n"])

                sub = await bus.subscribe("dev.pilotage.deploy.*", handler, group="g1")
                for i in range(4):
                    await bus.publish(ev("dev.pilotage.deploy.step" if i % 2 == 0 else "dev.pilotage.other", i))
                for _ in range(100):
                    if len(got) == 2 and await bus.committed("g1") == await bus.last_offset():
                        break
                    await asyncio.sleep(0.02)
                await sub.stop()
                assert got == [0, 2]
                assert await bus.committed("g1") == await bus.last_offset()

        self.run(go())

    def test_restarted_group_resumes_after_last_ack(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                for i in range(3):
                    await bus.publish(ev("t.x", i))
                await bus.commit("g", 2)
                got: list[int] = []

                async def handler(event: CloudEvent) -> None:
                    got.append(event.data["n"])

                sub = await bus.subscribe("*", handler, group="g")
                for _ in range(100):
                    if got:
                        break
                    await asyncio.sleep(0.02)
                await sub.stop()
                assert got == [2]

        self.run(go())

    def test_new_group_can_start_at_end(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                await bus.publish(ev("t.x", 1))
                got: list[int] = []

                async def handler(event: CloudEvent) -> None:
                    got.append(event.data["n"])

                sub = await bus.subscribe("*", handler, group="late", start_at_end_if_new=True)
                await bus.publish(ev("t.x", 2))
                for _ in range(100):
                    if got:
                        break
                    await asyncio.sleep(0.02)
                await sub.stop()
                assert got == [2]

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
                for _ in range(100):
                    if got:
                        break
                    await asyncio.sleep(0.02)
                await sub.stop()
                assert got == [1]
                assert [str(e) for e in sub.errors] == ["boom"]

        self.run(go())

    def test_invalid_event_is_rejected_and_nothing_written(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                await bus.publish(ev("t.x", 1))
                with pytest.raises(InputError):
                    await bus.publish(new_event("t.x", {"bad": object()}, source="/t"))
                assert len(await bus.read(1, 100)) == 1

        self.run(go())


class TestMemoryBus(BusContract):
    def make_bus(self, tmp_path: Path) -> Bus:
        return MemoryBus()


class TestSQLiteBus(BusContract):
    def make_bus(self, tmp_path: Path) -> Bus:
        return SQLiteBus(f"sqlite:///{tmp_path}/events.db")

    def test_events_survive_reopening(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                first = ev("t.x", 7)
                await bus.publish(first)
                await bus.commit("g", 1)
            async with self.make_bus(tmp_path) as bus:
                records = await bus.read(1, 10)
                assert [r.event for r in records] == [first]
                assert await bus.committed("g") == 1

        self.run(go())

    def test_duplicate_id_is_idempotent(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                event = ev("t.x", 1)
                assert await bus.publish(event) == await bus.publish(event)
                assert len(await bus.read(1, 10)) == 1

        self.run(go())

    def test_publish_many_is_one_batch(self, tmp_path: Path) -> None:
        async def go() -> None:
            async with self.make_bus(tmp_path) as bus:
                assert isinstance(bus, SQLiteBus)
                offsets = await bus.publish_many([ev("t.x", i) for i in range(50)])
                assert offsets == list(range(1, 51))

        self.run(go())

    def test_corrupt_file_is_backend_corrupt(self, tmp_path: Path) -> None:
        from pilotage.errors import BackendCorrupt

        (tmp_path / "events.db").write_bytes(b"this is not a sqlite database" * 100)

        async def go() -> None:
            bus = self.make_bus(tmp_path)
            with pytest.raises(BackendCorrupt, match="events.db"):
                await bus.open()

        self.run(go())

    def test_corrupt_row_names_its_offset(self, tmp_path: Path) -> None:
        import sqlite3

        from pilotage.errors import BackendCorrupt

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

        self.run(go())
