"""Property-based API tests with schemathesis v4, run from an OpenAPI file against a running service.

Why the CLI in a subprocess, and not the Python API:

* **stable interface** — schemathesis' Python API changed shape between v3 and v4 (``from_path`` moved to
  ``schemathesis.openapi``, runners became an engine with events, ``Case.call_and_validate`` replaced
  ``validate_response``) and keeps moving in minor releases; ``schemathesis run`` and its report formats are the
  documented, versioned interface;
* **structured results** — ``--report junit,ndjson`` makes schemathesis write a JUnit XML (kept as the run's
  artefact) and an NDJSON stream of its engine events; every ``ScenarioFinished`` event carries, per test case,
  the request, the response status and each check's outcome, which is exactly what the per-operation summary
  needs (nothing is scraped from the console output);
* **bounded and isolated** — see :mod:`pilotage.testing.process`: a hard global timeout (the process group is
  killed), hypothesis and ``requests`` stay out of the control plane's asyncio loop.

The spec is loaded in-process first with ``schemathesis.openapi.from_path`` (the loader the CLI uses; it does no
network I/O), so an unloadable spec is an :class:`~pilotage.errors.InputError` naming the file instead of an
opaque exit code (the CLI would even retry a YAML syntax error as a GraphQL schema).

Flags and why: ``--max-examples`` from ``settings.schemathesis_max_examples``; ``--request-timeout`` per request;
``--generation-database none`` (no ``.hypothesis`` folder written anywhere); ``--config-file`` pointing to a file
Pilotage writes (a ``schemathesis.toml`` in a parent folder cannot change the run); ``--max-time`` is *not* used as
the global bound because in v4 it is a budget that fuzzing repeats until spent — the subprocess timeout is the
bound. All phases run (examples, coverage, fuzzing, stateful).

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

Secrets (issue #15): the test headers (``settings.testing_auth_headers``) never appear on the command line, which
every local user can read in ``ps``. The config file (:func:`write_config`) names each header with a placeholder,
``"X-Tenant" = "${PILOTAGE_TEST_HEADER_0}"``, that schemathesis resolves from its environment (its documented
``${VAR}`` substitution), and the values are set in the child's environment only; the same file adds the header
names to schemathesis' ``output.sanitization`` keys, so its reports show ``[masked]`` for them. After the run the
JUnit XML, NDJSON and log are masked by value as well (:func:`pilotage.testing.process.run_process`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pilotage.errors import BackendError, InputError
from pilotage.secrets import MASK, write_private_text
from pilotage.spec.openapi import FORM_MEDIA_TYPES, api_url
from pilotage.testing.credentials import PRINCIPAL_ENV, basic_env, schemathesis_auth
from pilotage.testing.curl import curl_command
from pilotage.testing.forced_status import OperationFacts, forced_reason, gap_fix, operation_facts
from pilotage.testing.process import run_process

__all__ = [
    "OperationResult",
    "SchemathesisResult",
    "build_command",
    "curl_command",
    "header_env",
    "load_documented_statuses",
    "load_operations",
    "parse_ndjson",
    "document_facts",
    "run_schemathesis",
    "write_config",
]

#: Global time budget of one schemathesis run (seconds); the process group is killed after it.
DEFAULT_TIMEOUT_S = 180.0
#: Time budget of each request schemathesis sends (seconds).
DEFAULT_REQUEST_TIMEOUT_S = 5.0
#: Environment variable ``i`` of the child holds the value of the ``i``-th test header.
HEADER_VAR = "PILOTAGE_TEST_HEADER_{}"
#: Keys schemathesis masks in its reports when the config names none (its defaults, if they cannot be imported).
_FALLBACK_KEYS = ("authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key", "api_key", "token")
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


def load_operations(spec_path: Path) -> list[str]:
    """Load ``spec_path`` with schemathesis' own loader and return its operations as ``"METHOD /path"``.

    Raises:
        InputError: as :func:`load_documented_statuses`.
    """
    return list(load_documented_statuses(spec_path))


def load_documented_statuses(spec_path: Path) -> dict[str, frozenset[str]]:
    """Load ``spec_path`` with schemathesis' own loader: ``{"METHOD /path": {"200", "404", "4XX", ...}}``.

    The values are the operation's documented response keys (``default`` included), in document order of the
    operations.

    Raises:
        InputError: the file is missing, schemathesis cannot load it, an operation is invalid, or it defines no
            operation (the message names the file).
    """
    import schemathesis  # lazy: importing schemathesis costs ~0.5 s
    from schemathesis.core.errors import SchemathesisError
    from schemathesis.core.result import Ok

    path = Path(spec_path)
    if not path.is_file():
        raise InputError(f"OpenAPI file {path} does not exist", hint="pass the spec_path of spec.validated", path=path)
    try:
        schema = schemathesis.openapi.from_path(str(path))
        results = list(schema.get_all_operations())
    except (SchemathesisError, OSError, ValueError, UnicodeDecodeError) as exc:
        first = " ".join(str(exc).split())[:300]
        raise InputError(
            f"schemathesis cannot load {path}: {first}", hint=f"fix {path} (validate it as OpenAPI 3)", path=path
        ) from exc
    labels: dict[str, frozenset[str]] = {}
    for result in results:
        if isinstance(result, Ok):
            labels[result.ok().label] = frozenset(str(code).upper() for code in result.ok().responses.status_codes)
        else:
            error = result.err()
            raise InputError(
                f"schemathesis cannot load an operation of {path}: {' '.join(str(error).split())[:300]}",
                hint=f"fix {path} (validate it as OpenAPI 3)",
                path=path,
            ) from error
    if not labels:
        raise InputError(f"{path} defines no API operation to test", hint=f"add paths to {path}", path=path)
    return labels


def build_command(
    spec_path: Path,
    base_url: str,
    report_dir: Path,
    *,
    max_examples: int,
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    seed: int | None = None,
    workers: int = 1,
) -> list[str]:
    """Return the ``schemathesis run`` command line (no shell) that writes ``report_dir/schemathesis.*``.

    It carries no header and no secret: the headers are in ``report_dir/schemathesis.toml`` as placeholders
    (:func:`write_config`) and their values in the child's environment (:func:`header_env`).
    """
    config = report_dir / "schemathesis.toml"
    argv = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", str(spec_path),
        "--url", base_url,
        "--max-examples", str(max_examples),
        "--request-timeout", str(request_timeout_s),
        "--workers", str(workers),
        "--generation-database", "none",
        "--report", "junit,ndjson",
        "--report-dir", str(report_dir),
        "--report-junit-path", str(report_dir / "schemathesis.junit.xml"),
        "--report-ndjson-path", str(report_dir / "schemathesis.ndjson"),
    ]  # fmt: skip
    if seed is not None:
        argv += ["--seed", str(seed)]
    return argv


def _toml_string(text: str) -> str:
    """Return ``text`` as a TOML basic string (JSON escapes are valid TOML escapes)."""
    return json.dumps(text, ensure_ascii=True)


def _default_sanitized_keys() -> tuple[str, ...]:
    try:
        from schemathesis.config._output import DEFAULT_KEYS_TO_SANITIZE
    except ImportError:  # pragma: no cover - a schemathesis that moved them: keep the usual credentials
        return _FALLBACK_KEYS
    return tuple(DEFAULT_KEYS_TO_SANITIZE)


def header_env(headers: dict[str, str] | None) -> dict[str, str]:
    """Return ``{PILOTAGE_TEST_HEADER_i: value}``: the header values for the child's environment (never argv)."""
    return {HEADER_VAR.format(i): value for i, value in enumerate((headers or {}).values())}


