"""A version's cumulative counters (:class:`Sample`), read from Prometheus text exposition, and their increases.

What every metric source (:mod:`pilotage.observe.prometheus`) returns and everything computed on it before a
judge sees it: the metric names of the generated-service conventions, the :class:`Sample` of one version at one
instant, the text exposition format parsed into one (:func:`parse_exposition`, ``prometheus_client``'s reference
parser; a population's ``labels`` kept, the latency of requests refused as invalid left out,
:func:`refused_as_invalid`), and what happened between two samples (:class:`WindowDelta`, :func:`delta`,
:func:`intervals`, :func:`increase`) with Prometheus' ``increase()`` semantics across counter resets
(:func:`restarted`). :class:`NoData` is a source's or a text's missing request counter for a version.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from pilotage.errors import BackendCorrupt, BackendError, InputError

__all__ = [
    "LATENCY_METRIC",
    "REQUESTS_METRIC",
    "NoData",
    "PROXY_WEIGHT_METRIC",
    "VALID_LATENCY_MATCHER",
    "Sample",
    "WindowDelta",
    "delta",
    "increase",
    "intervals",
    "refused_as_invalid",
    "fold_families",
    "parse_exposition",
    "parse_families",
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
