"""What a schemathesis run found: its results per operation, summarised from the NDJSON event stream.

:func:`pilotage.testing.schemathesis_runner.run_schemathesis` runs schemathesis with ``--report junit,ndjson``;
every ``ScenarioFinished`` event of the NDJSON stream carries, per test case, the request, the response status and
each check's outcome, which :func:`parse_ndjson` turns into :class:`OperationResult` and :class:`SchemathesisResult`
(``to_dict()`` is the ``tests.completed`` ``schemathesis`` shape). What it reads of the document besides the stream
(:func:`load_operations`, :func:`load_documented_statuses`, :func:`document_facts`) is the runner's.

Counting (per operation ``"METHOD /path/{template}"``): ``requests`` = responses received; ``not_implemented`` =
responses with status 501 (an operation the service does not implement yet — a generated service answers so where
the behaviour cannot be inferred, until the user writes it in ``app/handlers.py``: not a server error, and no
check of such a case counts); ``server_errors`` = other responses with status >= 500; ``failures`` = test cases
with a failed check or a 5xx response; ``checks_failed``
= names of the failed checks (``not_a_server_error``, ``status_code_conformance`` …); ``examples`` = one curl
line per failed check, the shortest one seen (schemathesis shrinks failing cases, so it is also the simplest).
Stateful-phase cases are attributed to the operation they called. ``contract`` groups the failures of the checks in
:data:`CONTRACT_CHECKS` (a valid request rejected, an undocumented status or content type, authentication not
enforced) by check, with the operations and one example each. A ``status_code_conformance`` failure whose status
HTTP itself forces for the request (404 for an id naming nothing, 400 for a request schemathesis generated
invalid, 401 without credentials …: :func:`pilotage.testing.forced_status.forced_reason`, the one place that
decides) is not a contract break but a *document gap*: listed per operation and status in ``document_gaps`` with
the fix (``declare 404 for GET /x/{id} in the document``), not counted as a failure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pilotage.spec.openapi import FORM_MEDIA_TYPES
from pilotage.testing.curl import curl_command
from pilotage.testing.forced_status import OperationFacts, forced_reason, gap_fix

__all__ = [
    "CONTRACT_CHECKS",
    "NOT_IMPLEMENTED",
    "OperationResult",
    "SchemathesisResult",
    "documented_rejection",
    "parse_ndjson",
]

#: schemathesis checks whose failures are contract violations (issue 18, item 8), and what each one means: reported
#: by check in ``tests.completed`` (``schemathesis.contract``) and denied by the bundled ``deploy_contract.rego``.
CONTRACT_CHECKS = {
    "positive_data_acceptance": "a request valid by the document was rejected",
    "status_code_conformance": "a status code the document does not declare was returned",
    "content_type_conformance": "a content type the document does not declare was returned",
    "ignored_auth": "a request without valid credentials was not refused (authentication not enforced)",
}
#: The status of an operation a generated service does not implement yet (its handler is the user's to write).
NOT_IMPLEMENTED = 501


@dataclass
class OperationResult:
    """Outcome of the property tests of one API operation.

    Attributes:
        operation: ``"GET /pets/{petId}"``.
        requests: responses received.
        failures: test cases with at least one failed check or a 5xx response.
        server_errors: responses with HTTP status >= 500, 501 excepted.
        checks_failed: sorted names of the checks that failed.
        examples: ``[{"check": name, "curl": "curl -X ...", "status": 502}]``, one (the shortest) per failed check;
            ``status`` is the service's answer (absent when it gave none).
        not_implemented: responses with status 501 (an operation the service does not implement yet: not a
            server error, and its checks are not counted).
        document_gaps: ``[{"status": 404, "reason": "... RFC 9110 15.5.5", "fix": "declare 404 for GET /x/{id} in
            the document"}]``, one per undocumented status HTTP forced (:mod:`pilotage.testing.forced_status`),
            sorted by status: not failures.
    """

    operation: str
    requests: int = 0
    failures: int = 0
    server_errors: int = 0
    not_implemented: int = 0
    checks_failed: list[str] = field(default_factory=list)
    examples: list[dict[str, str]] = field(default_factory=list)
    document_gaps: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-serialisable dict (the ``tests.completed`` operation shape)."""
        return asdict(self)


@dataclass
class SchemathesisResult:
    """Outcome of one schemathesis run.

    Attributes:
        operations: per-operation results, in spec order.
        errors: test cases that errored (network error, timeout) instead of getting a response.
        exit_code: schemathesis' exit status (0 no failure, 1 failures; negative: killed), None if unknown.
        timed_out: the global timeout killed the run (results are partial).
        complete: schemathesis reported the end of its engine (``EngineFinished``).
        seed: the hypothesis seed schemathesis used (replay with ``--seed``).
        duration_s: wall-clock seconds of the run.
        junit_path: the JUnit XML schemathesis wrote.
        ndjson_path: the NDJSON event stream schemathesis wrote.
        log_path: schemathesis' console output.
    """

    operations: list[OperationResult]
    errors: int
    exit_code: int | None
    timed_out: bool
    complete: bool
    seed: str
    duration_s: float
    junit_path: Path
    ndjson_path: Path
    log_path: Path

    @property
    def requests(self) -> int:
        """Responses received over all operations."""
        return sum(op.requests for op in self.operations)

    @property
    def failures(self) -> int:
        """Failing test cases over all operations."""
        return sum(op.failures for op in self.operations)

    @property
    def server_errors(self) -> int:
        """Responses with HTTP status >= 500 over all operations."""
        return sum(op.server_errors for op in self.operations)

    @property
    def checks_failed(self) -> list[str]:
        """Sorted names of every check that failed somewhere."""
        return sorted({name for op in self.operations for name in op.checks_failed})

    @property
    def contract(self) -> dict[str, dict[str, Any]]:
        """The contract violations by check (:data:`CONTRACT_CHECKS`; only checks that failed somewhere).

        Returns:
            ``{check: {"meaning": str, "operations": ["GET /x", ...], "examples": [{"operation", "curl"}]}}``.
        """
        out: dict[str, dict[str, Any]] = {}
        for op in self.operations:
            for check in (c for c in op.checks_failed if c in CONTRACT_CHECKS):
                entry = out.setdefault(check, {"meaning": CONTRACT_CHECKS[check], "operations": [], "examples": []})
                entry["operations"].append(op.operation)
                entry["examples"] += [{"operation": op.operation, "curl": e["curl"]} for e in op.examples
                                      if e["check"] == check][:1]  # fmt: skip
        return dict(sorted(out.items()))

    @property
    def document_gaps(self) -> list[dict[str, Any]]:
        """The document gaps over all operations: ``[{"operation", "status", "reason", "fix"}]``, in spec order."""
        return [{"operation": op.operation, **gap} for op in self.operations for gap in op.document_gaps]

    @property
    def not_implemented(self) -> list[str]:
        """The operations that answered 501 (not implemented yet), in spec order."""
        return [op.operation for op in self.operations if op.not_implemented]

    def to_dict(self) -> dict[str, Any]:
        """Return the ``tests.completed`` ``schemathesis`` shape plus run metadata (JSON-serialisable)."""
        return {
            "operations": [op.to_dict() for op in self.operations],
            "requests": self.requests,
            "failures": self.failures,
            "server_errors": self.server_errors,
            "checks_failed": self.checks_failed,
            "contract": self.contract,
            "contract_violations": sum(len(c["operations"]) for c in self.contract.values()),
            "document_gaps": self.document_gaps,
            "not_implemented": self.not_implemented,
            "errors": self.errors,
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "complete": self.complete,
            "seed": self.seed,
            "duration_s": round(self.duration_s, 3),
            "junit_path": str(self.junit_path),
            "ndjson_path": str(self.ndjson_path),
        }


def _events(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                return  # the last line of a killed run may be cut short
            if isinstance(event, dict) and len(event) == 1:
                name, body = next(iter(event.items()))
                if isinstance(body, dict):
                    yield name, body


def _case_operation(phase: str, label: str, case: dict[str, Any], failed: list[dict[str, Any]]) -> str:
    for check in failed:
        operation = ((check.get("failure_info") or {}).get("failure") or {}).get("operation")
        if operation:
            return str(operation)
    if phase == "stateful" or " " not in label:
        return f"{str(case.get('method', '')).upper()} {case.get('path', '')}"
    return label


def parse_ndjson(
    path: Path,
    operations: list[str],
    documented: dict[str, frozenset[str]] | None = None,
    nesting: set[str] | None = None,
    facts: dict[str, OperationFacts] | None = None,
) -> tuple[list[OperationResult], dict[str, Any]]:
    """Summarise a schemathesis NDJSON event stream per operation.

    Args:
        path: the ``--report-ndjson-path`` file.
        operations: the spec's operations (from :func:`load_operations`), listed first and in this order.
        documented: each operation's documented response statuses (:func:`load_documented_statuses`): a valid
            request answered with a 4xx the operation documents (402 "payment declined", 409 "out of stock") is
            the documented contract, not a ``positive_data_acceptance`` violation. None: every finding counts.
        nesting: operations whose form body nests objects (:func:`document_facts`): schemathesis' form encoding of
            such a body is not the valid data, so its refusal is not a ``positive_data_acceptance`` violation.
        facts: per operation, what the document says of it (:func:`document_facts`): a ``status_code_conformance``
            failure whose status HTTP forces (:func:`~pilotage.testing.forced_status.forced_reason`) is a document
            gap, not a failure. None: every such failure counts.

    Returns:
        ``(operations, meta)``; ``meta`` = ``{"errors": int, "complete": bool, "seed": str,
        "fatal": str | None}``.
    """
    results: dict[str, OperationResult] = {op: OperationResult(op) for op in operations}
    best: dict[tuple[str, str], tuple[str, int | None]] = {}
    gaps: dict[tuple[str, int], str] = {}
    meta: dict[str, Any] = {"errors": 0, "complete": False, "seed": "", "fatal": None}
    if not path.is_file():
        return list(results.values()), meta
    for name, body in _events(path):
        if name == "Initialize":
            meta["seed"] = str(body.get("seed", ""))
        elif name == "EngineFinished":
            meta["complete"] = True
        elif name == "FatalError":
            exc = body.get("exception") or {}
            meta["fatal"] = f"{exc.get('type', 'error')}: {exc.get('message', '')}"
        elif name == "NonFatalError":
            meta["errors"] += 1
        elif name == "ScenarioFinished":
            _add_scenario(body, results, best, documented or {}, nesting or set(), facts, gaps)
    for (operation, check), (curl, status) in sorted(best.items()):
        example: dict[str, Any] = {"check": check, "curl": curl}
        if status is not None:
            example["status"] = status
        results[operation].examples.append(example)
    for (operation, status), reason in sorted(gaps.items()):
        results[operation].document_gaps.append({"status": status, "reason": reason, "fix": gap_fix(operation, status)})
    return list(results.values()), meta


def _form_encoded(interaction: dict[str, Any]) -> bool:
    """Whether the recorded request sent a form body (:data:`~pilotage.spec.openapi.FORM_MEDIA_TYPES`)."""
    headers = (interaction.get("request") or {}).get("headers") or {}
    value = next((v for k, v in headers.items() if str(k).lower() == "content-type"), "")
    value = value[0] if isinstance(value, list) and value else value
    return str(value).split(";")[0].strip().lower() in FORM_MEDIA_TYPES


def documented_rejection(status: object, documented: frozenset[str]) -> bool:
    """Whether a 4xx ``status`` is one the operation documents (its code, or its class ``4XX``).

    A valid request answered so is the documented contract (402 payment declined, 409 out of stock), not a finding:
    here and in Pilotage's CRUD tests (:attr:`pilotage.testing.crud_chains.CrudChain.create_refusals`).
    """
    return isinstance(status, int) and 400 <= status < 500 and bool({str(status), "4XX"} & documented)


def _classify_status(
    names: set[str],
    status: object,
    case: dict[str, Any],
    interaction: dict[str, Any],
    operation: tuple[OperationFacts | None, str],
    gaps: dict[tuple[str, int], str],
) -> None:
    """Move a ``status_code_conformance`` failure whose status HTTP forces from ``names`` to ``gaps`` (in place)."""
    facts, label = operation
    reason = forced_reason(status, case, interaction.get("request") or {}, facts) if isinstance(status, int) else None
    if reason is not None and isinstance(status, int):  # the document lacks the status; the contract is not broken
        gaps.setdefault((label, status), reason)
        names.discard("status_code_conformance")


def _add_scenario(
    body: dict[str, Any],
    results: dict[str, OperationResult],
    best: dict[tuple[str, str], tuple[str, int | None]],
    documented: dict[str, frozenset[str]],
    nesting: set[str],
    facts: dict[str, OperationFacts] | None = None,
    gaps: dict[tuple[str, int], str] | None = None,
) -> None:
    recorder = body.get("recorder") or {}
    label = str(recorder.get("label", ""))
    phase = str(body.get("phase", ""))
    cases = recorder.get("cases") or {}
    checks = recorder.get("checks") or {}
    interactions = recorder.get("interactions") or {}
    for case_id, node in cases.items():
        case = node.get("value") or {}
        failed = [c for c in checks.get(case_id, []) if c.get("status") == "failure"]
        operation = _case_operation(phase, label, case, failed)
        result = results.setdefault(operation, OperationResult(operation))
        interaction = interactions.get(case_id) or {}
        status = (interaction.get("response") or {}).get("status_code")
        if isinstance(status, int):
            result.requests += 1
        names = {str(c.get("name")) for c in failed}
        if facts is not None and gaps is not None and "status_code_conformance" in names:
            _classify_status(names, status, case, interaction, (facts.get(operation), result.operation), gaps)
        if status == NOT_IMPLEMENTED:  # the operation is not implemented yet: reported as such, not a failure
            result.not_implemented += 1
            continue
        if documented_rejection(status, documented.get(operation, frozenset())):
            names.discard("positive_data_acceptance")  # the document says this valid request may be refused so
        if operation in nesting and _form_encoded(interaction):
            names.discard("positive_data_acceptance")  # a form cannot carry the nested objects: not the valid data
        if isinstance(status, int) and status >= 500:
            result.server_errors += 1
            names.add("not_a_server_error")
        if not names:
            continue
        result.failures += 1
        result.checks_failed = sorted(set(result.checks_failed) | names)
        if interaction.get("request"):
            curl = curl_command(interaction["request"])
            for check in names:
                key = (result.operation, check)
                if key not in best or len(curl) < len(best[key][0]):
                    best[key] = (curl, status if isinstance(status, int) else None)
