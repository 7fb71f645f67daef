"""The feature-delivery flow: one request carried from spec to a watched, costed rollout.

A flow does not orchestrate: agents react to each other's events (choreography). The flow only publishes
``dev.pilotage.flow.started``, declares which events close the run, enforces its time budget, and publishes
``dev.pilotage.flow.completed`` or ``dev.pilotage.flow.failed``.

Closing rule: the run is complete when ``model.updated`` (the learning agent recorded the rollout outcome)
and ``env.scaled_down`` (the cost agent scaled the idle environment to zero) have both arrived. The first
``agent.failed`` fails the run with that agent's one-line error. When the time budget runs out the run fails
with the last stage reached.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pilotage.agent import Agent, AgentContext, RunSpec
from pilotage.bus.base import Subscription
from pilotage.catalogue import checked_event
from pilotage.events import CloudEvent, EventType

__all__ = [
    "CLOSING_TYPES",
    "FlowResult",
    "closing_types",
    "new_run_id",
    "notify",
    "queued_event",
    "run_feature_delivery",
    "start_event",
]

SOURCE = "/pilotage/flows/feature_delivery"

_log = logging.getLogger(__name__)

#: Event types that must all arrive for a run that generates a service to complete (its environment is scaled
#: to zero once idle).
CLOSING_TYPES: frozenset[str] = frozenset({EventType.MODEL_UPDATED, EventType.ENV_SCALED_DOWN})
#: A delivery of a managed service (issue #17) completes once its outcome is learnt: the version it leaves
#: serving is the service's production, kept by the fleet, not an environment of the run.
DELIVERY_CLOSING_TYPES: frozenset[str] = frozenset({EventType.MODEL_UPDATED})


def closing_types(kind: str) -> frozenset[str]:
    """The event types that must all arrive for a run of ``kind`` (``generate``/``deliver``) to complete."""
    return DELIVERY_CLOSING_TYPES if kind == "deliver" else CLOSING_TYPES


def start_event(run: RunSpec) -> CloudEvent:
    """Return the ``flow.started`` event that hands ``run`` to the agents (in-process)."""
    return checked_event(EventType.FLOW_STARTED, run.model_dump(), source=SOURCE, subject=run.service, runid=run.run_id)


def queued_event(run: RunSpec) -> CloudEvent:
    """Return the ``flow.queued`` event that hands ``run`` to ``pilotage serve``, whose admission starts it.

    Issue 19, 5: :mod:`pilotage.flows.admission` publishes its ``flow.started`` when a place is free and no run of
    the same service is in progress.
    """
    return checked_event(EventType.FLOW_QUEUED, run.model_dump(), source=SOURCE, subject=run.service, runid=run.run_id)


def notify(on_event: Callable[[CloudEvent], None] | None, event: CloudEvent) -> None:
    """Call ``on_event`` (a live timeline) with ``event``; what it raises is logged, never the run's failure."""
    if on_event is None:
        return
    try:
        on_event(event)
    except Exception:
        _log.warning("the event callback failed on event %s (%s)", event.id, event.type, exc_info=True)


def new_run_id() -> str:
    """Return a new run id: ``run-`` + 12 hex characters (sortable enough to read, unique enough to key)."""
    return f"run-{uuid.uuid4().hex[:12]}"


@dataclass
class FlowResult:
    """How a run ended.

    Attributes:
        run_id: the run.
        status: ``completed`` or ``failed``.
        outcome: ``promoted``, ``rolled_back`` or ``none`` (no rollout happened).
        error: the one-line cause when failed.
        events: every event of the run in log order.
        duration_s: wall time from ``flow.started`` to the closing event.
    """

    run_id: str
    status: str
    outcome: str
    error: str | None
    events: list[CloudEvent] = field(default_factory=list)
    duration_s: float = 0.0

    def decisions(self) -> list[dict[str, Any]]:
        """Return the data of every ``decision.made`` event of the run, in order."""
        return [e.data for e in self.events if e.type == EventType.DECISION]


