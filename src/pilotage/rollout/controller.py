"""The rollout controller's hands: the one component that starts, stops and re-weights what a rollout runs.

Everything a rollout does to the runtime happens here — start the versions, open the stable route, move weights,
switch blue to green, turn a feature flag up or off, stop a canary, release the standby, scale an idle
environment to zero, re-create an environment after a control-plane restart. The decisions are made elsewhere:
the deployment agent chooses the strategy (``deploy.requested``), the reliability agent judges each step
(``slo.evaluated``), and :func:`pilotage.rollout.state.next_action` (called by
:class:`pilotage.agents.rollout.RolloutAgent`) chooses what to do next. The controller only uses the runtime
contract (:mod:`pilotage.runtime.base`), so any runtime that passes ``tests/contract/test_runtime.py`` can run a
rollout.

What each strategy runs (weights in percent; ``plan`` = the ``deploy.requested`` data):

* canary: baseline + canary behind the route at 100/0, synthetic user traffic through the route; a step sets
  ``100 − w / w``. One generator, the plan's ``traffic`` (built from the new version's document), feeds both
  versions through the route's split: they are judged on the same mix of requests.
* blue-green: the same route at 100/0; green also gets synthetic traffic at its own **preview** address (a
  route of its own with green alone, ``<deployment>#preview``) with 0 % of user traffic; the switch is one
  ``set_weights`` to 0/100, then preview traffic stops;
  blue keeps running as the hot standby. Two generators feed the two versions while green is previewed, so each
  gets what its clients send: the route's (blue, production) the plan's ``baseline_traffic`` — built from the
  production version's document, e.g. without a request field blue would refuse as invalid — and the preview's
  (green) ``traffic``; a plan without ``baseline_traffic`` (older plans, no production document) feeds both
  ``traffic``. At the switch the route's generator is restarted on ``traffic``
  (:func:`~pilotage.runtime.traffic_registry.restart_traffic`: same name, held if it was, counts carried on) for
  the watch.
* feature-flag: the new version gets ``PILOTAGE_OFREP_URL``/``PILOTAGE_FLAG_KEY`` and serves 100 % of the route
  from the start with the flag at 0 %; a step sets the flag's share of targeting keys on the control plane's OFREP
  server (:mod:`pilotage.runtime.flags`); rollback turns the flag off — no process restarts.

**Warm-up** (:meth:`RolloutController.warm_up`): once a canary or blue-green's green is started and ready, and
before synthetic traffic starts and the first step is analysed, it gets ``rollout_warmup_requests`` requests of
the traffic plan at its own address (:meth:`pilotage.runtime.traffic.TrafficGenerator.burst`), so a cold process
is not judged against a warm baseline (Argo Rollouts' analysis ``initialDelay``, Flagger's pre-rollout load-test
webhook). The analysis of a step starts from the counters of its first poll (samples are cumulative and judged
as increases from there, :mod:`pilotage.rollout.observation`), which comes after ``deploy.step`` and so after the
warm-up: warm-up requests are never judged. Their counts go into ``deploy.started`` (and ``deploy.resumed``)
``warmup``, which step 0 carries to its verdict. Feature-flag releases have nothing to warm: the new version has
served all requests (flag off) since it started.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilotage.agent import AgentContext
from pilotage.errors import BackendError
from pilotage.rollout.production import ProductionRoutes
from pilotage.rollout.state import preview_route_name
from pilotage.runtime.base import Instance, Route, Runtime, Workload
from pilotage.runtime.flags import FlagServer
from pilotage.runtime.traffic import TrafficGenerator, TrafficStats, has_requests
from pilotage.runtime.traffic_registry import restart_traffic, start_traffic, stop_traffic, traffic_unwritten
from pilotage.settings import Settings

__all__ = ["RollbackDone", "RolloutController", "role_workload", "rollout_controller"]

#: Key of the shared controller in :attr:`AgentContext.extras`.
_EXTRAS_KEY = "rollout_controller"


@dataclass
class RollbackDone:
    """What a rollback did.

    ``protected_at`` (Unix s) when users stopped reaching the bad version, the actions taken (one line each), the
    bad version's log tail and the synthetic traffic's counts.
    """

    protected_at: float
    actions: list[str] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)
    traffic: dict[str, Any] | None = None


def _describe(instance: Instance | None) -> dict[str, Any] | None:
    if instance is None:
        return None
    return {"version": instance.workload.version, "url": instance.url, "pid": instance.pid}


class RolloutController:
    """Performs every runtime action of every rollout of one control plane (see the module docstring).

    Args:
        runtime: the runtime (instances + routes contract).
        settings: timeouts (``service_ready_timeout_s``) and ``synthetic_traffic_rps``.
    """

    def __init__(self, runtime: Runtime, settings: Settings) -> None:
        self.runtime, self.settings = runtime, settings
        self._flags: FlagServer | None = None
        self._flags_lock = asyncio.Lock()
        #: The managed services' stable routes: wakers and production start marks (the fleet keeper's).
        self.production = ProductionRoutes(runtime, settings)

    # --- feature flags ---------------------------------------------------------------------------------------
    async def flags(self) -> FlagServer:
        """Return the control plane's OFREP flag server, starting it on the first use (127.0.0.1, free port)."""
        async with self._flags_lock:
            if self._flags is None:
                server = FlagServer()
                await server.start(port=self.settings.flags_port)
                self._flags = server
            return self._flags

    # --- launch ----------------------------------------------------------------------------------------------
    async def _start(self, service: str, role: dict[str, Any], extra_env: dict[str, str]) -> Instance:
        """Start one version; it may take its descriptor's ``ready_timeout_s`` (in ``role``), else the setting's."""
        ready_s = float(role.get("ready_timeout_s") or self.settings.service_ready_timeout_s)
        return await self.runtime.start(role_workload(service, role, extra_env), ready_timeout_s=ready_s)

    async def _flag_env(self, plan: dict[str, Any], percent: int) -> dict[str, str]:
        if plan["strategy"] != "feature-flag":
            return {}
        flags = await self.flags()
        flags.set_rollout(plan["flag_key"], percent)
        return {"PILOTAGE_OFREP_URL": flags.url, "PILOTAGE_FLAG_KEY": plan["flag_key"]}

    async def launch(self, plan: dict[str, Any]) -> dict[str, Any]:
        """Start both versions and the stable route of a ``deploy.requested`` plan; return the ``deploy.started`` data.

        The route starts at 100 % baseline (feature-flag: 100 % new version, flag at 0 %). Synthetic user traffic
        goes through the route; blue-green's green also gets traffic at its preview address.

        Raises:
            ConfigError, BackendError: as :meth:`Runtime.start`/:meth:`Runtime.create_route`; whatever started is
                stopped again first.
        """
        deployment_id, strategy = plan["deployment_id"], plan["strategy"]
        base_v, head_v = plan["baseline"]["version"], plan["canary"]["version"]
        if plan.get("route"):
            baseline, canary, route = await self._launch_on_stable_route(plan)
        else:
            started: list[Instance] = []
            try:
                baseline = await self._start(plan["service"], plan["baseline"], {})
                started.append(baseline)
                canary = await self._start(plan["service"], plan["canary"], await self._flag_env(plan, 0))
                started.append(canary)
                weights = {base_v: 0, head_v: 100} if strategy == "feature-flag" else {base_v: 100, head_v: 0}
                backends = {base_v: baseline, head_v: canary}
                route = await self.runtime.create_route(deployment_id, backends, weights, port=int(plan["proxy_port"]))
            except BaseException:
                for instance in started:
                    await self.runtime.stop(instance)
                raise
        preview_url = await self._open_preview(plan, canary) if strategy == "blue-green" else ""
        warmup = await self.warm_up(plan, canary)
        await self._start_traffic(plan, route.url, preview_url)
        return {
            "deployment_id": deployment_id,
            "strategy": strategy,
            "steps": plan["steps"],
            "commit": plan["commit"],
            "risk": plan["risk"],
            "baseline": _describe(baseline),
            "canary": _describe(canary),
            "proxy_url": route.url,
            "preview_url": preview_url,
            "flag_key": plan.get("flag_key", ""),
            "flags_url": self._flags.url if self._flags is not None and strategy == "feature-flag" else "",
            "traffic_paths": plan["traffic_paths"],
            "warmup": warmup,
            "traffic_plans": {base_v: _route_plan_key(plan, bool(preview_url)), head_v: "traffic"},
        }

    async def _launch_on_stable_route(self, plan: dict[str, Any]) -> tuple[Instance, Instance, Route]:
        """Add the new version to a managed service's stable route at 0 %, beside the production version it serves.

        The production instance is *adopted*: the rollout never starts it, and a rollback leaves it serving.

        Raises:
            BackendError: the stable route is not open or does not serve the plan's baseline (production) version.
            ConfigError, BackendError: the new version does not start (nothing else changed).
        """
        name, base_v, head_v = plan["route"], plan["baseline"]["version"], plan["canary"]["version"]
        baseline = await self.production.production_instance(name, base_v)
        canary = await self._start(plan["service"], plan["canary"], await self._flag_env(plan, 0))
        weights = {base_v: 0, head_v: 100} if plan["strategy"] == "feature-flag" else {base_v: 100, head_v: 0}
        try:
            await self.runtime.set_weights(name, weights, backends={base_v: baseline, head_v: canary})
        except BaseException:
            await self.runtime.stop(canary)
            raise
        snapshot = await self.runtime.get_route(name)
        assert snapshot is not None
        return baseline, canary, snapshot

    async def _open_preview(self, plan: dict[str, Any], canary: Instance) -> str:
        """Open blue-green's preview address and return its URL (idempotent).

        The preview is a route of its own with green alone: its proxy counts the preview's requests, for services
        judged on their proxy's SLIs.
        """
        name, head_v = preview_route_name(plan["deployment_id"]), plan["canary"]["version"]
        route = await self.runtime.get_route(name)
        if route is None:
            route = await self.runtime.create_route(name, {head_v: canary}, {head_v: 100})
        return route.url

    async def _close_preview(self, deployment_id: str) -> None:
        await stop_traffic(preview_route_name(deployment_id))
        await self.runtime.close_route(preview_route_name(deployment_id))

    async def warm_up(self, plan: dict[str, Any], instance: Instance) -> dict[str, Any] | None:
        """Send ``rollout_warmup_requests`` requests of the plan's traffic to a freshly started new version.

        Sent at ``instance``'s own address (not the route: no user and no route counter sees them), one after
        another (:meth:`~pilotage.runtime.traffic.TrafficGenerator.burst`), for at most ``service_ready_timeout_s``.
        Their answers are recorded, not judged: a version that fails them is judged on the step's own requests.

        Returns:
            ``{version, requests, sent, statuses, failures, unfilled, duration_s}`` (``requests`` the setting,
            ``statuses`` code → count, ``duration_s`` seconds the burst took), or None when nothing is sent: the
            setting is 0, a feature-flag release (already warm), or the plan has nothing to call.
        """
        count = self.settings.rollout_warmup_requests
        traffic = _head_traffic(plan)
        if count <= 0 or plan["strategy"] == "feature-flag" or not has_requests(traffic):
            return None
        began = time.monotonic()
        limit_s = float(self.settings.service_ready_timeout_s)
        generator = TrafficGenerator(instance.url, traffic, 1.0, duration_s=limit_s)  # a burst ignores the rate
        stats = (await generator.burst(count)).to_dict()
        return {
            "version": instance.workload.version,
            "requests": count,
            **{k: stats[k] for k in ("sent", "statuses", "failures", "unfilled")},
            "duration_s": round(time.monotonic() - began, 3),
        }

    async def _start_traffic(self, plan: dict[str, Any], route_url: str, preview_url: str) -> None:
        """Start the route's generator and, while blue-green previews (``preview_url``), the preview's.

        The route's sends ``plan[_route_plan_key(...)]`` (blue-green previewing: production's plan), the preview's
        the head plan; nothing to call → no generator, real traffic only.
        """
        rps, traffic = self.settings.synthetic_traffic_rps, _head_traffic(plan)
        if not has_requests(traffic):
            return
        production = _route_plan_key(plan, bool(preview_url)) == "baseline_traffic"
        route_traffic = plan["baseline_traffic"] if production else traffic
        await start_traffic(plan["deployment_id"], route_url, route_traffic, rps)
        if preview_url:
            await start_traffic(preview_route_name(plan["deployment_id"]), preview_url, traffic, rps)

    async def stop_traffic(self, deployment_id: str) -> TrafficStats | None:
        """Stop the synthetic traffic of a deployment (user and preview); return the user traffic's counts."""
        await stop_traffic(preview_route_name(deployment_id))
        return await stop_traffic(deployment_id)

    # --- steps -----------------------------------------------------------------------------------------------
    async def apply_step(self, plan: dict[str, Any], weight: int) -> None:
        """Move a rollout to ``weight`` % (route weight, or the flag's share for feature-flag). Idempotent.

        Blue-green: 0 % is the preview (nothing moves); 100 % is the atomic switch, after which preview traffic
        stops (green now gets the users) and the route's generator sends the head plan, ``traffic``, if it sent
        production's (:func:`~pilotage.runtime.traffic_registry.restart_traffic`: held if it was, its counts
        carried on).

        Raises:
            BackendError: the route is gone (the rollout was stopped or the environment scaled down).
        """
        deployment_id, strategy = plan["deployment_id"], plan["strategy"]
        if strategy == "feature-flag":
            (await self.flags()).set_rollout(plan["flag_key"], weight)
            return
        if strategy == "blue-green" and weight == 0:
            return
        route_name = _route_name(plan)
        await self._require_route(route_name)
        base_v, head_v = plan["baseline"]["version"], plan["canary"]["version"]
        await self.runtime.set_weights(route_name, {base_v: 100 - weight, head_v: weight})
        if strategy == "blue-green":
            learned = await traffic_unwritten(preview_route_name(deployment_id))  # green's unwritten operations
            await self._close_preview(deployment_id)
            if has_requests(_head_traffic(plan)):
                await restart_traffic(deployment_id, _head_traffic(plan), learned)

    async def _require_route(self, deployment_id: str) -> None:
        if await self.runtime.get_route(deployment_id) is None:
            raise BackendError(f"route {deployment_id} is closed", hint="the rollout was stopped; start it again")

    # --- conclusions -----------------------------------------------------------------------------------------
    async def roll_back(self, plan: dict[str, Any]) -> RollbackDone:
        """Protect users from the new version at once, then clean up; idempotent (safe to run again after a crash).

        canary / blue-green: baseline (or blue, the hot standby) to 100 % first, then the new version stopped;
        feature-flag: the flag off for everyone (the process keeps running, nothing restarts). Synthetic traffic
        stops in both cases.

        Raises:
            BackendError: the route is gone, or the version to go back to is not running (released standby).
        """
        deployment_id, head_v = plan["deployment_id"], plan["canary"]["version"]
        route = await self.runtime.get_route(_route_name(plan))
        canary = route.backends.get(head_v) if route is not None else None
        if plan["strategy"] == "feature-flag":
            (await self.flags()).flag_off(plan["flag_key"])
            done = RollbackDone(time.time(), [f"feature flag {plan['flag_key']} off for every targeting key"])
            if plan.get("route"):  # a managed service: then production alone on its stable route again
                done.actions.extend((await self._switch_back(plan, route)).actions)
        else:
            done = await self._switch_back(plan, route)
        if canary is not None:
            done.log_tail = await self.runtime.log_tail(canary, lines=15)
            if plan["strategy"] != "feature-flag" or plan.get("route"):
                await self.runtime.stop(canary)
                done.actions.append(f"new version {head_v} (pid {canary.pid}) stopped")
        traffic = await self.stop_traffic(deployment_id)
        await self._close_preview(deployment_id)
        done.traffic = traffic.to_dict() if traffic is not None else None
        done.actions.append("synthetic traffic stopped")
        return done

    async def _switch_back(self, plan: dict[str, Any], route: Route | None) -> RollbackDone:
        deployment_id = plan["deployment_id"]
        base_v, head_v = plan["baseline"]["version"], plan["canary"]["version"]
        if route is None:
            raise BackendError(f"cannot roll back {deployment_id}: its route is closed", hint="start the rollout again")
        baseline = route.backends.get(base_v)
        if baseline is None or not (await self.runtime.health(baseline)).running:
            raise BackendError(
                f"cannot roll back {deployment_id}: previous version {base_v} is not running",
                hint="raise standby_s above post_promotion_watch_s",
            )
        if plan.get("route"):  # a managed service: production alone on its stable route again
            await self.runtime.set_weights(plan["route"], {base_v: 100}, backends={base_v: baseline})
            return RollbackDone(
                time.time(), [f"stable route {plan['route']}: production {base_v} 100%, {head_v} removed"]
            )
        await self.runtime.set_weights(deployment_id, {base_v: 100, head_v: 0})
        return RollbackDone(time.time(), [f"traffic weights set to {base_v} 100% / {head_v} 0%"])

    async def promote(self, plan: dict[str, Any]) -> TrafficStats | None:
        """Conclude a healthy rollout: the new version keeps 100 % (route or flag); synthetic traffic stops."""
        stats = await self.stop_traffic(plan["deployment_id"])
        await self._close_preview(plan["deployment_id"])
        return stats

    async def release_standby(self, plan: dict[str, Any]) -> bool:
        """Stop the previous version kept warm after promotion; False when there is nothing to stop.

        Nothing happens when the route is gone, the previous version still has weight, or it already stopped.
        """
        route = await self.runtime.get_route(_route_name(plan))
        base_v, head_v = plan["baseline"]["version"], plan["canary"]["version"]
        standby = route.backends.get(base_v) if route is not None else None
        if route is None or standby is None or route.weights.get(base_v):
            return False
        if plan.get("route") and head_v in route.backends:  # the new production alone on the stable route
            await self.runtime.set_weights(plan["route"], {head_v: 100}, backends={head_v: route.backends[head_v]})
        if not (await self.runtime.health(standby)).running:
            return False
        await self.runtime.stop(standby)
        return True

    async def scale_down(self, deployment_id: str) -> int:
        """Stop every running instance of an idle environment and close its route; return how many stopped."""
        route = await self.runtime.get_route(deployment_id)
        if route is None:
            return 0
        stopped = 0
        for instance in route.backends.values():
            if (await self.runtime.health(instance)).running:
                await self.runtime.stop(instance)
                stopped += 1
        await self.runtime.close_route(deployment_id)
        await self.stop_traffic(deployment_id)
        await self._close_preview(deployment_id)
        return stopped

    # --- crash recovery --------------------------------------------------------------------------------------
    async def recreate(self, plan: dict[str, Any], *, phase: str, weight: int) -> dict[str, Any]:
        """Re-create a deployment's environment after a control-plane restart; return the ``deploy.resumed`` data.

        ``phase``: ``rollout`` (both versions at ``weight``, synthetic traffic, blue-green preview traffic while at
        0 %), ``promoted`` (the new version alone at 100 %) or ``rolled_back`` (the baseline alone). A feature-flag
        rollout gets its flag back at ``weight`` (0 after a rollback). A managed service's plan (``route``) is
        always in ``rollout`` here: the new version is started again beside the production version the fleet
        keeper serves on the stable route (what a finished rollout left serving is production, kept by the keeper).

        Raises:
            ConfigError, BackendError: as :meth:`launch`; whatever started is stopped again first.
        """
        if plan.get("route"):
            return await self._recreate_on_stable_route(plan, weight)
        deployment_id, strategy = plan["deployment_id"], plan["strategy"]
        roles = {"rollout": ("baseline", "canary"), "promoted": ("canary",), "rolled_back": ("baseline",)}[phase]
        flag_percent = weight if phase != "rolled_back" else 0
        started: dict[str, Instance] = {}
        try:
            for role in roles:
                extra = await self._flag_env(plan, flag_percent) if role == "canary" else {}
                started[role] = await self._start(plan["service"], plan[role], extra)
            weights = self._recreated_weights(plan, started, phase, weight)
            backends = {plan[role]["version"]: instance for role, instance in started.items()}
            route = await self.runtime.create_route(deployment_id, backends, weights, port=int(plan["proxy_port"]))
        except BaseException:
            for instance in started.values():
                await self.runtime.stop(instance)
            raise
        previewing = strategy == "blue-green" and phase == "rollout" and weight == 0
        preview = await self._open_preview(plan, started["canary"]) if previewing else ""
        warmup = await self.warm_up(plan, started["canary"]) if phase == "rollout" else None
        if phase == "rollout":
            await self._start_traffic(plan, route.url, preview)
        return {
            "deployment_id": deployment_id,
            "phase": phase,
            "weight": weight,
            "baseline": _describe(started.get("baseline")),
            "canary": _describe(started.get("canary")),
            "proxy_url": route.url,
            "preview_url": preview,
            "reason": f"control plane restarted: the {phase} environment of {deployment_id} is re-created from the log",
            "warmup": warmup,
        }

    async def _recreate_on_stable_route(self, plan: dict[str, Any], weight: int) -> dict[str, Any]:
        """Resume a managed service's rollout: the new version again beside production (kept by the fleet keeper)."""
        name, base_v, head_v = plan["route"], plan["baseline"]["version"], plan["canary"]["version"]
        baseline = await self.production.production_instance(name, base_v)
        canary = await self._start(plan["service"], plan["canary"], await self._flag_env(plan, weight))
        started = {"baseline": baseline, "canary": canary}
        try:
            weights = self._recreated_weights(plan, started, "rollout", weight)
            await self.runtime.set_weights(name, weights, backends={base_v: baseline, head_v: canary})
        except BaseException:
            await self.runtime.stop(canary)
            raise
        route = await self.runtime.get_route(name)
        assert route is not None
        previewing = plan["strategy"] == "blue-green" and weight == 0
        preview = await self._open_preview(plan, canary) if previewing else ""
        warmup = await self.warm_up(plan, canary)
        await self._start_traffic(plan, route.url, preview)
        return {
            "deployment_id": plan["deployment_id"],
            "phase": "rollout",
            "weight": weight,
            "baseline": _describe(baseline),
            "canary": _describe(canary),
            "proxy_url": route.url,
            "preview_url": preview,
            "reason": f"control plane restarted: {head_v} is back beside production {base_v} on {name} at {weight} %",
            "warmup": warmup,
        }

    @staticmethod
    def _recreated_weights(
        plan: dict[str, Any], started: dict[str, Instance], phase: str, weight: int
    ) -> dict[str, int]:
        if phase != "rollout":
            return {plan[role]["version"]: 100 for role in started}
        base_v, head_v = plan["baseline"]["version"], plan["canary"]["version"]
        if plan["strategy"] == "feature-flag":
            return {base_v: 0, head_v: 100}
        return {base_v: 100 - weight, head_v: weight}

    # --- production of managed services (issue 17; driven by pilotage.fleet.keeper) ---------------------------
    async def serve_production(
        self,
        service: str,
        role: dict[str, Any],
        route_name: str,
        port: int,
        waker: Callable[[], Awaitable[None]],
    ) -> tuple[Instance, Route]:
        """Start a production version and make it the only backend of its stable route (opened on ``port``).

        An open route (scaled to zero, or serving a dead instance) gets the new instance in place of its backends,
        which are stopped (a warm standby of the last promotion included); ``waker`` is remembered and given to a
        new route: a request to the route while it is cold calls it.

        Raises:
            ConfigError, BackendError: the version does not start, or the port is taken (nothing is left running).
        """
        instance = await self._start(service, role, {})
        version = instance.workload.version
        replaced: list[Instance] = []
        try:
            current = await self.runtime.get_route(route_name)
            if current is None:
                await self.runtime.create_route(route_name, {version: instance}, {version: 100}, port=port, waker=waker)
            else:
                await self.runtime.set_weights(route_name, {version: 100}, backends={version: instance})
                replaced = list(current.backends.values())
        except BaseException:
            await self.runtime.stop(instance)
            raise
        for old in replaced:  # a dead production process, or the previous version kept warm after a promotion
            await self.runtime.stop(old)
        self.production.register_waker(route_name, waker)
        route = await self.runtime.get_route(route_name)
        assert route is not None
        return instance, route

    async def scale_to_zero(self, route_name: str) -> int:
        """Stop every backend of a stable route and leave the route open and cold (it wakes on the next request).

        Returns:
            How many instances stopped (0 when the route is not open or already cold).
        """
        route = await self.runtime.get_route(route_name)
        if route is None or not route.backends:
            return 0
        await self.runtime.set_weights(route_name, {}, backends={})
        for instance in route.backends.values():
            await self.runtime.stop(instance)
        return len(route.backends)

    async def close_production(self, route_name: str) -> int:
        """Close a stable route and stop its backends (`pilotage down`); return how many instances stopped."""
        route = await self.runtime.get_route(route_name)
        if route is None:
            return 0
        await self.runtime.close_route(route_name)
        for instance in route.backends.values():
            await self.runtime.stop(instance)
        self.production.forget_waker(route_name)
        return len(route.backends)

    async def close(self) -> None:
        """Stop the flag server (the runtime closes its own instances and routes)."""
        if self._flags is not None:
            await self._flags.stop()
            self._flags = None


