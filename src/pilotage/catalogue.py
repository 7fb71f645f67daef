"""The catalogue of Pilotage events: one pydantic model for the ``data`` of every event type Pilotage publishes.

- :data:`REGISTRY` maps a type (:class:`~pilotage.events.EventType`) to its model; :data:`PATTERNS` maps type
  globs to models for the patterned types (``dev.pilotage.cnet.cfp.<capability>``). :func:`model_for` looks up.
- :func:`check` validates a payload *before* Pilotage publishes it (``Agent.emit``, the flows, the CLI, the
  coordination protocols): a payload that does not fit its model is a bug in our code and raises
  :class:`~pilotage.errors.InputError` naming the type and the field, so it fails in tests instead of reaching
  the log. A ``dev.pilotage.*`` type without a model is refused the same way.
- :func:`parse` reads an event's data *as* a model: a foreign or older shape becomes
  :class:`~pilotage.errors.BackendCorrupt` naming the offset and type (a record read from the log), or
  :class:`~pilotage.errors.InputError` naming the id and type (a delivered event), never a pydantic or key error
  inside an agent (the agent base turns either into ``agent.failed``).

Models list exactly the keys the code writes, strictly typed (no coercion): required keys are written on every
path, ``X | None = None`` keys on some; no other key is accepted (``extra="forbid"``). Nested objects whose
shape belongs to another module (verdicts, evidence, allocations, load-test figures) are ``dict[str, Any]``;
their owners document them.
Units are in the names (``_s`` seconds, ``_ms`` milliseconds, ``_usd_per_hour``); times ``sent_at`` /
``closes_at`` are Unix seconds. ``docs/events-contract.md`` is generated from this module
(``python -m pilotage.catalogue_doc``).

To add a type: a constant in ``EventType``, a model class here, one line in :data:`REGISTRY`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from pilotage.errors import BackendCorrupt, InputError
from pilotage.events import CloudEvent, EventType, matches, new_event
from pilotage.names import valid_name

if TYPE_CHECKING:
    from pilotage.bus.base import Delivery, Record

__all__ = ["PATTERNS", "REGISTRY", "EventData", "RunSpec", "check", "checked_event", "model_for", "parse"]

M = TypeVar("M", bound=BaseModel)
Obj = dict[str, Any]


class EventData(BaseModel):
    """Base of every event-data model: unknown keys are refused (a new key needs a new field here).

    Strict: no coercion (``"0"`` is not an integer, a tuple not a list), so what validates is what the JSON holds;
    an integer is accepted where a number is expected.
    """

    model_config = ConfigDict(extra="forbid", strict=True)


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
    """The evolved OpenAPI document and its diff. Design → (report)."""

    spec_path: str
    base_spec_path: str
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
    """The service generated and committed; base and head checked out under ``workdir/versions``. Codegen."""

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
    """Schemathesis, unit and generated tests of the head commit. Testing → performance."""

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


class PerfMeasured(EventData):
    """The load test of the head commit, or why it was skipped. Performance → deployment.

    ``csv_path``, ``executed_by``, ``allocation`` and ``slot`` are absent when the test was skipped.
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


class PerfAdvice(EventData):
    """Advice the load-test figures call for (``agents.performance.assess``). Performance → (report)."""

    commit: str
    advice: list[Obj]
    thresholds: Obj
    decision_id: str


# --- rollout -------------------------------------------------------------------------------------------------
class DeployRequested(EventData):
    """The plan of a rollout. Deployment → rollout.

    Strategy (the seed's table moved by risk), steps, the two versions ({version, path, env}), synthetic-traffic
    paths, the flag of a feature-flag release.
    """

    deployment_id: str
    service: str
    strategy: str
    risk: float
    steps: list[int]
    commit: str
    baseline: Obj
    canary: Obj
    traffic_paths: list[str]
    proxy_port: int
    flag_key: str
    decision_id: str | None = None


class DeployStarted(EventData):
    """Both versions run behind the stable route. Rollout → reliability.

    ``baseline``/``canary`` = {version, url, pid}; ``preview_url`` = green's own address (blue-green);
    ``flag_key``/``flags_url`` = the release flag and the OFREP server (feature-flag).
    """

    deployment_id: str
    strategy: str
    risk: float
    steps: list[int]
    commit: str
    baseline: Obj
    canary: Obj
    proxy_url: str
    preview_url: str
    flag_key: str
    flags_url: str
    traffic_paths: list[str]


class DeployStep(EventData):
    """The rollout moved. Rollout → reliability.

    ``weight`` = the new version's route percent, or the flag's share of targeting keys (feature-flag), at 0-based
    ``step``; ``phase`` preview / step / watch.
    """

    deployment_id: str
    step: int
    weight: int
    strategy: str
    phase: str = "step"


