"""Metric sources for SLIs: scrape each version's ``/metrics`` directly, or ask a Prometheus server in PromQL.

Both sources return the same thing, a :class:`Sample`: the *cumulative* counters of one version at one instant
(requests per status, the latency histogram's ``_sum``/``_count`` and its cumulative buckets). Rates, error ratios
and burn rates are computed from the difference of two samples (:func:`delta`), exactly as Prometheus'
``increase()`` does, so the judge and the burn-rate alerts do not care where the numbers came from.

* :class:`ScrapeSource` (default, ``metrics_source_url = "scrape:"``): ``GET <instance>/metrics`` and parse the
  text exposition format with ``prometheus_client``'s reference parser
  (https://prometheus.io/docs/instrumenting/exposition_formats/).
* :class:`ProxySource`: the counters a route's proxy keeps per version (``GET <route.metrics_url>``, label
  ``version``, :mod:`pilotage.runtime.proxy_metrics`), for a service that exposes no metrics of its own: it is
  judged on what its proxy sees, as Flagger judges on what a mesh sees.
* :class:`PromQLSource` (``prometheus://host:9090``): instant queries on the HTTP API
  (https://prometheus.io/docs/prometheus/latest/querying/api/) — ``sum by (status) (http_requests_total{SEL})``
  and the histogram series — where ``SEL`` is the version's label selector (default ``version="<v>"``, set by the
  scrape config's target labels).

**Populations.** ``sample(version, instance_url, labels)`` keeps only the series whose labels include every pair of
``labels`` (e.g. ``{"flag": "on"}``: the requests one instance served with its release flag on, see
:mod:`pilotage.runtime.flags`), so a flag release compares flag-on with flag-off requests of one process. The
scrape source filters the parsed samples; the PromQL source adds the pairs to the selector, values escaped as
PromQL string literals. A population that has served nothing yet has zero counters, not :class:`NoData`.

Failure modes, all :class:`~pilotage.errors.BackendError` subclasses so the caller can turn them into an
*Inconclusive* verdict with the reason (never a pass): unreachable endpoint or server (``BackendUnavailable``),
a query Prometheus rejects or a body that is not the format (``BackendCorrupt``), and an empty result
(:class:`NoData`, a version that stopped exposing its metrics or a selector that matches nothing).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from prometheus_client.metrics_core import Metric

from pilotage.errors import BackendCorrupt, BackendUnavailable, ConfigError
from pilotage.httpclient import async_client
from pilotage.observe.samples import (
    LATENCY_METRIC,
    PROXY_WEIGHT_METRIC,
    REQUESTS_METRIC,
    VALID_LATENCY_MATCHER,
    NoData,
    Sample,
    _check_labels,
    fold_families,
    parse_exposition,
    parse_families,
)

__all__ = [
    "MetricSource",
    "PromQLSource",
    "ProxySource",
    "ScrapeSource",
    "open_source",
    "promql_string",
]


def promql_string(value: str) -> str:
    """Return ``value`` as a double-quoted PromQL string literal.

    Backslash, double quote and control characters are escaped as in Go, whose rules PromQL strings follow
    (https://prometheus.io/docs/prometheus/latest/querying/basics/#string-literals).
    """
    out = []
    for char in value:
        if char in '\\"':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


class MetricSource(Protocol):
    """Where SLIs come from: the cumulative :class:`Sample` of one version now."""

    async def sample(self, version: str, instance_url: str, labels: Mapping[str, str] | None = None) -> Sample:
        """Return the version's counters now (``instance_url`` is its base URL, used by direct scraping).

        ``labels`` narrows the sample to the series carrying all these label pairs (a population such as
        ``{"flag": "on"}``); None counts every series of the version.

        Raises:
            InputError: a ``labels`` name is not a label name.
            BackendError: unreachable, malformed, failed query, or :class:`NoData`.
        """

    async def aclose(self) -> None:
        """Release connections."""


class ScrapeSource:
    """Direct scraping of ``<instance_url>/metrics`` (the default; no Prometheus server needed).

    Args:
        timeout_s: connect + read timeout per scrape, seconds.
        path: the metrics path of the instances (a service descriptor's ``metrics``, default ``/metrics``).
    """

    def __init__(self, *, timeout_s: float = 2.0, path: str = "/metrics") -> None:
        self.timeout_s = timeout_s
        self.path = path if path.startswith("/") else "/" + path
        self._client: httpx.AsyncClient | None = None

    async def sample(self, version: str, instance_url: str, labels: Mapping[str, str] | None = None) -> Sample:
        """Scrape ``instance_url`` + :attr:`path` and keep the ``labels`` population; see :class:`MetricSource`."""
        _check_labels(labels)
        url = instance_url.rstrip("/") + self.path
        at, text = await self._scrape(url, f"version {version} stopped exposing metrics")
        return parse_exposition(text, at=at, source=url, labels=labels)

    async def _scrape(self, url: str, gone: str, hint: str = "serve /metrics") -> tuple[float, str]:
        """``GET url``: return the time of the request (Unix s) and the body; ``gone`` says what a 404 means.

        Raises:
            BackendUnavailable: unreachable, or an answer other than 200 and 404.
            NoData: 404.
        """
        if self._client is None:
            self._client = async_client(timeout=self.timeout_s)
        at = time.time()
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(
                f"cannot scrape {url}: {type(exc).__name__}", hint="is it running?", url=url
            ) from exc
        if response.status_code == 404:
            raise NoData(f"{url} answered 404: {gone}", hint=hint)
        if response.status_code != 200:
            raise BackendUnavailable(f"{url} answered HTTP {response.status_code}", hint="serve /metrics", url=url)
        return at, response.text

    async def aclose(self) -> None:
        """Close the HTTP client. Idempotent."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class ProxySource(ScrapeSource):
    """The requests a route's proxy forwarded to each version, scraped from the route's ``metrics_url``.

    For services without their own ``/metrics``: the proxy counts every request through the route
    (:mod:`pilotage.runtime.proxy_metrics`), and a version's sample is the series with ``version="<v>"`` (and the
    population's ``labels``). Blue-green's preview is counted the same way when it is a route of its own with the
    green version as its only backend.

    Args:
        metrics_url: the route's :attr:`~pilotage.runtime.base.Route.metrics_url` (``http://127.0.0.1:P/metrics``).
        timeout_s: connect + read timeout per scrape, seconds.

    Raises:
        ConfigError: ``metrics_url`` is not an http(s) URL.
    """

    def __init__(self, metrics_url: str, *, timeout_s: float = 2.0) -> None:
        if not metrics_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"proxy metrics URL {metrics_url!r} is not an http URL", hint="pass the route's metrics_url"
            )
        super().__init__(timeout_s=timeout_s)
        self.metrics_url = metrics_url
        self._scraping: asyncio.Future[tuple[float, list[Metric]]] | None = None

    async def sample(self, version: str, instance_url: str, labels: Mapping[str, str] | None = None) -> Sample:
        """Scrape the proxy and keep ``{"version": version, **labels}``; ``instance_url`` is not used.

        Both populations of a poll ask at once (:func:`~pilotage.rollout.observation.observe` gathers them): they
        share one scrape and one parse of the route's exposition (:meth:`_families`), so both are counted at the
        same instant and the control plane parses the text once, not four times.

        Raises:
            InputError: a ``labels`` name is not a label name.
            NoData: the route never had a backend for ``version`` (a version with no request yet is zero counts).
            BackendError: as :meth:`ScrapeSource.sample`.
        """
        wanted = {**_check_labels(labels), "version": version}
        at, families = await self._families()
        if not _has_version(families, version):
            raise NoData(
                f"{self.metrics_url}: the route never had a backend for version {version}",
                hint="judge a version that is behind this route, or use the route of its preview",
                version=version,
            )
        return fold_families(families, at=at, source=self.metrics_url, labels=wanted)

    async def _families(self) -> tuple[float, list[Metric]]:
        """(time, parsed families) of the scrape in flight, or of a new one when none is (single flight)."""
        if self._scraping is None or self._scraping.done():
            self._scraping = asyncio.ensure_future(self._scrape_families())
            self._scraping.add_done_callback(_retrieved)  # every awaiter may have been cancelled
        return await asyncio.shield(self._scraping)

    async def _scrape_families(self) -> tuple[float, list[Metric]]:
        # one scrape serves every version of the poll: a 404 names the route's listener, not the first caller
        gone, hint = "no route's metrics there", "judge through an open route's metrics_url"
        at, text = await self._scrape(self.metrics_url, gone, hint)
        return at, parse_families(text, self.metrics_url)


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a shared scrape's outcome as seen (its awaiters raise it themselves)."""
    if not future.cancelled():
        future.exception()


def _has_version(families: Sequence[Metric], version: str) -> bool:
    """Whether the proxy exposition has a :data:`PROXY_WEIGHT_METRIC` series for ``version``."""
    for family in families:
        if family.name == PROXY_WEIGHT_METRIC:
            return any(s.labels.get("version") == version for s in family.samples)
    return False


class PromQLSource:
    """Counters of a version read from a Prometheus server with instant PromQL queries.

    Args:
        url: ``prometheus://host:port`` (or ``http://host:port``).
        selector: label selector template; ``{version}`` is replaced, default ``version="{version}"``.
        timeout_s: HTTP timeout per query, seconds.

    Raises:
        ConfigError: the URL has no host.
    """

    def __init__(self, url: str, *, selector: str = 'version="{version}"', timeout_s: float = 5.0) -> None:
        parts = urlsplit(url)
        if not parts.hostname:
            raise ConfigError(f"Prometheus URL {url!r} has no host", hint="use prometheus://127.0.0.1:9090")
        self.base_url = f"http://{parts.hostname}:{parts.port or 9090}"
        self.selector = selector
        self.timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """Run an instant query and return ``data.result`` (a vector: ``[{metric: {labels}, value: [t, "v"]}]``).

        Raises:
            BackendUnavailable: the server cannot be reached.
            BackendCorrupt: the server rejected the query (``status: error``, e.g. a PromQL syntax error) or the
                answer is not the documented JSON.
        """
        if self._client is None:
            self._client = async_client(timeout=self.timeout_s)
        try:
            response = await self._client.get(self.base_url + "/api/v1/query", params={"query": promql})
        except httpx.HTTPError as exc:
            raise BackendUnavailable(
                f"Prometheus {self.base_url} unreachable: {type(exc).__name__}",
                hint="start Prometheus or fix metrics_source_url",
            ) from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise BackendCorrupt(
                f"Prometheus answered non-JSON (HTTP {response.status_code})", hint="check URL", query=promql
            ) from exc
        if body.get("status") != "success":
            raise BackendCorrupt(
                f"PromQL query failed: {body.get('errorType', '?')}: {body.get('error', '?')} (query {promql!r})",
                hint="fix the query or the selector",
                query=promql,
            )
        result = body.get("data", {}).get("result")
        if not isinstance(result, list):
            raise BackendCorrupt(f"PromQL answer has no result vector (query {promql!r})", hint="instant query")
        return result

    async def sample(self, version: str, instance_url: str, labels: Mapping[str, str] | None = None) -> Sample:
        """Query the counters of the version's ``labels`` population; see :class:`MetricSource`.

        ``instance_url`` is not used; ``labels`` are added to the selector as ``name="value"`` matchers.
        """
        matchers = [f"{name}={promql_string(value)}" for name, value in _check_labels(labels).items()]
        sel = ",".join(part for part in (self.selector.format(version=version), *matchers) if part)
        at = time.time()
        statuses = {
            str(r["metric"].get("status", "unknown")): _value(r)
            for r in await self.query(f"sum by (status) ({REQUESTS_METRIC}{{{sel}}})")
        }
        if not statuses:
            raise NoData(
                f"Prometheus has no {REQUESTS_METRIC}{{{sel}}} series (empty result)",
                hint="check the scrape config and that the version exposes /metrics",
                version=version,
            )
        timed = f"{sel},{VALID_LATENCY_MATCHER}" if sel else VALID_LATENCY_MATCHER  # no 4xx (refused_as_invalid)
        lat_sum = sum(_value(r) for r in await self.query(f"sum({LATENCY_METRIC}_sum{{{timed}}})"))
        lat_count = sum(_value(r) for r in await self.query(f"sum({LATENCY_METRIC}_count{{{timed}}})"))
        buckets = {
            float(r["metric"].get("le", "+Inf")): _value(r)
            for r in await self.query(f"sum by (le) ({LATENCY_METRIC}_bucket{{{timed}}})")
        }
        names = frozenset({REQUESTS_METRIC, *((LATENCY_METRIC,) if lat_count or buckets else ())})
        return Sample(at, statuses, lat_sum, lat_count, buckets, names)

    async def aclose(self) -> None:
        """Close the HTTP client. Idempotent."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _value(result: dict[str, Any]) -> float:
    try:
        value = float(result["value"][1])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise BackendCorrupt(f"PromQL sample without a value: {result!r}", hint="instant vector query") from exc
    return value if math.isfinite(value) else 0.0


class PerVersionSource:
    """Samples each version from its own source.

    Issue #17: a delivered version is judged through its proxy, another through its own ``/metrics``, and
    blue-green's green through its preview route.

    Args:
        sources: version → its source; versions not listed use ``default``.
        default: the source of every other version.
    """

    def __init__(self, sources: Mapping[str, MetricSource], default: MetricSource) -> None:
        self.sources, self.default = dict(sources), default

    async def sample(self, version: str, instance_url: str, labels: Mapping[str, str] | None = None) -> Sample:
        """Delegate to the version's source; see :class:`MetricSource`."""
        return await self.sources.get(version, self.default).sample(version, instance_url, labels)

    async def aclose(self) -> None:
        """Close every source once."""
        seen: set[int] = set()
        for source in (*self.sources.values(), self.default):
            if id(source) not in seen:
                seen.add(id(source))
                await source.aclose()


def open_source(url: str) -> ScrapeSource | PromQLSource:
    """Return the metric source for ``url``: ``scrape:`` (direct ``/metrics``) or ``prometheus://host:port``.

    Raises:
        ConfigError: unknown scheme (lists the known ones).
    """
    if url in ("", "scrape:") or url.startswith("scrape:"):
        return ScrapeSource()
    if url.startswith(("prometheus://", "http://")):
        return PromQLSource(url)
    raise ConfigError(f"unknown metrics source {url!r}", hint="use 'scrape:' or 'prometheus://host:9090'")
