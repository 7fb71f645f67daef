"""Every bundled policy under two engines: regopy (rego-cpp, ``rego:``) and OPA's own evaluator (``http://``).

The in-process engine (:class:`~pilotage.policy.rego.RegoPolicyEngine`) and the REST backend
(:class:`~pilotage.policy.opa.OPAPolicyEngine` talking to ``tests/fixtures/opa_standin.py``, which evaluates with
OPA v1.20's Go ``rego`` package) must give the same verdict — allow, reasons, pending approvals, findings — on the
inputs the agents really send and on every mutation of them: each field the policies read missing, null, of the
wrong type (string for bool, list for object, number for string ...) or another valid value. The engines differ
on undefined values (``not f(input.missing)`` is true in rego-cpp and undefined in OPA), so a rule that relies on
either can deny in one and allow in the other. Verdicts that need a field must also deny when it is not there.

OPA's evaluator: ``pip install --ignore-requires-python opa-golib-python-bindings==0.4.4`` (the stand-in's
import fails with that line when it is missing: these tests never skip).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pilotage.agents.codegen import _commit_input
from pilotage.agents.governance import merge_input
from pilotage.codegen import SERVICE_FILES
from pilotage.policy.base import APPROVAL_PREFIX, Verdict
from pilotage.policy.opa import OPAPolicyEngine
from pilotage.policy.rego import RegoPolicyEngine
from pilotage.settings import Settings
from tests.fixtures.opa_standin import opa_standin

DATA = {"license_allowlist": list(Settings().license_allowlist)}

# -- the inputs the agents send --------------------------------------------------------------------------------

#: dev.pilotage.security.scanned data as the governance agent emits it (scans.scan_bandit + the commit)
SCAN = {
    "commit": "c" * 40,
    "tool": "bandit",
    "version": "1.8.6",
    "status": "completed",
    "reason": "",
    "target": "/tmp/head",
    "files": 3,
    "issues": {"high": 0, "medium": 0, "low": 2},
    "findings": [
        {"test_id": "B101", "file": "app/main.py", "line": 12, "severity": "LOW", "confidence": "HIGH", "text": "a"},
    ],
}

#: agents/deployment.py, authorize("deploy", ...) — with the optional security_scan_passed some callers add
DEPLOY = {
    "service": "checkout",
    "deployment_id": "dep-1",
    "strategy": "canary",
    "commit": "c" * 40,
    "risk": 0.2,
    "tests_passed": True,
    "perf_skipped": False,
    "perf_error_rate": 0.0,
    "breaking_changes": [],
    "decision_id": "dec-1",
    "security_scan_passed": True,
    "security_scan": SCAN,
}

#: issue 19: the deploy input of a provider whose breaking change a live consumer uses (fleet/impact.py)
CROSS_SERVICE = {
    "provider": "notes",
    "breaking": [{"rule": "response-required-property-removed", "operation": "GET /notes", "operation_id": "",
                  "detail": "response 200 property 'items/text' removed"}],
    "consumers": [
        {"service": "digest", "env": "NOTES_URL", "operations": [
            {"operation": "GET /notes", "operation_id": "list", "declared_as": "GET /notes", "changes": [
                {"rule": "response-required-property-removed", "detail": "response 200 property 'items/text' removed"},
                {"rule": "response-property-type-changed", "detail": "response 200 property 'items/id' type changed"},
            ]},
            {"operation": "GET /notes/{id}", "operation_id": "", "declared_as": "GET /notes/{id}", "changes": []},
        ]},
    ],
    "unaffected": ["audit"],
    "summary": "1 breaking change(s) of notes; used by digest (GET /notes)",
}  # fmt: skip

#: issue 18: the deploy input's contract findings, breaks by check and document gaps (operators that deny gaps too)
CONTRACT = {
    "violations": 1,
    "checks": {"status_code_conformance": ["POST /pets", "GET /pets"]},
    "gate": "deny",
    "gaps": [
        {"operation": "GET /pets/{petId}", "status": 404, "reason": "RFC 9110 15.5.5",
         "fix": "declare 404 for GET /pets/{petId} in the document"},
        {"operation": "POST /pets", "status": 400, "reason": "RFC 9110 15.5.1",
         "fix": "declare 400 for POST /pets in the document"},
    ],
    "gap_gate": "deny",
}  # fmt: skip

#: agents/deployment.py, authorize("promote", ...)
PROMOTE = {
    "service": "checkout",
    "deployment_id": "dep-1",
    "strategy": "canary",
    "commit": "c" * 40,
    "steps_passed": 3,
    "healthy": True,
    "canary": {"error_rate": 0.0, "requests": 240},
    "slo_error_rate": 0.01,
}

#: agents/reliability.py, authorize("rollback", ...)
ROLLBACK = {
    "service": "checkout",
    "deployment_id": "dep-1",
    "version": "v1",
    "reason": "canary error rate 0.3 > SLO 0.01",
    "strategy": "canary",
    "step": 1,
    "canary": {"error_rate": 0.3, "requests": 120},
    "slo_error_rate": 0.01,
    "decision_id": "dec-2",
}

#: agents/cost.py, authorize("scale", ...)
SCALE = {
    "service": "checkout",
    "environment": "dep-1",
    "direction": "down",
    "idle_s": 7300.5,
    "min_idle_s": 7200,
    "instances": 2,
    "saving_usd_per_hour": 0.12,
}

#: agents/codegen.py, authorize("commit", _commit_input(...)): the baseline on main and a change on its branch
COMMIT_BASELINE = _commit_input(  # type: ignore[arg-type]
    "/tmp/repo", "main", "baseline", "baseline: Checkout 1.0.0", list(SERVICE_FILES)
)
COMMIT_CHANGE = _commit_input(  # type: ignore[arg-type]
    "/tmp/repo", "pilotage/add-discounts-1", "change", "Add discount codes", [*SERVICE_FILES, "keys/id_rsa"]
)


def _merge() -> dict[str, Any]:
    """agents/governance.py: merge_input(code.generated, pr.opened) updated with gather_facts' facts."""
    code = {
        "repo_path": "/tmp/repo",
        "base_branch": "main",
        "base_commit": "b" * 40,
        "branch": "pilotage/add-discounts-1",
        "commit": "c" * 40,
        "files_changed": ["app/main.py", "app/models.py", "config/.env"],
        "lines_added": 120,
        "lines_removed": 4,
        "dependencies": [
            {"name": "fastapi", "version": "0.115.0", "license": "MIT"},
            {"name": "leftpad", "version": "1.0", "license": "GPL-3.0-only"},
        ],
        "new_dependencies": [{"name": "leftpad", "version": "1.0", "license": "GPL-3.0-only"}],
    }
    pr = {"repo_path": "/tmp/repo", "branch": code["branch"], "base_branch": "main", "commit": code["commit"]}
    facts = {
        "transitive_dependencies": [
            {"name": "starlette", "version": "0.38", "license": "BSD-3-Clause", "license_source": "metadata",
             "required_by": ["fastapi"]},
        ],
        "licence_source": "metadata",
        "secrets": [{"file": "app/settings.py", "line": 7, "type": "Secret Keyword"}],
        "crypto": [
            {"file": "app/main.py", "line": 3, "kind": "hash", "name": "md5", "for_security": True,
             "distribution": None},
            {"file": "app/main.py", "line": 4, "kind": "import", "name": "Crypto.Cipher", "for_security": True,
             "distribution": None},
        ],
        "security_scan": {
            **SCAN,
            "issues": {"high": 1, "medium": 0, "low": 0},
            "findings": [{"test_id": "B602", "file": "app/main.py", "line": 9, "severity": "HIGH",
                          "confidence": "HIGH", "text": "subprocess call with shell=True"}],
        },
        "vulnerability_scan": {"tool": "offline", "status": "skipped"},
    }  # fmt: skip
    return {**merge_input(code, pr), **facts}


