"""Read request counters from a service's Prometheus ``/metrics`` endpoint.

Generated services expose the counter ``http_requests_total{method, route, status}`` (the conventions in
``docs/events-contract.md``). :func:`scrape` fetches the text exposition format and sums that counter per
``status`` label; :func:`window` turns two scrapes into the requests and server errors of the interval between
them, which is what a rollout step is judged on.

Parsing uses ``prometheus_client.parser.text_string_to_metric_families`` (the reference parser of the format,
https://prometheus.io/docs/instrumenting/exposition_formats/). A counter that went *down* between two scrapes
was reset (the process restarted); as Prometheus' ``increase()`` does, the new value is then taken as the
increase since the reset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from pilotage.errors import BackendCorrupt, BackendUnavailable

__all__ = ["REQUESTS_METRIC", "MetricsSnapshot", "RequestWindow", "parse_status_totals", "scrape", "window"]

#: Name of the request counter family (samples are ``http_requests_total``; the parser drops ``_total``).
REQUESTS_METRIC = "http_requests"


@dataclass(frozen=True)
class MetricsSnapshot:
    """One scrape of a ``/metrics`` endpoint.

    ``totals`` maps HTTP status (``"200"``, ``"500"`` …) to the cumulative request count, ``at`` is the Unix time
    of the scrape in seconds, ``url`` the endpoint.
    """

    url: str
    at: float
    totals: dict[str, float] = field(default_factory=dict)

    @property
    def requests(self) -> float:
        """Cumulative requests of every status."""
        return sum(self.totals.values())

    @property
    def errors(self) -> float:
        """Cumulative server errors (status 5xx)."""
        return sum(v for k, v in self.totals.items() if _is_5xx(k))


@dataclass(frozen=True)
class RequestWindow:
    """Requests and server errors (5xx) counted between two scrapes, over ``duration_s`` seconds."""

    requests: int
    errors: int
    duration_s: float

    @property
    def error_rate(self) -> float:
        """``errors / requests`` (0.0 when there were no requests)."""
        return self.errors / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return ``{requests, errors, error_rate, duration_s}`` (the shape used in ``slo.evaluated``)."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 6),
            "duration_s": round(self.duration_s, 3),
        }


def _is_5xx(status: str) -> bool:
    return len(status) == 3 and status.startswith("5")


def parse_status_totals(text: str, *, source: str = "metrics text") -> dict[str, float]:
    """Sum the ``http_requests_total`` samples of Prometheus exposition ``text`` per ``status`` label.

    Samples without a ``status`` label are counted under ``"unknown"``; ``_created`` samples are ignored.

    Raises:
        BackendCorrupt: the text is not valid Prometheus exposition format (``source`` names where it came from).
    """
    totals: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            if family.name not in (REQUESTS_METRIC, REQUESTS_METRIC + "_total"):
                continue
            for sample in family.samples:
                if sample.name != REQUESTS_METRIC + "_total":
                    continue
                status = sample.labels.get("status", "unknown")
                totals[status] = totals.get(status, 0.0) + float(sample.value)
    except (ValueError, TypeError, IndexError) as exc:
        raise BackendCorrupt(
            f"{source} is not Prometheus text format: {exc}",
            hint="serve /metrics with prometheus_client.generate_latest",
            source=source,
        ) from exc
    return totals


async def scrape(url: str, *, timeout_s: float = 2.0, client: httpx.AsyncClient | None = None) -> MetricsSnapshot:
    """GET ``url`` (a ``/metrics`` endpoint) and return the per-status request totals.

    Args:
        url: full URL of the endpoint, e.g. ``http://127.0.0.1:8001/metrics``.
        timeout_s: connect + read timeout, seconds.
        client: an open client to reuse (one is created and closed otherwise).

    Raises:
        BackendUnavailable: the endpoint cannot be reached or answers a non-200 status (names the URL).
        BackendCorrupt: the body is not Prometheus text format.
    """
    at = time.time()
    try:
        if client is None:
            async with httpx.AsyncClient(timeout=timeout_s) as own:
                response = await own.get(url)
        else:
            response = await client.get(url, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise BackendUnavailable(
            f"cannot scrape metrics at {url}: {type(exc).__name__}: {exc}",
            hint="check that the service is running and serves /metrics",
            url=url,
        ) from exc
    if response.status_code != 200:
        raise BackendUnavailable(
            f"metrics endpoint {url} answered HTTP {response.status_code}",
            hint="serve Prometheus text at /metrics with status 200",
            url=url,
        )
    return MetricsSnapshot(url=url, at=at, totals=parse_status_totals(response.text, source=url))


def window(before: MetricsSnapshot, after: MetricsSnapshot) -> RequestWindow:
    """Return the requests and 5xx errors counted between two scrapes of the same endpoint.

    Per status, the increase is ``after - before``; when a counter decreased (a reset: the process restarted)
    the increase is ``after`` itself, as in Prometheus' ``increase()``.
    """
    requests = 0.0
    errors = 0.0
    for status, value in after.totals.items():
        previous = before.totals.get(status, 0.0)
        increase = value - previous if value >= previous else value
        requests += increase
        if _is_5xx(status):
            errors += increase
    return RequestWindow(requests=round(requests), errors=round(errors), duration_s=max(0.0, after.at - before.at))