def document_facts(spec_path: Path) -> tuple[dict[str, Any], set[str], dict[str, OperationFacts]]:
    """Read the document at ``spec_path`` once: security schemes, form bodies nesting objects, operation facts.

    The operation facts decide whether an undocumented status is one HTTP forces (document gap, not a break).

    Returns:
        ``(components.securitySchemes ({} when none), labels from spec.openapi.form_bodies_nesting_objects,
        {label: forced_status.OperationFacts})``.

    Raises:
        InputError: the file does not parse (names it).
    """
    from pilotage.spec.load import load_document
    from pilotage.spec.openapi import form_bodies_nesting_objects, security_schemes

    doc = load_document(spec_path)
    schemes, nesting = security_schemes(doc), form_bodies_nesting_objects(doc)
    return schemes, nesting, operation_facts(doc, schemes, nesting)


def _auth_lines(schemes: dict[str, Any] | None) -> list[str]:
    """``[auth.openapi."<scheme>"]`` tables: the run's test principal for each scheme (issue 18), placeholders only."""
    lines = []
    for name, entry in schemathesis_auth(schemes or {}).items():
        lines += ["", f"[auth.openapi.{_toml_string(name.replace('${', '$${'))}]"]
        lines += [f"{key} = {_toml_string(value)}" for key, value in entry.items()]
    return lines


