"""The deployment agent: score the risk of a change, choose a rollout strategy and drive its steps.

Perceive (on ``perf.measured``): change size and new dependencies from ``code.generated``, breaking changes and
endpoints touched from ``spec.proposed``, the test verdict from ``tests.completed``, the load-test error rate, and
the learned failure posterior of each strategy for the service, graph node ``Model:<service>/<strategy>`` with
props ``{alpha, beta}`` (Beta(success, failure): ``alpha`` − 1 good and ``beta`` − 1 failed rollouts; Beta(1, 1)
when absent).

Issue #4 (knowledge graph): ``blast_radius`` = the number of Endpoint and Service nodes the knowledge graph says
the change's files (``code.generated`` ``files_changed`` under ``head_dir``) affect, with ``blast_radius_affected``
naming them; 0 when the graph has no code nodes for them (nobody ingested ``head_dir``). It adds
:data:`GRAPH_BLAST_WEIGHT` · min(1, blast_radius / :data:`GRAPH_BLAST_SATURATION`) to the risk.

Reason (``deploy.strategy``, pure): see :func:`strategy_reasoning`.

Act: ``authorize("deploy")``, start the baseline (``code.generated`` ``base_dir``) and the canary (``head_dir``,
``PILOTAGE_FAULT_ERROR_RATE`` = the run's ``inject_fault_rate``) on the runtime, open a route named after the
deployment with the canary at 0 %, start synthetic traffic through it, emit ``deploy.started`` then
``deploy.step`` 0. On each healthy ``slo.evaluated`` of the deployment: the next step (``deploy.step``; the 100 %
step is the post-promotion watch the reliability agent runs for ``post_promotion_watch_s``), or after the last one
``authorize("promote")``, canary 100 %, traffic stopped, ``deploy.promoted``. The baseline stays running as the
**hot standby** for ``settings.standby_s`` (a rollback in that time is a weight change), then it is stopped and
``deploy.standby_released`` emitted. After a control-plane restart the standby is not re-created (recovery brings
a promoted deployment back with the canary alone, :mod:`pilotage.flows.recovery`).

Learn: ``Deployment`` node (key = deployment id; strategy, risk, outcome), ``Service -DEPLOYED-> Deployment``,
``Deployment -OF-> Commit:<sha>``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

from pilotage.agent import Agent, AgentContext, Reasoning
from pilotage.bus.base import Bus
from pilotage.errors import InputError, PolicyDenied
from pilotage.events import CloudEvent, EventType
from pilotage.graph.base import Graph
from pilotage.graph.impact import impact_of_files
from pilotage.runtime.base import Instance, Workload
from pilotage.runtime.local import route_registry
from pilotage.runtime.traffic import start_traffic, stop_traffic
from pilotage.spec.load import load_document

__all__ = [
    "DEPLOY_RESUMED",
    "FEATURE_FLAG_STEPS",
    "GRAPH_BLAST_SATURATION",
    "GRAPH_BLAST_WEIGHT",
    "RISK_WEIGHTS",
    "STRATEGIES",
    "DeploymentAgent",
    "find_event",
    "graph_blast_radius",
    "get_paths",
    "rollout_info",
    "strategy_reasoning",
]

#: Strategies from least to most cautious.
STRATEGIES = ("blue-green", "canary", "feature-flag")
#: Feature flag: the new code path is switched on for 5 % of requests, then for everyone.
FEATURE_FLAG_STEPS = [5, 100]
#: Weights of the risk score (sum 1.0); see :func:`strategy_reasoning` for each feature's scale.
RISK_WEIGHTS = {"size": 0.15, "blast": 0.15, "dependencies": 0.05, "perf": 0.05, "breaking": 0.2, "history": 0.4}
#: Lines changed at which the size feature saturates. Source: the SmartBear/Cisco code-review study ("Best Kept
#: Secrets of Peer Code Review", 2006): reviewers stop finding defects effectively beyond ~400 lines per review.
SIZE_SATURATION_LINES = 400
#: Operations touched at which the blast-radius feature saturates.
BLAST_SATURATION_ENDPOINTS = 10
#: Issue #4: weight of the knowledge graph's blast radius (endpoints + services the changed files affect). Kept
#: small and outside :data:`RISK_WEIGHTS` (which sums to 1.0) so a radius of 0 leaves every score as before; the
#: total risk is capped at 1.0.
GRAPH_BLAST_WEIGHT = 0.05
#: Affected endpoints + services at which the graph blast-radius feature saturates.
GRAPH_BLAST_SATURATION = 10
#: New dependencies at which the dependency feature saturates.
DEPS_SATURATION = 3
#: Risk tiers (same thresholds as the brief's table): < LOW → blue-green, ≥ HIGH → feature-flag, else canary.
LOW_RISK, HIGH_RISK = 0.3, 0.7


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


def _tier(risk: float, breaking: bool) -> str:
    if breaking or risk >= HIGH_RISK:
        return "feature-flag"
    return "canary" if risk >= LOW_RISK else "blue-green"


def strategy_reasoning(inputs: dict[str, Any]) -> Reasoning:
    """Score the risk of a change in [0, 1] and pick the rollout strategy (pure).

    ``inputs`` keys: ``lines_changed``, ``endpoints_touched``, ``new_dependencies``, ``breaking_changes`` (counts),
    ``perf_error_rate``, ``slo_error_rate`` (fractions), ``posteriors`` {strategy: {alpha, beta}}; optional
    ``blast_radius`` (issue #4: endpoints + services affected according to the knowledge graph, a count).

    Score, for a candidate strategy *s* (weights in :data:`RISK_WEIGHTS`)::

        risk(s) = 0.15·min(1, lines/400) + 0.15·min(1, endpoints/10) + 0.05·min(1, new_deps/3)
                + 0.05·min(1, perf_error_rate/slo_error_rate) + 0.20·[breaking changes > 0]
                + 0.40·failure_mean(s),     failure_mean(s) = α/(α+β) of Beta(α, β) for s (Beta(1,1) → 0.5)
                [+ 0.05·min(1, blast_radius/10) when ``blast_radius`` is given; risk capped at 1.0]

    A decision recorded without ``blast_radius`` (before issue #4) replays to the same score: the ``graph_blast``
    feature appears only when the input does.

    Table: risk < 0.3 → blue-green, 0.3 ≤ risk < 0.7 → canary, risk ≥ 0.7 or any breaking change → feature-flag.
    Strategies are tried from least to most cautious; the first whose *own* risk maps to a tier no more cautious
    than itself is chosen (feature-flag always qualifies). A strategy that failed often (high posterior failure
    mean) thus raises its own risk and hands the change to a more cautious one.
    """
    change = {
        "size": min(1.0, inputs.get("lines_changed", 0) / SIZE_SATURATION_LINES),
        "blast": min(1.0, inputs.get("endpoints_touched", 0) / BLAST_SATURATION_ENDPOINTS),
        "dependencies": min(1.0, inputs.get("new_dependencies", 0) / DEPS_SATURATION),
        "perf": min(1.0, inputs.get("perf_error_rate", 0.0) / max(inputs.get("slo_error_rate", 0.05), 1e-9)),
        "breaking": 1.0 if inputs.get("breaking_changes", 0) > 0 else 0.0,
    }
    change_risk = sum(RISK_WEIGHTS[k] * v for k, v in change.items())
    if "blast_radius" in inputs:  # issue 4: the knowledge graph's blast radius, a small extra weight
        change["graph_blast"] = min(1.0, _count(inputs["blast_radius"]) / GRAPH_BLAST_SATURATION)
        change_risk += GRAPH_BLAST_WEIGHT * change["graph_blast"]
    breaking = change["breaking"] > 0
    posteriors = inputs.get("posteriors", {})
    risks: dict[str, float] = {}
    chosen = STRATEGIES[-1]
    for strategy in STRATEGIES:
        risks[strategy] = round(
            min(1.0, change_risk + RISK_WEIGHTS["history"] * _failure_mean(posteriors.get(strategy))), 4
        )
        if STRATEGIES.index(_tier(risks[strategy], breaking)) <= STRATEGIES.index(strategy):
            chosen = strategy
            break
    risk = risks[chosen]
    rule = "risk<0.3→blue-green; 0.3≤risk<0.7→canary; risk≥0.7 or breaking→feature-flag"
    rationale = (
        f"change risk {change_risk:.3f} (size {change['size']:.2f}, blast {change['blast']:.2f}, "
        f"deps {change['dependencies']:.2f}, perf {change['perf']:.2f}, breaking {int(breaking)}"
        + (f", graph blast {change['graph_blast']:.2f}" if "graph_blast" in change else "")
        + ") plus "
        f"0.4 × failure mean of {chosen} {_failure_mean(posteriors.get(chosen)):.2f} gives risk {risk:.3f} → {chosen}"
    )
    if breaking:
        rationale += "; a breaking API change always goes behind a feature flag"
    score = {"risk": risk, "change_risk": round(change_risk, 4), "features": change, "risk_by_strategy": risks}
    return Reasoning(action=chosen, rule=rule, score=score, rationale=rationale)


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
    """Return the spec's parameterless GET paths (no ``{param}`` in the path, no required parameter), sorted.

    Raises:
        InputError: the file cannot be read or is not an OpenAPI document with ``paths``.
    """
    doc = load_document(spec_path, hint="check spec_path")
    if not isinstance(doc, dict) or not isinstance(doc.get("paths"), dict):
        raise InputError(f"{spec_path} has no paths object", hint="give an OpenAPI 3 document", path=spec_path)
    out = []
    for path, item in doc["paths"].items():
        get = item.get("get") if isinstance(item, dict) else None
        if "{" in path or not isinstance(get, dict):
            continue
        params = [*(item.get("parameters") or []), *(get.get("parameters") or [])]
        if any(isinstance(p, dict) and p.get("required") for p in params):
            continue
        out.append(path)
    return sorted(out)


async def find_event(bus: Bus, type: str, runid: str, **match: Any) -> CloudEvent | None:
    """Return the newest event of ``type`` in run ``runid`` whose data has every ``key == value`` of ``match``."""
    found: CloudEvent | None = None
    offset = 1
    while True:
        batch = await bus.read(offset, 1000, pattern=type)
        if not batch:
            return found
        for record in batch:
            data = record.event.data if isinstance(record.event.data, dict) else {}
            if record.event.runid == runid and all(data.get(k) == v for k, v in match.items()):
                found = record.event
        offset = batch[-1].offset + 1


# --- crash safety (issue #7) ---------------------------------------------------------------------------------
#: Published by the control plane's recovery when it re-created a deployment's environment after a restart
#: (``pilotage.flows.recovery``): data {deployment_id, phase, step, weight, baseline, canary, proxy_url, reason}.
DEPLOY_RESUMED = "dev.pilotage.deploy.resumed"


async def rollout_info(bus: Bus, runid: str, deployment_id: str) -> dict[str, Any] | None:
    """Return the data of the deployment's ``deploy.started`` with the instances of its newest ``deploy.resumed``.

    A restarted control plane re-creates the processes and the proxy of a deployment on new ports; what the
    agents need (``baseline``/``canary`` url and pid, ``proxy_url``) is then the newest record. None when the log
    has no ``deploy.started`` for ``deployment_id`` in run ``runid``.
    """
    started = await find_event(bus, EventType.DEPLOY_STARTED, runid, deployment_id=deployment_id)
    if started is None:
        return None
    info = dict(started.data)
    resumed = await find_event(bus, DEPLOY_RESUMED, runid, deployment_id=deployment_id)
    if resumed is not None:
        info.update({k: v for k, v in resumed.data.items() if k in ("baseline", "canary", "proxy_url") and v})
    return info


# --- end crash safety -------------------------------------------------------------------------------------------


class DeploymentAgent(Agent):
    """Chooses a rollout strategy from a risk score and executes its weight steps on the runtime."""

    name: ClassVar[str] = "deployment"
    subscribes: ClassVar[tuple[str, ...]] = (EventType.PERF_MEASURED, EventType.SLO_EVALUATED)

    def __init__(self, ctx: AgentContext) -> None:
        super().__init__(ctx)
        self._standby_tasks: set[asyncio.Task[None]] = set()

    def reason(self, kind: str, inputs: dict[str, Any]) -> Reasoning:
        """``deploy.strategy`` → :func:`strategy_reasoning`."""
        if kind == "deploy.strategy":
            return strategy_reasoning(inputs)
        return super().reason(kind, inputs)

    def steps_for(self, strategy: str) -> list[int]:
        """Return the canary weight (percent) of each step of ``strategy``.

        canary → ``settings.canary_steps_percent`` (100 appended when missing); blue-green → [100] (the full-size
        green is analysed once, then promoted); feature-flag → :data:`FEATURE_FLAG_STEPS` ([5, 100]).
        """
        if strategy == "blue-green":
            return [100]
        if strategy == "feature-flag":
            return list(FEATURE_FLAG_STEPS)
        steps = [s for s in self.ctx.settings.canary_steps_percent if 0 < s <= 100]
        return steps if steps and steps[-1] == 100 else [*steps, 100]

    async def on_event(self, event: CloudEvent) -> None:
        """Dispatch ``perf.measured`` (start a rollout) and ``slo.evaluated`` (advance or promote)."""
        if event.type == EventType.PERF_MEASURED:
            await self._start_rollout(event)
        elif event.type == EventType.SLO_EVALUATED and event.data.get("healthy"):
            await self._advance(event)

    async def _perceive(self, event: CloudEvent) -> dict[str, Any]:
        run = await self.run_spec(event)
        code = await self.latest(event.runid, EventType.CODE_GENERATED)
        if code is None:
            raise InputError(f"run {event.runid}: no code.generated event before perf.measured", hint="run codegen")
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
        return {
            "service": run.service,
            "commit": code.data["commit"],
            "base_commit": code.data.get("base_commit", ""),
            "lines_changed": int(code.data.get("lines_added", 0)) + int(code.data.get("lines_removed", 0)),
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
        }

    async def _start_rollout(self, event: CloudEvent) -> None:
        run = await self.run_spec(event)
        code = await self.latest(event.runid, EventType.CODE_GENERATED)
        inputs = await self._perceive(event)
        assert code is not None  # _perceive raised otherwise
        deployment_id = f"dep-{inputs['commit'][:8]}-{event.id[:8]}"
        registry = route_registry(self.ctx.runtime)
        if registry.get_route(deployment_id) is not None:
            return  # redelivered event: this rollout already runs
        # crash safety (issue #7): the log says this deployment was launched before a restart; the control plane's
        # recovery re-created its environment, so only take step 0 if it was not taken (never launch twice).
        started = await find_event(self.ctx.bus, EventType.DEPLOY_STARTED, event.runid, deployment_id=deployment_id)
        if started is not None:
            await self._first_step(event, started.data)
            return
        decision = await self.decide("deploy.strategy", inputs, cause=event)
        strategy, risk = decision.action, decision.score["risk"]
        graph = self.ctx.graph
        graph.upsert_node("Service", run.service, {"name": run.service})
        graph.upsert_node("Commit", inputs["commit"], {"sha": inputs["commit"]})
        dep = graph.upsert_node(
            "Deployment",
            deployment_id,
            {
                "strategy": strategy,
                "risk": risk,
                "outcome": "pending",
                "decision_id": decision.id,
                "run_id": run.run_id,
            },
        )
        graph.upsert_edge(f"Service:{run.service}", "DEPLOYED", dep.id)
        graph.upsert_edge(dep.id, "OF", f"Commit:{inputs['commit']}")
        policy_input = {
            "service": run.service,
            "deployment_id": deployment_id,
            "strategy": strategy,
            "commit": inputs["commit"],
            "risk": risk,
            "tests_passed": inputs["tests_passed"],
            "perf_skipped": inputs["perf_skipped"],
            "perf_error_rate": inputs["perf_error_rate"],
            "breaking_changes": inputs["breaking_changes"],
            "decision_id": decision.id,
        }
        # --- issue 6 (policy): the deploy input carries the change's security scan (bandit, by governance) ------
        scanned = await self.latest(event.runid, "dev.pilotage.security.scanned")
        if scanned is not None and isinstance(scanned.data, dict):
            policy_input["security_scan"] = scanned.data  # absent → the deploy policy denies (fail closed)
        # --- end issue 6 -------------------------------------------------------------------------------------
        try:
            await self.authorize("deploy", policy_input, cause=event)
        except PolicyDenied:
            graph.upsert_node("Deployment", deployment_id, {"outcome": "denied"})
            raise
        await self._launch(event, run.inject_fault_rate, code.data, deployment_id, strategy, risk)

    @staticmethod
    def _fault_env(fault: str, fault_rate: float) -> dict[str, str]:
        """Environment of the canary: the run's injected fault (``errors`` at ``fault_rate``, or ``crash``)."""
        env = {"PILOTAGE_FAULT_ERROR_RATE": str(fault_rate)}
        if fault == "crash":
            env["PILOTAGE_FAULT_CRASH_ON_START"] = "1"
        return env

    async def _launch(
        self, event: CloudEvent, fault_rate: float, code: dict[str, Any], deployment_id: str, strategy: str, risk: float
    ) -> None:
        run = await self.run_spec(event)
        runtime, settings = self.ctx.runtime, self.ctx.settings
        base_version, head_version = str(code.get("base_commit", "base"))[:12], str(code["commit"])[:12]
        if head_version == base_version:
            head_version += "-canary"
        proposed = await self.latest(event.runid, EventType.SPEC_PROPOSED)
        # Synthetic traffic only to paths both versions serve: a path new in the canary would 404 on the baseline
        # and skew the baseline-vs-canary comparison.
        if proposed is not None:
            base_paths = set(get_paths(proposed.data.get("base_spec_path") or run.spec_path))
            paths = [p for p in get_paths(proposed.data["spec_path"]) if p in base_paths]
        else:
            paths = get_paths(run.spec_path)
        if not paths:
            raise InputError(
                f"spec of {run.service} has no parameterless GET path for synthetic traffic",
                hint="add a collection GET endpoint (e.g. GET /items) to the spec",
            )
        timeout = settings.service_ready_timeout_s
        baseline = await runtime.start(
            Workload(run.service, base_version, Path(code["base_dir"])), ready_timeout_s=timeout
        )
        canary: Instance | None = None
        try:
            canary = await runtime.start(
                Workload(
                    run.service,
                    head_version,
                    Path(code["head_dir"]),
                    env=self._fault_env(run.fault, fault_rate),
                ),
                ready_timeout_s=timeout,
            )
            route = await runtime.route(
                deployment_id,
                {base_version: baseline, head_version: canary},
                {base_version: 100, head_version: 0},
                port=run.proxy_port,
            )
        except Exception:
            for instance in (baseline, canary):
                if instance is not None:
                    await runtime.stop(instance)
            self.ctx.graph.upsert_node("Deployment", deployment_id, {"outcome": "failed_to_start"})
            raise
        steps = self.steps_for(strategy)
        start_traffic(deployment_id, route.url, paths, settings.synthetic_traffic_rps)
        self.ctx.graph.upsert_node(
            "Deployment", deployment_id, {"outcome": "in_progress", "steps": steps, "proxy_url": route.url}
        )
        await self.emit(
            EventType.DEPLOY_STARTED,
            {
                "deployment_id": deployment_id,
                "strategy": strategy,
                "risk": risk,
                "steps": steps,
                "commit": code["commit"],
                "baseline": {"version": base_version, "url": baseline.url, "pid": baseline.pid},
                "canary": {"version": head_version, "url": canary.url, "pid": canary.pid},
                "proxy_url": route.url,
                "traffic_paths": paths,
            },
            cause=event,
        )
        await runtime.set_weights(route, {base_version: 100 - steps[0], head_version: steps[0]})
        await self.emit(
            EventType.DEPLOY_STEP,
            {"deployment_id": deployment_id, "step": 0, "weight": steps[0], "strategy": strategy},
            cause=event,
        )

    async def _first_step(self, event: CloudEvent, info: dict[str, Any]) -> None:
        """Take step 0 of a deployment launched before a restart, unless the log shows it taken (crash safety)."""
        deployment_id, steps = info["deployment_id"], info["steps"]
        if await find_event(self.ctx.bus, EventType.DEPLOY_STEP, event.runid, deployment_id=deployment_id, step=0):
            return
        route = route_registry(self.ctx.runtime).get_route(deployment_id)
        if route is None:
            raise InputError(f"route {deployment_id} was not re-created after a restart", hint="run pilotage serve")
        base_version, head_version = info["baseline"]["version"], info["canary"]["version"]
        await self.ctx.runtime.set_weights(route, {base_version: 100 - steps[0], head_version: steps[0]})
        await self.emit(
            EventType.DEPLOY_STEP,
            {"deployment_id": deployment_id, "step": 0, "weight": steps[0], "strategy": info["strategy"]},
            cause=event,
        )

    async def _advance(self, event: CloudEvent) -> None:
        deployment_id = event.data["deployment_id"]
        started = await find_event(self.ctx.bus, EventType.DEPLOY_STARTED, event.runid, deployment_id=deployment_id)
        if started is None:
            raise InputError(f"no deploy.started for deployment {deployment_id}", hint="start the rollout again")
        for concluded in (EventType.DEPLOY_PROMOTED, EventType.DEPLOY_ROLLED_BACK):
            if await find_event(self.ctx.bus, concluded, event.runid, deployment_id=deployment_id):
                return
        info = started.data
        steps, strategy = info["steps"], info["strategy"]
        base_version, head_version = info["baseline"]["version"], info["canary"]["version"]
        nxt = int(event.data["step"]) + 1
        if await find_event(self.ctx.bus, EventType.DEPLOY_STEP, event.runid, deployment_id=deployment_id, step=nxt):
            return  # redelivered: the next step was already taken
        registry = route_registry(self.ctx.runtime)
        route = registry.get_route(deployment_id)
        if route is None:
            raise InputError(f"route {deployment_id} is closed", hint="the rollout was stopped; start it again")
        if nxt < len(steps):
            await self.ctx.runtime.set_weights(route, {base_version: 100 - steps[nxt], head_version: steps[nxt]})
            await self.emit(
                EventType.DEPLOY_STEP,
                {"deployment_id": deployment_id, "step": nxt, "weight": steps[nxt], "strategy": strategy},
                cause=event,
            )
            return
        run = await self.run_spec(event)
        await self.authorize(
            "promote",
            {
                "service": run.service,
                "deployment_id": deployment_id,
                "strategy": strategy,
                "commit": info.get("commit", ""),
                "steps_passed": len(steps),
                "healthy": True,
                "canary": event.data.get("canary", {}),
                "slo_error_rate": event.data.get("slo_error_rate"),
            },
            cause=event,
        )
        await self.ctx.runtime.set_weights(route, {base_version: 0, head_version: 100})
        traffic = await stop_traffic(deployment_id)
        standby_s = self.ctx.settings.standby_s
        self.ctx.graph.upsert_node(
            "Deployment",
            deployment_id,
            {"outcome": "promoted", "traffic": traffic.to_dict() if traffic is not None else None},
        )
        await self.emit(
            EventType.DEPLOY_PROMOTED,
            {
                "deployment_id": deployment_id,
                "strategy": strategy,
                "version": head_version,
                "commit": info.get("commit"),
                "standby": {"version": base_version, "standby_s": standby_s},
            },
            cause=event,
        )
        # Hot standby (issue #3): the previous version stays warm standby_s after promotion, so a rollback in that
        # time is a weight change, not a start; then it is stopped (the cost agent may stop it earlier when idle).
        task = asyncio.create_task(self._release_standby(event, deployment_id, base_version, standby_s))
        self._standby_tasks.add(task)
        task.add_done_callback(self._standby_tasks.discard)

    async def _release_standby(self, event: CloudEvent, deployment_id: str, version: str, after_s: float) -> None:
        """Stop the hot standby ``version`` of ``deployment_id`` after ``after_s`` s; emit ``deploy.standby_released``.

        Nothing happens when the route is gone or the standby is no longer running (scaled down, rolled back to).
        """
        await asyncio.sleep(after_s)
        registry = route_registry(self.ctx.runtime)
        route = registry.get_route(deployment_id)
        standby = route.backends.get(version) if route is not None else None
        if route is None or standby is None or route.weights.get(version) or not registry.is_running(standby):
            return
        await self.ctx.runtime.stop(standby)
        await self.emit(
            EventType.DEPLOY_STANDBY_RELEASED,
            {"deployment_id": deployment_id, "version": version, "reason": f"standby_s={after_s} elapsed"},
            cause=event,
        )
