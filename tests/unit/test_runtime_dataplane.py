"""The data plane's own loop (:mod:`pilotage.runtime.dataplane`): proxies answer while the control loop is held."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx

from pilotage.runtime.dataplane import DATA_PLANE, DataPlane, on_loop
from pilotage.runtime.local import LocalRuntime


def test_run_and_call_execute_on_the_data_plane_thread_and_return_there_results() -> None:
    plane = DataPlane("test-dataplane")

    async def where(x: int) -> tuple[str, int]:
        await asyncio.sleep(0.01)
        return threading.current_thread().name, x * 2

    async def main() -> tuple[tuple[str, int], str, str]:
        ran = await plane.run(where(21))
        called = await plane.call(lambda: threading.current_thread().name)
        return ran, called, threading.current_thread().name

    ran, called, caller = asyncio.run(main())
    assert ran == ("test-dataplane", 42) and called == "test-dataplane"
    assert caller == "MainThread"
    assert plane.loop() is plane.loop()  # one loop, started once


def test_cancelling_the_awaiting_task_cancels_the_work_on_the_data_plane() -> None:
    plane = DataPlane("test-dataplane-cancel")
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            cancelled.set()

    async def main() -> None:
        task = asyncio.create_task(plane.run(forever()))
        await asyncio.sleep(0.2)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(main())
    assert cancelled.wait(5.0)


def test_on_loop_runs_a_waker_on_its_own_loop_when_called_from_the_data_plane() -> None:
    plane = DataPlane("test-dataplane-waker")
    seen: list[str] = []

    async def waker() -> None:
        seen.append(threading.current_thread().name)

    async def main() -> None:
        bridged = on_loop(waker, asyncio.get_running_loop())
        await plane.run(bridged())  # called on the data plane, run back here
        await bridged()  # called here: run here directly

    asyncio.run(main())
    assert seen == ["MainThread", "MainThread"]


def test_a_route_answers_while_the_control_loop_is_held(tmp_path: Path) -> None:
    answers: list[tuple[int, float]] = []

    def client(url: str) -> None:
        began = time.monotonic()
        status = httpx.get(url + "/anything", timeout=5.0).status_code
        answers.append((status, time.monotonic() - began))

    async def main() -> None:
        runtime = LocalRuntime(log_dir=tmp_path / "logs")
        route = await runtime.create_route("cold", {}, {})  # cold, no waker: the proxy answers 503 at once
        try:
            asker = threading.Thread(target=client, args=(route.url,))
            asker.start()
            time.sleep(1.5)  # synchronous work holding this (the control plane's) loop
            asker.join(5.0)
            stats = await runtime.route_stats("cold")
            assert stats.name == "cold" and stats.versions == {}
        finally:
            await runtime.close()
        assert await DATA_PLANE.call(lambda: threading.current_thread().name) == "pilotage-dataplane"

    asyncio.run(main())
    assert len(answers) == 1
    status, took_s = answers[0]
    assert status == 503
    assert took_s < 1.0  # answered during the 1.5 s the control loop was held (on the same loop: ≥ 1.5 s)
