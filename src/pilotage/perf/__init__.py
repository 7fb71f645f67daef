"""Load testing for the performance agent: a locustfile generated from the spec, Locust in a subprocess, its stats.

:mod:`pilotage.perf.locust_runner` says why Locust never runs inside the control plane's process.
"""

from __future__ import annotations

from pilotage.perf.locust_runner import LoadTestResult, run_load_test
from pilotage.perf.locustfile import LoadTarget, load_targets, render_locustfile, write_locustfile
from pilotage.perf.stats import EndpointStats, parse_stats_csv

__all__ = [
    "EndpointStats",
    "LoadTarget",
    "LoadTestResult",
    "load_targets",
    "parse_stats_csv",
    "render_locustfile",
    "run_load_test",
    "write_locustfile",
]
