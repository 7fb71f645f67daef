"""Prometheus metrics of the HTTP API, served at ``/metrics``.

``http_requests_total{method, route, status}`` counts answered requests (an unhandled error counts as 500) and
``http_request_duration_seconds{method, route}`` is their latency histogram; ``route`` is the route template
(``/orders/{order_id}``), or ``unmatched``. ``/metrics`` and ``/healthz`` themselves are not counted.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REGISTRY = CollectorRegistry()
REQUESTS = Counter("http_requests", "HTTP requests answered", ["method", "route", "status"], registry=REGISTRY)
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
UNCOUNTED = {"/metrics", "/healthz"}


class MetricsMiddleware:
    """ASGI middleware that counts and times every HTTP request but those to :data:`UNCOUNTED` paths."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNCOUNTED:
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets when the app raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", "unmatched")
            REQUESTS.labels(scope["method"], template, str(status)).inc()
            LATENCY.labels(scope["method"], template).observe(time.perf_counter() - start)


def metrics_response() -> Response:
    """Return the registry in the Prometheus text format."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