def _outcome(events: list[CloudEvent]) -> str:
    """Return ``rolled_back``, ``promoted``, ``paused`` or ``none`` from a run's events."""
    types = {e.type for e in events}
    if EventType.DEPLOY_ROLLED_BACK in types:
        return "rolled_back"
    if EventType.DEPLOY_PROMOTED in types:
        return "promoted"
    if EventType.DEPLOY_PAUSED in types:
        return "paused"
    return "none"


async def _await_close(
    closed: asyncio.Event, budget_s: float, subs: list[Subscription], seen: list[CloudEvent], failure: list[str]
) -> None:
    """Wait for the run to close; on timeout record the failure; on cancellation stop every consumer first."""
    try:
        await asyncio.wait_for(closed.wait(), budget_s)
    except TimeoutError:
        last = seen[-1].type if seen else EventType.FLOW_STARTED
        failure.append(f"flow: time budget of {budget_s:.0f} s ran out after {last}")
    except asyncio.CancelledError:  # interrupted (SIGINT/SIGTERM): stop consuming before the bus closes
        for sub in subs:
            await sub.stop()
        raise


async def run_feature_delivery(
    ctx: AgentContext,
    run: RunSpec,
    agents: list[Agent],
    *,
    budget_s: float = 900.0,
    on_event: Callable[[CloudEvent], None] | None = None,
) -> FlowResult:
    """Start ``agents``, publish ``flow.started`` for ``run`` and wait until the run closes or ``budget_s`` passes.

    Args:
        ctx: open backends.
        run: what to do (becomes the data of ``flow.started``).
        agents: the agents to subscribe (normally :func:`pilotage.app.all_agents`).
        budget_s: time budget in seconds (default 15 min: the demo needs about one).
        on_event: called with every event of the run as it arrives (the CLI's live timeline).

    Returns:
        The :class:`FlowResult`; a failed run is a result, not an exception, so the caller can report it.

    Raises:
        BackendError: the event log became unusable during the run (a publish that could not be written, a
            consumer stopped by a corrupt row: :meth:`~pilotage.bus.base.Bus.on_fatal`); raised at once, naming
            the log's path, instead of waiting for ``budget_s``.
    """
    bus = ctx.bus
    subs: list[Subscription] = []
    for agent in agents:
        subs.extend(await agent.start())
    seen: list[CloudEvent] = []
    closed = asyncio.Event()
    arrived: set[str] = set()
    failure: list[str] = []
    needed = closing_types(run.kind)

    async def watch(event: CloudEvent) -> None:
        if event.runid != run.run_id:
            return
        seen.append(event)
        notify(on_event, event)
        if event.type == EventType.AGENT_FAILED and not failure:
            data = event.data or {}
            failure.append(f"{data.get('agent', '?')}: {data.get('error', 'failed')}")
            closed.set()
        if event.type in needed:
            arrived.add(event.type)
            if arrived >= needed:
                closed.set()
        if event.type == EventType.DEPLOY_PAUSED:  # issue 3: an Inconclusive step held for a human ends the run
            closed.set()

    start = start_event(run)
    subs.append(await bus.subscribe("*", watch, group=f"flow.{run.run_id}", start_at_end_if_new=True))
    bus.on_fatal(lambda _error: closed.set())  # a log that cannot be written or read ends the wait at once
    t0 = time.monotonic()
    await bus.publish(start)
    await _await_close(closed, budget_s, subs, seen, failure)
    duration_s = time.monotonic() - t0
    for sub in subs:
        await sub.stop()
    if bus.fatal is not None:
        raise bus.fatal
    outcome = _outcome(seen)
    status = "failed" if failure else "completed"
    closing = checked_event(
        EventType.FLOW_FAILED if failure else EventType.FLOW_COMPLETED,
        {
            "run_id": run.run_id,
            "status": status,
            "outcome": outcome,
            "error": failure[0] if failure else None,
            "duration_s": round(duration_s, 3),
        },
        source=SOURCE,
        subject=run.service,
        runid=run.run_id,
    )
    await bus.publish(closing)
    seen.append(closing)
    notify(on_event, closing)
    return FlowResult(run.run_id, status, outcome, failure[0] if failure else None, seen, duration_s)
