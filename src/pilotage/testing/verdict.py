"""The ``tests.verdict`` rule of the testing agent: the verdict's inputs from a test-suite result, and the verdict.

Pure and deterministic (a recorded decision can be recomputed, :mod:`pilotage.replay`). The rule is
:data:`VERDICT_RULE`; :func:`verdict_inputs` builds the inputs from :func:`pilotage.testing.suite.run_test_suite`'s
result, :func:`verdict_reasoning` decides. Issue 18: the summary names every failing test with the first line of
its message, every skipped test with its reason, the operations not implemented (501) and the contract violations
by check (gated by the deploy policy, not here); a run where more than half of the tests skipped does not pass.
"""

from __future__ import annotations

from typing import Any

from pilotage.agent import Reasoning

__all__ = ["VERDICT_RULE", "discount_baseline", "verdict_inputs", "verdict_reasoning", "why_failed"]

#: The rule of the ``tests.verdict`` decision, as recorded in every decision.
VERDICT_RULE = (
    "passed iff schemathesis server_errors == 0 and its run completed, and unit failed == 0 and errors == 0, "
    "and the generated tests (CRUD chains, properties, docstring examples) have no failure; "
    "other failed schemathesis checks are reported, not gating; quarantined flaky tests are reported, not gating; "
    "a part marked not run (ran: false: no OpenAPI document, no test command) does not gate; "
    "every live consumer's own tests pass against the commit (issue 19); "
    "not more than half of the tests skipped (issue 18: a test skipped because its operation is not implemented, "
    "a 501, does not count); contract violations are reported here and gated by the deploy policy; "
    "a failure the baseline (production) has too, for the same reason, is a baseline problem: reported, not gating"
)


def verdict_reasoning(inputs: dict[str, Any]) -> Reasoning:
    """Decide whether a change passes CI from the test counts alone (pure, deterministic).

    Args:
        inputs: ``{"commit": str, "schemathesis": {"requests", "failures", "server_errors", "complete",
            "checks_failed": [str]}, "unit": {"passed", "failed", "errors", "exit_code"}}`` (counts are ints); issue 5
            adds ``"generated": {"failed": int, "tests": [node ids]}`` and ``"flaky": int`` (optional); issue 17 adds
            ``"ran": False`` and ``"reason"`` to ``schemathesis`` / ``unit`` when that part did not run (no OpenAPI
            document, no test command): a part that did not run does not gate.
            Issue 19 adds ``"consumers": {"verified": int, "failed": int, "summary": str}`` (a managed provider with
            consumers): ``failed`` > 0 fails the verdict, quoting ``summary`` (each failed consumer and its tests).
            Issue 18 adds ``"baseline"`` (:func:`discount_baseline`): failures the baseline has too do not gate.

    Returns:
        ``action`` "pass" or "fail"; ``score`` {server_errors, unit_failed, unit_errors, non_gating_checks}.
    """
    summary = _summary(inputs)  # the counts as they were; what gates is counted without the baseline problems
    inputs, baseline_note = discount_baseline(inputs)  # issue 18: failures production has too do not gate
    st = inputs.get("schemathesis") or {}
    unit = inputs.get("unit") or {}
    server_errors = int(st.get("server_errors", 0))
    failed, errors = int(unit.get("failed", 0)), int(unit.get("errors", 0))
    complete = bool(st.get("complete", False))
    st_ran = st.get("ran", True) is not False  # issue 17: False when the service has no OpenAPI document
    blockers = []
    if server_errors:
        blockers.append(f"{server_errors} schemathesis responses were server errors (5xx)")
    if not complete and st_ran:
        blockers.append("the schemathesis run did not complete (timed out or stopped early)")
    if failed or errors:
        which = "; ".join(unit.get("tests") or [])[:600]
        blockers.append(f"{failed} unit tests failed and {errors} errored" + (f" ({which})" if which else ""))
    generated = inputs.get("generated") or {}  # issue 5; absent in decisions recorded before it
    gen_failed = int(generated.get("failed", 0))
    if gen_failed:
        blockers.append(f"{gen_failed} generated tests failed ({'; '.join(generated.get('tests') or [])[:600]})")
    consumers = inputs.get("consumers") or {}  # issue 19: consumer verification
    if consumers.get("failed"):
        blockers.append(str(consumers.get("summary") or f"{consumers['failed']} consumers failed verification"))
    skipped = inputs.get("skipped") or {}  # issue 18: tests that skipped, and how many tests there were
    skips, total = list(skipped.get("tests") or []), int(skipped.get("total", 0))
    if total and 2 * len(skips) > total:
        blockers.append(f"{len(skips)} of {total} tests skipped ({_listed(skips)})")
    flaky = int(inputs.get("flaky", 0))
    other = [c for c in st.get("checks_failed") or [] if c != "not_a_server_error"]
    note = f" Non-gating checks that failed: {', '.join(other)}." if other else ""
    note += _contract_note(inputs.get("contract") or {})
    note += f" {len(skips)} tests skipped: {_listed(skips)}." if skips else ""
    missing = list(inputs.get("not_implemented") or [])
    note += f" Not implemented (501, app/handlers.py): {', '.join(missing[:10])}." if missing else ""
    note += f" {flaky} flaky tests quarantined (reported, not gating)." if flaky else ""
    note += baseline_note
    if blockers:
        rationale = f"Fail: {'; '.join(blockers)}. {summary}.{note}"
    else:
        excuse = " the change is to blame for" if baseline_note.startswith(" Baseline problem") else ""
        rationale = f"Pass: no server error and no failing unit test{excuse}. {summary}.{note}"
    return Reasoning(
        action="fail" if blockers else "pass",
        rule=VERDICT_RULE,
        score={
            "server_errors": server_errors,
            "unit_failed": failed,
            "unit_errors": errors,
            "non_gating_checks": len(other),
            **({"generated_failed": gen_failed, "flaky": flaky} if "generated" in inputs else {}),
            **({"consumers_failed": int(consumers.get("failed", 0))} if consumers else {}),
        },
        rationale=rationale,
    )


