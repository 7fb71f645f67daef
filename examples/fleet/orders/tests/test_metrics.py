from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.metrics import REGISTRY, MetricsMiddleware


def _samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _count(samples: dict, method: str, route: str, status: str) -> float:
    key = ("http_requests_total", (("method", method), ("route", route), ("status", status)))
    return samples.get(key, 0.0)


def test_requests_are_counted_by_route_template_and_status(client: TestClient) -> None:
    before = _samples(client)
    client.post("/orders", json={"product_id": 1, "quantity": 1, "unit_price_cents": 100})
    client.get("/orders/1")
    client.get("/orders/999")
    client.get("/healthz")
    after = _samples(client)
    assert _count(after, "POST", "/orders", "201") - _count(before, "POST", "/orders", "201") == 1
    assert _count(after, "GET", "/orders/{order_id}", "200") - _count(before, "GET", "/orders/{order_id}", "200") == 1
    assert _count(after, "GET", "/orders/{order_id}", "404") - _count(before, "GET", "/orders/{order_id}", "404") == 1
    assert not any(labels and ("route", "/healthz") in labels for _, labels in after)


def test_latency_histogram_counts_each_request(client: TestClient) -> None:
    key = ("http_request_duration_seconds_count", (("method", "GET"), ("route", "/orders")))
    before = _samples(client).get(key, 0.0)
    for _ in range(3):
        client.get("/orders")
    assert _samples(client)[key] - before == 3


def test_a_crash_is_counted_as_500() -> None:
    async def explode(request: Request) -> Response:
        raise RuntimeError("boom")

    app = Starlette(routes=[Route("/explode", explode)], middleware=[Middleware(MetricsMiddleware)])
    labels = {"method": "GET", "route": "/explode", "status": "500"}
    before = REGISTRY.get_sample_value("http_requests_total", labels) or 0.0
    with TestClient(app, raise_server_exceptions=False) as test_client:
        assert test_client.get("/explode").status_code == 500
    assert REGISTRY.get_sample_value("http_requests_total", labels) == before + 1
