"""The fleet keeper: each managed service's production version behind its stable address (issue #17).

The production commit of a service is a function of the log (:mod:`pilotage.fleet.registry`); the keeper makes
the runtime match it, through the one rollout controller (:class:`~pilotage.rollout.controller.RolloutController`
starts, re-weights and stops everything):

* :meth:`FleetKeeper.up` — export and prepare the production commit (cached), start it from its descriptor and
  open the stable route ``service:<name>`` on the service's stable port (``service.up``, reason ``up``);
* :meth:`FleetKeeper.watch` (under ``pilotage serve``, or during an in-process delivery) — every ``poll_s``: a
  stable route whose only backend's process died gets the production commit again (``service.up``, reason
  ``recreated``); with ``idle_after_s`` > 0, a route without a request for that long is scaled to zero — after
  the cost agent's ``cost.scale`` decision and the ``scale`` policy's verdict, both recorded — its instance
  stops, the route stays open (``service.down``, reason ``scaled_to_zero``);
* waking — a request to a cold route is held by the route while the keeper starts the production version again
  (the *waker* given to the route, as KEDA's HTTP add-on does); ``service.up`` (reason ``woken``) carries
  ``wake_s``, the seconds from that request's arrival to the version answering its health path;
* :meth:`FleetKeeper.down` — close every stable route and stop its instances (``service.down``, reason ``down``).

While a delivery's rollout runs on a stable route (two backends), the keeper leaves it alone: the rollout agent
owns it until the rollout ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pilotage.agent import AgentContext
from pilotage.bus.base import Subscription
from pilotage.catalogue import checked_event
from pilotage.errors import ConfigError, PilotageError, PolicyDenied
from pilotage.events import CloudEvent, EventType
from pilotage.fleet.checkout import descriptor_at, prepare
from pilotage.fleet.deps import dependency_graph, start_waves
from pilotage.fleet.registry import ManagedService, load_fleet, require_managed, stable_route_name
from pilotage.fleet.workload import production_data_dir, provider_addresses, workload_role
from pilotage.rollout.controller import rollout_controller

__all__ = ["FleetKeeper", "keep_fleet"]

_log = logging.getLogger(__name__)
SOURCE = "pilotage/fleet/keeper"


class FleetKeeper:
    """Keeps managed services' production versions serving (see the module docstring).

    Args:
        ctx: the control plane's backends (bus, runtime, settings).
        poll_s: seconds between two checks of :meth:`watch`.
        idle_after_s: seconds without a request before a production version is scaled to zero; 0 = never.
    """

    def __init__(self, ctx: AgentContext, *, poll_s: float = 1.0, idle_after_s: float = 0.0) -> None:
        self.ctx, self.poll_s, self.idle_after_s = ctx, poll_s, idle_after_s
        self.kept: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    async def up(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        """Start the production version of each managed service in ``names`` (default: all) not serving yet.

        Returns:
            The ``service.up`` data of each service started now (those already serving are skipped).

        Raises:
            InputError: a name is not managed.
            ConfigError, BackendError: a production version does not prepare or start (the services started
                before it keep serving).
        """
        fleet = await load_fleet(self.ctx.bus)
        wanted = names if names is not None else sorted(fleet)
        started = []
        for name in wanted:
            require_managed(fleet, name)
            if await self._serving(name, fleet[name].production_commit[:12]):
                self.kept.add(name)
                continue
            started.append(await self._start(fleet[name], "up"))
        return started

    async def _serving(self, name: str, version: str = "") -> bool:
        """The stable route of ``name`` has a backend (``version`` among them, when given)."""
        route = await self.ctx.runtime.get_route(stable_route_name(name))
        if route is None or not route.backends:
            return False
        return not version or version in route.backends

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def _start(self, service: ManagedService, reason: str, t0: float | None = None) -> dict[str, Any]:
        """Prepare and start ``service``'s production commit behind its stable route; publish ``service.up``.

        Marked as a production start on the controller from before the service's lock is taken, so a rollout
        waiting for the route times the service, not this queue (:meth:`ProductionRoutes.production_starting`).
        """
        starting = rollout_controller(self.ctx).production.production_starting(stable_route_name(service.name))
        with starting:
            return await self._start_locked(service, reason, t0)

    async def _start_locked(self, service: ManagedService, reason: str, t0: float | None) -> dict[str, Any]:
        async with self._lock(service.name):
            sha = service.production_commit
            root = self.ctx.settings.path_in_home("services").resolve() / service.name
            descriptor = await asyncio.to_thread(descriptor_at, service.repo_path, sha)
            prepared = await asyncio.to_thread(prepare, service.repo_path, sha, descriptor, root)
            data_dir = str(production_data_dir(self.ctx.settings, service.name))
            fleet = await load_fleet(self.ctx.bus)
            addresses = provider_addresses(fleet)  # issue 19: consumed providers
            role = workload_role(
                sha[:12], str(prepared.checkout), prepared.prepared, {}, addresses=addresses, data_dir=data_dir
            )
            instance, route = await rollout_controller(self.ctx).serve_production(
                service.name, role, stable_route_name(service.name), service.stable_port, self._waker(service.name)
            )
            self.kept.add(service.name)
            data = {
                "service": service.name,
                "commit": sha,
                "url": route.url,
                "instance_url": instance.url,
                "pid": instance.pid,
                "reason": reason,
            }
            if t0 is not None:
                data["wake_s"] = round(time.monotonic() - t0, 3)
            await self._publish(EventType.SERVICE_UP, data, service.name)
            await self._learn_operations(service.name, fleet)
            return data

    async def _learn_operations(self, name: str, fleet: dict[str, ManagedService]) -> None:
        """Write ``name``'s production to the graph once it serves a document of its own (``openapi: /path``).

        ``service add`` starts nothing to read such a document, so its API's operations stayed unknown; the stable
        address answers now (the document is read from it once per commit, then cached). Never raises: the reason
        is logged.
        """
        from pilotage.fleet.documents import DocumentSource
        from pilotage.fleet.onboard import record_managed

        try:
            if name in fleet and fleet[name].production_descriptor().openapi_served:
                note = await record_managed(self.ctx.graph, DocumentSource(self.ctx.settings), fleet, name)
                if note:
                    _log.warning("operations of %s still unknown: %s", name, note)
        except Exception:  # noqa: BLE001 - the graph is knowledge; production serves whatever it says
            _log.warning("could not write %s's operations to the graph", name, exc_info=True)

    def _waker(self, name: str) -> Callable[[], Awaitable[None]]:
        async def wake() -> None:
            t0 = time.monotonic()
            fleet = await load_fleet(self.ctx.bus)
            if name in fleet and not await self._serving(name):
                await self._start(fleet[name], "woken", t0)

        return wake

    async def _publish(self, kind: str, data: dict[str, Any], service: str) -> None:
        await self.ctx.bus.publish(checked_event(kind, data, source=SOURCE, subject=service))

    async def check(self) -> None:
        """One round of :meth:`watch`: re-create dead production versions, scale idle ones to zero."""
        fleet = await load_fleet(self.ctx.bus)
        for name in sorted(self.kept):
            if name in fleet:
                with contextlib.suppress(Exception):  # one service's failure must not stop the others' care
                    await self._check_one(fleet[name])

    async def _check_one(self, service: ManagedService) -> None:
        runtime = self.ctx.runtime
        route_name = stable_route_name(service.name)
        route = await runtime.get_route(route_name)
        version = service.production_commit[:12]
        if route is None or not route.backends or self._lock(service.name).locked():
            return  # closed, or cold (it wakes on a request)
        if route.weights.get(version) != 100:
            return  # a rollout in progress: the rollout agent owns the route until it ends
        instance = route.backends[version]  # production alone, or beside the previous version kept warm (standby)
        if not (await runtime.health(instance)).running:
            _log.warning("production of %s (pid %s) is not running: re-creating it", service.name, instance.pid)
            await self._start(service, "recreated")
            return
        if len(route.backends) != 1:
            return  # the warm standby of the last promotion: not idle yet
        idle_s = (await runtime.route_stats(route_name)).idle_s()
        if self.idle_after_s > 0 and idle_s >= self.idle_after_s and await self._scale_allowed(service, idle_s):
            stopped = await rollout_controller(self.ctx).scale_to_zero(route_name)
            if stopped:
                data = {"service": service.name, "commit": service.production_commit, "url": route.url}
                await self._publish(EventType.SERVICE_DOWN, data | {"reason": "scaled_to_zero"}, service.name)

    async def _scale_allowed(self, service: ManagedService, idle_s: float) -> bool:
        """The cost agent's ``cost.scale`` decision and the ``scale`` policy, as for a run's environment.

        Both are recorded (``decision.made``, ``policy.evaluated``) with the service's newest ``service.up`` as their
        cause; a deny (or an engine that cannot answer: fail closed) keeps the version running.
        """
        from pilotage.agents.cost import CostAgent
        from pilotage.bus.query import EventLog

        cause = await EventLog(self.ctx.bus).latest(EventType.SERVICE_UP, service=service.name)
        settings = self.ctx.settings
        price = settings.prices_usd_per_hour.get(settings.instance_size)
        if cause is None or price is None:
            return False
        cost = CostAgent(self.ctx)
        environment = stable_route_name(service.name)
        inputs = {
            "environment": environment,
            "idle_s": round(idle_s, 3),
            "idle_after_s": self.idle_after_s,
            "instances": 1,
            "price_usd_per_hour": price,
        }
        decision = await cost.decide("cost.scale", inputs, cause=cause)
        if decision.action != "scale_down":
            return False
        policy_input = {
            "service": service.name,
            "environment": environment,
            "direction": "down",
            "idle_s": round(idle_s, 3),
            "min_idle_s": self.idle_after_s,
            "instances": 1,
            "saving_usd_per_hour": decision.score["saving_usd_per_hour"],
        }
        try:
            await cost.authorize("scale", policy_input, cause=cause)
        except PolicyDenied:
            return False
        return True

    async def watch(self) -> None:
        """Run :meth:`check` every ``poll_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - the log file gets it; the keeper keeps watching
                _log.exception("fleet keeper check failed")

    async def down(self, names: list[str] | None = None) -> list[str]:
        """Close the stable routes of ``names`` (default: every service kept) and stop their instances.

        Returns:
            The services stopped.
        """
        fleet = await load_fleet(self.ctx.bus)
        stopped = []
        for name in sorted(names if names is not None else self.kept):
            route = await self.ctx.runtime.get_route(stable_route_name(name))
            if route is None:
                continue
            await rollout_controller(self.ctx).close_production(stable_route_name(name))
            self.kept.discard(name)
            stopped.append(name)
            commit = fleet[name].production_commit if name in fleet else ""
            await self._publish(
                EventType.SERVICE_DOWN, {"service": name, "commit": commit, "url": route.url, "reason": "down"}, name
            )
        return stopped


