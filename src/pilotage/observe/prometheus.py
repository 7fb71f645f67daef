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
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from pilotage.errors import BackendCorrupt, BackendError, BackendUnavailable, ConfigError, InputError
from pilotage.httpclient import async_client

__all__ = [
    "LATENCY_METRIC",
    "REQUESTS_METRIC",
    "MetricSource",
    "NoData",
    "PROXY_WEIGHT_METRIC",
    "PromQLSource",
    "VALID_LATENCY_MATCHER",
    "ProxySource",
    "Sample",
    "ScrapeSource",
    "WindowDelta",
    "delta",
    "increase",
    "intervals",
    "refused_as_invalid",
    "open_source",
    "fold_families",
    "parse_exposition",
    "parse_families",
    "promql_string",
    "restarted",
]

#: Request counter of the generated-service conventions (``docs/events-contract.md``).
REQUESTS_METRIC = "http_requests_total"
#: Latency histogram of the generated-service conventions, seconds.
LATENCY_METRIC = "http_request_duration_seconds"
#: Gauge of a traffic proxy: each version's current share of the route's requests, percent (0 once removed).
PROXY_WEIGHT_METRIC = "pilotage_proxy_weight_percent"
#: A Prometheus label name (https://prometheus.io/docs/concepts/data_model/#metric-names-and-labels).
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """Return ``labels`` as a dict ({} for None).

    Raises:
        InputError: a name is not a Prometheus label name, or a value is not a string.
    """
    for name, value in (labels or {}).items():
        if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name) or not isinstance(value, str):
            raise InputError(
                f"metric population label {name!r}={value!r} is not valid",
                hint="use a label name [a-zA-Z_][a-zA-Z0-9_]* and a string value, e.g. flag='on'",
            )
    return dict(labels or {})


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


class NoData(BackendError):
    """A source answered but holds no series for the version (stopped exposing metrics, or a wrong selector)."""


@dataclass(frozen=True)
class Sample:
    """Cumulative counters of one version at Unix time ``at`` (seconds).

    Attributes:
        statuses: HTTP status (``"200"``, ``"500"``) → cumulative request count.
        latency_sum_s: cumulative sum of request durations, seconds (histogram ``_sum``; 0 when absent).
        latency_count: cumulative number of timed requests (histogram ``_count``).
        buckets: upper bound ``le`` in seconds → cumulative count of requests at most that slow.
        metrics: names of the metric families the source exposed (for "unknown metric" checks).
    """

    at: float
    statuses: dict[str, float] = field(default_factory=dict)
    latency_sum_s: float = 0.0
    latency_count: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)
    metrics: frozenset[str] = frozenset()


@dataclass(frozen=True)
class WindowDelta:
    """What happened between two samples: ``requests``, 5xx ``errors``, timed requests and their total duration.

    ``good_latency`` maps each histogram bound (s) to the requests no slower than it; ``duration_s`` is the span;
    ``resets`` counts the counter resets (process restarts) seen inside the window.
    """

    duration_s: float
    requests: float
    errors: float
    latency_count: float
    latency_sum_s: float
    good_latency: dict[float, float]
    resets: int = 0

    @property
    def error_ratio(self) -> float:
        """5xx share of requests (0.0 without requests)."""
        return self.errors / self.requests if self.requests > 0 else 0.0

    @property
    def mean_latency_s(self) -> float | None:
        """Mean request duration in seconds, None when no request was timed."""
        return self.latency_sum_s / self.latency_count if self.latency_count > 0 else None

    def __add__(self, other: WindowDelta) -> WindowDelta:
        """The two windows one after the other (durations, counts and resets summed)."""
        bounds = self.good_latency.keys() | other.good_latency.keys()
        return WindowDelta(
            duration_s=self.duration_s + other.duration_s,
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            latency_count=self.latency_count + other.latency_count,
            latency_sum_s=self.latency_sum_s + other.latency_sum_s,
            good_latency={le: self.good_latency.get(le, 0.0) + other.good_latency.get(le, 0.0) for le in bounds},
            resets=self.resets + other.resets,
        )