def _summary(inputs: dict[str, Any]) -> str:
    """``"schemathesis: N requests, N server errors; unit: N passed, N failed, N errors"`` (or why not run)."""
    st, unit = inputs.get("schemathesis") or {}, inputs.get("unit") or {}
    return "; ".join(
        (
            f"schemathesis: {st.get('requests', 0)} requests, {int(st.get('server_errors', 0))} server errors"
            if st.get("ran", True) is not False
            else f"schemathesis: not run ({st.get('reason', '')})",
            f"unit: {unit.get('passed', 0)} passed, {int(unit.get('failed', 0))} failed, "
            f"{int(unit.get('errors', 0))} errors"
            if unit.get("ran", True) is not False
            else f"unit: not run ({unit.get('reason', '')})",
        )
    )


def _listed(skips: list[dict[str, Any]], most: int = 3) -> str:
    """``"nodeid: reason; ..."`` of the first ``most`` skipped tests, and how many more."""
    text = "; ".join(f"{s.get('nodeid', '')}: {s.get('reason', '')}" for s in skips[:most])
    return text + (f"; and {len(skips) - most} more" if len(skips) > most else "")


def _contract_note(contract: dict[str, Any]) -> str:
    """`` Contract violations (the deploy policy denies): check on op, op; ... Document gaps ...`` or ``""``."""
    checks, gaps = contract.get("checks") or {}, list(contract.get("gaps") or [])
    note = ""
    if checks:
        parts = [f"{check} on {', '.join(ops[:5])}" for check, ops in checks.items()]
        warn = contract.get("gate") == "warn"
        gate = "a warning: testing_contract_gate = warn" if warn else "the deploy policy denies"
        note = f" Contract violations ({gate}): {'; '.join(parts)}."
    if gaps:
        denies = contract.get("gap_gate") == "deny"
        gate = "the deploy policy denies: testing_document_gap_gate = deny" if denies else "reported, not denied"
        fixes = "; ".join(str(g.get("fix", "")) for g in gaps[:5]) + (
            f"; and {len(gaps) - 5} more" if len(gaps) > 5 else ""
        )
        note += (
            f" {len(gaps)} document gaps, statuses HTTP forces that the document does not declare ({gate}): {fixes}."
        )
    return note


def why_failed(failure: dict[str, Any]) -> str:
    """``"nodeid: first line of its message"`` (the line naming the oracle, without pytest's ``E`` prefix)."""
    lines = [line.removeprefix("E").strip() for line in str(failure.get("message", "")).splitlines()]
    first = next((line for line in lines if line), "")
    return f"{failure.get('nodeid', '')}: {first[:200]}" if first else str(failure.get("nodeid", ""))


def _not_run(part: dict[str, Any]) -> dict[str, Any]:
    """``{"ran": False, "reason"}`` of a result part that did not run (issue 17), else nothing (older decisions)."""
    return {"ran": False, "reason": str(part.get("reason", ""))} if part.get("ran") is False else {}


