"""The traffic-splitting proxy of ``local:`` in front of real services: SWRR, concurrency, forwarding, latency.

What every runtime's routes do (switching, splits, statistics, bad weights) is in ``tests/contract/test_runtime.py``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilotage.errors import ConfigError, InputError
from pilotage.observe.samples import parse_exposition
from pilotage.runtime.base import Instance, Workload
from pilotage.runtime.local import LocalRuntime
from pilotage.runtime.proxy import (
    PROBE_HEADER,
    EmbeddedServer,
    SmoothWeightedRoundRobin,
    TrafficProxy,
    bind_local,
    check_weights,
    latency_summary,
)
from pilotage.runtime.traffic import TrafficGenerator
from tests.fixtures.tiny_service.harness import copy_service


def test_smooth_weighted_round_robin_is_exact_and_spread() -> None:
    balancer = SmoothWeightedRoundRobin({"base": 90, "canary": 10})
    picks = [balancer.pick() for _ in range(1000)]
    assert Counter(picks) == {"base": 900, "canary": 100}
    canary_at = [i for i, p in enumerate(picks) if p == "canary"]
    assert all(b - a == 10 for a, b in zip(canary_at, canary_at[1:], strict=False))  # one in ten, never bunched
    assert Counter(SmoothWeightedRoundRobin({"a": 0, "b": 100}).pick() for _ in range(50)) == {"b": 50}


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"a": 60, "b": 30}, "sum to 90, not 100"),
        ({"a": 110, "b": -10}, "weight of 'b' is -10"),
        ({"a": 50.0, "b": 50}, "weight of 'a' is 50.0"),
        ({"a": 50, "c": 50}, "unknown version 'c'"),
    ],
)
def test_invalid_weights_are_input_errors(weights: dict[str, int], message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_weights(weights, {"a", "b"})


def test_latency_summary_is_the_mean_and_the_nearest_rank_p95() -> None:
    assert latency_summary([]) == (None, None)
    assert latency_summary([7.0]) == (7.0, 7.0)
    assert latency_summary([20.0, 10.0]) == (15.0, 20.0)  # rank ceil(0.95 * 2) = 2
    assert latency_summary(float(ms) for ms in range(100, 0, -1)) == (50.5, 95.0)  # rank 95 of 1..100
    assert latency_summary([1.0] * 19 + [1000.0]) == (50.95, 1.0)  # one outlier in 20 is above p95


async def _two_versions(runtime: LocalRuntime, tmp_path: Path) -> tuple[Instance, Instance]:
    base = Workload("tiny", "v1", copy_service(tmp_path / "v1"), env={"TINY_VERSION": "v1"})
    canary = Workload("tiny", "v2", copy_service(tmp_path / "v2"), env={"TINY_VERSION": "v2"})
    one, two = await asyncio.gather(runtime.start(base), runtime.start(canary))
    return one, two


def test_concurrent_requests_get_exact_shares(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            v1, v2 = await _two_versions(runtime, tmp_path)
            route = await runtime.create_route("split", {"v1": v1, "v2": v2}, {"v1": 90, "v2": 10})
            served: Counter[str] = Counter()
            # 25 connections at a time: 100 simultaneous connects overflowed the accept backlog on a loaded 2-core CI
            async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=25)) as client:
                for batch in range(4):
                    answers = await asyncio.gather(*(client.get(route.url + "/version") for _ in range(100)))
                    for answer in answers:
                        assert answer.status_code == 200
                        # the body comes from the process the header names: the proxy really forwarded it
                        assert answer.json()["version"] == answer.headers["x-pilotage-version"]
                        served[answer.json()["version"]] += 1
                    if batch == 1:
                        await runtime.set_weights("split", {"v1": 50, "v2": 50})
            # 200 requests at 10 % then 200 at 50 %: SWRR picks exactly 20 + 100 canary requests, in any interleaving
            assert served == {"v1": 280, "v2": 120}
            stats = await runtime.route_stats("split")
            assert stats.requests == 400
            assert stats.versions["v2"].requests == served["v2"]
            assert stats.versions["v1"].errors == stats.versions["v2"].errors == 0
            assert stats.versions["v1"].latency_window == 280  # under the window of 1000

    asyncio.run(scenario())


def test_proxy_forwards_bodies_queries_and_statuses_and_tracks_idleness(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            v1 = await runtime.start(Workload("tiny", "v1", copy_service(tmp_path / "v1")))
            route = await runtime.create_route("notes", {"v1": v1}, {"v1": 100})
            before = await runtime.route_stats("notes")
            assert before.last_request_at is None and before.requests == 0
            async with httpx.AsyncClient() as client:
                created = await client.post(route.url + "/notes?x=1", json={"text": "via proxy"})
                assert created.status_code == 201 and created.json()["text"] == "via proxy"
                assert created.headers["x-pilotage-version"] == "v1"
                got = await client.get(route.url + f"/notes/{created.json()['id']}")
                assert got.json() == created.json()
                assert (await client.get(route.url + "/notes/999")).status_code == 404
            stats = await runtime.route_stats("notes")
            assert (stats.versions["v1"].requests, stats.versions["v1"].errors) == (3, 0)  # a 404 is no error
            assert stats.last_request_at is not None and stats.idle_s() < 5
            await asyncio.sleep(0.3)
            assert (await runtime.route_stats("notes")).idle_s() >= 0.3

    asyncio.run(scenario())


def test_unreachable_backend_answers_502_and_counts_an_error() -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()

    async def scenario() -> None:
        proxy = TrafficProxy("dead", {"gone": f"http://127.0.0.1:{port}"}, {"gone": 100})
        url = await proxy.start()
        try:
            async with httpx.AsyncClient() as client:
                answer = await client.get(url + "/anything")
            assert answer.status_code == 502 and "upstream" in answer.json()["detail"]
            gone = proxy.stats().versions["gone"]
            assert (gone.errors, gone.latency_window) == (1, 1) and gone.mean_latency_ms == gone.p95_latency_ms
        finally:
            await proxy.stop()

    asyncio.run(scenario())


def test_proxy_port_in_use_is_a_config_error() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]

    async def scenario() -> None:
        proxy = TrafficProxy("busy", {"a": "http://127.0.0.1:1"}, {"a": 100}, port=port)
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is already in use"):
            await proxy.start()

    try:
        asyncio.run(scenario())
    finally:
        holder.close()


async def _hello(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    """A backend in-process: every request answers 200 ``hello``."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})


