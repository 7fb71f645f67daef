"""Response and request bodies of the HTTP API (``/api/v1``): the shapes its OpenAPI document publishes.

Units are in the names (``_s`` seconds, ``_usd`` US dollars); times are ISO 8601 strings as events carry them
(``at`` fields are Unix seconds, as metric samples carry them). Nested event data that the event catalogue
(docs/events-contract.md) already describes stays an object (``dict``) here instead of being described twice.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Answer",
    "ApprovalOut",
    "AuctionsOut",
    "Balance",
    "CostEntry",
    "CostLedger",
    "CostTotal",
    "DecisionView",
    "DeliveryIn",
    "DeliveryOut",
    "EventOut",
    "EventPage",
    "FleetGraph",
    "GraphEdge",
    "GraphNode",
    "Population",
    "Problem",
    "RolloutOut",
    "RolloutStep",
    "RolloutSummary",
    "RunOut",
    "RunPage",
    "SamplePoint",
    "ServiceDetail",
    "ServiceOut",
    "SloStatus",
    "StepVerdict",
    "Submitted",
]


class Problem(BaseModel):
    """An error (RFC 9457 problem details): ``status`` and a one-line ``detail``, with a ``hint`` to fix it."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    hint: str | None = None


class EventOut(BaseModel):
    """One event of the log: its offset (a cursor for ``after``) and the CloudEvent's fields."""

    offset: int
    id: str
    type: str
    source: str
    subject: str | None = None
    time: str
    runid: str
    data: Any = None


class EventPage(BaseModel):
    """A page of events, oldest first; pass ``next_after`` as ``after`` for the next page (``has_more``)."""

    items: list[EventOut]
    next_after: int
    has_more: bool


class Delivery(BaseModel):
    """One delivery of a service (``rev`` asked, ``status`` running/completed/failed, ``outcome`` promoted …)."""

    model_config = ConfigDict(extra="allow")
    run_id: str
    rev: str
    status: str
    outcome: str
    started: str
    closed: str | None = None
    commit: str | None = None
    error: str | None = None


class SloStatus(BaseModel):
    """The last judged step of the service's deliveries: a one-line ``summary`` and the ``slo.evaluated`` data."""

    summary: str
    verdict: dict[str, Any] | None = None


class ServiceOut(BaseModel):
    """A managed service: production commit, stable address, state (up / down / a reason), last delivery, SLO."""

    name: str
    production_commit: str
    stable_url: str
    state: str
    owner: str | None = None
    generated: bool
    last_delivery: Delivery | None = None
    slo: SloStatus


class ServiceDetail(ServiceOut):
    """One service with its descriptor (``pilotage.yaml``), recent deliveries and dependencies."""

    repo_path: str
    descriptor: dict[str, Any]
    deliveries: list[Delivery]
    dependencies: dict[str, Any]


class RunOut(BaseModel):
    """A run (``kind`` deliver / generate): ``status`` running, completed or failed; ``outcome`` once closed."""

    run_id: str
    service: str
    kind: str
    request: str
    started: str
    status: str
    outcome: str = ""
    error: str | None = None
    closed: str | None = None
    duration_s: float | None = None


class RunPage(BaseModel):
    """Runs, newest first, with how many exist (``total``) before ``offset``/``limit`` paging."""

    items: list[RunOut]
    total: int


class DecisionView(BaseModel):
    """Why an agent decided what it did (``pilotage explain``): inputs, rule, score, action, verdict, outcome."""

    id: str
    agent: str
    kind: str
    action: str
    rule: str
    rationale: str
    score: Any = None
    inputs: dict[str, Any]
    time: str
    run_id: str
    verdict: dict[str, Any] | None = None
    policy_verdict: dict[str, Any] | None = None
    outcome_events: list[dict[str, Any]]


class Population(BaseModel):
    """Requests of one version in a step's window (``source`` metrics or proxy)."""

    model_config = ConfigDict(extra="allow")
    requests: int = 0
    errors: int = 0
    error_rate: float = 0.0
    version: str | None = None


class SamplePoint(BaseModel):
    """One polling interval of one version: requests, 5xx errors, error rate, p50/p95 latency (s; None untimed)."""

    at: float
    duration_s: float
    requests: float
    errors: float
    error_rate: float
    p50_s: float | None = None
    p95_s: float | None = None