class DeployPromoted(EventData):
    """The new version keeps all traffic; ``standby`` = {version, standby_s}. Rollout → cost, learning."""

    deployment_id: str
    strategy: str
    version: str
    commit: str | None
    standby: Obj


class DeployRolledBack(EventData):
    """Users protected from the new version. Rollout → cost, learning.

    ``phase`` preview / step / watch; ``protected_at`` = Unix s when the previous version had 100 % again or the
    flag was off.
    """

    deployment_id: str
    strategy: str
    version: str
    phase: str
    reason: str
    incident_id: str
    protected_at: float | None = None


class DeployPaused(EventData):
    """An Inconclusive step held for a person (``rollout_on_inconclusive = "pause"``). Rollout → flow."""

    deployment_id: str
    step: int
    weight: int
    reason: str


class DeployStandbyReleased(EventData):
    """The previous version stopped ``standby_s`` after promotion. Rollout."""

    deployment_id: str
    version: str
    reason: str


class DeployResumed(EventData):
    """A restarted control plane re-created a deployment's environment (new urls). Recovery → rollout."""

    deployment_id: str
    phase: str
    weight: int
    baseline: Obj | None
    canary: Obj | None
    proxy_url: str
    preview_url: str
    reason: str


class SloEvaluated(EventData):
    """The verdict on one step or the post-promotion watch. Reliability → rollout.

    ``action`` continue / rollback / pause; ``cause`` healthy / breach / evidence_missing; the assessment.
    """

    deployment_id: str
    strategy: str
    step: int
    weight: int
    phase: str
    canary: Obj
    baseline: Obj | None
    slo_error_rate: float
    healthy: bool
    action: str
    cause: str
    outcome: str
    reasons: list[str]
    assessment: Obj
    rule: str
    rationale: str
    decision_id: str
    window_s: float


class SloBreach(EventData):
    """The canary's measured error rate broke the SLO. Reliability."""

    deployment_id: str
    step: int
    canary: Obj
    slo_error_rate: float


class IncidentOpened(EventData):
    """An incident report for a rollback; ``evidence`` = the assessment and populations. Reliability."""

    incident_id: str
    deployment_id: str
    summary: str
    report_path: str
    github_payload_path: str | None
    github_repository: str | None
    evidence: Obj


class EnvScaledDown(EventData):
    """An idle environment stopped. Cost → flow runner."""

    environment: str
    idle_s: float
    instances_stopped: int
    saving_usd_per_hour: float
    price_source: str
    deployment_id: str


class ModelUpdated(EventData):
    """The Beta posterior of a strategy's failure rate after an outcome. Learning → flow runner."""

    service: str
    strategy: str
    alpha: float
    beta: float
    failure_mean: float


class ControlPlaneRecovered(EventData):
    """What a starting control plane recovered (no runid). Recovery."""

    instance: str
    orphans_killed: list[Obj]
    runs_open: list[str]
    environments: list[Obj]
    failures: list[str]


# --- governance: approvals (signed; pilotage.policy.approval) -------------------------------------------------
class _Signed(EventData):
    """HMAC-SHA256 ``signature`` (hex) over the type, run id and ``approval.SIGNED_FIELDS``."""

    signature: str
    key_id: str
    signature_alg: str


class ApprovalRequested(_Signed):
    """An action waits for a person (``pilotage approve``/``deny``). Any agent whose policy needs approval."""

    approval_id: str
    action: str
    agent: str
    needs_approval: list[str]
    verdict: Obj
    input: Obj
    timeout_s: float
    default: str
    cause_event_id: str


class ApprovalAnswered(_Signed):
    """A person's answer (granted or denied). `pilotage approve` / `pilotage deny` → the waiting agent."""

    approval_id: str
    action: str
    by: str
    reason: str
    approved: list[str]
    cause_event_id: str


class ApprovalExpired(_Signed):
    """No signed answer in time: the default applies. The waiting agent."""

    approval_id: str
    action: str
    default: str
    cause_event_id: str


class ApprovalRejected(EventData):
    """An unsigned, forged or mismatched answer, ignored. The waiting agent."""

    approval_id: str
    action: str
    rejected_event_id: str
    rejected_type: str
    rejected_source: str
    claimed_by: str
    reason: str


# --- coordination (issue 8): contract net, workers, market ----------------------------------------------------
class _Round(EventData):
    task_id: str
    round: int


class CnetCfp(_Round):
    """Call for proposals, type ``cnet.cfp.<capability>``; ``bid_deadline`` Unix s. Manager → worker hosts."""

    capability: str
    payload: Obj
    bid_deadline: float
    exec_timeout_s: float
    excluded: list[str]
    reannounced_because: Obj | None