def restarted(before: Sample, after: Sample) -> bool:
    """True when a counter went down between two samples of one version: its process restarted.

    A counter that decreased, or a status series that disappeared, means the counters started again from zero
    (Prometheus' counter-reset rule, https://prometheus.io/docs/prometheus/latest/querying/functions/#resets).
    """
    if after.latency_count < before.latency_count or after.latency_sum_s < before.latency_sum_s:
        return True
    return any(after.statuses.get(status, 0.0) < value for status, value in before.statuses.items())


def delta(before: Sample, after: Sample) -> WindowDelta:
    """Return the increase of every counter between two consecutive samples of the same version.

    After a restart (:func:`restarted`) every counter counts from zero again, so the increase is the new value of
    every counter (what Prometheus' ``increase()`` does per series; taken here for all series at once, because a
    series that grew back past its old value also restarted).

    Raises:
        ValueError: ``after`` is older than ``before``.
    """
    if after.at < before.at:
        raise ValueError(f"samples out of order: {after.at} < {before.at}")
    reset = restarted(before, after)
    old = Sample(before.at) if reset else before
    requests = errors = 0.0
    for status, value in after.statuses.items():
        inc = max(0.0, value - old.statuses.get(status, 0.0))
        requests += inc
        if len(status) == 3 and status.startswith("5"):
            errors += inc
    good = {le: max(0.0, v - old.buckets.get(le, 0.0)) for le, v in after.buckets.items()}
    return WindowDelta(
        duration_s=after.at - before.at,
        requests=requests,
        errors=errors,
        latency_count=max(0.0, after.latency_count - old.latency_count),
        latency_sum_s=max(0.0, after.latency_sum_s - old.latency_sum_s),
        good_latency=good,
        resets=int(reset),
    )


def intervals(series: Sequence[Sample]) -> list[WindowDelta]:
    """The increase over each interval between consecutive samples of ``series`` (oldest first)."""
    return [delta(before, after) for before, after in zip(series, series[1:], strict=False)]


def increase(series: Sequence[Sample]) -> WindowDelta:
    """Increase of every counter over a whole series: the sum of its intervals, so resets lose nothing.

    Prometheus ``increase()`` semantics: a window computed from its first and last samples alone would drop all
    that happened before a restart (a crash-looping canary's errors would vanish).

    Raises:
        ValueError: fewer than two samples, or samples out of order.
    """
    if len(series) < 2:
        raise ValueError("an increase needs at least two samples")
    parts = intervals(series)
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def parse_families(text: str, source: str = "metrics text") -> list[Metric]:
    """Parse Prometheus text exposition into its metric families (prometheus_client's parser), once.

    Raises:
        BackendCorrupt: the text is not valid exposition format (``source`` names it).
    """
    try:
        return list(text_string_to_metric_families(text))
    except (ValueError, TypeError, IndexError) as exc:
        raise BackendCorrupt(
            f"{source} is not Prometheus text format: {exc}", hint="serve prometheus_client text", source=source
        ) from exc


def parse_exposition(
    text: str, *, at: float | None = None, source: str = "metrics text", labels: Mapping[str, str] | None = None
) -> Sample:
    """Parse Prometheus text exposition into a :class:`Sample` (every label set summed per status / bucket).

    Args:
        text: the exposition text.
        at: Unix time (s) of the sample; default now.
        source: named in errors.
        labels: keep only the series whose labels include all these pairs (a population); None keeps all.

    Raises:
        InputError: a ``labels`` name is not a label name.
        BackendCorrupt: the text is not valid exposition format.
        NoData: the text does not declare ``http_requests_total`` (a declared counter without samples is a version
            that has served no request yet: zero counts, not missing data).
    """
    wanted = _check_labels(labels)
    return fold_families(parse_families(text, source), at=at, source=source, labels=wanted)


