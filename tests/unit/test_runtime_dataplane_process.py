"""The data plane in a child process (:mod:`pilotage.runtime.dataplane_process`): routes, wake-ups and traffic
served by another process, with the same meaning as on the thread."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pilotage.errors import BackendError, InputError
from pilotage.runtime.base import Instance, Workload
from pilotage.runtime.dataplane_process import (
    DataPlaneProcess,
    close_data_plane_process,
    current,
    open_data_plane_process,
)
from pilotage.runtime.local import LocalRuntime
from pilotage.runtime.traffic_registry import (
    get_traffic,
    hold_traffic,
    restart_traffic,
    start_traffic,
    stop_traffic,
    traffic_unwritten,
)
from tests.fixtures.tiny_service.harness import copy_service


@pytest.fixture
def child(tmp_path: Path) -> Iterator[DataPlaneProcess]:
    """A data-plane child for the test (its log under ``tmp_path``), closed after it."""
    process = open_data_plane_process(tmp_path / "dataplane.log")
    try:
        yield process
    finally:
        close_data_plane_process()


def _listening_pids(port: int) -> set[int]:
    """Pids of the processes with a socket listening on 127.0.0.1:``port`` (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                    inodes.add(fields[9])
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            pids.add(int(pid))
    return pids


def test_a_route_is_served_by_the_child_and_weighed_counted_and_closed_from_here(
    tmp_path: Path, child: DataPlaneProcess
) -> None:
    async def scenario() -> None:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            v1 = await runtime.start(Workload("tiny", "v1", copy_service(tmp_path / "v1")))
            v2 = await runtime.start(Workload("tiny", "v2", copy_service(tmp_path / "v2")))
            route = await runtime.create_route("r", {"v1": v1, "v2": v2}, {"v1": 100, "v2": 0})
            assert _listening_pids(route.port) == {child.pid}  # the proxy is the child's, not this process's
            async with httpx.AsyncClient() as client:
                first = [(await client.get(route.url + "/version")).headers["x-pilotage-version"] for _ in range(4)]
                await runtime.set_weights("r", {"v1": 50, "v2": 50})
                split = [(await client.get(route.url + "/version")).headers["x-pilotage-version"] for _ in range(4)]
                metrics = (await client.get(route.metrics_url)).text
            assert first == ["v1"] * 4 and sorted(split) == ["v1", "v1", "v2", "v2"]
            assert (await runtime.get_route("r")).weights == {"v1": 50, "v2": 50}  # type: ignore[union-attr]
            stats = await runtime.route_stats("r")
            assert stats.versions["v1"].requests == 6 and stats.versions["v2"].requests == 2
            assert stats.versions["v1"].p95_latency_ms is not None and stats.requests == 8
            assert 'version="v2"' in metrics
            with pytest.raises(InputError, match="already exists"):
                await runtime.create_route("r", {"v1": v1}, {"v1": 100})
            with pytest.raises(InputError):  # a version without a backend: refused by the child, nothing changed
                await runtime.set_weights("r", {"v1": 50, "v3": 50})
            assert (await runtime.route_stats("r")).requests == 8
            await runtime.close_route("r")
            await runtime.close_route("r")  # idempotent
            with pytest.raises(httpx.ConnectError):
                httpx.get(route.url + "/version", timeout=2.0)

    asyncio.run(scenario())


def test_a_cold_route_in_the_child_runs_its_waker_here_and_forwards_the_held_request(
    tmp_path: Path, child: DataPlaneProcess
) -> None:
    async def scenario() -> tuple[int, str, int]:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            woken: list[int] = []

            async def waker() -> None:  # runs in this process, on this loop: starts the version, gives the route it
                woken.append(os.getpid())
                instance: Instance = await runtime.start(Workload("tiny", "v1", copy_service(tmp_path / "v1")))
                await runtime.set_weights("cold", {"v1": 100}, {"v1": instance})

            route = await runtime.create_route("cold", {}, {}, waker=waker)
            async with httpx.AsyncClient(timeout=60) as client:
                answer = await client.get(route.url + "/version")
            stats = await runtime.route_stats("cold")
            assert woken == [os.getpid()]
            return answer.status_code, answer.headers.get("x-pilotage-version", ""), stats.wakes

    assert asyncio.run(scenario()) == (200, "v1", 1)


def test_synthetic_traffic_runs_in_the_child_held_restarted_and_stopped_with_its_counts(
    tmp_path: Path, child: DataPlaneProcess
) -> None:
    async def scenario() -> None:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            v1 = await runtime.start(Workload("tiny", "v1", copy_service(tmp_path / "v1")))
            route = await runtime.create_route("t", {"v1": v1}, {"v1": 100})
            assert await start_traffic("t", route.url, ["/notes", "/missing"], 40.0) is None  # runs there
            assert get_traffic("t") is None  # not in this process's registry
            with pytest.raises(InputError, match="already running"):
                await start_traffic("t", route.url, ["/notes"], 1.0)
            with pytest.raises(InputError):  # an invalid plan is refused here, before anything is sent
                await start_traffic("u", route.url, ["no-slash"], 1.0)
            await asyncio.sleep(0.5)
            assert await hold_traffic(["t", "not-registered"], True) == ["t"]
            await asyncio.sleep(0.3)  # requests in flight finish
            at_hold = (await runtime.route_stats("t")).requests
            await asyncio.sleep(0.8)
            assert (await runtime.route_stats("t")).requests == at_hold  # held: nothing sent
            await restart_traffic("t", ["/version"])  # held as the old one was
            await hold_traffic(["t"], False)
            await asyncio.sleep(0.5)
            assert await traffic_unwritten("t") == set()
            stats = await stop_traffic("t")
            assert stats is not None and stats.sent == (await runtime.route_stats("t")).requests
            assert stats.by_operation["GET /notes"] and stats.by_operation["GET /version"][200] > 0
            assert 404 in stats.statuses and isinstance(next(iter(stats.statuses)), int)
            assert await stop_traffic("t") is None

    asyncio.run(scenario())


def test_a_dead_child_is_a_backend_error_naming_its_log_and_close_ends_the_child(
    tmp_path: Path, child: DataPlaneProcess
) -> None:
    async def scenario() -> None:
        runtime = LocalRuntime(log_dir=tmp_path / "logs")
        assert current() is child
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while child.alive and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        with pytest.raises(BackendError, match="data plane process") as caught:
            await runtime.create_route("r", {}, {})
        assert str(tmp_path / "dataplane.log") in str(caught.value)

    asyncio.run(scenario())
    replacement = open_data_plane_process(tmp_path / "dataplane.log")  # a dead child is replaced
    assert replacement is not child and replacement.alive
    close_data_plane_process()
    assert not replacement.alive and current() is None


def test_the_child_gets_the_allow_list_environment_not_the_operator_s_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_planted_dataplane_0123")
    monkeypatch.setenv("PILOTAGE_TEST_PRINCIPAL", "pilotage:principal-for-the-data-plane")
    process = open_data_plane_process(tmp_path / "dataplane.log")
    try:
        environ = Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
    finally:
        close_data_plane_process()
    assert not any(b"ghp_planted" in entry for entry in environ)
    assert b"PILOTAGE_TEST_PRINCIPAL=pilotage:principal-for-the-data-plane" in environ  # the generators send it
    assert any(entry.startswith(b"PATH=") for entry in environ)
