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

To add a type: a constant in ``EventType``, a model class in the submodule of its area (``lifecycle``,
``rollout``, ``coordination``), one line in :data:`REGISTRY`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from pilotage.catalogue.base import EventData
from pilotage.catalogue.coordination import (  # noqa: F401 - re-exported: the catalogue's models
    ApprovalAnswered,
    ApprovalExpired,
    ApprovalRejected,
    ApprovalRequested,
    CnetAccept,
    CnetCancel,
    CnetCfp,
    CnetDone,
    CnetFailure,
    CnetPropose,
    CnetRefuse,
    CnetReject,
    MarketAuctionClosed,
    MarketAuctionOpened,
    MarketBid,
    MarketReleased,
    WorkerHeartbeat,
    WorkerStopped,
)
from pilotage.catalogue.fleet import (  # noqa: F401
    ContractVerified,
    ReleaseCompleted,
    ReleasePlanned,
    ReleaseRolledBack,
    ServiceAdded,
    ServiceDown,
    ServiceReleased,
    ServiceUp,
)
from pilotage.catalogue.lifecycle import (  # noqa: F401 - re-exported: the catalogue's models
    AgentFailed,
    CodeGenerated,
    DecisionMade,
    FlowClosed,
    PerfAdvice,
    PerfMeasured,
    PolicyEvaluated,
    PrOpened,
    RunSpec,
    SecurityScanned,
    SpecProposed,
    SpecValidated,
    TestsCompleted,
)
from pilotage.catalogue.rollout import (  # noqa: F401 - re-exported: the catalogue's models
    ControlPlaneRecovered,
    DeployPaused,
    DeployPromoted,
    DeployRequested,
    DeployResumed,
    DeployRolledBack,
    DeployStandbyReleased,
    DeployStarted,
    DeployStep,
    EnvScaledDown,
    IncidentOpened,
    ModelUpdated,
    SloBreach,
    SloEvaluated,
)
from pilotage.errors import BackendCorrupt, InputError
from pilotage.events import CloudEvent, EventType, matches, new_event

if TYPE_CHECKING:
    from pilotage.bus.base import Delivery, Record

__all__ = ["PATTERNS", "REGISTRY", "EventData", "RunSpec", "check", "checked_event", "model_for", "parse"]

M = TypeVar("M", bound=BaseModel)

E = EventType
#: Event type → the model of its data (one line per type).
REGISTRY: dict[str, type[BaseModel]] = {
    E.FLOW_QUEUED: RunSpec,  # issue 19, 5: a run handed to `pilotage serve`, started when admitted
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
    E.SERVICE_ADDED: ServiceAdded,
    E.SERVICE_RELEASED: ServiceReleased,
    E.SERVICE_UP: ServiceUp,
    E.SERVICE_DOWN: ServiceDown,
    E.RELEASE_PLANNED: ReleasePlanned,
    E.RELEASE_COMPLETED: ReleaseCompleted,
    E.RELEASE_ROLLED_BACK: ReleaseRolledBack,
    E.CONTRACT_VERIFIED: ContractVerified,
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
