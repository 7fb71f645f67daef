"""Event-data models of the lifecycle up to the rollout: the flow, design, code, review, tests, performance."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator

from pilotage.catalogue.base import EventData, Obj
from pilotage.names import valid_name


# --- the flow ------------------------------------------------------------------------------------------------
class RunSpec(EventData):
    """What one lifecycle run is asked to do. Flow runner (`pilotage run`/`serve`) → design, every agent.

    Attributes:
        run_id: id of the run (also the ``runid`` of every event of the run); a safe path component
            (:data:`pilotage.names.NAME_PATTERN`).
        service: service name, the CloudEvents ``subject`` and part of file names; a safe path component.
        spec_path: the current OpenAPI document (absolute path).
        request: the change request text, e.g. "Add discount code support with fields code:string".
        workdir: folder for the run's git repository (``workdir/repo``) and artefacts (absolute).
        inject_fault_rate: share of requests (0..1) the new version answers with HTTP 500 (0 = no fault).
        idle_after_s: seconds without requests before the cost agent scales an environment to zero.
        fault: ``errors`` (HTTP 500 on ``inject_fault_rate`` of requests) or ``crash`` (the process exits on
            start); ignored when ``inject_fault_rate`` is 0 and ``fault`` is ``errors``.
        proxy_port: port of the traffic-splitting proxy in front of the service (0 = any free port).
        kind: ``generate`` (design + codegen produce the commit from ``request``) or ``deliver`` (a commit ``rev`` of
            a managed service's own repository ``service_repo``, issue #17).
        rev: the revision to deliver (any git revision: sha, branch, tag, ``HEAD``); "" for ``generate``.
        service_repo: the managed service's git repository (absolute); "" for ``generate``.
        commit_tests: commit the spec-derived tests Pilotage generates for a service with a descriptor
            (``pilotage.yaml``) on a branch ``pilotage/tests-<sha12>`` of the user's repository (never its current
            branch); False keeps them among the run's artefacts only.
    """

    run_id: Annotated[str, AfterValidator(valid_name)]  # path components (issue #15, 8): pilotage.names
    service: Annotated[str, AfterValidator(valid_name)]
    spec_path: str
    request: str
    workdir: str
    inject_fault_rate: float = 0.0
    idle_after_s: float = 7200.0
    fault: str = "errors"
    proxy_port: int = 0
    commit_tests: bool = False
    kind: str = "generate"
    rev: str = ""
    service_repo: str = ""

    @property
    def delivery(self) -> bool:
        """True for a delivery of a managed service's own commit (``kind == "deliver"``)."""
        return self.kind == "deliver"

    @property
    def repo_path(self) -> Path:
        """The git repository the codegen agent writes (``workdir/repo``)."""
        return Path(self.workdir) / "repo"

    @property
    def artifacts_path(self) -> Path:
        """Folder for reports, specs and load-test output (``workdir/artifacts``)."""
        return Path(self.workdir) / "artifacts"


class FlowClosed(EventData):
    """The run ended (status completed / failed). Flow runner, supervisor, `pilotage run` on a signal → report.

    ``error`` is None on success; ``duration_s`` is absent when an interrupted run is recorded.
    """

    run_id: str
    status: str
    outcome: str
    error: str | None
    duration_s: float | None = None


class AgentFailed(EventData):
    """An agent's handler raised (one-line ``error``). `Agent.handle`, recovery → flow runner (ends the run)."""

    agent: str
    error: str
    error_type: str
    cause_event_id: str
    cause_event_type: str
    verdict: Obj | None


class DecisionMade(EventData):
    """A recorded choice (``Decision.to_dict()``; ``id`` = the event id). `Agent.decide`, coordination → explain."""

    id: str
    agent: str
    kind: str
    inputs: Obj
    action: str
    rule: str
    score: Any
    rationale: str
    verdict: Obj | None = None
    cause_event_id: str = ""
    run_id: str = ""


class PolicyEvaluated(EventData):
    """A policy verdict (``Verdict.to_dict()`` + agent + input). `Agent.authorize` → testing (merge allowed)."""

    agent: str
    action: str
    allow: bool
    reasons: list[str]
    policies: list[str]
    engine: str
    needs_approval: list[str]
    findings: list[Obj]
    error: str
    override: str
    input: Obj


# --- design, code, tests, performance ------------------------------------------------------------------------
class SpecProposed(EventData):
    """The evolved OpenAPI document and its diff. Design → (report).

    ``change`` is the kind of request (``add-resource``, ``add-field``, ``add-operation``; "" for a delivery's own
    commit), ``resource`` the schema it adds or changes, ``fields`` the properties it adds to it.
    """

    spec_path: str
    base_spec_path: str
    change: str = ""
    resource: str
    fields: dict[str, str]
    operations_added: list[str]
    diff: Obj
    decision_id: str


class SpecValidated(EventData):
    """The proposed document loads and validates. Design → codegen."""

    spec_path: str
    base_spec_path: str
    openapi_version: str
    operation_count: int
    valid: bool


