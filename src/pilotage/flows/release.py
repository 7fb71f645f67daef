"""A release of several services (issue #19): one delivery each, in the planned order; a failure undoes the release.

:func:`run_release` records the order (:func:`pilotage.fleet.release.plan_release`) as a ``decision.made`` of
agent ``release``, kind ``release.order`` (``pilotage explain <id>`` shows it), then ``release.planned``; it runs
each member's delivery with the single-delivery flow (:func:`pilotage.flows.feature_delivery.run_feature_delivery`),
one after the other, on the same agents and backends. The first delivery that is not promoted stops the release:
the members already promoted are rolled back newest first (:func:`roll_back_member`) and ``release.rolled_back``
records what was undone; else ``release.completed``. The release's own events carry ``runid`` = the release id;
each delivery is a run of its own.

Rolling back a promoted member: its previous production is still warm beside it for ``standby_s`` after the
promotion (:class:`pilotage.agents.rollout.RolloutAgent`), so the controller puts it back alone on the stable route
and stops the new version (:meth:`pilotage.rollout.controller.RolloutController.roll_back`: a weight change); when
the standby was already released, the fleet keeper starts the previous production again. Either way
``service.released`` records the previous commit as production again (``run_id`` = the release id).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pilotage.agent import Agent, AgentContext, Decision, RunSpec
from pilotage.bus.query import EventLog
from pilotage.catalogue import checked_event
from pilotage.errors import BackendError
from pilotage.events import CloudEvent, EventType
from pilotage.fleet.keeper import FleetKeeper
from pilotage.fleet.registry import stable_route_name
from pilotage.fleet.release import Member, ReleasePlan, rollback_order
from pilotage.flows.feature_delivery import FlowResult, run_feature_delivery
from pilotage.rollout.controller import rollout_controller

__all__ = ["ORDER_RULE", "ReleaseResult", "record_plan", "roll_back_member", "run_release"]

SOURCE = "/pilotage/flows/release"
#: The rule of a release's ``release.order`` decision (README "Releases of several services").
ORDER_RULE = (
    "expand/contract: a provider's additive change before the consumers that need it; a consumer that stops using "
    "an operation before the provider that removes it; ties in the given order"
)


@dataclass
class ReleaseResult:
    """How a release ended: ``status`` ``completed`` or ``rolled_back``, the deliveries' results in order."""

    release_id: str
    decision_id: str
    status: str
    runs: list[FlowResult] = field(default_factory=list)
    rolled_back: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    duration_s: float = 0.0


async def _publish(ctx: AgentContext, kind: str, data: dict[str, Any], release_id: str) -> CloudEvent:
    event = checked_event(kind, data, source=SOURCE, subject=release_id, runid=release_id)
    await ctx.bus.publish(event)
    return event


async def record_plan(ctx: AgentContext, release_id: str, plan: ReleasePlan) -> str:
    """Publish the order as a ``decision.made`` (agent ``release``) and ``release.planned``; return the decision id."""
    decision_id = str(uuid.uuid4())
    decision = Decision(
        id=decision_id,
        agent="release",
        kind="release.order",
        inputs={"members": [f"{m.service}@{m.rev}" for m in plan.order], "edges": [e.to_dict() for e in plan.edges]},
        action="deliver " + " → ".join(m.service for m in plan.order),
        rule=ORDER_RULE,
        score={"services": len(plan.order), "constraints": len(plan.edges)},
        rationale=plan.summary(),
        run_id=release_id,
    )
    made = checked_event(
        EventType.DECISION, decision.to_dict(), source=SOURCE, subject=release_id, runid=release_id, id=decision_id
    )
    await ctx.bus.publish(made)
    edges = [e.to_dict() for e in plan.edges]
    data = {"release_id": release_id, "decision_id": decision_id, "order": plan.steps(), "edges": edges}
    await _publish(ctx, EventType.RELEASE_PLANNED, data, release_id)
    return decision_id


