"""Shared behaviour every execution runtime must have (issue #16), with real processes and real HTTP.

Parametrised over runtime URLs as the bus and graph suites are over theirs: ``local:`` always runs; a
``kubernetes://`` runtime must pass the same tests. The workload is ``tests/fixtures/tiny_service`` (its
``/version`` answers ``TINY_VERSION``, and ``PILOTAGE_FAULT_ADMIN=1`` enables its run-time fault switch,
:mod:`pilotage.runtime.faults`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilotage.errors import InputError
from pilotage.registry import backend_class
from pilotage.runtime.base import Instance, InstanceHealth, Runtime, Workload
from pilotage.runtime.faults import FaultSpec, set_faults
from tests.fixtures.tiny_service.harness import copy_service

#: Runtime URL → extra constructor keywords (the local runtime writes its logs under the test's folder).
RUNTIMES: dict[str, Callable[[Path], dict[str, Any]]] = {"local:": lambda tmp: {"log_dir": tmp / "logs"}}


@pytest.fixture(params=sorted(RUNTIMES))
def make_runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Runtime]:
    url: str = request.param

    def make() -> Runtime:
        runtime: Runtime = backend_class("runtime", url)(url, **RUNTIMES[url](tmp_path))
        return runtime

    return make


def tiny(tmp_path: Path, version: str, **env: str) -> Workload:
    """The tiny service as ``version`` (its own folder and SQLite file), answering ``/version`` with it."""
    return Workload("tiny", version, copy_service(tmp_path / version), env={"TINY_VERSION": version, **env})


@asynccontextmanager
async def two_versions(
    make: Callable[[], Runtime], tmp_path: Path
) -> AsyncIterator[tuple[Runtime, Instance, Instance]]:
    """A runtime with v1 and v2 of the tiny service running (v2 with its fault switch on), closed afterwards."""
    async with make() as runtime:
        v1, v2 = await asyncio.gather(
            runtime.start(tiny(tmp_path, "v1")), runtime.start(tiny(tmp_path, "v2", PILOTAGE_FAULT_ADMIN="1"))
        )
        yield runtime, v1, v2


async def versions_served(url: str, n: int, path: str = "/version") -> list[str]:
    """Send ``n`` sequential GETs to ``url + path``; return the version each answer came from, in order."""
    async with httpx.AsyncClient(timeout=10) as client:
        answers = [await client.get(url + path) for _ in range(n)]
    assert all(a.status_code == 200 for a in answers), [a.status_code for a in answers]
    return [a.json()["version"] for a in answers]


def test_start_is_ready_logs_and_stop_is_idempotent(make_runtime: Callable[[], Runtime], tmp_path: Path) -> None:
    async def scenario() -> None:
        async with make_runtime() as runtime:
            instance = await runtime.start(tiny(tmp_path, "v1"), ready_timeout_s=30)
            health = await runtime.health(instance)
            assert health == InstanceHealth(running=True, ready=True, exit_code=None)
            assert await versions_served(instance.url, 1) == ["v1"]
            tail = await runtime.log_tail(instance)
            assert any("Uvicorn running on" in line for line in tail), tail  # the service's own output
            assert len(await runtime.log_tail(instance, lines=1)) == 1 and await runtime.log_tail(instance, 0) == []
            await runtime.stop(instance)
            stopped = await runtime.health(instance)
            assert not stopped.running and not stopped.ready
            await runtime.stop(instance)  # idempotent
            plain = dataclasses.asdict(stopped)
            assert json.loads(json.dumps(plain)) == plain  # plain data

    asyncio.run(scenario())


def test_weights_take_effect_on_the_next_request_and_split(make_runtime: Callable[[], Runtime], tmp_path: Path) -> None:
    async def scenario() -> None:
        async with two_versions(make_runtime, tmp_path) as (runtime, v1, v2):
            route = await runtime.create_route("shop", {"v1": v1, "v2": v2}, {"v1": 100, "v2": 0})
            assert (route.name, route.weights, set(route.backends)) == ("shop", {"v1": 100, "v2": 0}, {"v1", "v2"})
            assert await versions_served(route.url, 10) == ["v1"] * 10
            await runtime.set_weights("shop", {"v1": 0, "v2": 100})
            assert await versions_served(route.url, 20) == ["v2"] * 20  # from the very next request
            await runtime.set_weights("shop", {"v1": 50, "v2": 50})
            split = Counter(await versions_served(route.url, 100))
            assert abs(split["v1"] - 50) <= 10, split  # within ±10 of 50/50 (local: exactly 50)
            current = await runtime.get_route("shop")
            assert current is not None and current.weights == {"v1": 50, "v2": 50} and current.url == route.url
            assert current.backends["v2"].url == v2.url
            assert await runtime.get_route("nowhere") is None

    asyncio.run(scenario())


def test_route_stats_count_requests_errors_and_latency_per_version(
    make_runtime: Callable[[], Runtime], tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with two_versions(make_runtime, tmp_path) as (runtime, v1, v2):
            await set_faults(v2.url, FaultSpec(error_rate=1.0, latency_ms=100))  # v2: every answer a slow 500
            route = await runtime.create_route("stats", {"v1": v1, "v2": v2}, {"v1": 50, "v2": 50})
            empty = await runtime.route_stats("stats")
            assert empty.requests == 0 and empty.versions["v2"].mean_latency_ms is None
            started = time.time()
            async with httpx.AsyncClient(timeout=10) as client:
                statuses = Counter([(await client.get(route.url + "/notes")).status_code for _ in range(20)])
            stats = await runtime.route_stats("stats")
            one, two = stats.versions["v1"], stats.versions["v2"]
            assert (one.requests, one.errors) == (statuses[200], 0) and one.requests > 0  # local: exactly 10 each
            assert two.requests == two.errors == statuses[500] > 0 and one.requests + two.requests == 20
            assert two.latency_window == two.requests
            assert two.mean_latency_ms is not None and two.p95_latency_ms is not None
            assert 100 <= two.mean_latency_ms <= two.p95_latency_ms  # the injected 100 ms delay is seen
            assert one.mean_latency_ms is not None and one.mean_latency_ms < two.mean_latency_ms
            assert two.last_request_at is not None and started <= two.last_request_at <= time.time()
            assert stats.requests == 20 and stats.idle_s() < 5
            assert json.loads(json.dumps(stats.to_dict()))["versions"]["v2"]["errors"] == two.errors

    asyncio.run(scenario())


def test_stopped_instance_is_not_running_and_the_route_counts_its_failures(
    make_runtime: Callable[[], Runtime], tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with two_versions(make_runtime, tmp_path) as (runtime, v1, v2):
            route = await runtime.create_route("dead", {"v1": v1, "v2": v2}, {"v1": 0, "v2": 100})
            await runtime.stop(v2)
            assert (await runtime.health(v2)).running is False
            assert (await runtime.health(v1)).ready is True
            async with httpx.AsyncClient(timeout=10) as client:
                statuses = [(await client.get(route.url + "/version")).status_code for _ in range(5)]
            assert all(status >= 500 for status in statuses), statuses
            dead = (await runtime.route_stats("dead")).versions["v2"]
            assert (dead.requests, dead.errors) == (5, 5)

    asyncio.run(scenario())


def test_bad_weights_and_unknown_routes_are_input_errors(make_runtime: Callable[[], Runtime], tmp_path: Path) -> None:
    async def scenario() -> None:
        async with make_runtime() as runtime:
            v1 = await runtime.start(tiny(tmp_path, "v1"))
            with pytest.raises(InputError, match="sum to 90"):
                await runtime.create_route("r", {"v1": v1}, {"v1": 90})
            await runtime.create_route("r", {"v1": v1}, {"v1": 100})
            with pytest.raises(InputError, match="already exists"):
                await runtime.create_route("r", {"v1": v1}, {"v1": 100})
            for weights, message in (
                ({"v1": 99}, "sum to 99"),
                ({"v1": 50, "v9": 50}, "unknown version 'v9'"),
                ({"v1": 110, "v9": -10}, "weight of 'v9' is -10"),
            ):
                with pytest.raises(InputError, match=message):
                    await runtime.set_weights("r", weights)
            route = await runtime.get_route("r")
            assert route is not None and route.weights == {"v1": 100}  # unchanged by the refused calls
            with pytest.raises(InputError, match="no open route 'x'"):
                await runtime.set_weights("x", {"v1": 100})
            with pytest.raises(InputError, match="no open route 'x'"):
                await runtime.route_stats("x")

    asyncio.run(scenario())


def test_close_route_stops_only_the_proxy_and_close_stops_everything(
    make_runtime: Callable[[], Runtime], tmp_path: Path
) -> None:
    async def scenario() -> None:
        runtime = make_runtime()
        v1, v2 = await asyncio.gather(runtime.start(tiny(tmp_path, "v1")), runtime.start(tiny(tmp_path, "v2")))
        first = await runtime.create_route("first", {"v1": v1}, {"v1": 100})
        second = await runtime.create_route("second", {"v2": v2}, {"v2": 100})
        await runtime.close_route("first")
        await runtime.close_route("first")  # idempotent
        assert await runtime.get_route("first") is None
        with pytest.raises(httpx.ConnectError):
            await versions_served(first.url, 1)
        assert (await runtime.health(v1)).ready  # its instance still answers, directly
        await runtime.close()
        await runtime.close()  # idempotent
        assert await runtime.get_route("second") is None
        for instance in (v1, v2):
            assert not (await runtime.health(instance)).running
        with pytest.raises(httpx.ConnectError):
            await versions_served(second.url, 1)

    asyncio.run(scenario())


def test_set_weights_with_backends_replaces_the_backend_set_atomically(
    make_runtime: Callable[[], Runtime], tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with two_versions(make_runtime, tmp_path) as (runtime, v1, v2):
            route = await runtime.create_route("live", {"v1": v1}, {"v1": 100})
            assert route.metrics_url.startswith("http://") and route.metrics_url != route.url
            with pytest.raises(InputError, match="unknown version 'v2'"):
                await runtime.set_weights("live", {"v1": 90, "v2": 10})  # v2 is not behind the route yet
            await runtime.set_weights("live", {"v1": 90, "v2": 10}, backends={"v1": v1, "v2": v2})  # add a canary
            current = await runtime.get_route("live")
            assert current is not None and set(current.backends) == {"v1", "v2"} and current.weights["v2"] == 10
            assert Counter(await versions_served(route.url, 20)) == {"v1": 18, "v2": 2}  # local: SWRR, exact
            with pytest.raises(InputError, match="unknown version 'v2'"):  # refused: nothing changes
                await runtime.set_weights("live", {"v1": 50, "v2": 50}, backends={"v1": v1})
            await runtime.set_weights("live", {"v1": 100}, backends={"v1": v1})  # remove it again
            current = await runtime.get_route("live")
            assert current is not None and (set(current.backends), current.weights) == ({"v1"}, {"v1": 100})
            assert await versions_served(route.url, 10) == ["v1"] * 10
            stats = await runtime.route_stats("live")
            assert (stats.versions["v1"].requests, stats.versions["v2"].requests) == (28, 2)  # history is kept
            with pytest.raises(InputError, match="sum to 0"):
                await runtime.set_weights("live", {}, backends={"v1": v1})

    asyncio.run(scenario())


def test_a_cold_route_without_a_waker_answers_503_at_once(make_runtime: Callable[[], Runtime], tmp_path: Path) -> None:
    async def scenario() -> None:
        async with make_runtime() as runtime:
            v1 = await runtime.start(tiny(tmp_path, "v1"))
            idle = await runtime.create_route("idle", {}, {})  # cold from the start
            live = await runtime.create_route("live", {"v1": v1}, {"v1": 100})
            await runtime.set_weights("live", {}, backends={})  # scaled to zero
            current = await runtime.get_route("live")
            assert current is not None and (current.backends, current.weights) == ({}, {})
            started = time.monotonic()
            async with httpx.AsyncClient(timeout=10) as client:
                answers = [await client.get(route.url + "/version") for route in (idle, live)]
            assert time.monotonic() - started < 2
            assert [a.status_code for a in answers] == [503, 503]
            assert all("no waker" in a.json()["detail"] for a in answers)
            stats = await runtime.route_stats("live")
            assert (stats.wakes, stats.last_wake_s, stats.requests) == (0, None, 0)  # no version served them
            await runtime.set_weights("live", {"v1": 100}, backends={"v1": v1})  # warm again
            assert await versions_served(live.url, 2) == ["v1"] * 2

    asyncio.run(scenario())


def test_a_cold_route_wakes_on_its_first_request_and_reports_the_wake_time(
    make_runtime: Callable[[], Runtime], tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with make_runtime() as runtime:
            calls: list[Instance] = []

            async def wake() -> None:  # what a scaler does: start the version, then give the route its backend
                version = f"v{len(calls) + 1}"  # a fresh folder each time: v1, then v2
                instance = await runtime.start(tiny(tmp_path, version))
                calls.append(instance)
                await runtime.set_weights("lazy", {version: 100}, backends={version: instance})

            route = await runtime.create_route("lazy", {}, {}, waker=wake)
            assert (route.backends, route.weights) == ({}, {})
            assert (await runtime.route_stats("lazy")).wakes == 0
            started = time.monotonic()
            async with httpx.AsyncClient(timeout=90) as client:
                answers = await asyncio.gather(*(client.get(route.url + "/version") for _ in range(3)))
            elapsed_s = time.monotonic() - started
            assert [(a.status_code, a.json()["version"]) for a in answers] == [(200, "v1")] * 3  # the real answer
            assert len(calls) == 1  # one waker call for the three held requests
            stats = await runtime.route_stats("lazy")
            assert stats.wakes == 1 and stats.last_wake_s is not None and 0 < stats.last_wake_s <= elapsed_s
            assert stats.versions["v1"].requests == 3
            assert (await runtime.health(calls[0])).ready
            # scale to zero again: the next request wakes it again
            await runtime.set_weights("lazy", {}, backends={})
            await runtime.stop(calls[0])
            assert await versions_served(route.url, 1) == ["v2"]
            again = await runtime.route_stats("lazy")
            assert len(calls) == 2 and again.wakes == 2 and again.last_wake_s is not None and again.last_wake_s > 0
            assert json.loads(json.dumps(again.to_dict()))["wakes"] == 2

    asyncio.run(scenario())
