"""The rollout agent: the event-driven half of the one rollout controller.

Perceive: on ``deploy.requested`` (the deployment agent's plan) and on each ``slo.evaluated`` (the reliability
agent's verdict on a step), the rollout's state is folded from the run's events
(:func:`pilotage.rollout.state.fold`) — nothing is kept in memory, so a restarted control plane continues where
the log stands.

Reason (``rollout.next``, pure): :func:`pilotage.rollout.state.next_action` on the state and the verdict →
advance / hold / promote / roll back / pause. ``pilotage events replay`` recomputes every one of these decisions.

Act, only through :class:`pilotage.rollout.controller.RolloutController` (the one component that touches the
runtime): launch (and the new version's warm-up) → ``deploy.started`` + ``deploy.step`` 0 (carrying the warm-up's
counts); advance → ``deploy.step``; promote → ``authorize("promote")``, ``deploy.promoted``, the previous version
kept warm ``standby_s`` then released (``deploy.standby_released``); rollback → ``authorize("rollback")`` (the safe
direction: never blocked, see :mod:`pilotage.policy.base`), users protected first, an incident record
(:mod:`pilotage.rollout.incident`), ``incident.opened``, ``deploy.rolled_back``; pause → synthetic traffic stopped,
``deploy.paused`` (the route keeps its weight). Every
action is idempotent, so a handler interrupted by a crash and run again on the redelivered event finishes the job
without doing it twice.

Learn: the ``Deployment`` node's ``outcome``; ``Incident`` node with ``Deployment -CAUSED-> Incident``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, ClassVar

from pilotage.agent import Agent, AgentContext, Reasoning
from pilotage.catalogue import parse
from pilotage.catalogue.rollout import DeployRequested, SloEvaluated
from pilotage.events import CloudEvent, EventType
from pilotage.fleet.descriptor import DESCRIPTOR_FILE, ServiceDescriptor, load_descriptor
from pilotage.fleet.documents import remember_document
from pilotage.fleet.graph import record_service
from pilotage.fleet.registry import live_descriptors, load_fleet
from pilotage.rollout.controller import RollbackDone, rollout_controller
from pilotage.rollout.incident import write_incident
from pilotage.rollout.state import Action, RolloutState, load_state, next_action_reasoning, phase_of
from pilotage.spec.load import load_spec

log = logging.getLogger(__name__)

__all__ = ["RolloutAgent"]


class RolloutAgent(Agent):
    """Drives every rollout from the log: launches a requested one and acts on each step's verdict."""

    name: ClassVar[str] = "rollout"
    subscribes: ClassVar[tuple[str, ...]] = (EventType.DEPLOY_REQUESTED, EventType.SLO_EVALUATED)

    def __init__(self, ctx: AgentContext) -> None:
        super().__init__(ctx)
        self._standby_tasks: set[asyncio.Task[None]] = set()

    def reason(self, kind: str, inputs: dict[str, Any]) -> Reasoning:
        """``rollout.next`` → :func:`next_action_reasoning`."""
        if kind == "rollout.next":
            return next_action_reasoning(inputs)
        return super().reason(kind, inputs)

    async def state(self, runid: str, deployment_id: str) -> RolloutState:
        """Return the rollout's state folded from the run's events.

        Raises:
            InputError: the log holds no ``deploy.requested`` for ``deployment_id`` in run ``runid``.
        """
        return await load_state(self.log, runid, deployment_id)

    async def on_event(self, event: CloudEvent) -> None:
        """Dispatch ``deploy.requested`` (launch) and ``slo.evaluated`` (decide and act)."""
        # typed reads: a foreign or older shape is an InputError naming the event and the field
        if event.type == EventType.DEPLOY_REQUESTED:
            deployment_id = parse(event, DeployRequested).deployment_id
        else:
            deployment_id = parse(event, SloEvaluated).deployment_id
        state = await self.state(event.runid, deployment_id)
        if event.type == EventType.DEPLOY_REQUESTED:
            await self._launch(event, state)
        else:
            await self._on_verdict(event, state)

    async def _launch(self, event: CloudEvent, state: RolloutState) -> None:
        controller = rollout_controller(self.ctx)
        warmup = None
        if state.phase == "requested":
            try:
                started = await controller.launch(state.plan)
            except Exception:
                self.ctx.graph.upsert_node("Deployment", state.deployment_id, {"outcome": "failed_to_start"})
                raise
            self.ctx.graph.upsert_node(
                "Deployment",
                state.deployment_id,
                {"outcome": "in_progress", "steps": list(state.steps), "proxy_url": started["proxy_url"]},
            )
            await self.emit(EventType.DEPLOY_STARTED, started, cause=event)
            warmup = started.get("warmup")
        elif state.step >= 0:
            return  # redelivered: step 0 was taken
        await controller.apply_step(state.plan, state.steps[0])
        await self._emit_step(event, state, 0, state.steps[0], warmup)

    async def _emit_step(
        self, event: CloudEvent, state: RolloutState, step: int, weight: int, warmup: dict[str, Any] | None = None
    ) -> None:
        data: dict[str, Any] = {
            "deployment_id": state.deployment_id,
            "step": step,
            "weight": weight,
            "strategy": state.strategy,
            "phase": phase_of(state.strategy, weight),
        }
        traffic = state.plan.get("traffic")
        if step == 0 and isinstance(traffic, dict) and traffic.get("summary"):
            data["traffic"] = str(traffic["summary"])  # issue 17: what synthetic traffic sends, or that it cannot
        if warmup:  # sent before this step's analysis began: the verdict records it, it is not judged
            data["warmup"] = warmup
        await self.emit(EventType.DEPLOY_STEP, data, cause=event)

    async def _on_verdict(self, event: CloudEvent, state: RolloutState) -> None:
        verdict = {
            "step": int(event.data["step"]),
            "action": str(event.data.get("action") or ("continue" if event.data.get("healthy") else "rollback")),
            "reason": str(event.data.get("rationale") or ""),
        }
        decision = await self.decide("rollout.next", {"state": state.summary(), "verdict": verdict}, cause=event)
        action = Action(decision.action, decision.score["step"], decision.score["weight"], decision.rationale)
        if action.kind == "advance":
            await rollout_controller(self.ctx).apply_step(state.plan, action.weight)
            await self._emit_step(event, state, action.step, action.weight)
        elif action.kind == "promote":
            await self._promote(event, state)
        elif action.kind == "rollback":
            await self._roll_back(event, state, decision.id)
        elif action.kind == "pause":
            # the route stays at its weight for a human; nothing judges the step any more, so the synthetic traffic
            # stops (left on, a paused rollout's generator and proxy loaded the control plane's loop for good)
            await rollout_controller(self.ctx).stop_traffic(state.deployment_id)
            data = {"deployment_id": state.deployment_id, "step": state.step, "weight": state.weight}
            reason = f"{action.reason}: {verdict['reason']}" if verdict["reason"] else action.reason
            await self.emit(EventType.DEPLOY_PAUSED, {**data, "reason": reason}, cause=event)

    async def _promote(self, event: CloudEvent, state: RolloutState) -> None:
        run = await self.run_spec(event)
        plan = state.plan
        await self.authorize(
            "promote",
            {
                "service": run.service,
                "deployment_id": state.deployment_id,
                "strategy": state.strategy,
                "commit": plan.get("commit", ""),
                "steps_passed": len(state.steps),
                "healthy": True,
                "canary": event.data.get("canary", {}),
                "slo_error_rate": event.data.get("slo_error_rate"),
            },
            cause=event,
        )
        traffic = await rollout_controller(self.ctx).promote(plan)
        standby_s = self.ctx.settings.standby_s
        outcome = {"outcome": "promoted", "traffic": traffic.to_dict() if traffic is not None else None}
        self.ctx.graph.upsert_node("Deployment", state.deployment_id, outcome)
        base_v = plan["baseline"]["version"]
        await self.emit(
            EventType.DEPLOY_PROMOTED,
            {
                "deployment_id": state.deployment_id,
                "strategy": state.strategy,
                "version": plan["canary"]["version"],
                "commit": plan.get("commit"),
                "standby": {"version": base_v, "standby_s": standby_s},
            },
            cause=event,
        )
        if plan.get("route"):  # issue 17: a managed service's delivery — the new production commit
            await self._release(event, run.service, plan, state.deployment_id)
        # Hot standby (issue #3): the previous version stays warm standby_s after promotion (a rollback in that
        # time is a weight change, not a start); then it is stopped (the cost agent may stop it earlier when idle).
        task = asyncio.create_task(self._release_standby(event, state, standby_s))
        self._standby_tasks.add(task)
        task.add_done_callback(self._standby_tasks.discard)

    async def _release(self, event: CloudEvent, service: str, plan: dict[str, Any], deployment_id: str) -> None:
        """Record the promoted commit as the service's production (``service.released``; graph PRODUCTION edge)."""
        code = await self.latest(event.runid, EventType.CODE_GENERATED)
        previous = str(code.data.get("base_commit", "")) if code is not None else ""
        commit = str(plan.get("commit", ""))
        graph = self.ctx.graph
        graph.upsert_node("Service", service, {"name": service, "production_commit": commit})
        graph.upsert_node("Commit", commit, {"sha": commit, "service": service})
        graph.upsert_edge(f"Service:{service}", "PRODUCTION", f"Commit:{commit}", {"since_run": event.runid})
        descriptor = _head_descriptor(code.data if code is not None else {})
        await self.emit(
            EventType.SERVICE_RELEASED,
            {
                "service": service,
                "commit": commit,
                "previous_commit": previous,
                "deployment_id": deployment_id,
                "run_id": event.runid,
                "descriptor": descriptor.to_dict() if descriptor is not None else None,
            },
            cause=event,
        )
        if descriptor is not None:  # issue 19: the fleet graph holds production's APIs and dependencies
            try:
                await self._record_release(event, descriptor, commit)
            except Exception as exc:  # noqa: BLE001 - a derived view: the release stands, the log file says why
                log.warning("release of %s %s not written to the fleet graph: %s", service, commit[:12], exc)
        started = await self.log.latest(EventType.DEPLOY_STARTED, run=event.runid, deployment_id=deployment_id)
        if started is not None:  # the new production serves the stable address (service show, pilotage up)
            canary = started.data.get("canary") or {}
            up: dict[str, Any] = {"service": service, "commit": commit, "url": str(started.data.get("proxy_url", ""))}
            up |= {"instance_url": str(canary.get("url", "")), "pid": int(canary.get("pid", 0)), "reason": "released"}
            await self.emit(EventType.SERVICE_UP, up, cause=event)

    async def _record_release(self, event: CloudEvent, descriptor: ServiceDescriptor, commit: str) -> None:
        """Write the released service's APIs, operations and dependencies to the graph (issue 19).

        :func:`pilotage.fleet.graph.record_service`, from the run's document of the new production (a served one
        is cached for later, :func:`pilotage.fleet.documents.remember_document`).
        """
        spec = await self.latest(event.runid, EventType.SPEC_PROPOSED)
        tested = await self.latest(event.runid, EventType.TESTS_COMPLETED)
        holder = spec or tested
        path = str(holder.data.get("spec_path") or "") if holder is not None else ""
        if not descriptor.openapi:
            path = ""
        if path and descriptor.openapi_served:
            remember_document(self.ctx.settings, descriptor.name, commit, path)
        document = await asyncio.to_thread(load_spec, path) if path else None
        fleet = await load_fleet(self.ctx.bus)  # service.released is in: production is the new descriptor
        record_service(self.ctx.graph, descriptor, commit, document, live_descriptors(fleet))

    async def _release_standby(self, event: CloudEvent, state: RolloutState, after_s: float) -> None:
        await asyncio.sleep(after_s)
        if not await rollout_controller(self.ctx).release_standby(state.plan):
            return
        await self.emit(
            EventType.DEPLOY_STANDBY_RELEASED,
            {
                "deployment_id": state.deployment_id,
                "version": state.plan["baseline"]["version"],
                "reason": f"standby_s={after_s} elapsed",
            },
            cause=event,
        )

    async def _roll_back(self, event: CloudEvent, state: RolloutState, decision_id: str) -> None:
        run = await self.run_spec(event)
        judged = event.data
        verdict = await self.authorize(
            "rollback",
            {
                "service": run.service,
                "deployment_id": state.deployment_id,
                "version": state.plan["baseline"]["version"],
                "reason": str(judged.get("rationale") or ""),
                "strategy": state.strategy,
                "step": state.step,
                "canary": judged.get("canary", {}),
                "slo_error_rate": judged.get("slo_error_rate"),
                "decision_id": judged.get("decision_id", decision_id),
            },
            cause=event,
        )
        done = await rollout_controller(self.ctx).roll_back(state.plan)
        policy = f"policy verdict: allow={verdict.allow} engine={verdict.engine}"
        if verdict.override:
            policy += f" — {verdict.override}: {'; '.join(verdict.reasons)}"
        await self._report(event, state, done, [*done.actions, policy])

    async def _report(self, event: CloudEvent, state: RolloutState, done: RollbackDone, actions: list[str]) -> None:
        """Write the incident and publish ``incident.opened`` and ``deploy.rolled_back``."""
        run = await self.run_spec(event)
        judged = event.data
        incident_id = f"INC-{event.id[:8]}"
        summary = _summary(run.service, state, judged)
        evidence = {
            **(judged.get("assessment") or {}),
            "service": run.service,
            "deployment_id": state.deployment_id,
            "strategy": state.strategy,
            "phase": state.phase,
            "step": state.step,
            "weight": state.weight,
            "canary": judged.get("canary", {}),
            "baseline": judged.get("baseline", {}),
            "populations": [{"role": r, **(judged.get(r) or {})} for r in ("canary", "baseline") if judged.get(r)],
            "slo_error_rate": judged.get("slo_error_rate"),
            "window_s": judged.get("window_s"),
            "decision_id": judged.get("decision_id"),
            "rule": judged.get("rule", ""),
            "traffic": done.traffic,
            "protected_at": done.protected_at,
        }
        files = write_incident(
            run.artifacts_path / "incidents",
            incident_id,
            summary,
            {**evidence, "log_tail": done.log_tail},
            actions,
            repository=self.ctx.settings.incident_repository,
        )
        graph = self.ctx.graph
        dep = graph.upsert_node("Deployment", state.deployment_id, {"outcome": "rolled_back"})
        node_props = {"summary": summary, "report_path": str(files.markdown), "deployment_id": state.deployment_id}
        incident = graph.upsert_node("Incident", incident_id, {**node_props, "step": state.step})
        graph.upsert_edge(dep.id, "CAUSED", incident.id)
        await self.emit(
            EventType.INCIDENT_OPENED,
            {
                "incident_id": incident_id,
                "deployment_id": state.deployment_id,
                "summary": summary,
                "report_path": str(files.markdown),
                "github_payload_path": str(files.github_payload) if files.github_payload else None,
                "github_repository": self.ctx.settings.incident_repository,
                "evidence": evidence,
            },
            cause=event,
        )
        await self.emit(
            EventType.DEPLOY_ROLLED_BACK,
            {
                "deployment_id": state.deployment_id,
                "strategy": state.strategy,
                "version": state.plan["canary"]["version"],
                "phase": "watch" if state.weight >= 100 else state.phase,
                "reason": summary,
                "incident_id": incident_id,
                "protected_at": done.protected_at,
            },
            cause=event,
        )


