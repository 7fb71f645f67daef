"""One test run of a service, as a plain async function with JSON in and out (issue #5).

:func:`run_test_suite` is what the testing agent calls, and what a worker process can call when contract-net hands
it a test run (issue #8): ``await run_test_suite(request) -> dict``, both JSON-serialisable.

Steps (each bounded; a bad input ends with a *finding*, never a hang):

1. load the spec with schemathesis (:func:`~pilotage.testing.schemathesis_runner.load_operations`); a spec it
   cannot load → finding ``spec_unloadable``, nothing else runs;
2. write the generated tests into ``service_dir/tests`` (:mod:`~pilotage.testing.spec_tests`: schemathesis Python
   API file + inferred CRUD chains; :mod:`~pilotage.testing.ghostwrite` in a child process with
   ``ghostwrite_timeout_s``: property and docstring tests; modules that do not import → finding ``import_error``);
3. target ``base_url``, or start the service itself (``LocalRuntime``, ``scratch_instance``); a service that does
   not start → finding ``service_start``;
4. one pytest run over ``tests/`` (own + generated; the schemathesis pytest file is left to the repository's CI,
   the CLI run covers it) with the global ``unit_timeout_s``; affected tests first; quarantined tests deselected;
5. flaky detection: each failing test (at most :data:`MAX_RERUN_TESTS`) is rerun ``flaky_reruns`` times; a test
   that passes at least once is *flaky* (history ``[False, ...]``); with ``flaky_policy == "quarantine"`` it is
   reported under ``flaky``/``quarantined``, not under failures; with ``"fail"`` it stays a failure;
6. then the schemathesis CLI (all phases and checks, per-request ``request_timeout_s``, global ``timeout_s``). Not
   at the same time as pytest: the CRUD chains must be the only writer of what they create.

Findings (``{"kind", "message"}``): ``spec_unloadable``, ``service_start``, ``import_error`` (the repository's tests
or modules do not import), ``suite_timeout`` (pytest killed after ``unit_timeout_s``), ``schemathesis_timeout``,
``request_timeouts`` (requests that got no answer within ``request_timeout_s``: a hanging service).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from pilotage.errors import BackendError, InputError
from pilotage.testing.ghostwrite import DOCSTRINGS_FILE, PROPERTIES_FILE
from pilotage.testing.process import run_process
from pilotage.testing.pytest_runner import UnitResult, run_pytest
from pilotage.testing.schemathesis_results import SchemathesisResult
from pilotage.testing.schemathesis_runner import load_operations, run_schemathesis
from pilotage.testing.spec_tests import CRUD_FILE, SCHEMATHESIS_FILE, write_spec_tests

__all__ = [
    "DEFAULTS",
    "MAX_RERUN_TESTS",
    "classify_flaky",
    "parse_cases",
    "run_test_suite",
    "skipped_tests",
    "suite_schemathesis",
]

#: Failing tests rerun at most (the rest are reported as failures without reruns): bounds the flaky stage.
MAX_RERUN_TESTS = 20
#: Request keys and their defaults (units in the names).
DEFAULTS: dict[str, Any] = {
    "base_url": None,
    "max_examples": 10,
    "crud_examples": 5,
    "request_timeout_s": 5.0,
    "timeout_s": 180.0,
    "unit_timeout_s": 300.0,
    "ghostwrite_timeout_s": 60.0,
    "ready_timeout_s": 30.0,
    "flaky_reruns": 3,
    "flaky_policy": "quarantine",
    "quarantine": [],
    "first": None,
    "headers": {},
    "generate": True,
    "seed": None,
    "env": {},
}
_KINDS = {CRUD_FILE: "crud", PROPERTIES_FILE: "properties", DOCSTRINGS_FILE: "docstrings", SCHEMATHESIS_FILE: "api"}


def _kind(nodeid: str) -> str:
    return _KINDS.get(nodeid.split("::", 1)[0].rsplit("/", 1)[-1], "unit")


def _nodeid(service_dir: Path, classname: str, name: str) -> str:
    if not classname:  # a collection error: pytest names the module as ``tests.test_x``
        classname, name = name, ""
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        rel = "/".join(parts[:cut]) + ".py"
        if (service_dir / rel).is_file():
            return "::".join([rel, *parts[cut:], *([name] if name else [])])
    return f"{classname}::{name}"


def _reproduce(text: str) -> str:
    curls = [line.strip() for line in text.splitlines() if line.strip().startswith("curl ")]
    if curls:
        return "\n".join(dict.fromkeys(curls))
    match = re.search(r"Falsifying example: .*?(?:\n\n|\Z)", text, re.S)
    return match.group(0).strip() if match else ""


def parse_cases(junit_path: Path, service_dir: Path) -> list[dict[str, Any]]:
    """Return every test case of a pytest JUnit XML: ``{nodeid, kind, outcome, message, reproduce}``.

    ``outcome`` is ``passed``/``failed``/``error``/``skipped``; ``kind`` is ``unit`` (the repository's own tests) or
    the generated kind (``crud``, ``properties``, ``docstrings``, ``api``); ``reproduce`` is the curl lines or the
    hypothesis falsifying example found in the failure text ("" when none). A missing/corrupt file gives ``[]``.
    """
    try:
        root = ET.parse(junit_path).getroot()
    except (ET.ParseError, OSError):
        return []
    cases = []
    for case in root.iter("testcase"):
        nodeid = _nodeid(service_dir, case.get("classname", ""), case.get("name", ""))
        outcome, message = "passed", ""
        for tag, label in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            found = case.find(tag)
            if found is not None:
                outcome, message = label, f"{found.get('message', '')}\n{found.text or ''}"
                break
        cases.append(
            {
                "nodeid": nodeid,
                "kind": _kind(nodeid),
                "outcome": outcome,
                "message": message.strip()[:2000],
                "reproduce": _reproduce(message) if outcome in ("failed", "error") else "",
            }
        )
    return cases


def skipped_tests(cases: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The skipped ones of :func:`parse_cases`' cases: ``[{"nodeid", "kind", "reason"}]``.

    ``reason`` is the first line of pytest's skip message (``Skipped: `` removed); a test skipped because its
    operation is not implemented yet (a 501) has a reason starting with ``not implemented:``.
    """
    out = []
    for case in cases:
        if case["outcome"] == "skipped":
            lines = [line.strip() for line in case["message"].splitlines() if line.strip()]
            reason = lines[0] if lines else ""
            for prefix in ("Skipped: ", "skip: "):
                reason = reason.removeprefix(prefix)
            out.append({"nodeid": case["nodeid"], "kind": case["kind"], "reason": reason[:300]})
    return out


def classify_flaky(histories: dict[str, list[bool]]) -> tuple[list[str], list[str]]:
    """Split failing tests by their run history (True = passed): ``(flaky, consistently failing)`` node ids."""
    flaky = sorted(n for n, h in histories.items() if any(h) and not all(h))
    return flaky, sorted(n for n, h in histories.items() if not any(h))


async def _rerun(
    service_dir: Path, out_dir: Path, nodeids: list[str], reruns: int, env: dict[str, str]
) -> dict[str, list[bool]]:
    histories = {n: [False] for n in nodeids}
    for attempt in range(reruns):
        junit = out_dir / f"rerun-{attempt}.junit.xml"
        result = await run_pytest(service_dir, junit, timeout_s=120.0, env=env, extra_args=list(nodeids))
        outcome = {c["nodeid"]: c["outcome"] == "passed" for c in parse_cases(result.junit_path, service_dir)}
        for nodeid in nodeids:
            histories[nodeid].append(outcome.get(nodeid, False))
    return histories


async def _ghostwrite(service_dir: Path, out_dir: Path, timeout_s: float) -> dict[str, Any]:
    argv = [sys.executable, "-m", "pilotage.testing.ghostwrite", str(service_dir)]
    log = out_dir / "ghostwrite.log"
    outcome = await run_process(argv, cwd=service_dir, timeout_s=timeout_s, log_path=log)
    for line in reversed(log.read_text(encoding="utf-8", errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                return dict(json.loads(line))
            except json.JSONDecodeError:
                break
    reason = "timed out" if outcome.timed_out else f"exited with {outcome.exit_code}"
    tail = outcome.output_tail[-1] if outcome.output_tail else ""
    return {"written": [], "dropped": [], "import_errors": [], "error": f"ghostwriter {reason}: {tail}"[:300]}


def _counts(cases: list[dict[str, Any]]) -> dict[str, int]:
    out = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    for case in cases:
        out[{"passed": "passed", "failed": "failed", "error": "errors", "skipped": "skipped"}[case["outcome"]]] += 1
    return out


async def _generate(req: dict[str, Any], spec: Path, service_dir: Path, out_dir: Path) -> dict[str, Any]:
    generated: dict[str, Any] = {"spec": {}, "code": {}}
    if req["generate"]:
        generated["spec"] = write_spec_tests(
            spec, service_dir, max_examples=req["max_examples"], crud_examples=req["crud_examples"],
            request_timeout_s=req["request_timeout_s"],
        )  # fmt: skip
        generated["code"] = await _ghostwrite(service_dir, out_dir, req["ghostwrite_timeout_s"])
    return generated


Outcome = tuple[SchemathesisResult, UnitResult, dict[str, list[bool]]]
#: The only variables a test-suite request (a bus payload anyone who writes the log could craft) may set for the
#: processes it starts; anything else (``LD_PRELOAD``, ``PYTHONSTARTUP``…) is an InputError.
PAYLOAD_ENV = frozenset({"PILOTAGE_DB_PATH"})


def _payload_env(env: Any) -> dict[str, str]:
    """Return the request's ``env`` when it sets only :data:`PAYLOAD_ENV` names to strings.

    Raises:
        InputError: ``env`` is not a mapping of strings or names another variable.
    """
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise InputError("test suite request: env must map variable names to strings", hint="pass PILOTAGE_DB_PATH")
    extra = sorted(set(env) - PAYLOAD_ENV)
    if extra:
        raise InputError(
            f"test suite request sets {', '.join(map(str, extra))}: only {', '.join(sorted(PAYLOAD_ENV))} may be set",
            hint="drop the other variables from env",
        )
    return dict(env)


async def _run_both(req: dict[str, Any], spec: Path, service_dir: Path, out_dir: Path, url: str) -> Outcome:
    env = {**req["env"], "PILOTAGE_BASE_URL": url, "PILOTAGE_TEST_HEADERS": json.dumps(req["headers"])}
    env["PILOTAGE_REQUEST_TIMEOUT_S"] = str(req["request_timeout_s"])
    args = [f"--ignore=tests/{SCHEMATHESIS_FILE}", *[f"--deselect={n}" for n in req["quarantine"]]]
    # in turn, pytest first: the CRUD chains assume they are the only writer of what they create (schemathesis
    # writing at the same time deleted and replaced their items: spurious failures), and they run before
    # schemathesis has filled the lists past their page size (a membership check would have no evidence)
    unit = await run_pytest(
        service_dir, out_dir / "pytest.junit.xml", timeout_s=req["unit_timeout_s"], env=env, first=req["first"],
        extra_args=args,
    )  # fmt: skip
    histories: dict[str, list[bool]] = {}
    if req["flaky_reruns"] and not unit.timed_out:  # reruns hit the same instance, before it stops
        failing = [c for c in parse_cases(unit.junit_path, service_dir) if c["outcome"] in ("failed", "error")]
        ids = [c["nodeid"] for c in failing if "import" not in c["message"].lower()][:MAX_RERUN_TESTS]
        if ids:
            histories = await _rerun(service_dir, out_dir, ids, int(req["flaky_reruns"]), env)
    return await suite_schemathesis(req, spec, out_dir, url), unit, histories


async def suite_schemathesis(req: dict[str, Any], spec: Path, out_dir: Path, url: str) -> SchemathesisResult:
    """The suite's schemathesis run (step 6: all phases and checks) of ``spec`` against the service at ``url``.

    Args:
        req: a test-suite request; its knobs ``max_examples``, ``timeout_s`` (the run's budget, seconds),
            ``request_timeout_s`` (per request, seconds), ``seed`` and ``headers`` are read, :data:`DEFAULTS` for
            those it lacks.
        spec: the OpenAPI document to test the service against.
        out_dir: the folder of schemathesis' reports (``schemathesis.junit.xml``, ``.ndjson``, ``.log``).
        url: ``http://127.0.0.1:PORT`` of the running service.

    Returns:
        The :class:`~pilotage.testing.schemathesis_results.SchemathesisResult` (``to_dict()`` is ``tests.completed``
        ``schemathesis``).

    Raises:
        InputError, BackendError: as :func:`~pilotage.testing.schemathesis_runner.run_schemathesis`.
    """
    knobs = {**DEFAULTS, **req}
    return await run_schemathesis(
        spec, url, out_dir, max_examples=knobs["max_examples"], timeout_s=knobs["timeout_s"],
        request_timeout_s=knobs["request_timeout_s"], seed=knobs["seed"], headers=knobs["headers"],
    )  # fmt: skip


async def _against_service(req: dict[str, Any], spec: Path, service_dir: Path, out_dir: Path) -> Outcome:
    if req["base_url"]:
        return await _run_both(req, spec, service_dir, out_dir, str(req["base_url"]))
    from pilotage.runtime.base import scratch_instance
    from pilotage.runtime.local import LocalRuntime

    runtime = LocalRuntime(log_dir=out_dir / "runtime")
    try:
        async with scratch_instance(
            runtime, service=service_dir.name, version="suite", path=service_dir, data_dir=out_dir,
            ready_timeout_s=req["ready_timeout_s"],
        ) as instance:  # fmt: skip
            return await _run_both(req, spec, service_dir, out_dir, instance.url)
    finally:
        await runtime.close()


def _findings(
    st: SchemathesisResult, unit: UnitResult, cases: list[dict[str, Any]], req: dict[str, Any]
) -> list[dict[str, str]]:
    findings = []
    if unit.timed_out:
        findings.append(
            {
                "kind": "suite_timeout",
                "message": f"the test suite ran past its {req['unit_timeout_s']} s budget and was killed",
            }
        )
    broken = [
        c
        for c in cases
        if c["outcome"] == "error"
        and ("ImportError" in c["message"] or "ModuleNotFound" in c["message"] or "collection failure" in c["message"])
    ]
    for case in broken:
        lines = [line for line in case["message"].splitlines() if "Error:" in line or "Error " in line]
        first = lines[-1].removeprefix("E").strip() if lines else case["message"][:200]
        findings.append({"kind": "import_error", "message": f"{case['nodeid']} does not import: {first.strip()[:300]}"})
    if st.timed_out:
        findings.append(
            {
                "kind": "schemathesis_timeout",
                "message": f"schemathesis ran past its {req['timeout_s']} s budget and was killed; results are partial",
            }
        )
    if st.errors:
        findings.append(
            {
                "kind": "request_timeouts",
                "message": f"{st.errors} schemathesis requests got no response within the per-request timeout "
                f"({req['request_timeout_s']} s): does the service hang?",
            }
        )
    return findings


async def run_test_suite(request: dict[str, Any]) -> dict[str, Any]:
    """Run the whole test suite of one service version and return its results (JSON in, JSON out).

    Args:
        request: ``service_dir``, ``spec_path``, ``out_dir`` (required, paths as strings) plus the optional keys of
            :data:`DEFAULTS`: ``base_url`` (None: start the service here), ``max_examples``, ``crud_examples``,
            ``request_timeout_s``, ``timeout_s`` (schemathesis), ``unit_timeout_s`` (pytest), ``ghostwrite_timeout_s``,
            ``ready_timeout_s``, ``flaky_reruns``, ``flaky_policy`` (``quarantine``/``fail``), ``quarantine`` (node
            ids to deselect), ``first`` (node ids to run first), ``headers`` (auth), ``generate``, ``seed``, ``env``.

    Returns:
        ``{"ok": bool (no finding stopped the run), "schemathesis": SchemathesisResult.to_dict() or None,
        "unit": {passed, failed, errors, skipped, exit_code, timed_out, duration_s, junit_path} (own tests),
        "generated": {"crud"|"properties"|"docstrings": counts, "spec": files, "code": ghostwriter summary},
        "failures": [{nodeid, kind, message, reproduce}], "skipped": [{nodeid, kind, reason}] (issue 18),
        "flaky": [{nodeid, history}], "quarantined": [ids],
        "findings": [{kind, message}], "unit_junit_path": str}``.

    Raises:
        InputError: a required key is missing, or ``env`` sets a variable other than :data:`PAYLOAD_ENV`.
    """
    missing = [k for k in ("service_dir", "spec_path", "out_dir") if not request.get(k)]
    if missing:
        raise InputError(f"test suite request lacks {', '.join(missing)}", hint="pass service_dir, spec_path, out_dir")
    req = {**DEFAULTS, **request}
    req["env"] = _payload_env(req["env"])
    service_dir, spec = Path(req["service_dir"]).resolve(), Path(req["spec_path"]).resolve()
    out_dir = Path(req["out_dir"]).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"ok": False, "schemathesis": None, "unit": None, "generated": {}, "failures": []}
    result |= {"flaky": [], "quarantined": list(req["quarantine"]), "findings": [], "unit_junit_path": ""}
    try:
        await asyncio.to_thread(load_operations, spec)
    except InputError as exc:
        result["findings"].append({"kind": "spec_unloadable", "message": str(exc)})
        return result
    generated = await _generate(req, spec, service_dir, out_dir)
    for error in generated["code"].get("import_errors", []):
        result["findings"].append(
            {"kind": "import_error", "message": f"{error['module']} does not import: {error['error']}"}
        )
    try:
        st, unit, histories = await _against_service(req, spec, service_dir, out_dir)
    except BackendError as exc:
        result["findings"].append({"kind": "service_start", "message": str(exc)})
        result["generated"] = generated
        return result
    cases = parse_cases(unit.junit_path, service_dir)
    flaky, _ = classify_flaky(histories)
    excluded = set(flaky) if req["flaky_policy"] == "quarantine" else set()
    result["quarantined"] = sorted(set(result["quarantined"]) | excluded)
    result["flaky"] = [{"nodeid": n, "history": histories[n]} for n in flaky]
    kept = [c for c in cases if c["nodeid"] not in excluded]
    result["failures"] = [c for c in kept if c["outcome"] in ("failed", "error")]
    result["skipped"] = skipped_tests(kept)  # issue 18: a test that skips says so in the summary
    own = _counts([c for c in kept if c["kind"] == "unit"])
    if (unit.timed_out or not cases) and unit.errors and not own["errors"]:
        own["errors"] = unit.errors  # a broken or killed run never looks clean (pytest_runner's rule)
    result["unit"] = {**unit.to_dict(), **own}
    result["generated"] = {
        **{kind: _counts([c for c in kept if c["kind"] == kind]) for kind in ("crud", "properties", "docstrings")},
        **generated,
    }
    result["schemathesis"] = st.to_dict()
    result["findings"] += _findings(st, unit, cases, req)
    result["unit_junit_path"] = str(unit.junit_path)
    result["ok"] = not any(f["kind"] in ("spec_unloadable", "service_start") for f in result["findings"])
    return result