class CodeGenerated(EventData):
    """The service generated and committed; base and head checked out under ``workdir/versions``. Codegen.

    For a delivery of a managed service's own commit (issue #17) the source agent publishes it: ``repo_path`` and
    ``service_repo`` are the user's repository, ``base_commit`` the production commit, ``base_dir``/``head_dir``
    read-only exports of both commits, ``head_prepared``/``base_prepared`` their prepared folders (the
    descriptor's ``{prepared}``; "" without a prepare step). Generated services leave the three "".
    """

    repo_path: str
    base_branch: str
    base_commit: str
    branch: str
    commit: str
    base_dir: str
    head_dir: str
    files_changed: list[str]
    lines_added: int
    lines_removed: int
    code_lines_changed: int = 0
    base_code_lines: int = 0
    flagged_operations: list[str] = []
    dependencies: list[Obj]
    new_dependencies: list[Obj]
    warnings: list[str]
    decision_id: str
    head_prepared: str = ""
    base_prepared: str = ""
    service_repo: str = ""


class PrOpened(EventData):
    """A pull request for the generated change. Codegen → governance."""

    repo_path: str
    branch: str
    base_branch: str
    commit: str
    base_commit: str
    title: str
    body: str


class SecurityScanned(EventData):
    """The bandit summary of the change (``policy.scans.scan_bandit``). Governance → deployment (deploy policy).

    ``files``/``lines`` count what bandit read; ``target``, ``version``, ``files``, ``lines`` and ``findings`` are
    absent when no checkout of the change could be scanned, ``lines`` and ``findings`` when bandit did not run.
    """

    commit: str
    tool: str
    status: str
    issues: Obj
    reason: str | None = None
    version: str | None = None
    target: str | None = None
    files: int | None = None
    lines: int | None = None
    findings: list[Obj] | None = None


class TestsCompleted(EventData):
    """Schemathesis, unit and generated tests of the head commit. Testing → performance.

    For a service with a descriptor, ``unit`` is its own ``test`` command and ``descriptor`` the ``pilotage.yaml``
    read; ``tests_branch``/``tests_commit`` name the branch of the user's repository holding the generated tests
    when the run asked for ``commit_tests`` (absent otherwise). ``consumer_verification`` (issue #19, a managed
    provider with consumers): ``{"summary": one line naming each failed consumer and its tests ("" when none
    failed), "consumers": [contract.verified data]}``. Issue 18: ``skipped`` ``[{nodeid, kind, reason}]`` (every
    skipped test and why), ``not_implemented`` (operations that answered 501 and tests skipped for it: not failures),
    ``contract`` ``{"violations": int, "checks": {check: [operations]}, "gate": "deny" | "warn", "by_check": {check:
    {meaning, operations, examples}}, "gaps": [{operation, status, reason, fix}], "gap_gate": "report" | "deny"}``:
    schemathesis' contract checks that failed (a valid request rejected, an undocumented status or content type,
    authentication not enforced), which the bundled deploy policy denies, and the document gaps (an undocumented
    status HTTP forces for the request: 404 for an unknown id, 400 for an invalid body …; ``fix`` says what to
    declare), reported and denied only with ``testing_document_gap_gate = "deny"``.
    ``baseline_problems`` ``[{test, kind, message}]``: head failures the baseline (production) has too, for the same
    reason (``test`` a node id or ``"schemathesis not_a_server_error GET /x"``): reported, not gating;
    ``baseline_untested`` ``[{test, reason}]``: failures that could not be checked on the baseline (still gating).
    """

    __test__ = False  # not a pytest class

    commit: str
    head_dir: str
    spec_path: str
    passed: bool
    schemathesis: Obj
    unit: Obj
    junit_path: str
    decision_id: str
    affected_tests: list[str] | str
    affected_tests_source: str
    generated: Obj
    failures: list[Obj]
    flaky: list[Obj]
    quarantined: list[str]
    findings: list[Obj]
    unit_junit_path: str
    executed_by: str
    allocation: Obj
    descriptor: str | None = None
    tests_branch: str | None = None
    tests_commit: str | None = None
    consumer_verification: Obj | None = None
    skipped: list[Obj] | None = None
    not_implemented: list[str] | None = None
    contract: Obj | None = None
    baseline_problems: list[Obj] | None = None
    baseline_untested: list[Obj] | None = None


class PerfMeasured(EventData):
    """The load test of the head commit, or why it was skipped. Performance → deployment.

    ``csv_path``, ``executed_by``, ``allocation`` and ``slot`` are absent when the test was skipped; ``production``
    (issue 17, a delivery: ``{commit, total, error_rate, endpoints}``) holds the production version's figures,
    measured the same way just after.
    """

    commit: str
    skipped: bool
    reason: str
    users: int
    duration_s: float
    endpoints: list[Obj]
    total: Obj
    error_rate: float
    decision_id: str
    csv_path: str | None = None
    executed_by: str | None = None
    allocation: Obj | None = None
    slot: Obj | None = None
    production: Obj | None = None


class PerfAdvice(EventData):
    """Advice the load-test figures call for (``agents.performance.assess``). Performance → (report)."""

    commit: str
    advice: list[Obj]
    thresholds: Obj
    decision_id: str