def fold_families(
    families: Sequence[Metric], *, at: float | None = None, source: str = "metrics text",
    labels: Mapping[str, str] | None = None,
) -> Sample:  # fmt: skip
    """The :class:`Sample` of parsed families (:func:`parse_families`): see :func:`parse_exposition`.

    Raises:
        InputError: a ``labels`` name is not a label name.
        BackendCorrupt: a bucket bound ``le`` that is not a number.
        NoData: no ``http_requests_total`` declared.
    """
    statuses: dict[str, float] = {}
    buckets: dict[float, float] = {}
    latency = [0.0, 0.0]  # histogram _sum (s), _count
    names: set[str] = set()
    wanted = _check_labels(labels).items()
    try:
        for family in families:
            names.add(family.name)
            if family.type == "counter" and family.name + "_total" == REQUESTS_METRIC:
                names.add(REQUESTS_METRIC)  # declared, no request counted yet (a fresh process): zero counters
            for s in family.samples:
                names.add(s.name)
                if wanted <= s.labels.items():
                    _accumulate(s.name, s.labels, float(s.value), statuses, buckets, latency)
    except (ValueError, TypeError) as exc:
        raise BackendCorrupt(
            f"{source} is not Prometheus text format: {exc}", hint="serve prometheus_client text", source=source
        ) from exc
    if REQUESTS_METRIC not in names:
        raise NoData(f"{source} exposes no {REQUESTS_METRIC}", hint="count requests per status", source=source)
    return Sample(time.time() if at is None else at, statuses, latency[0], latency[1], buckets, frozenset(names))


#: PromQL matcher that leaves out the latency series of requests refused as invalid (:func:`refused_as_invalid`).
VALID_LATENCY_MATCHER = 'status!~"4.."'


def refused_as_invalid(labels: Mapping[str, str]) -> bool:
    """True for a latency series labelled with a 4xx ``status``: requests the version refused as invalid.

    Latency is judged on the requests a version served, not on those it refused: a fast 422 is not a faster
    service. The SLI is "the proportion of valid requests served faster than a threshold" (Google SRE Workbook,
    ch. 2, "Implementing SLOs"). Where the histogram carries no ``status`` label (the generated services', most
    services' own) every request is timed, as before. Seen in the fleet's gift-note release: the old storefront
    answered the new clients' bodies (``gift_note``, ``extra="forbid"``) with a 422 in 9 ms while the new one ran
    the whole checkout in 30 ms, and the judge called the new one slower.
    """
    status = labels.get("status", "")
    return len(status) == 3 and status.startswith("4")


def _accumulate(
    name: str,
    labels: Mapping[str, str],
    value: float,
    statuses: dict[str, float],
    buckets: dict[float, float],
    latency: list[float],
) -> None:
    """Add one sample to the request count of its status, the latency ``[sum_s, count]`` or its bucket.

    Raises:
        ValueError: a bucket bound ``le`` that is not a number.
    """
    if name == REQUESTS_METRIC:
        status = labels.get("status", "unknown")
        statuses[status] = statuses.get(status, 0.0) + value
    elif name.startswith(LATENCY_METRIC) and refused_as_invalid(labels):
        return  # not judged for latency (see refused_as_invalid)
    elif name == LATENCY_METRIC + "_sum":
        latency[0] += value
    elif name == LATENCY_METRIC + "_count":
        latency[1] += value
    elif name == LATENCY_METRIC + "_bucket":
        le = float(labels.get("le", "+Inf"))
        buckets[le] = buckets.get(le, 0.0) + value


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
        at, text = await self._scrape(url, version)
        return parse_exposition(text, at=at, source=url, labels=labels)

    async def _scrape(self, url: str, version: str) -> tuple[float, str]:
        """``GET url``: return the time of the request (Unix s) and the body.

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
            raise NoData(f"{url} answered 404: version {version} stopped exposing metrics", hint="serve /metrics")
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
        at, families = await self._families(version)
        if not _has_version(families, version):
            raise NoData(
                f"{self.metrics_url}: the route never had a backend for version {version}",
                hint="judge a version that is behind this route, or use the route of its preview",
                version=version,
            )
        return fold_families(families, at=at, source=self.metrics_url, labels=wanted)

    async def _families(self, version: str) -> tuple[float, list[Metric]]:
        """(time, parsed families) of the scrape in flight, or of a new one when none is (single flight)."""
        if self._scraping is None or self._scraping.done():
            self._scraping = asyncio.ensure_future(self._scrape_families(version))
            self._scraping.add_done_callback(_retrieved)  # every awaiter may have been cancelled
        return await asyncio.shield(self._scraping)

    async def _scrape_families(self, version: str) -> tuple[float, list[Metric]]:
        at, text = await self._scrape(self.metrics_url, version)
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