MERGE = _merge()
#: the bundled demo change: nothing to report (allowed)
MERGE_CLEAN = {**MERGE, "dependencies": MERGE["dependencies"][:1], "new_dependencies": [], "secrets": [], "crypto": []}
MERGE_CLEAN.update(files_changed=["app/main.py"], security_scan=SCAN)

BASES: list[tuple[str, str, dict[str, Any]]] = [
    ("deploy", "ok", DEPLOY),
    ("deploy", "high", {**DEPLOY, "security_scan": {**SCAN, "issues": {"high": 2, "medium": 0, "low": 0}}}),
    ("deploy", "consumers", {**DEPLOY, "cross_service": CROSS_SERVICE}),
    ("deploy", "contract", {**DEPLOY, "contract": CONTRACT}),
    ("promote", "ok", PROMOTE),
    ("rollback", "ok", ROLLBACK),
    ("scale", "down", SCALE),
    ("scale", "busy", {**SCALE, "idle_s": 12.5}),
    ("scale", "up", {**SCALE, "direction": "up"}),
    ("commit", "baseline", COMMIT_BASELINE),
    ("commit", "change", COMMIT_CHANGE),
    ("merge", "findings", MERGE),
    ("merge", "clean", MERGE_CLEAN),
]

# -- mutations -------------------------------------------------------------------------------------------------

