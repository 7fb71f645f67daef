"""SLOs as data: the ``slo.yaml`` of a service, and the SLI of each objective over a window of counters.

Format (one file per service, ``slo.yaml`` beside its ``openapi.yaml``; every key but ``objectives`` optional)::

    service: checkout
    window_days: 30                 # compliance period of the SLO (error budget = 1 - target over it)
    objectives:
      - name: availability          # free text, unique
        sli: availability           # share of requests not answered 5xx, from http_requests_total{status}
        target: 0.999               # 99.9 % good → error budget 0.1 %
      - name: latency-p99
        sli: latency                # share of requests no slower than threshold_ms, from the histogram buckets
        threshold_ms: 500           # must be a bucket bound of http_request_duration_seconds (e.g. 500 → le=0.5)
        target: 0.99

``sli`` must be ``availability`` or ``latency``; an optional ``metric`` names the counter or histogram (defaults
``http_requests_total`` / ``http_request_duration_seconds``). A syntactically valid objective whose SLI kind or
metric is unknown, or whose threshold is not a bucket bound, is *kept*: evaluating it gives a reason instead of
a number (:class:`SLIValue` ``reason``), which the rollout turns into an Inconclusive result, never a pass. A
malformed file (not YAML, no objectives, a target outside (0, 1)) raises :class:`~pilotage.errors.InputError`.

Terminology and the "good events / valid events" SLI definition: Google SRE Workbook (2018), ch. 2
"Implementing SLOs", https://sre.google/workbook/implementing-slos/.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilotage.errors import InputError
from pilotage.observe.samples import LATENCY_METRIC, REQUESTS_METRIC, Sample, WindowDelta, delta, increase

__all__ = [
    "DEFAULT_SLO",
    "SLI_KINDS",
    "SLIValue",
    "SLOObjective",
    "SLOSpec",
    "default_slo",
    "evaluate",
    "evaluate_series",
    "evaluate_window",
    "load_slo",
    "parse_slo",
]

#: SLI kinds and the metric each reads by default.
SLI_KINDS = {"availability": REQUESTS_METRIC, "latency": LATENCY_METRIC}


@dataclass(frozen=True)
class SLOObjective:
    """One objective: ``target`` share of good events for SLI ``sli`` (``threshold_ms`` for latency)."""

    name: str
    sli: str
    target: float
    metric: str
    threshold_ms: float | None = None

    @property
    def error_budget(self) -> float:
        """Allowed bad share, ``1 - target`` (e.g. 0.001 for 99.9 %)."""
        return 1.0 - self.target


@dataclass(frozen=True)
class SLOSpec:
    """A service's SLO: objectives over a compliance window of ``window_days`` days; ``path`` it came from."""

    service: str
    objectives: tuple[SLOObjective, ...]
    window_days: float = 30.0
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as plain data (for events)."""
        return {
            "service": self.service,
            "window_days": self.window_days,
            "path": self.path,
            "objectives": [o.__dict__ for o in self.objectives],
        }


@dataclass(frozen=True)
class SLIValue:
    """The SLI of one objective over one window: ``bad`` of ``total`` events, or a ``reason`` it has no value."""

    objective: str
    bad: float = 0.0
    total: float = 0.0
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        """True when the SLI could be computed (no ``reason``)."""
        return not self.reason

    @property
    def bad_ratio(self) -> float:
        """``bad / total`` (0.0 without events)."""
        return self.bad / self.total if self.total > 0 else 0.0


def _objective(raw: Any, index: int, where: str) -> SLOObjective:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: objectives[{index}] is not a mapping", hint="see the slo.yaml format", path=where)
    sli = str(raw.get("sli", raw.get("name", "")))
    target = raw.get("target")
    if isinstance(target, bool) or not isinstance(target, int | float) or not 0.0 < float(target) < 1.0:
        raise InputError(
            f"{where}: objectives[{index}].target must be in (0, 1), got {target!r}",
            hint="e.g. target: 0.999",
            path=where,
        )
    threshold = raw.get("threshold_ms")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)):
        raise InputError(f"{where}: objectives[{index}].threshold_ms must be a number", hint="e.g. 500", path=where)
    return SLOObjective(
        name=str(raw.get("name", sli)),
        sli=sli,
        target=float(target),
        metric=str(raw.get("metric", SLI_KINDS.get(sli, ""))),
        threshold_ms=float(threshold) if threshold is not None else None,
    )


def parse_slo(doc: Any, *, where: str = "slo.yaml", service: str = "") -> SLOSpec:
    """Build an :class:`SLOSpec` from parsed YAML ``doc``.

    Raises:
        InputError: not a mapping, no objectives, a bad target/threshold/window, or duplicate names.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("objectives"), list) or not doc["objectives"]:
        raise InputError(f"{where}: needs a non-empty 'objectives' list", hint="see the slo.yaml format", path=where)
    window = doc.get("window_days", 30)
    if isinstance(window, bool) or not isinstance(window, int | float) or window <= 0:
        raise InputError(f"{where}: window_days must be a positive number, got {window!r}", hint="e.g. 30", path=where)
    objectives = tuple(_objective(raw, i, where) for i, raw in enumerate(doc["objectives"]))
    names = [o.name for o in objectives]
    if len(set(names)) != len(names):
        raise InputError(f"{where}: objective names repeat: {names}", hint="give each a unique name", path=where)
    return SLOSpec(str(doc.get("service", service)), objectives, float(window), where)


