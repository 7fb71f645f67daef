"""Parse Locust's ``PREFIX_stats.csv`` into per-endpoint latency percentiles, throughput and failures.

The file is written by ``locust --csv PREFIX`` (``locust/stats.py``, ``StatsCSV.requests_csv_columns``); one row per
(method, name) plus a final ``Aggregated`` row with an empty ``Type``. Columns used:

``Type`` (method), ``Name``, ``Request Count``, ``Failure Count``, ``Average Response Time``,
``Max Response Time``, ``Requests/s``, ``50%``, ``95%``, ``99%``.

Units: response times are milliseconds; Locust rounds each sample before bucketing (to the integer below 100 ms,
to two significant digits above), so percentiles are integers and "approximated" in Locust's own words.
``Requests/s`` is requests divided by the run's elapsed time. A percentile is ``N/A`` when an entry has no
request; it becomes None here.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pilotage.errors import BackendCorrupt

__all__ = ["EndpointStats", "parse_stats_csv"]

_REQUIRED = ("Type", "Name", "Request Count", "Failure Count", "Requests/s", "50%", "95%", "99%")


@dataclass(frozen=True)
class EndpointStats:
    """Load-test figures of one endpoint (or of all of them: ``method`` "", ``name`` "Aggregated").

    Attributes:
        method: HTTP method (``GET``); "" for the total.
        name: request name, the path template (``/pets``); ``Aggregated`` for the total.
        requests: requests sent.
        failures: requests that failed (HTTP status >= 400, connection error or timeout).
        p50_ms: median response time in milliseconds (None without requests).
        p95_ms: 95th percentile response time in milliseconds.
        p99_ms: 99th percentile response time in milliseconds.
        rps: requests per second over the run.
        avg_ms: mean response time in milliseconds.
        max_ms: slowest response in milliseconds.
    """

    method: str
    name: str
    requests: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    rps: float
    avg_ms: float | None = None
    max_ms: float | None = None

    @property
    def endpoint(self) -> str:
        """``"GET /pets"``, or ``"total"`` for the aggregated row."""
        return f"{self.method} {self.name}" if self.method else "total"

    @property
    def error_rate(self) -> float:
        """Failures / requests (0.0 without requests)."""
        return self.failures / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the ``perf.measured`` endpoint shape plus ``avg_ms`` and ``max_ms`` (JSON-serialisable)."""
        return asdict(self)


def _number(row: dict[str, str], column: str, path: Path) -> float | None:
    raw = (row.get(column) or "").strip()
    if raw in ("", "N/A"):
        return None
    try:
        return float(raw)
    except ValueError as exc:
        raise BackendCorrupt(
            f"{path}: column {column!r} holds {raw!r}, not a number", hint="rerun the load test", path=path
        ) from exc


def _row(row: dict[str, str], path: Path) -> EndpointStats:
    requests = _number(row, "Request Count", path) or 0.0
    failures = _number(row, "Failure Count", path) or 0.0
    return EndpointStats(
        method=(row.get("Type") or "").strip(),
        name=(row.get("Name") or "").strip(),
        requests=int(requests),
        failures=int(failures),
        p50_ms=_number(row, "50%", path),
        p95_ms=_number(row, "95%", path),
        p99_ms=_number(row, "99%", path),
        rps=round(_number(row, "Requests/s", path) or 0.0, 3),
        avg_ms=None if (avg := _number(row, "Average Response Time", path)) is None else round(avg, 3),
        max_ms=None if (top := _number(row, "Max Response Time", path)) is None else round(top, 3),
    )


def parse_stats_csv(path: Path) -> tuple[list[EndpointStats], EndpointStats]:
    """Read a Locust ``PREFIX_stats.csv``.

    Args:
        path: the CSV file.

    Returns:
        ``(endpoints, total)``: one entry per (method, name) in file order, and the ``Aggregated`` row.

    Raises:
        BackendCorrupt: the file is missing, lacks a required column or holds a non-number (names the file).
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise BackendCorrupt(
                    f"{path} is not a Locust stats CSV: columns {missing} missing",
                    hint="run locust with --csv PREFIX and read PREFIX_stats.csv",
                    path=path,
                )
            rows = [_row(row, path) for row in reader]
    except OSError as exc:
        raise BackendCorrupt(
            f"Locust stats {path} cannot be read: {exc}", hint="rerun the load test", path=path
        ) from exc
    endpoints = [r for r in rows if r.name != "Aggregated" or r.method]
    totals = [r for r in rows if r.name == "Aggregated" and not r.method]
    total = totals[-1] if totals else EndpointStats("", "Aggregated", 0, 0, None, None, None, 0.0)
    return endpoints, total