MISSING = object()
#: replacement values: null, strings, numbers, booleans, lists and objects (each wrong for most fields)
VALUES: list[Any] = [None, "", " ", "x", "down", 0, 1, -1, 2.5, True, False, [], ["x"], {}, {"x": 1}]

#: the fields each bundled policy reads (at any depth; the first and last item of every list are followed)
READ: dict[str, set[str]] = {
    "deploy": {
        "commit", "tests_passed", "security_scan_passed", "security_scan", "status", "issues", "high",
        "cross_service", "provider", "consumers", "service", "env", "operations", "operation", "changes", "detail",
        "rule", "contract", "violations", "checks", "status_code_conformance", "gate", "gaps", "gap_gate", "fix",
    },
    "promote": {"deployment_id", "healthy"},
    "rollback": set(),
    "scale": {"environment", "direction", "idle_s", "min_idle_s"},
    "commit": {"role", "branch", "message", "files"},
    "merge": {
        "dependencies", "transitive_dependencies", "new_dependencies", "name", "version", "license",
        "files_changed", "secrets", "crypto", "file", "line", "type", "kind", "for_security", "distribution",
        "security_scan", "findings", "test_id", "severity", "text",
    },
}  # fmt: skip

Path = tuple[Any, ...]


def _paths(value: Any, read: set[str], prefix: Path = ()) -> Iterator[Path]:
    """Every path below ``value`` through the fields in ``read`` and lists' first and last items, parents first."""
    items: Any = ()
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = [(i, value[i]) for i in sorted({0, len(value) - 1}) if value]
    for key, child in items:
        if isinstance(key, int) or key in read:
            yield (*prefix, key)
            yield from _paths(child, read, (*prefix, key))


def _replaced(value: Any, path: Path, new: Any) -> Any:
    """A deep copy of ``value`` with the node at ``path`` replaced by ``new`` (removed when ``new`` is MISSING)."""
    out = json.loads(json.dumps(value))
    node = out
    for key in path[:-1]:
        node = node[key]
    if new is MISSING:
        del node[path[-1]]
    else:
        node[path[-1]] = new
    return out


def _label(path: Path) -> str:
    return ".".join(str(key) for key in path)


