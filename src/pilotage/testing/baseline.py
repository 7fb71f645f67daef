"""Baseline problems (issue 18): a failure the production version has too is reported, not blamed on the change.

When the head's tests fail, the testing agent runs *only the failing ones* again against the baseline (the
production commit, ``code.generated`` ``base_dir``) with :func:`check_baseline`:

* the service's own tests (kind ``unit``) run in the baseline checkout (its own copy of the test, when it has one),
  with ``PILOTAGE_BASE_URL`` pointing at a scratch instance of the baseline;
* the generated tests that talk to the service over HTTP only (``crud``, ``api``) run from the head checkout (where
  Pilotage wrote them) against that baseline instance;
* the requests schemathesis sent the head that answered a server error (5xx, 501 excepted), read from its NDJSON
  report (at most :data:`MAX_REPLAYS` per operation, shortest first), are sent again, as recorded, to the baseline:
  a replay, deterministic, where a new schemathesis run would draw other cases.

A head failure is a *baseline problem* when the same test fails on the baseline for the same reason: the same first
message line (:func:`signature`: ids, ports and timestamps of 4+ digits masked, HTTP statuses kept), or for
schemathesis an operation whose replayed requests answer a server error on the baseline too. Such a failure is
listed in ``tests.completed`` ``baseline_problems`` and named in the verdict's summary, but does not gate
(:func:`pilotage.testing.verdict.discount_baseline`). Everything else keeps gating, fail closed: a test the
baseline cannot run (in-process generated tests ``properties``/``docstrings`` of the change's code, a test file the
baseline does not have, a collection error), a baseline that does not start, or a check that runs past
:data:`BASELINE_TIMEOUT_S` is listed in ``baseline_untested`` with the reason.

:func:`schemathesis_on_baseline` runs the test suite's whole schemathesis run (all checks) against a scratch instance
of the baseline, started the same way: ``benchmarks/bench_specs.py`` compares its figures with the change's.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from pilotage.errors import BackendError, ConfigError, InputError
from pilotage.httpclient import async_client
from pilotage.runtime.base import Instance, InstanceRuntime, scratch_instance
from pilotage.secrets import MASK
from pilotage.testing.pytest_runner import run_pytest
from pilotage.testing.schemathesis_results import NOT_IMPLEMENTED, _case_operation, _events
from pilotage.testing.suite import parse_cases, suite_schemathesis

__all__ = [
    "BASELINE_TIMEOUT_S",
    "MAX_BASELINE_TESTS",
    "check_baseline",
    "classify",
    "classify_schemathesis",
    "replay_server_errors",
    "rerun_failing",
    "schemathesis_on_baseline",
    "server_error_requests",
    "signature",
    "untested_baseline",
]

#: Time budget of the whole baseline check (seconds): instance start, pytest reruns, replays.
BASELINE_TIMEOUT_S = 180.0
#: Failing tests rerun on the baseline at most (the others stay gating, listed as untested).
MAX_BASELINE_TESTS = 20
#: Generated tests that reach the service over HTTP only: they test whichever version ``PILOTAGE_BASE_URL`` names.
_HTTP_KINDS = frozenset({"crud", "api"})
#: Requests replayed per operation at most (the shortest of those that got a 5xx on the head).
MAX_REPLAYS = 3
#: Recorded headers not replayed (schemathesis' bookkeeping and what the transport sets).
_SKIPPED_HEADERS = frozenset({"x-schemathesis-testcaseid", "user-agent", "content-length", "host", "connection"})
#: The schemathesis check a server error fails.
SERVER_ERROR_CHECK = "not_a_server_error"
_VOLATILE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}|\d{4,}")


def signature(message: str) -> str:
    """The first non-empty line of a failure message (pytest's ``E`` prefix removed), volatile numbers masked.

    >>> signature("E   AssertionError: POST /items answered 500 on port 43117")
    'AssertionError: POST /items answered 500 on port #'
    """
    lines = [line.removeprefix("E").strip() for line in message.splitlines()]
    first = next((line for line in lines if line), "")
    return _VOLATILE.sub("#", first)[:300]


def _plan(failures: list[dict[str, Any]], head_dir: Path, base_dir: Path) -> tuple[dict[Path, list[str]], list[Any]]:
    """Where each failing test reruns: ``({checkout: [node ids]}, [{"test", "reason"} not rerun]``)."""
    runs: dict[Path, list[str]] = {}
    untested = []
    for failure in failures:
        nodeid, kind = str(failure["nodeid"]), str(failure["kind"])
        where = head_dir if kind in _HTTP_KINDS else base_dir
        if "::" not in nodeid:
            reason = "a collection error names no single test to rerun"
        elif kind not in _HTTP_KINDS and kind != "unit":
            reason = f"a generated {kind} test imports the change's own code"
        elif not (where / nodeid.split("::", 1)[0]).is_file():
            reason = "the baseline has no such test"
        elif sum(len(ids) for ids in runs.values()) >= MAX_BASELINE_TESTS:
            reason = f"more than {MAX_BASELINE_TESTS} tests failed"
        else:
            runs.setdefault(where, []).append(nodeid)
            continue
        untested.append({"test": nodeid, "reason": reason})
    return runs, untested


def classify(
    failures: list[dict[str, Any]], baseline_cases: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Split the head's failing tests by their baseline outcome.

    Args:
        failures: the head's ``failures`` (:func:`pilotage.testing.suite.parse_cases` cases: nodeid, kind, outcome,
            message).
        baseline_cases: the same tests' cases on the baseline, by node id (absent: not rerun).

    Returns:
        ``(problems, differs)``: ``problems`` ``[{"test", "kind", "outcome", "message"}]`` the failures the baseline
        has too, for the same reason (:func:`signature`); ``differs`` ``[{"test", "reason"}]`` the rerun ones that
        passed on the baseline or failed there otherwise (gating: the change broke them).
    """
    problems, differs = [], []
    for failure in failures:
        base = baseline_cases.get(str(failure["nodeid"]))
        if base is None:
            continue
        why = signature(str(failure.get("message", "")))
        if base["outcome"] in ("failed", "error") and signature(str(base.get("message", ""))) == why:
            problems.append({"test": failure["nodeid"], "kind": failure["kind"], "outcome": failure["outcome"],
                             "message": why})  # fmt: skip
        else:
            seen = "passes" if base["outcome"] == "passed" else f"{base['outcome']}: {signature(base['message'])}"
            differs.append({"test": str(failure["nodeid"]), "reason": f"on the baseline it {seen}"})
    return problems, differs


def _server_error_ops(st: dict[str, Any] | None) -> dict[str, int]:
    """``{operation: server errors}`` of a ``schemathesis`` result dict (only operations that had some)."""
    return {
        op["operation"]: int(op["server_errors"]) for op in (st or {}).get("operations") or [] if op["server_errors"]
    }


def classify_schemathesis(head: dict[str, Any] | None, replayed: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """The operations whose server errors (5xx) the baseline answers too, as baseline problems.

    Args:
        head: the head's ``schemathesis`` result dict (``operations`` [{operation, server_errors, ...}]).
        replayed: :func:`replay_server_errors`' ``{operation: {"replayed": int, "server_errors": int}}``.

    Returns:
        ``[{"test": "schemathesis not_a_server_error GET /x", "kind": "schemathesis", "server_errors": int (the
        head's), "message": "k of n replayed requests answered 5xx on the baseline too"}]``.
    """
    problems = []
    for op, count in _server_error_ops(head).items():
        seen = replayed.get(op) or {}
        if seen.get("server_errors"):
            why = f"{seen['server_errors']} of {seen['replayed']} replayed requests answered 5xx on the baseline too"
            problems.append({"test": f"schemathesis {SERVER_ERROR_CHECK} {op}", "kind": "schemathesis",
                             "server_errors": count, "message": why})  # fmt: skip
    return problems


def _server_error_interactions(body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(operation, recorded request)`` of each case of a ``ScenarioFinished`` event that got a 5xx (501 excepted)."""
    recorder = body.get("recorder") or {}
    interactions, checks = recorder.get("interactions") or {}, recorder.get("checks") or {}
    for case_id, node in (recorder.get("cases") or {}).items():
        interaction = interactions.get(case_id) or {}
        status = (interaction.get("response") or {}).get("status_code")
        if isinstance(status, int) and status >= 500 and status != NOT_IMPLEMENTED and interaction.get("request"):
            failed = [c for c in checks.get(case_id, []) if c.get("status") == "failure"]
            label = str(recorder.get("label", ""))
            yield (
                _case_operation(str(body.get("phase", "")), label, node.get("value") or {}, failed),
                interaction["request"],
            )


def server_error_requests(ndjson_path: Path, operations: set[str]) -> dict[str, list[dict[str, Any]]]:
    """The head's requests that got a server error, by operation: shortest first, :data:`MAX_REPLAYS` each.

    Args:
        ndjson_path: the head's schemathesis NDJSON report (``schemathesis`` ``ndjson_path``); missing: ``{}``.
        operations: the operations to keep (``"GET /pets"``).

    Returns:
        ``{operation: [{"method", "uri", "headers": {name: [values]}, "body": {"$base64"} | None}]}``.
    """
    found: dict[str, list[dict[str, Any]]] = {}
    if not ndjson_path.is_file():
        return found
    for name, body in _events(ndjson_path):
        if name == "ScenarioFinished":
            for operation, request in _server_error_interactions(body):
                if operation in operations:
                    found.setdefault(operation, []).append(request)
    return {op: sorted(reqs, key=lambda r: len(json.dumps(r)))[:MAX_REPLAYS] for op, reqs in found.items()}


async def _send(client: httpx.AsyncClient, request: dict[str, Any], base_url: str, headers: dict[str, str]) -> int:
    """Send one recorded request to ``base_url`` (its path and query kept); the status, 0 when none came back."""
    uri, base = urlsplit(str(request.get("uri", ""))), urlsplit(base_url)
    sent = {
        name: values[0] if isinstance(values, list) else values
        for name, values in (request.get("headers") or {}).items()
        if name.lower() not in _SKIPPED_HEADERS and (values[0] if isinstance(values, list) else values) != MASK
    }
    body = request.get("body")
    content = base64.b64decode(body["$base64"]) if isinstance(body, dict) and "$base64" in body else None
    try:
        response = await client.request(
            str(request.get("method", "GET")), urlunsplit((base.scheme, base.netloc, uri.path, uri.query, "")),
            headers={**sent, **headers}, content=content,
        )  # fmt: skip
    except httpx.HTTPError:
        return 0
    return response.status_code


async def replay_server_errors(
    requests: dict[str, list[dict[str, Any]]], base_url: str, headers: dict[str, str], timeout_s: float = 10.0
) -> dict[str, dict[str, int]]:
    """Send each operation's recorded requests to the baseline; ``{operation: {"replayed", "server_errors"}}``.

    A server error is a status >= 500 other than 501; no answer within ``timeout_s`` seconds is not one.
    """
    out: dict[str, dict[str, int]] = {}
    # a fresh connection per request: a service that crashed on the last one may have closed a kept-alive one
    async with async_client(timeout=timeout_s, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        for operation, recorded in requests.items():
            statuses = [await _send(client, r, base_url, headers) for r in recorded]
            errors = sum(1 for s in statuses if s >= 500 and s != NOT_IMPLEMENTED)
            out[operation] = {"replayed": len(statuses), "server_errors": errors}
    return out


async def rerun_failing(
    failures: list[dict[str, Any]], head_dir: Path, base_dir: Path, out_dir: Path, env: dict[str, str]
) -> tuple[dict[str, dict[str, Any]], list[dict[str, str]]]:
    """Rerun the head's failing tests for the baseline with pytest (one run per checkout, only those node ids).

    Own tests (``unit``) run in ``base_dir``, HTTP-only generated tests in ``head_dir`` (``env`` names the baseline
    instance in ``PILOTAGE_BASE_URL``). Returns ``({node id: case on the baseline}, [{"test", "reason"} not
    rerun]``); a test that did not run has no case (it stays gating).
    """
    runs, untested = _plan(failures, head_dir, base_dir)
    cases: dict[str, dict[str, Any]] = {}
    for index, (checkout, nodeids) in enumerate(sorted(runs.items())):
        junit = out_dir / f"baseline-{index}.junit.xml"
        result = await run_pytest(checkout, junit, timeout_s=BASELINE_TIMEOUT_S, env=env, extra_args=nodeids)
        cases |= {c["nodeid"]: c for c in parse_cases(result.junit_path, checkout) if c["nodeid"] in nodeids}
    return cases, untested


def _missing_checkout(request: dict[str, Any]) -> str:
    """Why ``request["base_dir"]`` is no baseline checkout to start ("" when it is a folder)."""
    base_dir = str(request.get("base_dir") or "")
    if not base_dir:
        return "code.generated names no baseline checkout (base_dir)"
    return "" if Path(base_dir).is_dir() else f"the baseline checkout {base_dir} is not a folder"


def _baseline_instance(runtime: InstanceRuntime, request: dict[str, Any]) -> AbstractAsyncContextManager[Instance]:
    """The baseline's scratch instance (``base_dir``, data under ``out_dir/instance``), stopped on leaving."""
    return scratch_instance(
        runtime, service=request["service"], version=f"base-{request['commit'][:12]}", path=Path(request["base_dir"]),
        data_dir=Path(request["out_dir"]) / "instance", ready_timeout_s=request["ready_timeout_s"],
    )  # fmt: skip


async def _against_baseline(
    runtime: InstanceRuntime, request: dict[str, Any], failures: list[dict[str, Any]], st_ops: list[str]
) -> dict[str, Any]:
    """Start the baseline, rerun the failing tests and replay the 5xx requests; the classified outcome."""
    out_dir, head_dir, base_dir = Path(request["out_dir"]), Path(request["head_dir"]), Path(request["base_dir"])
    async with _baseline_instance(runtime, request) as instance:
        timeout_s = float(request.get("request_timeout_s", 5.0))
        env = {"PILOTAGE_BASE_URL": instance.url, "PILOTAGE_TEST_HEADERS": json.dumps(request["headers"]),
               "PILOTAGE_DB_PATH": str(out_dir / "unit-tests.db"),
               "PILOTAGE_REQUEST_TIMEOUT_S": str(timeout_s)}  # fmt: skip
        cases, untested = await rerun_failing(failures, head_dir, base_dir, out_dir, env)
        st = request["schemathesis"] or {}
        recorded = server_error_requests(Path(str(st.get("ndjson_path") or "")), set(st_ops))
        replayed = await replay_server_errors(recorded, instance.url, request["headers"], timeout_s)
    problems, differs = classify(failures, cases)
    problems += classify_schemathesis(request["schemathesis"], replayed)
    return {"problems": problems, "untested": untested, "differs": differs}


async def check_baseline(runtime: InstanceRuntime, request: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """Rerun the head's failing tests against the baseline and tell the pre-existing failures apart.

    Args:
        runtime: starts the baseline's scratch instance (stopped whatever happens).
        request: ``{"service", "commit", "head_dir", "base_dir", "out_dir", "headers", "ready_timeout_s",
            "request_timeout_s"}`` (paths as strings; ``out_dir`` gets the baseline artefacts; ``headers`` the test
            credentials; ``request_timeout_s`` per request, default 5).
        result: the head's test-suite result (:func:`pilotage.testing.suite.run_test_suite`).

    Returns:
        ``{}`` when nothing failed; else ``{"problems": [{"test", "kind", "message", ...}], "untested": [{"test",
        "reason"}], "differs": [{"test", "reason"}]}``. A baseline that cannot be tested (it does not start, the
        check times out after :data:`BASELINE_TIMEOUT_S`) gives no problem and one ``untested`` entry saying why.
    """
    failures = list(result.get("failures") or [])
    st_ops = list(_server_error_ops(result.get("schemathesis")))
    if not failures and not st_ops:
        return {}
    missing = _missing_checkout(request)
    if missing:
        return untested_baseline(missing)
    Path(request["out_dir"]).mkdir(parents=True, exist_ok=True)
    try:
        async with asyncio.timeout(BASELINE_TIMEOUT_S):
            return await _against_baseline(runtime, {**request, "schemathesis": result.get("schemathesis")},
                                           failures, st_ops)  # fmt: skip
    except TimeoutError:
        return untested_baseline(f"the baseline check ran past its {BASELINE_TIMEOUT_S:.0f} s budget")
    except (BackendError, ConfigError, InputError) as exc:
        return untested_baseline(f"the baseline could not be tested: {str(exc).splitlines()[0][:300]}")


def untested_baseline(reason: str) -> dict[str, Any]:
    """:func:`check_baseline`'s result when the baseline cannot be tested: no problem, the reason (fail closed)."""
    return {"problems": [], "untested": [{"test": "baseline", "reason": reason}], "differs": []}


async def schemathesis_on_baseline(runtime: InstanceRuntime, request: dict[str, Any]) -> dict[str, Any]:
    """The testing agent's schemathesis run (all checks) against a scratch instance of the baseline (issue 18 bench).

    The baseline starts as :func:`check_baseline` starts it; the run is the test suite's
    (:func:`pilotage.testing.suite.suite_schemathesis`), so its figures compare with the change's ``tests.completed``.

    Args:
        runtime: starts the baseline's scratch instance (stopped whatever happens).
        request: ``{"service", "commit" (the change's: names the instance), "base_dir", "spec_path" (the document
            the baseline implements), "out_dir", "ready_timeout_s"}`` (paths as strings) plus the suite's
            schemathesis knobs (``max_examples``, ``timeout_s``, ``request_timeout_s``, ``seed``, ``headers``;
            :func:`pilotage.agents.testing.suite_options`).

    Returns:
        ``{"schemathesis": SchemathesisResult.to_dict()}`` (the ``tests.completed`` ``schemathesis`` shape), or
        ``{"error": "..."}`` (one line) when the baseline cannot be started or tested: no checkout, the service does
        not start within ``ready_timeout_s``, schemathesis cannot load the document or run.
    """
    missing = _missing_checkout(request)
    if missing:
        return {"error": missing}
    out_dir = Path(request["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        async with _baseline_instance(runtime, request) as instance:
            st = await suite_schemathesis(request, Path(request["spec_path"]), out_dir, instance.url)
    except (BackendError, ConfigError, InputError) as exc:
        return {"error": f"the baseline could not be tested: {str(exc).splitlines()[0][:300]}"}
    return {"schemathesis": st.to_dict()}
