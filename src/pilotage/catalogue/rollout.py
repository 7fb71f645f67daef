"""Event-data models of rollouts: the plan, the controller's moves, verdicts, incidents, cost and learning."""

from __future__ import annotations

from pilotage.catalogue.base import EventData, Obj


# --- rollout -------------------------------------------------------------------------------------------------
class DeployRequested(EventData):
    """The plan of a rollout. Deployment → rollout.

    Strategy (the seed's table moved by risk), steps, the two versions ({version, path, env}, and for a service with a
    descriptor: command, prepared, health_path, metrics, ready_timeout_s when set), the flag of a feature-flag
    release, ``route``: the managed service's stable route the rollout runs on (issue #17; "" = a route of the
    deployment's own, named by its id), and the synthetic-traffic plan ``traffic`` (issue 17,
    :mod:`pilotage.rollout.traffic_plan`: requests [{operation, method, path, weight, touched, params, body, creates
    ...}], skipped [{operation, kind, reason}], credentials {header, env} (names only) or null, writes, touched,
    summary; absent in older logs); ``traffic_paths`` = its GETs that need no parameter (the blue-green preview's
    smoke checks); ``baseline_traffic`` = blue-green's plan of the same shape from the production version's
    document, sent to blue while green is previewed (absent: ``traffic`` feeds both, e.g. no production document or
    the same plan).
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
    route: str = ""
    traffic: Obj | None = None
    baseline_traffic: Obj | None = None


class DeployStarted(EventData):
    """Both versions run behind the stable route. Rollout → reliability.

    ``baseline``/``canary`` = {version, url, pid}; ``preview_url`` = green's own address (blue-green);
    ``flag_key``/``flags_url`` = the release flag and the OFREP server (feature-flag); ``warmup`` = the warm-up
    burst sent to the new version before the first analysed step ({version, requests, sent, statuses, failures,
    unfilled, duration_s}, :meth:`pilotage.rollout.controller.RolloutController.warm_up`), None when none was sent;
    ``traffic_plans`` = version → the plan key of ``deploy.requested`` its synthetic traffic is drawn from
    (``traffic`` or ``baseline_traffic``; blue-green's green gets ``traffic`` after the switch too; absent in older
    logs).
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
    warmup: Obj | None = None
    traffic_plans: dict[str, str] | None = None


class DeployStep(EventData):
    """The rollout moved. Rollout → reliability.

    ``weight`` = the new version's route percent, or the flag's share of targeting keys (feature-flag), at 0-based
    ``step``; ``phase`` preview / step / watch; ``traffic`` (step 0 only) = the traffic plan's one-line summary;
    ``warmup`` (step 0 only) = ``deploy.started``'s warm-up, sent before this step's analysis (not judged).
    """

    deployment_id: str
    step: int
    weight: int
    strategy: str
    phase: str = "step"
    traffic: str | None = None
    warmup: Obj | None = None


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
    """A restarted control plane re-created a deployment's environment (new urls). Recovery → rollout.

    ``warmup``: the warm-up burst sent to the re-started new version (as ``deploy.started``'s), or None.
    """

    deployment_id: str
    phase: str
    weight: int
    baseline: Obj | None
    canary: Obj | None
    proxy_url: str
    preview_url: str
    reason: str
    warmup: Obj | None = None


class SloEvaluated(EventData):
    """The verdict on one step or the post-promotion watch. Reliability → rollout.

    ``action`` continue / rollback / pause; ``cause`` healthy / breach / evidence_missing / shared_degradation (both
    versions burn the budget: hold and alert); the assessment; ``evidence``: per metric the sequential evidence
    (``metric``, ``outcome``, ``gate``, ``e_value`` vs ``e_threshold``, ``upper_bound`` of the excess vs
    ``tolerance``, ``mde`` the smallest detectable effect, quantiles ``canary_s``/``baseline_s``), issue 21;
    ``warmup`` (step 0) = the warm-up burst sent before the analysis began, excluded from what was judged.
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
    evidence: list[Obj] | None = None
    warmup: Obj | None = None


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