def test_a_cold_route_that_does_not_wake_in_time_answers_503_and_holds_a_bounded_number() -> None:
    calls: list[str] = []
    cancelled = asyncio.Event()

    async def never() -> None:
        calls.append("wake")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def scenario() -> None:
        proxy = TrafficProxy("slow", {}, {}, waker=never, wake_timeout_s=0.5, max_held=2)
        url = await proxy.start()
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                first = asyncio.create_task(client.get(url + "/a"))
                second = asyncio.create_task(client.get(url + "/b"))
                await asyncio.sleep(0.2)  # both held now
                over = await client.get(url + "/c")
                assert over.status_code == 503 and "already holds 2 requests" in over.json()["detail"]
                held = await asyncio.gather(first, second)
                assert [a.status_code for a in held] == [503, 503]
                assert all("did not wake up within 0.5 s" in a.json()["detail"] for a in held)
                late = await client.get(url + "/d")  # the waker still runs: this request joins its wake-up
                assert late.status_code == 503 and calls == ["wake"]
                exposition = (await client.get(proxy.metrics_url)).text
            assert parse_exposition(exposition, labels={"version": ""}).statuses == {"503": 4.0}
            assert "pilotage_proxy_held_requests 0.0" in exposition and "pilotage_proxy_wakes_total 0.0" in exposition
            assert (proxy.stats().wakes, proxy.stats().last_wake_s, proxy.stats().requests) == (0, None, 0)
        finally:
            await proxy.stop()
        await asyncio.wait_for(cancelled.wait(), 5)  # closing the route cancelled its waker

    asyncio.run(scenario())