def write_config(path: Path, headers: dict[str, str] | None = None, schemes: dict[str, Any] | None = None) -> Path:
    """Write the schemathesis config of a run to ``path`` (0600) and return it.

    The file isolates the run from any ``schemathesis.toml`` around it, sends each of ``headers`` with its value
    read from the environment (``${PILOTAGE_TEST_HEADER_i}``, see :func:`header_env`; the value is not in the
    file) and makes schemathesis mask those header names in its reports, besides its default keys. With the
    document's security ``schemes`` it authenticates every operation as the run's test principal the way its
    security asks (:func:`pilotage.testing.credentials.schemathesis_auth`: ``${PILOTAGE_TEST_PRINCIPAL}``), so
    schemathesis also checks that requests without them are refused (its ``ignored_auth`` check).
    """
    names = list(headers or {})
    lines = ["# written by Pilotage: isolates the run; header values come from the environment, never from here"]
    if names:
        lines.append("[headers]")
        for i, name in enumerate(names):
            # schemathesis resolves ${...} in keys too: a literal "${" in a name is written "$${"
            lines.append(
                f"{_toml_string(name.replace('${', '$${'))} = {_toml_string('${' + HEADER_VAR.format(i) + '}')}"
            )
        keys = sorted({*_default_sanitized_keys(), *(n.lower() for n in names)})
        lines += ["", "[output.sanitization]", f"keys-to-sanitize = [{', '.join(_toml_string(k) for k in keys)}]"]
        lines.append(f"replacement = {_toml_string(MASK)}")
    if os.environ.get(PRINCIPAL_ENV):
        lines += _auth_lines(schemes)
    return write_private_text(path, "\n".join(lines) + "\n")


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


def _documented_rejection(status: object, documented: frozenset[str]) -> bool:
    """Whether a 4xx ``status`` is one the operation documents (its code, or its class ``4XX``)."""
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
        if _documented_rejection(status, documented.get(operation, frozenset())):
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


async def run_schemathesis(
    spec_path: Path,
    base_url: str,
    report_dir: Path,
    *,
    max_examples: int = 10,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    seed: int | None = None,
    workers: int = 1,
    headers: dict[str, str] | None = None,
) -> SchemathesisResult:
    """Run schemathesis' property tests of ``spec_path`` against the service at ``base_url``.

    Args:
        spec_path: the OpenAPI 3 document (YAML or JSON).
        base_url: ``http://127.0.0.1:PORT`` of the running service; requests go under the path of the spec's
            ``servers[0]`` (:func:`pilotage.spec.openapi.api_url`), where the service serves the API.
        report_dir: folder for ``schemathesis.junit.xml``, ``schemathesis.ndjson`` and ``schemathesis.log``.
        max_examples: test cases per operation and phase (``settings.schemathesis_max_examples``).
        timeout_s: global time budget in seconds; on expiry the run is killed and the result is partial.
        request_timeout_s: time budget of each request in seconds.
        seed: hypothesis seed for a reproducible run (None: random, reported in the result).
        workers: concurrent schemathesis workers.
        headers: extra headers on every request (authentication, ``settings.testing_auth_headers``).

    Returns:
        The :class:`SchemathesisResult`.

    Raises:
        InputError: schemathesis cannot load ``spec_path`` (the message names the file).
        BackendError: schemathesis could not run (no report written, or a fatal engine error).
    """
    documented = await asyncio.to_thread(load_documented_statuses, spec_path)  # imports + parsing: off the loop
    operations = list(documented)
    url = await asyncio.to_thread(api_url, base_url, spec_path)
    report_dir = Path(report_dir).resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    schemes, nesting, facts = await asyncio.to_thread(document_facts, Path(spec_path))
    write_config(report_dir / "schemathesis.toml", headers, schemes)
    junit_path = report_dir / "schemathesis.junit.xml"
    ndjson_path = report_dir / "schemathesis.ndjson"
    for stale in (junit_path, ndjson_path):
        stale.unlink(missing_ok=True)
    argv = build_command(
        Path(spec_path).resolve(),
        url,
        report_dir,
        max_examples=max_examples,
        request_timeout_s=request_timeout_s,
        seed=seed,
        workers=workers,
    )
    outcome = await run_process(  # the allow-list environment: no SCHEMATHESIS_HOOKS or other user setting
        argv,
        cwd=report_dir,
        timeout_s=timeout_s,
        log_path=report_dir / "schemathesis.log",
        env=header_env(headers) | basic_env(os.environ.get(PRINCIPAL_ENV, "")),
        mask_files=[junit_path, ndjson_path],
    )
    results, meta = parse_ndjson(ndjson_path, operations, documented, nesting, facts)
    if meta["fatal"] is not None:
        if "LoaderError" in meta["fatal"]:
            raise InputError(f"schemathesis cannot load {spec_path}: {meta['fatal']}", path=spec_path)
        raise BackendError(f"schemathesis failed against {base_url}: {meta['fatal']}", hint=f"read {outcome.log_path}")
    if not ndjson_path.is_file() and not outcome.timed_out:
        last = outcome.output_tail[-1] if outcome.output_tail else "(no output)"
        raise BackendError(
            f"schemathesis exited with {outcome.exit_code} and wrote no report: {last}",
            hint=f"read {outcome.log_path}",
            log_path=outcome.log_path,
        )
    return SchemathesisResult(
        operations=results,
        errors=int(meta["errors"]),
        exit_code=outcome.exit_code,
        timed_out=outcome.timed_out,
        complete=bool(meta["complete"]) and not outcome.timed_out,
        seed=str(meta["seed"]),
        duration_s=outcome.duration_s,
        junit_path=junit_path,
        ndjson_path=ndjson_path,
        log_path=outcome.log_path,
    )