def load_slo(path: str | Path, *, service: str = "") -> SLOSpec:
    """Read and parse ``slo.yaml`` at ``path``.

    Raises:
        InputError: unreadable, not YAML, over a document limit, or not the format (names the file).
    """
    from pilotage.spec.load import load_document

    # document limits: issue #15; a key written twice is refused (YAML would keep the last one silently)
    doc = load_document(path, kind="SLO file", hint="check the path and YAML syntax", unique_keys=True)
    return parse_slo(doc, where=str(path), service=service)


#: Default objectives when a service has no ``slo.yaml``: 99.9 % availability and 99 % of requests ≤ 500 ms over
#: 30 days (the SRE Workbook ch. 2 worked example uses 99.9 % availability and a latency percentile objective).
DEFAULT_SLO = {
    "window_days": 30,
    "objectives": [
        {"name": "availability", "sli": "availability", "target": 0.999},
        {"name": "latency", "sli": "latency", "threshold_ms": 500, "target": 0.99},
    ],
}


def default_slo(service: str = "", service_dir: str | Path | None = None) -> SLOSpec:
    """Return ``<service_dir>/slo.yaml`` when it exists, else :data:`DEFAULT_SLO` for ``service``.

    Raises:
        InputError: the file exists but is malformed.
    """
    if service_dir is not None and (Path(service_dir) / "slo.yaml").is_file():
        return load_slo(Path(service_dir) / "slo.yaml", service=service)
    return parse_slo(DEFAULT_SLO, where="(default SLO)", service=service)


def _bucket_at(buckets: dict[float, float], threshold_s: float) -> float | None:
    for le in buckets:
        if abs(le - threshold_s) <= 1e-9 * max(1.0, threshold_s):
            return le
    return None


def evaluate(objective: SLOObjective, before: Sample, after: Sample) -> SLIValue:
    """Return the SLI of ``objective`` between two samples of one version (bad and total events).

    Availability: bad = 5xx answers, total = requests. Latency: bad = timed requests slower than ``threshold_ms``
    (``_count`` − bucket ``le = threshold``), total = timed requests.

    A reason instead of a value when: the SLI kind is unknown, the metric is not exposed by the source, or the
    latency threshold is not a bucket bound.
    """
    return evaluate_window(objective, delta(before, after), after)


def evaluate_series(objective: SLOObjective, series: Sequence[Sample]) -> SLIValue:
    """:func:`evaluate` over a whole series, counters summed across restarts (:func:`~.prometheus.increase`)."""
    return evaluate_window(objective, increase(series), series[-1])


def evaluate_window(objective: SLOObjective, window: WindowDelta, newest: Sample) -> SLIValue:
    """The SLI of ``objective`` over ``window``; ``newest`` tells which metrics and buckets the version exposes."""
    if objective.sli not in SLI_KINDS:
        return SLIValue(objective.name, reason=f"unknown SLI kind {objective.sli!r} (known: {sorted(SLI_KINDS)})")
    if objective.metric not in newest.metrics:
        return SLIValue(objective.name, reason=f"unknown metric {objective.metric!r}: the version does not expose it")
    if objective.sli == "availability":
        return SLIValue(objective.name, bad=window.errors, total=window.requests)
    threshold_s = (objective.threshold_ms or 0.0) / 1000.0
    le = _bucket_at(newest.buckets, threshold_s)
    if le is None:
        bounds = sorted(b for b in newest.buckets if b != float("inf"))
        return SLIValue(
            objective.name,
            reason=f"threshold {objective.threshold_ms} ms is not a histogram bucket "
            f"bound of {objective.metric} (bounds s: {bounds})",
        )
    good = window.good_latency.get(le, 0.0)
    return SLIValue(objective.name, bad=max(0.0, window.latency_count - good), total=window.latency_count)