def test_a_failing_waker_answers_503_at_once_and_the_next_request_wakes_again() -> None:
    async def scenario() -> None:
        sock = bind_local(0)
        backend = EmbeddedServer(_hello, "hello backend")
        await backend.launch(sock)
        attempts: list[int] = []

        async def flaky() -> None:
            attempts.append(len(attempts))
            if len(attempts) == 1:
                raise RuntimeError("no capacity left")
            await asyncio.sleep(0.2)  # a start that takes a while
            proxy.set_weights({"hello": 100}, {"hello": f"http://127.0.0.1:{sock.getsockname()[1]}"})

        proxy = TrafficProxy("flaky", {}, {}, waker=flaky, wake_timeout_s=30)
        url = await proxy.start()
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                started = time.monotonic()
                failed = await client.get(url + "/x")
                assert time.monotonic() - started < 5  # not the 30 s timeout
                assert failed.status_code == 503
                assert failed.json()["detail"] == "route 'flaky' failed to wake up: RuntimeError: no capacity left"
                woken = await asyncio.gather(*(client.get(url + "/x") for _ in range(3)))
                assert [(a.status_code, a.text) for a in woken] == [(200, "hello")] * 3
                exposition = (await client.get(proxy.metrics_url)).text
            assert attempts == [0, 1]
            stats = proxy.stats()
            assert stats.wakes == 1 and stats.last_wake_s is not None and 0.2 <= stats.last_wake_s < 5
            assert stats.versions["hello"].requests == 3
            assert "pilotage_proxy_wakes_total 1.0" in exposition
            last = [line for line in exposition.splitlines() if line.startswith("pilotage_proxy_last_wake_seconds ")]
            assert len(last) == 1 and abs(float(last[0].split()[1]) - stats.last_wake_s) < 1e-3
            assert parse_exposition(exposition, labels={"version": "hello"}).statuses == {"200": 3.0}
        finally:
            await proxy.stop()
            await backend.halt()

    asyncio.run(scenario())


def test_uvicorn_shows_no_traceback_for_a_request_cancelled_at_shutdown() -> None:
    import logging
    import sys

    from pilotage.runtime.proxy import _not_a_cancelled_request

    def record(exc: BaseException) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            return logging.LogRecord(
                "uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI", (), sys.exc_info()
            )

    assert _not_a_cancelled_request(record(asyncio.CancelledError())) is False
    assert _not_a_cancelled_request(record(ValueError("a real bug"))) is True  # other errors are still shown
    assert _not_a_cancelled_request(logging.LogRecord("uvicorn.error", logging.WARNING, "", 1, "x", (), None))


def _recorder(version: str, seen: list[set[str]]) -> Callable[..., Awaitable[None]]:
    """An ASGI backend answering ``{"version": ...}`` that keeps the header names of every request in ``seen``."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append({name.decode("latin-1") for name, _ in scope["headers"]})
        body = json.dumps({"version": version}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    return app


def test_probes_are_split_evenly_among_live_versions_and_their_header_never_reaches_a_service() -> None:
    """Synthetic traffic (probes) gives a 10 % canary half the evidence; users' requests keep the weights."""
    seen: dict[str, list[set[str]]] = {"v1": [], "v2": []}

    async def scenario() -> None:
        backends, urls = [], {}
        for version in ("v1", "v2"):
            sock = bind_local(0)
            urls[version] = f"http://127.0.0.1:{sock.getsockname()[1]}"
            backend = EmbeddedServer(_recorder(version, seen[version]), f"backend {version}")
            await backend.launch(sock)
            backends.append(backend)
        proxy = TrafficProxy("probes", urls, {"v1": 90, "v2": 10})
        await proxy.start()
        try:
            generator = TrafficGenerator(proxy.url, ["/items"], 1.0, probe=True, seed=1)
            assert (await generator.burst(40)).statuses == {200: 40}
            probed = {v: s.requests for v, s in proxy.stats().versions.items()}
            assert probed == {"v1": 20, "v2": 20}  # evenly, not 36/4
            async with httpx.AsyncClient(timeout=10) as client:
                for _ in range(100):  # a user's requests, one with a forged probe header
                    await client.get(proxy.url + "/items", headers={PROBE_HEADER: "guess"})
            users = {v: s.requests - probed[v] for v, s in proxy.stats().versions.items()}
            assert users == {"v1": 90, "v2": 10}  # a wrong token is a user: the weights
            proxy.set_weights({"v1": 0, "v2": 100})
            await TrafficGenerator(proxy.url, ["/items"], 1.0, probe=True).burst(10)
            assert proxy.stats().versions["v2"].requests == 20 + 10 + 10  # no probe to a version at 0 %
        finally:
            await proxy.stop()
            for backend in backends:
                await backend.halt()

    asyncio.run(scenario())
    assert len(seen["v1"]) + len(seen["v2"]) == 150
    assert not any(PROBE_HEADER in names for names in seen["v1"] + seen["v2"])  # removed, token or not