def verdict_inputs(commit: str, result: dict[str, Any]) -> dict[str, Any]:
    """The ``tests.verdict`` inputs of a test-suite result (:func:`pilotage.testing.suite.run_test_suite`'s shape).

    Issue 18 adds ``skipped`` ``{"tests": [{nodeid, kind, reason}], "total": int}`` (tests skipped for a reason other
    than a 501, and how many tests ran), ``not_implemented`` (operations and tests that met a 501), ``contract``
    ``{"violations": int, "checks": {check: [operations]}, "gaps": [{operation, status, reason, fix}]}`` (the
    contract breaks by check, and the document gaps: undocumented statuses HTTP forces,
    :mod:`pilotage.testing.forced_status`) and the failing tests with their first message line.
    """
    st, unit = result["schemathesis"], result["unit"]
    failures = result["failures"]
    gen_failures = [why_failed(f) for f in failures if f["kind"] != "unit"]
    all_skips = list(result.get("skipped") or [])
    skips = [s for s in all_skips if not str(s["reason"]).startswith("not implemented")]
    counted = [result.get("unit") or {}, *((result.get("generated") or {}).get(k) or {} for k in _GENERATED_KINDS)]
    total = sum(int(c.get(k, 0)) for c in counted for k in ("passed", "failed", "errors", "skipped"))
    contract = st.get("contract") or {}
    return {
        "commit": commit,
        "schemathesis": {k: st[k] for k in ("requests", "failures", "server_errors", "errors", "complete")}
        | {"checks_failed": st["checks_failed"]}
        | _not_run(st),
        "unit": {k: unit[k] for k in ("passed", "failed", "errors", "exit_code")}
        | {"tests": [why_failed(f) for f in failures if f["kind"] == "unit"]}
        | _not_run(unit),
        "generated": {"failed": len(gen_failures), "tests": gen_failures},  # issue 5
        "flaky": len(result["flaky"]),
        "skipped": {"tests": [{"nodeid": s["nodeid"], "reason": s["reason"]} for s in skips], "total": total},
        "not_implemented": sorted(
            {*st.get("not_implemented", []), *(s["nodeid"] for s in all_skips if s not in skips)}
        ),
        "contract": {
            "violations": int(st.get("contract_violations", 0)),
            "checks": {check: entry["operations"] for check, entry in contract.items()},
            "gaps": list(st.get("document_gaps") or []),
        },  # fmt: skip
    }


#: The kinds of generated tests counted in ``generated`` (:func:`pilotage.testing.suite.run_test_suite`).
_GENERATED_KINDS = ("crud", "properties", "docstrings")


def discount_baseline(inputs: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The ``tests.verdict`` inputs without the baseline problems' failures, and the summary note naming them.

    Pure. ``inputs["baseline"]`` is :func:`pilotage.testing.baseline.check_baseline`'s result (absent in decisions
    recorded before it): each problem of kind ``unit`` takes one from ``unit`` ``failed``/``errors`` (by its
    ``outcome``), a generated one from ``generated`` ``failed``, a schemathesis one its ``server_errors``; the listed
    tests drop their entries.

    Returns:
        ``(inputs, note)``: note ``" Baseline problem: T fails on production too: why; ..."`` (+ untested), or "".
    """
    baseline = inputs.get("baseline") or {}
    problems = list(baseline.get("problems") or [])
    out = dict(inputs)
    if problems:
        out["unit"], out["generated"] = _minus_tests(inputs.get("unit") or {}, inputs.get("generated") or {}, problems)
        st = dict(inputs.get("schemathesis") or {})
        st["server_errors"] = int(st.get("server_errors", 0)) - sum(int(p.get("server_errors", 0)) for p in problems)
        out["schemathesis"] = st
    note = "".join(f" Baseline problem: {p['test']} fails on production too: {p['message']}." for p in problems[:10])
    untested = list(baseline.get("untested") or [])
    if untested:
        listed = "; ".join(f"{u['test']}: {u['reason']}" for u in untested[:5])
        note += f" Not checked on the baseline (still gating): {listed}."
    return out, note


def _minus_tests(
    unit: dict[str, Any], generated: dict[str, Any], problems: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``unit`` and ``generated`` verdict inputs without the problems' tests (counts and ``tests`` lines)."""
    ids = {str(p["test"]) for p in problems}

    def kept(lines: list[str]) -> list[str]:
        return [line for line in lines if line.split(": ", 1)[0] not in ids]

    own = [p for p in problems if p["kind"] == "unit"]
    unit = {**unit, "tests": kept(list(unit.get("tests") or []))}
    unit["failed"] = int(unit.get("failed", 0)) - sum(1 for p in own if p.get("outcome") == "failed")
    unit["errors"] = int(unit.get("errors", 0)) - sum(1 for p in own if p.get("outcome") == "error")
    gen = sum(1 for p in problems if p["kind"] not in ("unit", "schemathesis"))
    generated = {**generated, "tests": kept(list(generated.get("tests") or [])),
                 "failed": int(generated.get("failed", 0)) - gen}  # fmt: skip
    return unit, generated