def _route_name(plan: dict[str, Any]) -> str:
    """The route a plan's rollout runs on: a managed service's stable route, else one named by the deployment id."""
    return str(plan.get("route") or plan["deployment_id"])


def _head_traffic(plan: dict[str, Any]) -> list[str] | dict[str, Any]:
    """The plan's traffic for the new version (issue 17; older plans: their GET paths)."""
    return plan.get("traffic") or list(plan["traffic_paths"])


def _route_plan_key(plan: dict[str, Any], previewing: bool) -> str:
    """Which plan key the route's generator sends: ``baseline_traffic`` while blue-green previews, if it has any."""
    return "baseline_traffic" if previewing and has_requests(plan.get("baseline_traffic")) else "traffic"


def role_workload(service: str, role: dict[str, Any], extra_env: dict[str, str] | None = None) -> Workload:
    """The :class:`Workload` of one version of a plan (``{version, path, env}`` + a descriptor's start fields)."""
    return Workload(
        service,
        str(role["version"]),
        Path(role["path"]),
        env={**role.get("env", {}), **(extra_env or {})},
        command=str(role.get("command", "")),
        prepared=str(role.get("prepared", "")),
        health_path=str(role.get("health_path", "/healthz")),
        data_dir=str(role.get("data_dir", "")),
    )


def rollout_controller(ctx: AgentContext) -> RolloutController:
    """Return the control plane's one :class:`RolloutController` (created on first use, kept in ``ctx.extras``)."""
    controller = ctx.extras.get(_EXTRAS_KEY)
    if controller is None:
        controller = RolloutController(ctx.runtime, ctx.settings)
        ctx.extras[_EXTRAS_KEY] = controller
    return controller
