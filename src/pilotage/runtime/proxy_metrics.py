"""The Prometheus metrics of one traffic proxy: SLIs of services that expose none (issue #17).

As Flagger judges a canary on what its mesh sees, a service without its own ``/metrics`` is judged on what its
route's proxy (:class:`~pilotage.runtime.proxy.TrafficProxy`) counts. The metric names and label conventions are
the generated services' (``docs/events-contract.md``, :mod:`pilotage.observe.samples`), plus ``version``:

* ``http_requests_total{version, method, status}`` — every request through the route, real or synthetic; a
  backend that cannot be reached is counted ``status="502"`` (the proxy's answer); a request no version served (a
  cold route's 503) carries ``version=""``.
* ``http_request_duration_seconds{version, method, status}`` — histogram of the upstream latency (from forwarding to
  the full answer, the :class:`~pilotage.runtime.base.VersionStats` definition; a request held while a cold route
  wakes is timed from its forwarding), with ``prometheus_client``'s default buckets, those of the generated
  services, so the SLO's 500 ms latency threshold is a bucket bound. ``status`` lets the judge leave out the
  requests a version refused as invalid (4xx: :func:`pilotage.observe.samples.refused_as_invalid`).
* ``pilotage_proxy_weight_percent{version}`` — the current split; a version removed from the route stays at 0
  (:class:`~pilotage.observe.prometheus.ProxySource` tells an unknown version from one without requests by it).
* ``pilotage_proxy_wakes_total``, ``pilotage_proxy_last_wake_seconds``, ``pilotage_proxy_held_requests`` — the cold
  route's wake-ups, the last one's duration (first held request → a backend) and the requests held now.

There is no ``route`` label: the proxy does not know the service's path templates, and raw paths are unbounded.
``method`` is the request method when it is one of RFC 9110's, else ``OTHER`` (bounded, whatever clients send).

Each proxy has its own :class:`~prometheus_client.CollectorRegistry` (never the process-global one: a control plane
runs many routes), served as an ASGI app on the proxy's admin listener, apart from the routed port, so every path
of the routed port reaches the service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from pilotage.observe.samples import LATENCY_METRIC, PROXY_WEIGHT_METRIC, REQUESTS_METRIC

__all__ = ["METRICS_PATH", "ProxyMetrics"]

#: Path of the exposition on the admin listener.
METRICS_PATH = "/metrics"
#: Methods kept as their own ``method`` label value (RFC 9110 section 9 plus PATCH, RFC 5789).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _method(method: str) -> str:
    return method if method in _METHODS else "OTHER"


class ProxyMetrics:
    """The counters of one route, in their own registry, and the ASGI app that serves them.

    Args:
        route: the route's name (in the help texts only; it is not a label).
    """

    def __init__(self, route: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            REQUESTS_METRIC.removesuffix("_total"),
            f"HTTP requests through route {route} by version, method and status",
            ["version", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            LATENCY_METRIC,
            f"Upstream latency of requests through route {route} by version, method and status, seconds",
            ["version", "method", "status"],
            buckets=Histogram.DEFAULT_BUCKETS,
            registry=self.registry,
        )
        self.weight = Gauge(
            PROXY_WEIGHT_METRIC,
            f"Share of route {route}'s requests per version, percent",
            ["version"],
            registry=self.registry,
        )
        self.wakes = Counter("pilotage_proxy_wakes", f"Wake-ups of cold route {route}", registry=self.registry)
        self.last_wake = Gauge(
            "pilotage_proxy_last_wake_seconds",
            f"Duration of route {route}'s last wake-up, first held request to a backend, seconds",
            registry=self.registry,
        )
        self.held = Gauge("pilotage_proxy_held_requests", f"Requests route {route} holds now", registry=self.registry)

    def observe(self, version: str, method: str, status: int, latency_s: float) -> None:
        """Count one request ``version`` answered (or failed to: ``status`` 502) after ``latency_s`` seconds."""
        self.requests.labels(version, _method(method), str(status)).inc()
        self.latency.labels(version, _method(method), str(status)).observe(latency_s)

    def refused(self, method: str, status: int) -> None:
        """Count one request the proxy answered itself, no version serving it (``version=""``)."""
        self.requests.labels("", _method(method), str(status)).inc()

    def set_weights(self, weights: dict[str, int], known: set[str]) -> None:
        """Publish the split: each version of ``weights`` at its percent, the other ``known`` versions at 0."""
        for version in known | set(weights):
            self.weight.labels(version).set(weights.get(version, 0))

    def woke(self, duration_s: float) -> None:
        """Record one wake-up that took ``duration_s`` seconds."""
        self.wakes.inc()
        self.last_wake.set(duration_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point of the admin listener: ``GET /metrics`` answers the exposition, anything else 404."""
        if scope["type"] != "http":
            return
        if scope["path"] == METRICS_PATH and scope["method"] == "GET":
            status, kind, body = 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        else:
            status, kind, body = (
                404,
                "text/plain; charset=utf-8",
                f"not found; metrics are at {METRICS_PATH}\n".encode(),
            )
        headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