class CnetPropose(_Round):
    """A host's best bid (``messages.Bid``: worker, host, queue_length, est_duration_s, cost_s). → manager."""

    host: str
    group: str
    members: int
    bid: Obj


class CnetRefuse(_Round):
    """A host declines the call. Worker host → manager."""

    host: str
    group: str
    reason: str


class CnetAccept(_Round):
    """Accept-proposal; ``exec_deadline`` Unix s. Manager → the winning host."""

    capability: str
    worker: str
    host: str
    decision_id: str
    payload: Obj
    exec_deadline: float


class CnetReject(_Round):
    """Reject-proposal: ``rejected`` [{worker, host, reason: outbid/malformed/duplicate/late}]. Manager."""

    decision_id: str
    rejected: list[Obj]


class CnetCancel(_Round):
    """The winner timed out or was lost. Manager → the winning host."""

    worker: str
    host: str
    reason: str


class CnetDone(_Round):
    """Inform-done with the task's result. Worker host → manager."""

    worker: str
    host: str
    decision_id: str | None
    result: Any
    duration_s: float


class CnetFailure(_Round):
    """The task raised (one-line ``error``). Worker host → manager."""

    worker: str
    host: str
    decision_id: str | None
    error: str
    duration_s: float


class WorkerHeartbeat(EventData):
    """A worker host is alive, every ``cnet_heartbeat_s``. Worker host → managers (worker directory)."""

    host: str
    group: str
    pid: int
    hostname: str
    capabilities: list[str]
    members: int
    queued: int
    running: list[Obj]
    done: int
    sent_at: float


class WorkerStopped(EventData):
    """A worker host stopped (SIGTERM). Worker host → managers."""

    host: str
    sent_at: float


class _Auction(EventData):
    auction_id: str
    resource: str
    units: int


class MarketAuctionOpened(_Auction):
    """A sealed-bid auction opens; ``seq``/``hold_s`` for the load-test slot. Auctioneer → bidders."""

    closes_at: float
    seq: int | None = None
    hold_s: float | None = None


class MarketBid(EventData):
    """A sealed bid in integer credits; ``request`` = ``<run>/<sha12>`` for the load-test slot. → auctioneer."""

    auction_id: str
    agent: str
    amount: int
    sent_at: float
    request: str | None = None


class MarketAuctionClosed(_Auction):
    """The auction's result: ``winners`` [{agent, price, via, request?}]. Auctioneer → ledger, slot arbiter."""

    action: str
    winners: list[Obj]
    losers: list[str]
    rejected: list[Obj]
    decision_id: str
    bids: int
    closed_at: float
    seq: int | None = None
    hold_s: float | None = None


class MarketReleased(EventData):
    """The holder released the resource. Slot holder → slot arbiter (next auction)."""

    auction_id: str
    resource: str
    agent: str
    request: str
    sent_at: float


E = EventType
#: Event type → the model of its data (one line per type).
REGISTRY: dict[str, type[BaseModel]] = {
    E.FLOW_STARTED: RunSpec,
    E.FLOW_COMPLETED: FlowClosed,
    E.FLOW_FAILED: FlowClosed,
    E.AGENT_FAILED: AgentFailed,
    E.DECISION: DecisionMade,
    E.POLICY_EVALUATED: PolicyEvaluated,
    E.SPEC_PROPOSED: SpecProposed,
    E.SPEC_VALIDATED: SpecValidated,
    E.CODE_GENERATED: CodeGenerated,
    E.PR_OPENED: PrOpened,
    E.SECURITY_SCANNED: SecurityScanned,
    E.TESTS_COMPLETED: TestsCompleted,
    E.PERF_MEASURED: PerfMeasured,
    E.PERF_ADVICE: PerfAdvice,
    E.DEPLOY_REQUESTED: DeployRequested,
    E.DEPLOY_STARTED: DeployStarted,
    E.DEPLOY_STEP: DeployStep,
    E.DEPLOY_PROMOTED: DeployPromoted,
    E.DEPLOY_ROLLED_BACK: DeployRolledBack,
    E.DEPLOY_PAUSED: DeployPaused,
    E.DEPLOY_STANDBY_RELEASED: DeployStandbyReleased,
    E.DEPLOY_RESUMED: DeployResumed,
    E.SLO_EVALUATED: SloEvaluated,
    E.SLO_BREACH: SloBreach,
    E.INCIDENT_OPENED: IncidentOpened,
    E.ENV_SCALED_DOWN: EnvScaledDown,
    E.MODEL_UPDATED: ModelUpdated,
    E.CONTROL_PLANE_RECOVERED: ControlPlaneRecovered,
    E.APPROVAL_REQUESTED: ApprovalRequested,
    E.APPROVAL_GRANTED: ApprovalAnswered,
    E.APPROVAL_DENIED: ApprovalAnswered,
    E.APPROVAL_EXPIRED: ApprovalExpired,
    E.APPROVAL_REJECTED: ApprovalRejected,
    E.CNET_PROPOSE: CnetPropose,
    E.CNET_REFUSE: CnetRefuse,
    E.CNET_ACCEPT: CnetAccept,
    E.CNET_REJECT: CnetReject,
    E.CNET_CANCEL: CnetCancel,
    E.CNET_DONE: CnetDone,
    E.CNET_FAILURE: CnetFailure,
    E.WORKER_HEARTBEAT: WorkerHeartbeat,
    E.WORKER_STOPPED: WorkerStopped,
    E.MARKET_AUCTION_OPENED: MarketAuctionOpened,
    E.MARKET_BID: MarketBid,
    E.MARKET_AUCTION_CLOSED: MarketAuctionClosed,
    E.MARKET_RELEASED: MarketReleased,
}
#: Type glob → model, for the types whose last part varies (checked after :data:`REGISTRY`, in order).
PATTERNS: dict[str, type[BaseModel]] = {
    E.CNET_CFP + ".*": CnetCfp,
}