async def _bring_up_fleet(ctx: AgentContext, bring_up: Callable[[str], Awaitable[None]]) -> None:
    """Bring every managed service up, wave after wave (:func:`start_waves`), ``fleet_start_concurrency`` at once.

    A provider serves before its consumers start (a consumer may call it while it starts); services of one wave
    start together. ``bring_up`` records its own failures, so one failed start never stops the others.
    """
    fleet = await load_fleet(ctx.bus)
    descriptors = {}
    for name, service in fleet.items():
        with contextlib.suppress(ConfigError):  # a stored descriptor that no longer parses: its start says why
            descriptors[name] = service.production_descriptor()
    depends = dependency_graph(descriptors)
    graph = {name: depends.get(name, []) for name in fleet}
    gate = asyncio.Semaphore(ctx.settings.fleet_start_concurrency)

    async def bounded(name: str) -> None:
        async with gate:
            await bring_up(name)

    for wave in start_waves(graph):
        await asyncio.gather(*(bounded(name) for name in wave))


async def keep_fleet(
    ctx: AgentContext, *, idle_after_s: float, only: str | None = None
) -> tuple[FleetKeeper, list[Subscription], asyncio.Task[None]]:
    """Keep managed services' production serving: bring them up, follow ``service.added``, watch them.

    Under ``pilotage serve`` (``only`` None) every managed service is brought up, providers first and
    ``fleet_start_concurrency`` at once (:func:`_bring_up_fleet`); a one-shot ``pilotage run`` passes
    ``only=<its service>``: the service its codegen agent adds is brought up as soon as it is added (or re-added
    with a new production: the route then serves the new one). A service that does not prepare or start is recorded
    (``service.down``, reason ``failed``, with the error); the others and the control plane keep running.

    Returns:
        The keeper, the ``service.added`` subscription (stop it) and the :meth:`FleetKeeper.watch` task (cancel it).
    """
    keeper = FleetKeeper(ctx, idle_after_s=idle_after_s)

    async def bring_up(name: str) -> None:
        try:
            await keeper.up([name])
        except Exception as exc:  # noqa: BLE001 - one service's failure never stops the control plane
            line = exc.one_line() if isinstance(exc, PilotageError) else f"{type(exc).__name__}: {exc}"
            data = {"service": name, "commit": "", "url": "", "reason": "failed", "error": line[:2000]}
            await keeper._publish(EventType.SERVICE_DOWN, data, name)

    if only is None:
        await _bring_up_fleet(ctx, bring_up)

    async def on_added(event: CloudEvent) -> None:
        name = str((event.data or {}).get("service", ""))
        if only is None or name == only:
            await bring_up(name)

    sub = await ctx.bus.subscribe(EventType.SERVICE_ADDED, on_added, group="fleet.keeper", start_at_end_if_new=True)
    return keeper, [sub], asyncio.create_task(keeper.watch())
