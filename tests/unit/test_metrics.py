"""Prometheus /metrics reading: parsing real exposition output, windows, counter resets, errors."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from pathlib import Path

import httpx
import pytest

from pilotage.errors import BackendCorrupt, BackendUnavailable
from pilotage.observe.metrics import MetricsSnapshot, parse_status_totals, scrape, window
from pilotage.runtime.base import Workload
from pilotage.runtime.local import LocalRuntime
from tests.fixtures.tiny_service.harness import copy_service


def test_scrape_counts_what_a_real_service_answered(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            env = {"PILOTAGE_FAULT_ERROR_RATE": "0.5"}
            instance = await runtime.start(Workload("tiny", "v1", copy_service(tmp_path / "svc"), env=env))
            metrics_url = instance.url + "/metrics"
            first = await scrape(metrics_url)
            assert first.totals == {} and first.requests == 0
            async with httpx.AsyncClient() as client:
                answers = [await client.get(instance.url + path) for path in ["/notes", "/version"] * 60]
                await client.get(instance.url + "/healthz")  # not counted by convention
                seen = Counter(str(a.status_code) for a in answers)
                second = await scrape(metrics_url, client=client)
            assert second.totals == {k: float(v) for k, v in seen.items()}
            assert 20 <= seen["500"] <= 100  # the fault rate really applied
            delta = window(first, second)
            assert (delta.requests, delta.errors) == (120, seen["500"])
            assert delta.error_rate == pytest.approx(seen["500"] / 120)
            assert delta.to_dict()["requests"] == 120 and delta.duration_s >= 0

    asyncio.run(scenario())


def test_parse_sums_routes_and_methods_per_status_and_ignores_created() -> None:
    text = """# HELP http_requests_total HTTP requests
# TYPE http_requests_total counter
http_requests_total{method="GET",route="/a",status="200"} 7.0
http_requests_total{method="POST",route="/a",status="200"} 3.0
http_requests_total{method="GET",route="/b",status="503"} 2.0
http_requests_created{method="GET",route="/a",status="200"} 1.7e+09
# HELP other_total something else
# TYPE other_total counter
other_total 99.0
"""
    assert parse_status_totals(text) == {"200": 10.0, "503": 2.0}


def test_window_handles_counter_reset_like_prometheus_increase() -> None:
    before = MetricsSnapshot("u", 10.0, {"200": 100.0, "500": 10.0})
    after = MetricsSnapshot("u", 13.0, {"200": 30.0, "500": 12.0, "404": 1.0})  # 200 reset by a restart
    delta = window(before, after)
    assert (delta.requests, delta.errors, delta.duration_s) == (30 + 2 + 1, 2, 3.0)
    assert window(after, after).error_rate == 0.0


def test_unreachable_endpoint_is_backend_unavailable_naming_the_url() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/metrics"
    sock.close()
    with pytest.raises(BackendUnavailable, match=f"cannot scrape metrics at {url}") as info:
        asyncio.run(scrape(url, timeout_s=0.5))
    assert info.value.url == url


def test_garbage_is_backend_corrupt() -> None:
    with pytest.raises(BackendCorrupt, match="not Prometheus text format"):
        parse_status_totals('http_requests_total{status="200" 5\n', source="http://x/metrics")