def _summary(service: str, state: RolloutState, judged: dict[str, Any]) -> str:
    base_v, head_v = state.plan["baseline"]["version"], state.plan["canary"]["version"]
    where = {"watch": "post-promotion watch", "preview": "preview (0% of users)"}.get(state.phase, "step")
    share = "of targeting keys" if state.strategy == "feature-flag" else "traffic"
    where = f"{where} {state.step} ({state.weight}% {share})"
    back = f"flag {state.flag_key} turned off" if state.strategy == "feature-flag" else f"rolled back to {base_v}"
    rationale = str(judged.get("rationale") or "")
    if judged.get("cause") == "evidence_missing":
        return (
            f"{state.strategy} release {head_v} of {service} could not be judged at {where}, evidence missing: "
            f"{rationale}; {back} (fail closed)"
        )
    canary = judged.get("canary") or {}
    return (
        f"{state.strategy} release {head_v} of {service} failed {canary.get('errors', '?')} of "
        f"{canary.get('requests', '?')} requests ({float(canary.get('error_rate') or 0):.1%}) at {where}: "
        f"{rationale}; {back}"
    )


def _head_descriptor(code: dict[str, Any]) -> ServiceDescriptor | None:
    """The released commit's ``pilotage.yaml`` (``code.generated`` ``head_dir``), or None when it has none."""
    head = str(code.get("head_dir") or "")
    if not head or not (Path(head) / DESCRIPTOR_FILE).is_file():
        return None
    return load_descriptor(head)