async def roll_back_member(
    ctx: AgentContext, keeper: FleetKeeper, member: Member, run_id: str, release_id: str, descriptor: dict[str, Any]
) -> dict[str, Any]:
    """Put ``member``'s previous production back on its stable route (see the module docstring).

    Args:
        ctx: the control plane's backends.
        keeper: starts the previous production when its standby is gone.
        member: the promoted member (``commit`` the new production, ``previous_commit`` the one to serve again).
        run_id: its delivery's run (its ``deploy.requested`` plan names the route and both versions).
        release_id: the release (``run_id`` of the ``service.released`` that records the previous commit again).
        descriptor: the previous production's descriptor (``service.released`` carries it back to the fleet).

    Returns:
        The ``release.rolled_back`` entry: service, commit, previous_commit, standby, actions.

    Raises:
        ConfigError, BackendError: the standby was gone and the previous production does not start again.
    """
    requested = await EventLog(ctx.bus).latest(EventType.DEPLOY_REQUESTED, run=run_id)
    plan = dict(requested.data) if requested is not None else {}
    standby = True
    try:
        actions = (await rollout_controller(ctx).roll_back(plan)).actions if plan else []
    except BackendError as exc:  # the warm standby was released (standby_s elapsed): start it again
        standby, actions = False, [f"no warm standby ({exc.message}): previous production started again"]
    if not plan:
        standby, actions = False, ["no rollout plan in the log: previous production started again"]
    released = {
        "service": member.service,
        "commit": member.previous_commit,
        "previous_commit": member.commit,
        "deployment_id": str(plan.get("deployment_id", "")),
        "run_id": release_id,
        "descriptor": descriptor,
        "rolled_back_run": run_id,  # the fleet shows that delivery as rolled back, not promoted
    }
    await _publish(ctx, EventType.SERVICE_RELEASED, released, release_id)
    if standby:
        await _announce_standby(ctx, member)
    else:
        await keeper.up([member.service])
    return {
        "service": member.service,
        "commit": member.commit,
        "previous_commit": member.previous_commit,
        "standby": standby,
        "actions": actions,
    }


async def _announce_standby(ctx: AgentContext, member: Member) -> None:
    """``service.up`` (reason ``release_rolled_back``): the warm previous version serves the stable address again."""
    route = await ctx.runtime.get_route(stable_route_name(member.service))
    instance = route.backends.get(member.previous_commit[:12]) if route is not None else None
    if route is None or instance is None:
        return
    data: dict[str, Any] = {"service": member.service, "commit": member.previous_commit, "url": route.url}
    data |= {"instance_url": instance.url, "pid": instance.pid, "reason": "release_rolled_back"}
    await _publish(ctx, EventType.SERVICE_UP, data, member.service)


def _failure(result: FlowResult) -> str:
    if result.status != "completed":
        return result.error or "failed"
    return f"ended {result.outcome}, not promoted"


async def run_release(
    ctx: AgentContext,
    release_id: str,
    plan: ReleasePlan,
    runs: dict[str, RunSpec],
    agents: list[Agent],
    keeper: FleetKeeper,
    descriptors: dict[str, dict[str, Any]],
    *,
    budget_s: float = 900.0,
    on_event: Callable[[CloudEvent], None] | None = None,
) -> ReleaseResult:
    """Deliver ``plan``'s members in order; on the first not promoted, roll back the promoted ones newest first.

    Args:
        ctx: the control plane's backends.
        release_id: the release (``rel-`` + 12 hex), the ``runid`` of its own events.
        plan: the members in delivery order (:func:`pilotage.fleet.release.plan_release`).
        runs: service → its delivery's :class:`RunSpec`.
        agents: the agents every delivery runs on (one set: the rollout agent keeps the standbys warm).
        keeper: the fleet keeper serving production (starts a previous production whose standby is gone).
        descriptors: service → its production descriptor before the release (given back on a rollback).
        budget_s: each delivery's time budget in seconds.
        on_event: called with every event of each delivery (the CLI's live timeline).

    Returns:
        The :class:`ReleaseResult` (a failed release is a result).
    """
    t0 = time.monotonic()
    decision_id = await record_plan(ctx, release_id, plan)
    result = ReleaseResult(release_id, decision_id, "completed")
    promoted: list[Member] = []
    for member in plan.order:
        run = runs[member.service]
        delivered = await run_feature_delivery(ctx, run, agents, budget_s=budget_s, on_event=on_event)
        result.runs.append(delivered)
        if delivered.status == "completed" and delivered.outcome == "promoted":
            promoted.append(member)
            continue
        result.status, result.error = "rolled_back", f"{member.service}: {_failure(delivered)}"
        by_name = {m.service: m for m in promoted}
        for name in rollback_order([m.service for m in promoted]):
            m = by_name[name]
            undone = await roll_back_member(ctx, keeper, m, runs[name].run_id, release_id, descriptors[name])
            result.rolled_back.append(undone)
        result.duration_s = round(time.monotonic() - t0, 3)
        data = {
            "release_id": release_id,
            "failed": member.service,
            "run_id": run.run_id,
            "error": result.error,
            "rolled_back": result.rolled_back,
            "not_delivered": [m.service for m in plan.order[len(result.runs) :]],
            "duration_s": result.duration_s,
        }
        await _publish(ctx, EventType.RELEASE_ROLLED_BACK, data, release_id)
        return result
    result.duration_s = round(time.monotonic() - t0, 3)
    data = {
        "release_id": release_id,
        "order": [m.service for m in plan.order],
        "runs": {m.service: runs[m.service].run_id for m in plan.order},
        "duration_s": result.duration_s,
    }
    await _publish(ctx, EventType.RELEASE_COMPLETED, data, release_id)
    return result
