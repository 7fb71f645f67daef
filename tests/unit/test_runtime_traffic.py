"""The synthetic traffic generator against a real proxy and service."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pilotage.errors import InputError
from pilotage.runtime.base import Workload
from pilotage.runtime.local import LocalRuntime
from pilotage.runtime.traffic import TrafficGenerator, get_traffic, start_traffic, stop_traffic
from tests.fixtures.tiny_service.harness import copy_service


def test_generator_sends_at_the_requested_rate_through_the_proxy(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            v1 = await runtime.start(Workload("tiny", "v1", copy_service(tmp_path / "v1")))
            route = await runtime.create_route("t", {"v1": v1}, {"v1": 100})
            generator = start_traffic("t", route.url, ["/notes", "/version", "/missing"], 60.0)
            assert get_traffic("t") is generator and generator.running
            with pytest.raises(InputError, match="already running"):
                start_traffic("t", route.url, ["/notes"], 1.0)
            await asyncio.sleep(1.0)
            stats = await stop_traffic("t")
            assert stats is not None and not generator.running and get_traffic("t") is None
            assert 45 <= stats.sent <= 75, stats
            assert stats.failures == 0 and stats.skipped == 0
            assert stats.statuses[200] >= 2 * stats.statuses[404] - 2  # 2 of 3 paths exist
            assert sum(stats.statuses.values()) == stats.sent
            assert (await runtime.route_stats("t")).requests == stats.sent
            await asyncio.sleep(0.2)
            assert (await runtime.route_stats("t")).requests == stats.sent  # really stopped
            assert await stop_traffic("t") is None

    asyncio.run(scenario())


def test_generator_with_duration_stops_by_itself_and_counts_failures() -> None:
    async def scenario() -> None:
        generator = TrafficGenerator("http://127.0.0.1:9", ["/x"], 20.0, duration_s=0.5, timeout_s=0.5).start()
        await asyncio.sleep(1.2)
        assert not generator.running
        assert generator.stats.sent == generator.stats.failures and 8 <= generator.stats.sent <= 12

    asyncio.run(scenario())


@pytest.mark.parametrize(("paths", "rps"), [([], 1.0), (["notes"], 1.0), (["/notes"], 0.0)])
def test_invalid_generator_arguments(paths: list[str], rps: float) -> None:
    with pytest.raises(InputError):
        TrafficGenerator("http://127.0.0.1:1", paths, rps)


def test_each_request_names_a_synthetic_user_from_the_pool() -> None:
    from pilotage.runtime.proxy import EmbeddedServer, bind_local
    from pilotage.runtime.traffic import TARGETING_KEY_HEADER

    seen: list[str] = []

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            seen.append(dict(scope["headers"]).get(TARGETING_KEY_HEADER.encode(), b"").decode())
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def scenario() -> None:
        sock = bind_local(0)
        server = EmbeddedServer(app, "header recorder")
        await server.launch(sock)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        generator = TrafficGenerator(url, ["/x"], 200.0, duration_s=1.0, targeting_keys=5, seed=7).start()
        while generator.running:
            await asyncio.sleep(0.05)
        await server.halt()
        assert generator.stats.statuses == {200: generator.stats.sent} and len(seen) == generator.stats.sent
        assert set(seen) == {f"user-{i}" for i in range(5)}  # ~200 draws from 5 users reach every one

    asyncio.run(scenario())
    with pytest.raises(InputError, match="targeting_keys"):
        TrafficGenerator("http://127.0.0.1:1", ["/x"], 1.0, targeting_keys=0)