def cases() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(action, label, input): each base input, then each of its fields missing or replaced by each value."""
    for action, name, base in BASES:
        yield action, f"{name}", base
        for path in _paths(base, READ[action]):
            for new in [MISSING, *VALUES]:
                shown = "missing" if new is MISSING else json.dumps(new)
                yield action, f"{name}: {_label(path)} = {shown}", _replaced(base, path, new)


CASES = list(cases())


def _key(verdict: Verdict) -> tuple[Any, ...]:
    return verdict.allow, verdict.reasons, verdict.needs_approval, verdict.findings


@pytest.fixture(scope="module")
def engines() -> Iterator[tuple[RegoPolicyEngine, OPAPolicyEngine]]:
    rego = RegoPolicyEngine(policy_dirs=[], data=DATA)
    rego.check()
    with opa_standin() as server:
        opa = OPAPolicyEngine(server.url, data=DATA)
        opa.check()
        yield rego, opa


Row = tuple[str, str, Verdict, Verdict]


@pytest.fixture(scope="module")
def verdicts(engines: tuple[RegoPolicyEngine, OPAPolicyEngine]) -> list[Row]:
    """(action, label, regopy's verdict, OPA's verdict) for every case of the table."""
    rego, opa = engines
    return [
        (action, label, rego.evaluate(action, payload), opa.evaluate(action, payload))
        for action, label, payload in CASES
    ]


def test_the_table_covers_every_field_the_policies_read() -> None:
    labels = {label.split(" = ")[0] for _, label, _ in CASES}
    for field in [
        "ok: tests_passed", "ok: security_scan_passed", "ok: security_scan", "ok: security_scan.status",
        "ok: security_scan.issues.high", "ok: commit", "ok: healthy", "ok: deployment_id",
        "down: idle_s", "down: min_idle_s", "down: direction", "down: environment",
        "change: message", "change: files.0", "change: role", "change: branch",
        "findings: dependencies.0.license", "findings: new_dependencies.0.name", "findings: transitive_dependencies",
        "findings: files_changed.2", "findings: secrets.0.type", "findings: crypto.0.for_security",
        "consumers: cross_service.consumers.0.operations.0.changes.1.detail", "consumers: cross_service.provider",
        "findings: crypto.1.distribution", "findings: security_scan.findings.0.severity",
        "contract: contract.gaps.1.fix", "contract: contract.gap_gate", "contract: contract.checks",
    ]:  # fmt: skip
        assert field in labels
    assert len(CASES) > 1500


def test_both_engines_give_the_same_verdict_on_every_input(verdicts: list[Row]) -> None:
    differences = []
    for action, label, rego, opa in verdicts:
        if _key(rego) != _key(opa):
            differences.append(f"{action} [{label}]:\n    regopy: {_key(rego)}\n    OPA:    {_key(opa)}")
    assert not differences, f"{len(differences)} of {len(CASES)} verdicts differ:\n" + "\n".join(differences[:40])


def test_no_bundled_policy_fails_to_evaluate(verdicts: list[Row]) -> None:
    """Type errors in built-ins (lower(1), split(1, ".")) are evaluation errors in OPA: every value is guarded."""
    errors = [
        f"{action} [{label}]: {reason}"
        for action, label, rego, opa in verdicts
        for reason in [*rego.reasons, *opa.reasons]
        if reason.startswith(("policy engine error", "no policy defines"))
    ]
    assert not errors, "\n".join(errors[:40])


#: details of a merge finding (where, what kind): damaged, the finding must still deny (fail closed)
DETAILS = {"file", "line", "type", "text", "test_id", "version"}


def _denies(verdict: Verdict) -> list[str]:
    return [reason for reason in verdict.reasons if not reason.startswith(APPROVAL_PREFIX)]


def test_a_merge_finding_with_damaged_details_still_denies(verdicts: list[Row]) -> None:
    """A fact without a usable place or kind still denies (an object term with an undefined value drops a deny)."""
    base = next(rego for action, label, rego, _ in verdicts if (action, label) == ("merge", "findings"))
    assert len(_denies(base)) == 6, base.reasons  # crypto x2, licence, .env file, secret, bandit finding
    lost = []
    for action, label, rego, opa in verdicts:
        name, _, rest = label.partition(": ")
        if action == "merge" and name == "findings" and rest.split(" = ")[0].split(".")[-1] in DETAILS:
            for engine, verdict in (("regopy", rego), ("OPA", opa)):
                if len(_denies(verdict)) < 6:
                    lost.append(f"{engine} [{label}]: {verdict.reasons}")
    assert not lost, "\n".join(lost[:40])


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


#: action -> field -> the replacement values a policy may accept; any other value (or none) must deny
REQUIRED: dict[str, dict[str, Callable[[Any], bool]]] = {
    "deploy": {
        "tests_passed": lambda v: v is True,
        "security_scan": lambda v: False,
        "security_scan.status": lambda v: v == "completed",
        "security_scan.issues": lambda v: False,
        "security_scan.issues.high": lambda v: _number(v) and v == 0,
        "security_scan_passed": lambda v: v is not False,  # optional: only false denies
    },
    "promote": {"healthy": lambda v: v is True},
    "scale": {"idle_s": lambda v: _number(v) and v >= 7200, "min_idle_s": lambda v: _number(v) and v <= 7300.5},
    "commit": {"message": lambda v: isinstance(v, str) and v.strip() != ""},
}


@pytest.mark.parametrize("engine_name", ["regopy", "OPA"])
def test_a_required_field_missing_null_or_mistyped_denies(
    engines: tuple[RegoPolicyEngine, OPAPolicyEngine], engine_name: str
) -> None:
    engine = engines[0] if engine_name == "regopy" else engines[1]
    fail_open = []
    for action, name, base in BASES:
        if name not in {"ok", "down", "baseline"}:
            continue
        assert engine.evaluate(action, base).allow is True, (action, name)
        for field, accepts in REQUIRED.get(action, {}).items():
            path = tuple(field.split("."))
            for new in [MISSING, *VALUES]:
                if new is not MISSING and accepts(new):
                    continue
                if new is MISSING and field == "security_scan_passed":
                    continue
                verdict = engine.evaluate(action, _replaced(base, path, new))
                if verdict.allow:
                    fail_open.append(f"{action}: {field} = {'missing' if new is MISSING else json.dumps(new)}")
    assert not fail_open, f"{engine_name} allows:\n" + "\n".join(fail_open)
