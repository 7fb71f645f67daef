"""Pilotage's metrics contract as a generated test (:mod:`pilotage.testing.spec_tests`, ``test_metrics_contract``).

Everything below the ``# --- copied below ---`` marker is copied verbatim into ``test_pilotage_api_crud.py`` after
:mod:`~pilotage.testing.crud_support`'s part, whose helpers (``_call``, ``_fail``, ``_status``, ``_step``), globals
and ``pytest`` import it uses; the imports above the marker stand for them so that this module type-checks alone.

The contract (``docs/events-contract.md``): ``GET /metrics`` answers Prometheus text with the counter
``http_requests_total{method, route, status}``. Pilotage's SLO watcher computes each version's error ratio, and so its
canary and burn-rate verdicts, from it (:mod:`pilotage.observe.prometheus`); a change that stops counting leaves a
rollout judged on nothing. :func:`run_metrics` sends three ``GET`` to an operation without required parameters
(:func:`plain_get` picks it when the tests are written) and checks that the counter of the status they got rose by
at least three.
"""

from __future__ import annotations

from typing import Any

import pytest

from pilotage.testing.crud_support import BASE_URL, HEADERS, TIMEOUT_S, _call, _fail, _status, _step, schema

__all__ = ["plain_get", "run_metrics"]


def plain_get(doc: dict[str, Any]) -> str | None:
    """Return the first path of ``doc`` (an OpenAPI mapping) whose ``GET`` needs no parameter, or None.

    No path template and no required parameter (``/items``, ``/pet/findByStatus``): what ``test_metrics_contract``
    calls. ``/healthz`` and ``/metrics`` are left out: the contract does not count them.
    """
    from pilotage.codegen.plan import RESERVED_PATHS  # the health and metrics endpoints
    from pilotage.testing.spec_tests import _resolve

    for path, item in (doc.get("paths") or {}).items():
        operation = item.get("get") if isinstance(item, dict) else None
        if not isinstance(operation, dict) or "{" in path or path in RESERVED_PATHS:
            continue
        params = [_resolve(doc, p) for p in [*(item.get("parameters") or []), *(operation.get("parameters") or [])]]
        if not any(isinstance(p, dict) and p.get("required") for p in params):
            return str(path)
    return None


# --- copied below ---
from urllib.parse import urlsplit  # noqa: E402

import httpx  # noqa: E402

#: The request counter of Pilotage's service conventions (``docs/events-contract.md``), the SLO watcher's SLI.
REQUESTS_METRIC = "http_requests_total"


def _scrape(trail: list[str]) -> Any:
    """``GET /metrics`` at the service's root (run in-process: the app itself), with the headers of the other calls."""
    if getattr(schema, "app", None) is not None:
        from starlette.testclient import TestClient

        url, response = "http://testserver/metrics", TestClient(schema.app).get("/metrics", headers=HEADERS)
    else:
        root = urlsplit(str(BASE_URL))
        url = f"{root.scheme}://{root.netloc}/metrics"
        response = httpx.get(url, headers=HEADERS, timeout=TIMEOUT_S)
    trail.append(f"curl -X GET '{url}'")
    return response


def _requests_by_status(text: str, method: str, trail: list[str]) -> dict[str, float] | None:
    """Sum :data:`REQUESTS_METRIC` per ``status`` label over the samples of ``method``; None when it is not declared.

    A sample without a ``method`` label counts for every method. Parsed with ``prometheus_client``'s reference parser.
    """
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        pytest.skip("prometheus_client is not installed: /metrics cannot be parsed (pip install prometheus-client)")
    counts: dict[str, float] = {}
    declared = False
    try:
        for family in text_string_to_metric_families(text):
            declared = declared or (family.type == "counter" and family.name + "_total" == REQUESTS_METRIC)
            for sample in family.samples:
                if sample.name == REQUESTS_METRIC and sample.labels.get("method", method) == method:
                    status = sample.labels.get("status", "unknown")
                    counts[status] = counts.get(status, 0.0) + float(sample.value)
                    declared = True
    except (ValueError, TypeError, IndexError) as exc:
        _fail(f"GET /metrics is not Prometheus text format: {exc}", trail)
    return counts if declared else None


def run_metrics(path: str) -> None:
    """Pilotage's metrics contract: ``GET /metrics`` counts the requests the service answers, per status.

    The SLO watcher reads each version's error ratio, and so its canary verdicts, from
    ``http_requests_total{status}`` (``docs/events-contract.md``): three ``GET path`` (an operation without required
    parameters) must raise the counter of the status they got by at least three (other clients only add to it). A
    service that answers 404 on ``/metrics`` exports no metrics and the test skips (Pilotage then counts at its
    traffic-splitting proxy).
    """
    _step("metrics")
    trail: list[str] = []
    before = _scrape(trail)
    if before.status_code == 404:
        pytest.skip("GET /metrics answered 404: the service exports no metrics (Pilotage then counts at its proxy)")
    _status(before, "GET /metrics", trail)
    counted = _requests_by_status(before.text, "GET", trail)
    if counted is None:
        _fail(f"GET /metrics declares no {REQUESTS_METRIC} counter, which the SLO watcher reads the error ratio from",
              trail)  # fmt: skip
        return
    answered: dict[str, int] = {}
    for _ in range(3):
        response = _call(schema[path]["GET"].Case(headers={}), trail)
        answered[str(response.status_code)] = answered.get(str(response.status_code), 0) + 1
    after = _requests_by_status(_scrape(trail).text, "GET", trail) or {}
    for status, times in sorted(answered.items()):
        rose = after.get(status, 0.0) - counted.get(status, 0.0)
        if rose < times:
            counter = f'{REQUESTS_METRIC}{{method="GET", status="{status}"}}'
            told = f"GET {path} answered {status} {times} times"
            _fail(f"{told}, but {counter} on /metrics rose by {rose:g}", trail)
