"""The deployment agent: measure the change, choose a rollout strategy, and ask the rollout controller for it.

Perceive (on ``perf.measured``): change size from ``code.generated`` (source lines changed over the base's source
lines, :data:`pilotage.codegen.git.CODE_SUFFIXES`: the change in percent; lines added + removed of all files), new
dependencies, breaking changes and endpoints touched from ``spec.proposed``, the test verdict from
``tests.completed``, the load-test error rate, the knowledge graph's blast radius (issue #4), and the learned
failure posterior of each strategy for the service, graph node ``Model:<service>/<strategy>`` with props
``{alpha, beta}`` (Beta(1, 1) when absent).

Reason (``deploy.strategy``, pure): :func:`strategy_reasoning` — the seed's table on the measured size, moved to a
more cautious strategy by risk; both are recorded in the decision.

Act: ``authorize("deploy")``, then ``deploy.requested`` with the plan (versions, folders, the new version's
environment, steps, and the synthetic-traffic plan, :func:`traffic_plan`: requests built from the head version's
OpenAPI document, the change's operations first — from the spec diff and the graph's endpoints of the changed
handlers — within the ``traffic`` settings of its ``pilotage.yaml``; ``traffic.summary`` says when nothing can be
called; for blue-green also ``baseline_traffic``, :meth:`DeploymentAgent._baseline_traffic`: the same from the
production version's document and ``pilotage.yaml``, sent to blue while green is previewed). The agent never
touches the runtime: the rollout controller (:mod:`pilotage.rollout.controller`) launches and drives the rollout.

Learn: ``Deployment`` node (key = deployment id; strategy, risk, outcome), ``Service -DEPLOYED-> Deployment``,
``Deployment -OF-> Commit:<sha>``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, ClassVar

from pilotage.agent import Agent, Reasoning, RunSpec
from pilotage.errors import InputError, PilotageError, PolicyDenied
from pilotage.events import CloudEvent, EventType
from pilotage.fleet.documents import DocumentSource
from pilotage.fleet.impact import impact_of_delivery
from pilotage.fleet.registry import ManagedService, load_fleet, stable_route_name
from pilotage.fleet.workload import production_data_dir, provider_addresses, workload_role
from pilotage.graph.base import Graph
from pilotage.graph.impact import impact_of_files
from pilotage.rollout.state import STRATEGIES, steps_for
from pilotage.rollout.traffic_plan import build_traffic_plan, descriptor_traffic, smoke_paths
from pilotage.spec.load import load_document, load_spec
from pilotage.spec.openapi import parameterless_get_paths
from pilotage.testing.credentials import PRINCIPAL_ENV

__all__ = [
    "GRAPH_BLAST_SATURATION",
    "GRAPH_BLAST_WEIGHT",
    "MINOR_CHANGE_PERCENT",
    "MODERATE_CHANGE_PERCENT",
    "RISK_WEIGHTS",
    "DeploymentAgent",
    "get_paths",
    "graph_blast_radius",
    "seed_strategy",
    "strategy_reasoning",
    "traffic_plan",
]

_log = logging.getLogger(__name__)

#: The seed's table (Pilotage brief, step 6): a change of at most this share of the code (percent of the base's
#: lines, added + removed) is *minor* → canary (5 % → 100 %) ...
MINOR_CHANGE_PERCENT = 5.0
#: ... up to this share *moderate* → blue-green with a traffic switch; above it *major* → a rollback-ready release
#: behind feature flags.
MODERATE_CHANGE_PERCENT = 20.0
#: Weights of the risk score (sum 1.0); see :func:`strategy_reasoning` for each feature's scale.
RISK_WEIGHTS = {"size": 0.15, "blast": 0.15, "dependencies": 0.05, "perf": 0.05, "breaking": 0.2, "history": 0.4}
#: Lines changed at which the size feature saturates. Source: the SmartBear/Cisco code-review study ("Best Kept
#: Secrets of Peer Code Review", 2006): reviewers stop finding defects effectively beyond ~400 lines per review.
SIZE_SATURATION_LINES = 400
#: Operations touched at which the blast-radius feature saturates.
BLAST_SATURATION_ENDPOINTS = 10
#: Issue #4: weight of the knowledge graph's blast radius (endpoints + services the changed files affect). Kept
#: small and outside :data:`RISK_WEIGHTS` (which sums to 1.0); the total risk is capped at 1.0.
GRAPH_BLAST_WEIGHT = 0.05
#: Affected endpoints + services at which the graph blast-radius feature saturates.
GRAPH_BLAST_SATURATION = 10
#: New dependencies at which the dependency feature saturates.
DEPS_SATURATION = 3
#: Risk tiers: risk < LOW keeps the table's strategy, LOW ≤ risk < HIGH asks for at least blue-green, risk ≥ HIGH
#: (or any breaking change) for feature flags.
LOW_RISK, HIGH_RISK = 0.3, 0.7
#: Logs written before issue #16 recorded ``deploy.strategy`` decisions without ``change_percent``; they replay
#: with the tier order of that time (least cautious first).
_LEGACY_ORDER = ("blue-green", "canary", "feature-flag")


def _count(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, list | tuple | set | dict):
        return len(value)
    return 0


def _failure_mean(posterior: dict[str, Any] | None) -> float:
    alpha = float((posterior or {}).get("alpha", 1.0))
    beta = float((posterior or {}).get("beta", 1.0))
    return beta / (alpha + beta) if alpha + beta > 0 else 0.5


def seed_strategy(change_percent: float) -> str:
    """Return the seed's strategy for a change of ``change_percent`` % of the code.

    ≤ 5 % → ``canary``; ≤ 20 % → ``blue-green``; more → ``feature-flag``.
    """
    if change_percent <= MINOR_CHANGE_PERCENT:
        return "canary"
    return "blue-green" if change_percent <= MODERATE_CHANGE_PERCENT else "feature-flag"


def _risk_floor(risk: float, breaking: bool, order: tuple[str, ...]) -> str:
    """The least cautious strategy ``risk`` allows (in ``order``)."""
    if breaking or risk >= HIGH_RISK:
        return "feature-flag"
    return order[1] if risk >= LOW_RISK else order[0]


def _change_features(inputs: dict[str, Any]) -> dict[str, float]:
    change = {
        "size": min(1.0, inputs.get("lines_changed", 0) / SIZE_SATURATION_LINES),
        "blast": min(1.0, inputs.get("endpoints_touched", 0) / BLAST_SATURATION_ENDPOINTS),
        "dependencies": min(1.0, inputs.get("new_dependencies", 0) / DEPS_SATURATION),
        "perf": min(1.0, inputs.get("perf_error_rate", 0.0) / max(inputs.get("slo_error_rate", 0.05), 1e-9)),
        "breaking": 1.0 if inputs.get("breaking_changes", 0) > 0 else 0.0,
    }
    if "blast_radius" in inputs:  # issue 4: the knowledge graph's blast radius, a small extra weight
        change["graph_blast"] = min(1.0, _count(inputs["blast_radius"]) / GRAPH_BLAST_SATURATION)
    return change


def strategy_reasoning(inputs: dict[str, Any]) -> Reasoning:
    """Choose the rollout strategy: the seed's table on the change's size, moved by risk (pure).

    ``inputs`` keys: ``change_percent`` (source lines changed over the base's source lines, percent),
    ``lines_changed``,
    ``endpoints_touched``, ``new_dependencies``, ``breaking_changes`` (counts), ``perf_error_rate``,
    ``slo_error_rate`` (fractions), ``posteriors`` {strategy: {alpha, beta}}; optional ``blast_radius``.

    1. **Table** (:func:`seed_strategy`): ≤ 5 % → canary, ≤ 20 % → blue-green, > 20 % → feature-flag.
    2. **Risk** of a candidate strategy *s* (weights :data:`RISK_WEIGHTS`)::

           risk(s) = 0.15·min(1, endpoints/10) + 0.05·min(1, new_deps/3)
                   + 0.05·min(1, perf_error_rate/slo_error_rate) + 0.20·[breaking changes > 0]
                   [+ 0.05·min(1, blast_radius/10)] + 0.40·failure_mean(s)      (capped at 1.0)

       The size is not in it: it chose the table's row already (``features`` still records it). With no history
       (Beta(1, 1): 0.2) a change touching up to 6 endpoints stays where the table put it.

       with failure_mean(s) = β/(α+β) of the learned Beta posterior of *s* for the service (Beta(1,1) → 0.5).
       risk < 0.3 allows canary, 0.3 ≤ risk < 0.7 at least blue-green, risk ≥ 0.7 or a breaking change only
       feature flags.
    3. From the table's strategy towards the more cautious ones (canary → blue-green → feature-flag), the first
       whose own risk allows it is chosen; risk never moves a change to a *less* cautious strategy. A strategy
       that failed often for this service raises its own risk and hands the change on.

    4. Issue #17: when ``strategies_available`` is given (a delivered service: ``canary``, ``blue-green``; feature
       flags need the service to read Pilotage's OFREP flag), a strategy it does not support becomes the most
       cautious one it does.

    Decisions recorded before issue #16 (no ``change_percent``) replay with the rule of that time.
    """
    chosen = _table_and_risk(inputs)
    available = inputs.get("strategies_available")
    if not available or chosen.action in available:
        return chosen
    # issue 17: a delivered service does not read Pilotage's release flag; the most cautious strategy it supports
    fallback = [s for s in STRATEGIES if s in available][-1]
    return Reasoning(
        action=fallback,
        rule=chosen.rule + "; only the strategies the service supports",
        score={**chosen.score, "unsupported": chosen.action},
        rationale=f"{chosen.rationale}; {inputs.get('service', 'the service')} supports only "
        f"{', '.join(available)} ({chosen.action} needs the service to read an OFREP release flag) → {fallback}",
    )


def _table_and_risk(inputs: dict[str, Any]) -> Reasoning:
    """The table's strategy moved by risk (:func:`strategy_reasoning`, before the service's supported strategies)."""
    change = _change_features(inputs)
    legacy = "change_percent" not in inputs
    # the size chose the table's row; it does not move the strategy a second time (decisions before issue 16 did)
    counted = {k: v for k, v in change.items() if legacy or k != "size"}
    change_risk = sum(RISK_WEIGHTS.get(k, GRAPH_BLAST_WEIGHT) * v for k, v in counted.items())
    breaking = change["breaking"] > 0
    posteriors = inputs.get("posteriors", {})
    order = _LEGACY_ORDER if legacy else STRATEGIES
    table = order[0] if legacy else seed_strategy(float(inputs["change_percent"]))
    risks: dict[str, float] = {}
    chosen = order[-1]
    for strategy in order[order.index(table) :]:
        history = RISK_WEIGHTS["history"] * _failure_mean(posteriors.get(strategy))
        risks[strategy] = round(min(1.0, change_risk + history), 4)
        if order.index(_risk_floor(risks[strategy], breaking, order)) <= order.index(strategy):
            chosen = strategy
            break
    risk = risks[chosen]
    return Reasoning(
        action=chosen,
        rule=(
            "seed table: change ≤5% → canary, ≤20% → blue-green, >20% → feature-flag; then risk ≥0.3 → at least "
            "blue-green, risk ≥0.7 or breaking → feature-flag"
        ),
        score={
            "risk": risk,
            "change_risk": round(change_risk, 4),
            "features": change,
            "risk_by_strategy": risks,
            "table_strategy": table,
            "change_percent": inputs.get("change_percent"),
        },
        rationale=_rationale(inputs, change, change_risk, table, chosen, risk, legacy),
    )


def _rationale(
    inputs: dict[str, Any],
    change: dict[str, float],
    change_risk: float,
    table: str,
    chosen: str,
    risk: float,
    legacy: bool,
) -> str:
    size = "" if legacy else f"change of {float(inputs['change_percent']):.1f}% of the code → table says {table}; "
    text = (
        f"{size}change risk {change_risk:.3f} (size {change['size']:.2f}, blast {change['blast']:.2f}, "
        f"deps {change['dependencies']:.2f}, perf {change['perf']:.2f}, breaking {int(change['breaking'])}"
        + (f", graph blast {change['graph_blast']:.2f}" if "graph_blast" in change else "")
        + f") plus 0.4 × failure mean of {chosen} {_failure_mean(inputs.get('posteriors', {}).get(chosen)):.2f} "
        f"gives risk {risk:.3f} → {chosen}"
    )
    if chosen != table:
        text += f" (risk moved it from {table} to the more cautious {chosen})"
    if change["breaking"]:
        text += "; a breaking API change always goes behind a feature flag"
    return text


# --- issue 4 (graph): blast radius ------------------------------------------------------------------------------
def graph_blast_radius(graph: Graph, head_dir: str, files_changed: list[str]) -> tuple[int, list[str]]:
    """Return how many Endpoint and Service nodes the graph says the change affects, and their ids.

    Args:
        graph: the knowledge graph.
        head_dir: the changed service's folder ("" → nothing known).
        files_changed: the change's files, relative to ``head_dir``.

    Returns:
        ``(count, sorted ids)``; ``(0, [])`` when the graph has no code nodes for those files.
    """
    report = impact_of_files(graph, head_dir, files_changed) if head_dir else None
    if report is None:
        return 0, []
    ids = sorted(a.id for name in ("endpoints", "services") for a in report.affected.get(name, []))
    return len(ids), ids


# --- end issue 4 ------------------------------------------------------------------------------------------------


def get_paths(spec_path: str | Path) -> list[str]:
    """Return the parameterless GET paths of the OpenAPI document at ``spec_path``, sorted.

    :func:`pilotage.spec.openapi.parameterless_get_paths` does the walking.

    Raises:
        InputError: the file cannot be read or is not an OpenAPI document with ``paths``.
    """
    return parameterless_get_paths(load_document(spec_path, hint="check spec_path"))


#: The document of a service that names none (issue 17): its traffic is its descriptor's ``traffic.requests``.
NO_DOCUMENT: dict[str, Any] = {"openapi": "3.0.3", "info": {"title": "no document", "version": "0"}, "paths": {}}


def traffic_plan(
    spec_path: str,
    base_spec_path: str,
    head_dir: str,
    touched: list[str],
    allowed_envs: list[str] | None = None,
) -> dict[str, Any]:
    """Return the synthetic-traffic plan of a rollout (:func:`pilotage.rollout.traffic_plan.build_traffic_plan`).

    Args:
        spec_path: the head version's OpenAPI document ("": none, only the descriptor's ``traffic.requests``).
        base_spec_path: the base version's ("" or a missing file → none).
        head_dir: the head version's folder (its ``pilotage.yaml`` gives writes, requests and credentials); every
            service, generated ones too (:mod:`pilotage.codegen.generator`), is called at the document's
            ``servers[0]`` path.
        touched: operations the change touches besides the spec diff (``"METHOD /path"``: changed handlers).
        allowed_envs: the environment variables a descriptor may name in ``traffic.credentials`` (the setting
            ``traffic_credential_envs``; None = any, for generated services); another name is ignored, so a
            delivered commit cannot have the control plane send it a secret of the operator.

    Raises:
        InputError: a document does not load or validate; ConfigError: a malformed ``pilotage.yaml``.
    """
    settings = descriptor_traffic(head_dir)
    credentials = settings.credentials
    if credentials is not None and allowed_envs is not None and credentials.env not in allowed_envs:
        credentials = None  # not the operator's choice: secured operations are skipped (the plan says so)
    base = load_spec(base_spec_path) if base_spec_path and Path(base_spec_path).is_file() else None
    head = load_spec(spec_path) if spec_path else NO_DOCUMENT  # a delivered service without an OpenAPI document
    return build_traffic_plan(
        head,
        base,
        touched=touched,
        writes=settings.writes,
        requests=settings.requests,
        credentials={"header": credentials.header, "env": credentials.env} if credentials else None,
        credentials_set=bool(credentials and os.environ.get(credentials.env)),
        # every service serves at its document's servers[0] path (generated ones too)
        path_prefix=None,
        principal=bool(os.environ.get(PRINCIPAL_ENV)),  # issue 18: the run's test principal meets secured operations
    )


def fault_env(fault: str, fault_rate: float, strategy: str) -> dict[str, str]:
    """Environment of the new version carrying a run's injected fault (``errors`` at ``fault_rate``, or ``crash``).

    Behind a feature flag the fault is in the flagged code path (``PILOTAGE_FAULT_SCOPE=flag``: only flag-on
    requests fail), as a bug of a flagged feature would be.
    """
    env = {"PILOTAGE_FAULT_ERROR_RATE": str(fault_rate)}
    if fault == "crash":
        env["PILOTAGE_FAULT_CRASH_ON_START"] = "1"
    if strategy == "feature-flag":
        env["PILOTAGE_FAULT_SCOPE"] = "flag"
    return env


#: Strategies a delivered service supports (issue #17): feature flags need it to read Pilotage's OFREP flag.
DELIVERY_STRATEGIES = ("canary", "blue-green")


class DeploymentAgent(Agent):
    """Chooses a rollout strategy for a change and asks the rollout controller to run it (``deploy.requested``)."""

    name: ClassVar[str] = "deployment"
    subscribes: ClassVar[tuple[str, ...]] = (EventType.PERF_MEASURED,)

    def reason(self, kind: str, inputs: dict[str, Any]) -> Reasoning:
        """``deploy.strategy`` → :func:`strategy_reasoning`."""
        if kind == "deploy.strategy":
            return strategy_reasoning(inputs)
        return super().reason(kind, inputs)

    async def on_event(self, event: CloudEvent) -> None:
        """On ``perf.measured``: perceive, choose the strategy, authorize the deploy, publish ``deploy.requested``."""
        code = await self.latest(event.runid, EventType.CODE_GENERATED)
        if code is None:
            raise InputError(f"run {event.runid}: no code.generated event before perf.measured", hint="run codegen")
        inputs = await self._perceive(event, code)
        deployment_id = f"dep-{inputs['commit'][:8]}-{event.id[:8]}"
        if await self.log.exists(EventType.DEPLOY_REQUESTED, run=event.runid, deployment_id=deployment_id):
            return  # redelivered event: the rollout was requested already
        decision = await self.decide("deploy.strategy", inputs, cause=event)
        self._learn(inputs, deployment_id, decision.action, decision.score["risk"], decision.id, event.runid)
        policy_input = {
            "service": inputs["service"],
            "deployment_id": deployment_id,
            "strategy": decision.action,
            "commit": inputs["commit"],
            "risk": decision.score["risk"],
            "tests_passed": inputs["tests_passed"],
            "perf_skipped": inputs["perf_skipped"],
            "perf_error_rate": inputs["perf_error_rate"],
            "breaking_changes": inputs["breaking_changes"],
            "decision_id": decision.id,
        }
        cross_service = await self._cross_service(event, code.data)  # issue 19: live consumers of a breaking change
        if cross_service is not None:
            policy_input["cross_service"] = cross_service
            tests = await self.latest(event.runid, EventType.TESTS_COMPLETED)  # issue 19: its consumers' tests
            verified = tests.data.get("consumer_verification") if tests is not None else None
            if verified is not None:
                policy_input["consumer_verification"] = verified
        tested = await self.latest(event.runid, EventType.TESTS_COMPLETED)  # issue 18: contract violations
        contract = tested.data.get("contract") if tested is not None and isinstance(tested.data, dict) else None
        if isinstance(contract, dict):
            policy_input["contract"] = {"violations": contract.get("violations", 0),
                                        "checks": contract.get("checks") or {},
                                        "gate": self.ctx.settings.testing_contract_gate,
                                        "gaps": contract.get("gaps") or [],  # undocumented statuses HTTP forces
                                        "gap_gate": self.ctx.settings.testing_document_gap_gate}  # fmt: skip
        # issue 6 (policy): the deploy input carries the change's security scan (bandit, by governance)
        scanned = await self.latest(event.runid, EventType.SECURITY_SCANNED)
        if scanned is not None and isinstance(scanned.data, dict):
            policy_input["security_scan"] = scanned.data  # absent → the deploy policy denies (fail closed)
        try:
            await self.authorize("deploy", policy_input, cause=event)
        except PolicyDenied:
            self.ctx.graph.upsert_node("Deployment", deployment_id, {"outcome": "denied"})
            raise
        touched = sorted(
            {str(a).split(" ", 1)[1] for a in inputs["blast_radius_affected"] if str(a).startswith("Endpoint:")}
        )  # the graph's endpoints of the changed handlers ("Endpoint:<service> GET /notes" → "GET /notes")
        plan = await self._plan(event, code.data, deployment_id, decision.action, decision.score["risk"], touched)
        await self.emit(EventType.DEPLOY_REQUESTED, {**plan, "decision_id": decision.id}, cause=event)

    async def _perceive(self, event: CloudEvent, code: CloudEvent) -> dict[str, Any]:
        run = await self.run_spec(event)
        proposed = await self.latest(event.runid, EventType.SPEC_PROPOSED)
        tests = await self.latest(event.runid, EventType.TESTS_COMPLETED)
        spec_data = proposed.data if proposed is not None else {}
        diff = spec_data.get("diff") or {}
        touched = {str(x) for key in ("added", "removed") for x in (diff.get(key) or [])}
        touched |= {str(x) for x in spec_data.get("operations_added") or []}
        breaking = _count(diff.get("breaking")) or int(diff.get("classification") == "breaking")
        posteriors = {}
        for strategy in STRATEGIES:
            node = self.ctx.graph.get_node(f"Model:{run.service}/{strategy}")
            props = node.props if node is not None else {}
            posteriors[strategy] = {"alpha": float(props.get("alpha", 1.0)), "beta": float(props.get("beta", 1.0))}
        perf = event.data or {}
        blast_radius, blast_affected = graph_blast_radius(  # issue 4
            self.ctx.graph, str(code.data.get("head_dir") or ""), [str(f) for f in code.data.get("files_changed") or []]
        )
        lines_changed = int(code.data.get("lines_added", 0)) + int(code.data.get("lines_removed", 0))
        code_changed, base_code = int(code.data.get("code_lines_changed", 0)), int(code.data.get("base_code_lines", 0))
        return {
            "service": run.service,
            "commit": code.data["commit"],
            "base_commit": code.data.get("base_commit", ""),
            "lines_changed": lines_changed,
            "code_lines_changed": code_changed,
            "base_code_lines": base_code,
            # the seed's "code diff": source lines changed over the base's source lines (a new service: 100 %)
            "change_percent": round(100.0 * code_changed / base_code, 2) if base_code else 100.0,
            "files_changed": _count(code.data.get("files_changed")),
            "new_dependencies": _count(code.data.get("new_dependencies")),
            "endpoints_touched": len(touched),
            "breaking_changes": breaking,
            "tests_passed": bool(tests.data.get("passed")) if tests is not None else not perf.get("skipped", False),
            "perf_skipped": bool(perf.get("skipped", False)),
            "perf_error_rate": float(perf.get("error_rate") or 0.0),
            "slo_error_rate": self.ctx.settings.slo_error_rate,
            "posteriors": posteriors,
            "blast_radius": blast_radius,  # issue 4: endpoints + services affected, by the knowledge graph
            "blast_radius_affected": blast_affected,
        } | ({"strategies_available": list(DELIVERY_STRATEGIES)} if run.delivery else {})

    def _learn(
        self, inputs: dict[str, Any], deployment_id: str, strategy: str, risk: float, decision_id: str, run_id: str
    ) -> None:
        graph = self.ctx.graph
        graph.upsert_node("Service", inputs["service"], {"name": inputs["service"]})
        graph.upsert_node("Commit", inputs["commit"], {"sha": inputs["commit"]})
        props = {"strategy": strategy, "risk": risk, "outcome": "pending", "decision_id": decision_id, "run_id": run_id}
        dep = graph.upsert_node("Deployment", deployment_id, props)
        graph.upsert_edge(f"Service:{inputs['service']}", "DEPLOYED", dep.id)
        graph.upsert_edge(dep.id, "OF", f"Commit:{inputs['commit']}")

    async def _documents(self, event: CloudEvent, run: RunSpec, proposed: CloudEvent | None) -> tuple[str, str]:
        """``(head document, base document)`` files of the run ("": none; a served one: the head's for both)."""
        spec_path = str(proposed.data["spec_path"]) if proposed is not None else run.spec_path
        base_spec = str(proposed.data.get("base_spec_path") or run.spec_path) if proposed is not None else spec_path
        if run.delivery and proposed is None:  # issue 17: a served document (saved by the tests), or none at all
            tested = await self.latest(event.runid, EventType.TESTS_COMPLETED)
            spec_path = base_spec = str(tested.data.get("spec_path") or "") if tested is not None else ""
        return spec_path, base_spec

    async def _cross_service(self, event: CloudEvent, code: dict[str, Any]) -> dict[str, Any] | None:
        """Issue 19: the change's breaking changes mapped to the provider's live consumers, or None (unmanaged).

        The deploy input's ``cross_service`` (:func:`pilotage.fleet.impact.impact_of_delivery`).

        Raises:
            ConfigError: production's document cannot be loaded (a served one: cache, stable address, scratch).
        """
        if not code.get("service_repo"):
            return None
        run = await self.run_spec(event)
        proposed = await self.latest(event.runid, EventType.SPEC_PROPOSED)
        spec_path, base_spec = await self._documents(event, run, proposed)
        source = DocumentSource(self.ctx.settings, self.ctx.runtime)
        return await impact_of_delivery(
            source, await load_fleet(self.ctx.bus), run.service, spec_path, base_spec if proposed is not None else None
        )

    async def _plan(
        self,
        event: CloudEvent,
        code: dict[str, Any],
        deployment_id: str,
        strategy: str,
        risk: float,
        touched: list[str],
    ) -> dict[str, Any]:
        """The ``deploy.requested`` data: what the controller needs to launch and drive the rollout."""
        run = await self.run_spec(event)
        base_version, head_version = str(code.get("base_commit", "base"))[:12], str(code["commit"])[:12]
        if head_version == base_version:
            head_version += "-canary"
        proposed = await self.latest(event.runid, EventType.SPEC_PROPOSED)
        spec_path, base_spec = await self._documents(event, run, proposed)
        canary_env = fault_env(run.fault, run.inject_fault_rate, strategy) if not run.delivery else {}
        # issue 17: a managed service's change (a delivery, or a generated service's run) rolls out on its stable
        # route, from the production version it serves, whose data folder both versions use
        managed = bool(code.get("service_repo"))
        data = str(production_data_dir(self.ctx.settings, run.service)) if managed else ""
        spec_data = proposed.data if proposed is not None else {}
        diff = spec_data.get("diff") or {}
        touched = [*touched, *(str(x) for x in (diff.get("added") or []) + (spec_data.get("operations_added") or []))]
        allowed = list(self.ctx.settings.traffic_credential_envs)
        traffic = traffic_plan(spec_path, base_spec, str(code["head_dir"]), touched, allowed)
        fleet = await load_fleet(self.ctx.bus)
        baseline_traffic = (  # blue-green alone feeds the two versions by two generators
            await self._baseline_traffic(run, proposed, (spec_path, base_spec), code, traffic, fleet)
            if strategy == "blue-green"
            else None
        )
        addresses = provider_addresses(fleet)  # issue 19: each consumed provider's
        base_role = workload_role(
            base_version, code["base_dir"], code.get("base_prepared", ""), {}, addresses=addresses, data_dir=data
        )
        head_prepared = code.get("head_prepared", "")
        head_role = workload_role(
            head_version, code["head_dir"], head_prepared, canary_env, addresses=addresses, data_dir=data
        )
        return {
            "deployment_id": deployment_id,
            "service": run.service,
            "strategy": strategy,
            "risk": risk,
            "steps": list(steps_for(strategy, self.ctx.settings.canary_steps_percent)),
            "commit": code["commit"],
            "baseline": base_role,
            "canary": head_role,
            "route": stable_route_name(run.service) if managed else "",
            "traffic": traffic,  # issue 17: the synthetic-traffic plan (requests, skipped, summary)
            "traffic_paths": smoke_paths(traffic),  # its GETs that need nothing filled: the preview smoke check
            "proxy_port": run.proxy_port,
            "flag_key": f"{run.service}.{deployment_id}" if strategy == "feature-flag" else "",
        } | ({"baseline_traffic": baseline_traffic} if baseline_traffic is not None else {})

    async def _baseline_traffic(
        self,
        run: RunSpec,
        proposed: CloudEvent | None,
        documents: tuple[str, str],
        code: dict[str, Any],
        traffic: dict[str, Any],
        fleet: dict[str, ManagedService],
    ) -> dict[str, Any] | None:
        """The traffic plan of the production version: what its clients send (the plan's ``baseline_traffic``).

        :func:`traffic_plan` of production's document (the spec diff's base file; a delivery's served document:
        :meth:`pilotage.fleet.documents.DocumentSource.production`, cached or read at the stable address, never a
        scratch instance) and of ``code["base_dir"]``'s ``pilotage.yaml``, weighing the head plan's ``touched``
        operations alike, so blue and green get the same mix of the operations both serve. Blue-green sends it to
        blue while green is previewed (:mod:`pilotage.rollout.controller`): the head plan may send what production
        refuses — a request field it does not know answered 422 at once, an operation it lacks 404 — and blue would
        be judged on cheaper requests than green. Only blue-green plans carry it (canary: one generator feeds both
        versions through the route's split).

        Args:
            run: the run (a delivery's service is read from the fleet).
            proposed: the run's ``spec.proposed`` (None: a delivery's served document, or a run without one).
            documents: ``(head document, base document)`` files of the run (:meth:`_documents`).
            code: the ``code.generated`` data (``base_dir``: production's folder; ``service_repo``: managed).
            traffic: the head plan.
            fleet: the managed services (:func:`load_fleet`, folded once by the caller).

        Returns:
            The plan, or None when there is no production document (or it is the head's own file), it or the
            descriptor does not load, or it equals ``traffic``: then both versions get ``traffic``, as before.
        """
        spec_path, base_spec = documents
        document = base_spec if proposed is not None and base_spec != spec_path else ""
        allowed = list(self.ctx.settings.traffic_credential_envs)
        try:
            if run.delivery and proposed is None and code.get("service_repo"):  # a served document
                managed = fleet.get(run.service)
                loaded = await DocumentSource(self.ctx.settings).production(managed, fleet) if managed else None
                document = str(loaded.path) if loaded is not None else ""
            if not document:
                return None
            touched = [str(op) for op in traffic.get("touched") or []]
            plan = traffic_plan(document, "", str(code["base_dir"]), touched, allowed)
        except PilotageError as exc:  # production's document or descriptor: the head plan feeds both, as before
            _log.warning("%s: no traffic plan of production (%s): both versions get the head plan", run.service, exc)
            return None
        return plan if plan != traffic else None
