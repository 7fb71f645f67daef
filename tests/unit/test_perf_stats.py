"""Parsing Locust's PREFIX_stats.csv (the header is Locust 2.x's own)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotage.errors import BackendCorrupt
from pilotage.perf.stats import EndpointStats, parse_stats_csv

HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
    "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)
ROWS = [
    "GET,/pets,437,3,1,2.084686819220488,0.83,37.79,749.7,218.56860388923172,1.5,1,2,2,2,3,4,9,11,38,38,38",
    "POST,/pets,157,0,3,3.9831254904494267,1.59,31.28,34.4,78.52464716386586,0.0,3,3,4,4,6,7,25,28,31,31,31",
    "DELETE,/pets/{id},0,0,0,0,0,0,0,0.0,0.0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A",
    ",Aggregated,594,3,2,2.586462696969551,0.83,37.79,560.6,297.09325105309756,1.5,2,2,3,3,4,6,10,24,38,38,38",
]


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "locust_stats.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_endpoints_and_total(tmp_path: Path) -> None:
    endpoints, total = parse_stats_csv(_write(tmp_path, [HEADER, *ROWS]))
    assert [e.endpoint for e in endpoints] == ["GET /pets", "POST /pets", "DELETE /pets/{id}"]
    get = endpoints[0]
    assert (get.requests, get.failures, get.p50_ms, get.p95_ms, get.p99_ms) == (437, 3, 1.0, 4.0, 11.0)
    assert get.rps == 218.569 and get.avg_ms == 2.085 and get.max_ms == 37.79
    assert get.error_rate == pytest.approx(3 / 437)
    assert endpoints[2].p95_ms is None and endpoints[2].error_rate == 0.0  # N/A without requests
    assert total.endpoint == "total" and (total.requests, total.failures, total.p95_ms) == (594, 3, 6.0)
    assert set(get.to_dict()) >= {"method", "name", "requests", "failures", "p50_ms", "p95_ms", "p99_ms", "rps"}


def test_header_only_file_gives_an_empty_total(tmp_path: Path) -> None:
    endpoints, total = parse_stats_csv(_write(tmp_path, [HEADER]))
    assert endpoints == [] and total == EndpointStats("", "Aggregated", 0, 0, None, None, None, 0.0)


def test_missing_column_is_corrupt(tmp_path: Path) -> None:
    with pytest.raises(BackendCorrupt, match="columns \\['95%'\\] missing"):
        parse_stats_csv(_write(tmp_path, [HEADER.replace(",95%", ""), ROWS[0]]))


def test_non_number_is_corrupt_and_missing_file_too(tmp_path: Path) -> None:
    with pytest.raises(BackendCorrupt, match="'Request Count' holds 'many'"):
        parse_stats_csv(_write(tmp_path, [HEADER, ROWS[0].replace(",437,", ",many,")]))
    with pytest.raises(BackendCorrupt, match="cannot be read"):
        parse_stats_csv(tmp_path / "absent.csv")
