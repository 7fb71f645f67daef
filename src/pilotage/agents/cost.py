"""The cost agent: scale an environment to zero once nobody has used it for ``idle_after_s``.

Perceive (on ``deploy.promoted`` / ``deploy.rolled_back``): the route of the deployment (the environment) and the
wall-clock time of its last request, polled every ``poll_s`` from the runtime's route counters.

Reason (``cost.scale``, pure): :func:`idle_reasoning` — idle when ``idle_s ≥ idle_after_s``.

Act: ``authorize("scale")``, stop the environment's running instances and its proxy, emit ``env.scaled_down``.

Learn: an ``Environment`` node (the cost ledger entry: instances stopped, hourly saving and its price source)
with ``Deployment -RAN_IN-> Environment`` and ``Service -HAS_ENVIRONMENT-> Environment``.

The watch never blocks the bus: :meth:`CostAgent.handle` runs it as a task (errors still become
``agent.failed``), and the watch itself is bounded by ``idle_after_s + max_busy_s``: an environment that keeps
receiving traffic that long is left running and the watch ends (the next rollout starts a new one).

Crash safety (issue #7): because the watch runs as a task, the bus acknowledges the outcome event before the watch
ends, so a crash loses the watch, not the event. :meth:`CostAgent.start` therefore resumes, from the log, the watch
of every environment of an open run whose rollout ended (``deploy.promoted`` / ``deploy.rolled_back``) and that
was not scaled down (``env.scaled_down``); one watch per environment at a time.

Price: ``settings.prices_usd_per_hour[settings.instance_size]`` per instance (AWS EC2 on-demand t3 Linux,
us-east-1, see :class:`~pilotage.settings.Settings`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

from pilotage.agent import Agent, AgentContext, Reasoning
from pilotage.bus.base import Subscription
from pilotage.errors import ConfigError
from pilotage.events import CloudEvent, EventType
from pilotage.rollout.controller import rollout_controller

__all__ = ["MAX_BUSY_S", "PRICE_SOURCE", "CostAgent", "idle_reasoning"]

#: Give up watching an environment that stays busy this long past ``idle_after_s`` (one day), seconds.
MAX_BUSY_S = 86_400.0
#: Where the prices in settings come from (shown in ``env.scaled_down``).
PRICE_SOURCE = "AWS EC2 on-demand Linux us-east-1 t3.{size} (settings.prices_usd_per_hour)"


def idle_reasoning(inputs: dict[str, Any]) -> Reasoning:
    """Scale to zero when the environment has been idle long enough (pure).

    ``inputs``: ``idle_s``, ``idle_after_s``, ``instances`` (running), ``price_usd_per_hour`` (per instance).
    Rule: ``idle_s ≥ idle_after_s`` → ``scale_down`` (stop the instances still running and the proxy), else
    ``keep``. The saving is ``instances × price_usd_per_hour``.
    """
    idle_s, threshold = float(inputs["idle_s"]), float(inputs["idle_after_s"])
    instances, price = int(inputs["instances"]), float(inputs["price_usd_per_hour"])
    saving = round(instances * price, 6)
    scale = idle_s >= threshold
    rationale = (
        f"no request for {idle_s:.1f} s (threshold {threshold:.1f} s); {instances} instance(s) at "
        f"{price} USD/h each: " + (f"scale to zero, saving {saving} USD/h" if scale else "keep running")
    )
    return Reasoning(
        action="scale_down" if scale else "keep",
        rule="scale to zero when idle_s >= idle_after_s",
        score={"idle_s": round(idle_s, 3), "saving_usd_per_hour": saving},
        rationale=rationale,
    )


class CostAgent(Agent):
    """Watches finished rollouts and scales idle environments to zero.

    Args:
        ctx: the backends and settings.
        poll_s: seconds between idleness checks (capped at a quarter of ``idle_after_s``).
        max_busy_s: how long past ``idle_after_s`` a busy environment is watched before giving up.
    """

    name: ClassVar[str] = "cost"
    subscribes: ClassVar[tuple[str, ...]] = (EventType.DEPLOY_PROMOTED, EventType.DEPLOY_ROLLED_BACK)

    def __init__(self, ctx: AgentContext, *, poll_s: float = 1.0, max_busy_s: float = MAX_BUSY_S) -> None:
        super().__init__(ctx)
        self.poll_s = poll_s
        self.max_busy_s = max_busy_s
        self._watches: set[asyncio.Task[None]] = set()
        self._watching: set[str] = set()  # deployment ids watched now (crash safety: one watch per environment)

    def reason(self, kind: str, inputs: dict[str, Any]) -> Reasoning:
        """``cost.scale`` → :func:`idle_reasoning`."""
        if kind == "cost.scale":
            return idle_reasoning(inputs)
        return super().reason(kind, inputs)

    async def handle(self, event: CloudEvent) -> None:
        """Start the watch of ``event``'s environment as a task and return at once (the bus is not blocked)."""
        task = asyncio.create_task(super().handle(event), name=f"cost-watch-{event.id[:8]}")
        self._watches.add(task)
        task.add_done_callback(self._watches.discard)

    async def drain(self) -> None:
        """Wait for every running watch to end (tests, shutdown)."""
        while self._watches:
            await asyncio.gather(*list(self._watches), return_exceptions=True)

    # --- crash safety (issue #7) -------------------------------------------------------------------------------
    async def start(self, members: int = 1) -> list[Subscription]:
        """Subscribe, then resume the watch of every ended rollout of an open run not yet scaled down (from the log).

        ``members`` is ignored: :meth:`handle` returns at once, so one member serves any number of runs.
        """
        subs = await super().start()
        for event in await self._unwatched_outcomes():
            await self.handle(event)
        return subs

    async def _unwatched_outcomes(self) -> list[CloudEvent]:
        """Return the first outcome (promoted / rolled back) of each deployment not scaled down, in open runs."""
        outcomes: dict[str, CloudEvent] = {}
        scaled: set[str] = set()
        closed: set[str] = set()
        for event in await self.log.all(EventType.PREFIX + "*"):
            data = event.data if isinstance(event.data, dict) else {}
            if event.type in self.subscribes and data.get("deployment_id"):
                outcomes.setdefault(str(data["deployment_id"]), event)
            elif event.type == EventType.ENV_SCALED_DOWN:
                scaled.add(str(data.get("deployment_id") or data.get("environment")))
            elif event.type in (EventType.FLOW_COMPLETED, EventType.FLOW_FAILED):
                closed.add(event.runid)
        return [e for dep, e in outcomes.items() if dep not in scaled and e.runid not in closed]

    async def cancel(self) -> None:
        """Cancel every running watch (control-plane shutdown; the next start resumes them from the log)."""
        for task in list(self._watches):
            task.cancel()
        await asyncio.gather(*list(self._watches), return_exceptions=True)

    # --- end crash safety --------------------------------------------------------------------------------------

    async def on_event(self, event: CloudEvent) -> None:
        """Watch the deployment's route until idle, then scale it to zero (bounded loop)."""
        deployment_id = event.data["deployment_id"]
        if deployment_id in self._watching:
            return  # crash safety: this environment is watched already (resumed at start and redelivered)
        self._watching.add(deployment_id)
        try:
            await self._watch(event, deployment_id)
        finally:
            self._watching.discard(deployment_id)

    async def _watch(self, event: CloudEvent, deployment_id: str) -> None:
        run = await self.run_spec(event)
        if run.delivery:
            return  # issue 17: what a delivery leaves serving is the service's production (pilotage.fleet.keeper)
        # issue 17: a generated service's run rolls out on the service's stable route: that route is the
        # environment; scaled to zero it stays open and wakes on the next request (pilotage.fleet.keeper)
        requested = await self.latest(event.runid, EventType.DEPLOY_REQUESTED)
        stable_route = str((requested.data or {}).get("route") or "") if requested is not None else ""
        environment = stable_route or deployment_id
        settings = self.ctx.settings
        if settings.instance_size not in settings.prices_usd_per_hour:
            raise ConfigError(
                f"instance_size {settings.instance_size!r} has no price",
                hint=f"use one of {sorted(settings.prices_usd_per_hour)} or add it to prices_usd_per_hour",
            )
        price = settings.prices_usd_per_hour[settings.instance_size]
        idle_after_s = run.idle_after_s
        runtime = self.ctx.runtime
        poll_s = max(0.05, min(self.poll_s, idle_after_s / 4))
        deadline = time.monotonic() + idle_after_s + self.max_busy_s
        while time.monotonic() < deadline:
            route = await runtime.get_route(environment)
            if route is None or not route.backends:
                return  # closed (or scaled to zero) by someone else: nothing left to scale
            idle_s = (await runtime.route_stats(environment)).idle_s()
            if idle_s >= idle_after_s:
                break
            await asyncio.sleep(min(poll_s, max(0.05, idle_after_s - idle_s)))
        else:
            return  # busy for the whole watch: leave it running
        running = [i for i in route.backends.values() if (await runtime.health(i)).running]
        inputs = {
            "environment": environment,
            "idle_s": idle_s,
            "idle_after_s": idle_after_s,
            "instances": len(running),
            "price_usd_per_hour": price,
        }
        decision = await self.decide("cost.scale", inputs, cause=event)
        if decision.action != "scale_down":
            return
        await self.authorize(
            "scale",
            {
                "service": run.service,
                "environment": environment,
                "direction": "down",
                "idle_s": idle_s,
                "min_idle_s": idle_after_s,
                "instances": len(running),
                "saving_usd_per_hour": decision.score["saving_usd_per_hour"],
            },
            cause=event,
        )
        controller = rollout_controller(self.ctx)  # the one component that stops
        if stable_route:
            stopped = await controller.scale_to_zero(stable_route)
            await controller.stop_traffic(deployment_id)
        else:
            stopped = await controller.scale_down(deployment_id)
        saving = decision.score["saving_usd_per_hour"]
        source = PRICE_SOURCE.format(size=settings.instance_size)
        graph = self.ctx.graph
        env = graph.upsert_node(
            "Environment",
            deployment_id,
            {
                "service": run.service,
                "state": "scaled_to_zero",
                "idle_s": round(idle_s, 3),
                "instances_stopped": stopped,
                "instance_size": settings.instance_size,
                "saving_usd_per_hour": saving,
                "price_source": source,
                "decision_id": decision.id,
            },
        )
        graph.upsert_node("Service", run.service, {"name": run.service})
        graph.upsert_edge(f"Service:{run.service}", "HAS_ENVIRONMENT", env.id)
        if graph.get_node(f"Deployment:{deployment_id}") is not None:
            graph.upsert_edge(f"Deployment:{deployment_id}", "RAN_IN", env.id)
        await self.emit(
            EventType.ENV_SCALED_DOWN,
            {
                "environment": environment,
                "idle_s": round(idle_s, 3),
                "instances_stopped": stopped,
                "saving_usd_per_hour": saving,
                "price_source": source,
                "deployment_id": deployment_id,
            },
            cause=event,
        )