def model_for(type: str) -> type[BaseModel] | None:
    """Return the model of ``type``'s data (exact name first, then :data:`PATTERNS`), or None when uncatalogued."""
    model = REGISTRY.get(type)
    if model is not None:
        return model
    return next((m for pattern, m in PATTERNS.items() if matches(pattern, type)), None)


def _first_problem(exc: ValidationError) -> tuple[str, str]:
    """Return (dotted field path, message) of the first error pydantic found."""
    first = exc.errors()[0]
    return ".".join(str(p) for p in first["loc"]) or "data", first["msg"]


def check(type: str, data: Any) -> None:
    """Validate ``data`` against the model of ``type`` before Pilotage publishes it.

    Types outside ``dev.pilotage.`` (tests, other producers) are not checked.

    Raises:
        InputError: ``type`` is a ``dev.pilotage.*`` type without a model, or ``data`` does not fit it (the
            message names the type and the first wrong field).
    """
    if not type.startswith(EventType.PREFIX):
        return
    model = model_for(type)
    if model is None:
        raise InputError(
            f"event type {type} is not in the catalogue",
            hint="add a constant to EventType and a model + REGISTRY line to pilotage.catalogue",
            event_type=type,
        )
    try:
        model.model_validate(data)
    except ValidationError as exc:
        field, msg = _first_problem(exc)
        raise InputError(
            f"{type} data does not fit {model.__name__}: {field}: {msg}",
            hint="publish the fields pilotage.catalogue declares (or change the model and regenerate the doc)",
            event_type=type,
            field=field,
        ) from exc


def checked_event(
    type: str, data: Any, *, source: str, subject: str | None = None, runid: str = "", id: str | None = None
) -> CloudEvent:
    """Return :func:`pilotage.events.new_event` of ``data`` after :func:`check` (for publishers outside agents).

    ``id`` replaces the fresh random id (deterministic ids of the coordination protocols).

    Raises:
        InputError: ``data`` does not fit the model of ``type``.
    """
    check(type, data)
    event = new_event(type, data, source=source, subject=subject, runid=runid)
    return event if id is None else event.model_copy(update={"id": id})


def parse(item: Record | Delivery | CloudEvent, model: type[M]) -> M:
    """Return the data of ``item`` (a log record, a delivery or an event) as ``model``.

    Raises:
        BackendCorrupt: ``item`` carries an offset (a record or delivery) and its data does not fit ``model``;
            the message names the offset, type and field.
        InputError: ``item`` is a bare event whose data does not fit; the message names its id, type and field.
    """
    event = item if isinstance(item, CloudEvent) else item.event
    offset = None if isinstance(item, CloudEvent) else item.offset
    try:
        return model.model_validate(event.data)
    except ValidationError as exc:
        field, msg = _first_problem(exc)
        where = f"event at offset {offset}" if offset is not None else f"event {event.id}"
        message = f"{where} ({event.type}) does not fit {model.__name__}: {field}: {msg}"
        hint = "the event was written by another producer or an older Pilotage; start the run again"
        if offset is None:
            raise InputError(message, hint=hint, event_id=event.id, event_type=event.type) from exc
        raise BackendCorrupt(message, hint=hint, offset=offset, event_type=event.type) from exc
