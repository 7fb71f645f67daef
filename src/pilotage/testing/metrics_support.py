"""Pilotage's metrics contract as a generated test (:mod:`pilotage.testing.spec_tests`, ``test_metrics_contract``).

Everything below the ``# --- copied below ---`` marker is copied verbatim into ``test_pilotage_api_crud.py`` after
:mod:`~pilotage.testing.crud_support`'s part, whose helpers (``_call``, ``_fail``, ``_status``,
``_skip_unauthorized``, ``_step``), globals and ``pytest`` import it uses; the imports above the marker stand for them
so that this module type-checks alone.

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

from pilotage.testing.crud_support import (
    BASE_URL,
    HEADERS,
    TIMEOUT_S,
    _call,
    _fail,
    _skip_unauthorized,
    _status,
    _step,
    schema,
)

__all__ = ["plain_get", "run_metrics"]


def plain_get(doc: Any) -> str | None:
    """Return the first path of ``doc`` (an OpenAPI mapping) whose ``GET`` needs no parameter, or None.

    No path template, no query string and no required parameter (``/items``, ``/pet/findByStatus``): what
    ``test_metrics_contract`` calls. ``/healthz`` and ``/metrics`` are left out (the contract does not count them), and
    so is a path item or operation whose shape is not OpenAPI's (``parameters`` not a list, a non-mapping operation).
    """
    from pilotage.spec.evolve import RESERVED_PATHS  # the health and metrics endpoints
    from pilotage.spec.openapi import parameterless_gets

    for path in parameterless_gets(doc):
        if path.startswith("/") and "?" not in path and path.rstrip("/") not in RESERVED_PATHS:
            return path
    return None


# --- copied below ---
import httpx  # noqa: E402

#: The request counter of Pilotage's service conventions (``docs/events-contract.md``), the SLO watcher's SLI.
REQUESTS_METRIC = "http_requests_total"


def _scrape(trail: list[str]) -> Any:
    """``GET <BASE_URL>/metrics`` as the SLO watcher scrapes it (in-process: the app's), redirects followed.

    A connection failure fails the test with the URL (not an httpx traceback).
    """
    if getattr(schema, "app", None) is not None:
        from starlette.testclient import TestClient

        url, response = "http://testserver/metrics", TestClient(schema.app).get("/metrics", headers=HEADERS)
    else:
        url = f"{str(BASE_URL).rstrip('/')}/metrics"
        try:
            response = httpx.get(url, headers=HEADERS, timeout=TIMEOUT_S, follow_redirects=True)
        except httpx.HTTPError as exc:
            _fail(f"GET {url} failed ({type(exc).__name__}: {exc}): is PILOTAGE_BASE_URL the service's address?", trail)
    trail.append(f"curl -L -X GET '{url}'")
    return response


def _samples(text: str, trail: list[str]) -> list[tuple[dict[str, str], float]] | None:
    """The samples of :data:`REQUESTS_METRIC` as ``(labels, value)``; None when the counter is not declared.

    Parsed with ``prometheus_client``'s reference parser (the SLO watcher's, ``pilotage.observe.samples``).
    """
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        pytest.skip("prometheus_client is not installed: /metrics cannot be parsed (pip install prometheus-client)")
    found: list[tuple[dict[str, str], float]] = []
    declared = False
    try:
        for family in text_string_to_metric_families(text):
            declared = declared or (family.type == "counter" and family.name + "_total" == REQUESTS_METRIC)
            found += [(dict(s.labels), float(s.value)) for s in family.samples if s.name == REQUESTS_METRIC]
    except (ValueError, TypeError, IndexError) as exc:
        _fail(f"GET /metrics is not Prometheus text format: {exc}", trail)
    return found if declared or found else None


def _counted(samples: list[tuple[dict[str, str], float]], status: str) -> float:
    """Sum the requests answered ``status`` to a ``GET`` as the SLO watcher counts them.

    A sample's ``status`` label may be the code or its class (``"2xx"``); its ``method`` label, when there is one,
    may be in any case.
    """
    classes = (status, status[0] + "xx")
    return sum(
        v for labels, v in samples if labels.get("method", "GET").upper() == "GET" and labels.get("status") in classes
    )


def run_metrics(path: str) -> None:
    """Pilotage's metrics contract: ``GET /metrics`` counts the requests the service answers, per status.

    The SLO watcher reads each version's error ratio, and so its canary verdicts, from
    ``http_requests_total{status}`` (``docs/events-contract.md``): three ``GET path`` (an operation without required
    parameters) must raise the counter of the status they got by at least three (other clients only add to it). A
    service that answers 404 on ``/metrics`` exports no metrics and the test skips (Pilotage then counts at its
    traffic-splitting proxy); so does a 401/403 on ``path`` (set ``PILOTAGE_TEST_HEADERS``).
    """
    _step("metrics")
    trail: list[str] = []
    before = _scrape(trail)
    if before.status_code == 404:
        pytest.skip(f"GET /metrics answered 404 ({trail[-1]}): the service exports no metrics (Pilotage then counts "
                    "at its proxy)")  # fmt: skip
    _status(before, "GET /metrics", trail)
    counted = _samples(before.text, trail)
    if counted is None:
        _fail(f"GET /metrics declares no {REQUESTS_METRIC} counter, which the SLO watcher reads the error ratio from "
              "(count every request under method, route and numeric status labels: docs/events-contract.md)",
              trail)  # fmt: skip
        return
    answered: dict[str, int] = {}
    for _ in range(3):
        response = _call(schema[path]["GET"].Case(headers={}), trail)
        _skip_unauthorized(response, f"GET {path}")
        answered[str(response.status_code)] = answered.get(str(response.status_code), 0) + 1
    after = _samples(_scrape(trail).text, trail) or []
    for status, times in sorted(answered.items()):
        rose = _counted(after, status) - _counted(counted, status)
        if rose < times:
            whole = sum(v for _, v in after) - sum(v for _, v in counted)
            labels = sorted({name for found, _ in after for name in found})
            _fail(f"GET {path} answered {status} {times} times, but {REQUESTS_METRIC} with status={status!r} (or "
                  f"{status[0]}xx) rose by {rose:g}; the whole counter rose by {whole:g}, labels {labels}: the SLO "
                  "watcher needs each request counted once under a numeric `status` label (docs/events-contract.md)",
                  trail)  # fmt: skip