class StepVerdict(BaseModel):
    """The judge's verdict on a step (``slo.evaluated``): action continue / rollback / pause, and its evidence."""

    time: str
    action: str
    cause: str
    healthy: bool
    outcome: str
    reasons: list[str]
    rule: str
    rationale: str
    decision_id: str
    window_s: float
    canary: Population
    baseline: Population | None = None
    evidence: list[dict[str, Any]] = Field(default_factory=list)
    alerts: list[dict[str, Any]] = Field(default_factory=list)  # the burn-rate alerts of the assessment
    canary_series: list[SamplePoint] = Field(default_factory=list)
    baseline_series: list[SamplePoint] = Field(default_factory=list)


class RolloutStep(BaseModel):
    """One step (0-based) of a rollout: the new version's ``weight`` (%) in ``phase`` preview / step / watch."""

    step: int
    weight: int
    phase: str
    time: str
    verdicts: list[StepVerdict]


class RolloutSummary(BaseModel):
    """A rollout: ``status`` running / promoted / rolled_back / paused, started in ``run_id`` for ``service``."""

    deployment_id: str
    run_id: str
    service: str | None = None
    strategy: str
    status: str
    started: str


class RolloutOut(RolloutSummary):
    """A rollout with its steps and where it ended (``ended_at_step`` is the step that rolled back, or promoted)."""

    plan: dict[str, Any] | None = None
    steps: list[RolloutStep]
    ended_at_step: int | None = None
    end: dict[str, Any] | None = None


class ApprovalOut(BaseModel):
    """An action waiting for a person: answer it with ``POST /approvals/{approval_id}/approve`` or ``/deny``."""

    approval_id: str
    action: str
    agent: str
    run_id: str
    needs_approval: list[str]
    timeout_s: float
    default: str
    requested_at: str
    cause_event_id: str | None = None


class Answer(BaseModel):
    """A person's answer: who (``by``, required: an approval names who made it) and why."""

    by: str = Field(min_length=1, max_length=200)
    reason: str = Field("", max_length=2000)


class AnswerOut(BaseModel):
    """The signed answer published to the log (``dev.pilotage.approval.granted`` / ``.denied``)."""

    event_id: str
    type: str
    run_id: str
    approval_id: str
    action: str
    by: str
    reason: str
    key_id: str


class DeliveryIn(BaseModel):
    """Deliver commit ``rev`` (sha, branch or tag; default HEAD) of managed ``service`` via ``pilotage serve``."""

    service: str = Field(min_length=1, max_length=200)
    rev: str = Field("HEAD", min_length=1, max_length=200)
    budget_s: float = Field(900.0, gt=0, le=86_400)
    commit_tests: bool = False


class Submitted(BaseModel):
    """A delivery handed to the control plane: follow ``run_id`` in ``/runs/{run_id}`` or the event stream."""

    run_id: str
    service: str
    rev: str
    commit: str
    production_commit: str
    event_id: str


class Balance(BaseModel):
    """Credits of one account: earned by outcomes, paid in auctions."""

    agent: str
    earned: int
    paid: int
    balance: int


class AuctionsOut(BaseModel):
    """Balances, the load-test slot, the newest auctions and the earning table (``pilotage market``)."""

    balances: list[Balance]
    slot: dict[str, Any] | None = None
    auctions: list[dict[str, Any]]
    earnings: list[dict[str, Any]]


class CostEntry(BaseModel):
    """An environment scaled to zero (``env.scaled_down``): the hourly saving and where its price comes from."""

    time: str
    run_id: str
    service: str | None = None
    environment: str
    deployment_id: str
    idle_s: float
    instances_stopped: int
    saving_usd_per_hour: float
    price_source: str


class CostTotal(BaseModel):
    """Per service: environments scaled down and the sum of their hourly savings."""

    service: str
    scale_downs: int
    saving_usd_per_hour: float


class CostLedger(BaseModel):
    """The cost ledger: every scale-down, oldest first, and the totals per service."""

    entries: list[CostEntry]
    totals: list[CostTotal]


class GraphNode(BaseModel):
    """A node of the fleet graph (``kind`` Service, API, Operation, Commit …)."""

    id: str
    kind: str
    key: str
    props: dict[str, Any]


class GraphEdge(BaseModel):
    """An edge of the fleet graph (``type`` PROVIDES, CONSUMES, DEPENDS_ON …)."""

    src: str
    type: str
    dst: str
    props: dict[str, Any]


class FleetGraph(BaseModel):
    """What ``pilotage service graph --format json`` shows: relations per service, nodes and edges, Mermaid text."""

    services: dict[str, Any]
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    mermaid: str


DeliveryOut = Delivery
