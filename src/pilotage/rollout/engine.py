"""The rollout engine: canary steps or a blue-green switch, fast rollback, post-promotion watch, hot standby.

One :class:`Rollout` drives one deployment on a :class:`~pilotage.runtime.base.Runtime` route between a baseline
and a canary instance:

1. **Steps.** Canary: for each weight of ``config.steps`` set the split and analyse for ``config.pause_s``
   seconds, polling both versions every ``config.poll_s``. Blue-green: one switch to 100 % (the new version was
   health-checked when it started), then the watch below.
2. **Fast rollback.** Every poll runs :func:`pilotage.rollout.analysis.assess`; the first **Fail** sets the
   baseline to 100 % at once (the remaining steps are skipped, nothing waits for the end of the pause), then
   stops the canary and writes the incident. A canary process that exited is a Fail without waiting for metrics.
3. **Inconclusive policy** (documented default ``on_inconclusive = "rollback"``, fail closed): a step whose pause
   ends Inconclusive (source errors, empty PromQL result, unknown SLO metric, too little traffic, a version that
   stopped exposing metrics) is held at its weight and analysed for up to ``inconclusive_grace_s`` more; still
   Inconclusive → roll back (``"rollback"``) or stop at the current weight and return ``paused`` for a human
   (``"pause"``). Inconclusive never advances a step.
4. **Post-promotion watch.** After 100 % the burn-rate alerts (and a binomial error test against the SLO's
   allowed rate) keep running for ``watch_s``; a Fail switches traffic back to the standby.
5. **Hot standby.** The previous version keeps running ``standby_s`` after promotion (rollback is then a weight
   change, not a start); :meth:`Rollout.release_standby` / the scheduled task stops it afterwards.

Progress is reported through ``on_event(kind, data)`` (kinds: ``step``, ``assessment``, ``rolled_back``,
``promoted``, ``paused``, ``standby_released``); the agents turn those into bus events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pilotage.errors import BackendError, InputError
from pilotage.observe.burn_rate import ROLLOUT_TIME_SCALE
from pilotage.observe.judge import JudgeConfig, Outcome
from pilotage.observe.prometheus import MetricSource
from pilotage.observe.slo import SLOSpec
from pilotage.rollout.analysis import Assessment
from pilotage.rollout.observation import AnalysisSettings, observe
from pilotage.runtime.base import Instance, Route, Runtime

__all__ = ["EventSink", "Rollout", "RolloutConfig", "RolloutResult"]

EventSink = Callable[[str, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class RolloutConfig:
    """How a rollout proceeds. Units: seconds (``_s``), percent weights.

    Attributes:
        strategy: ``canary`` (weights ``steps``) or ``blue-green`` (one switch, then the watch).
        steps: canary weights, increasing, last 100 (Argo Rollouts' example steps by default).
        pause_s: analysis time per step (the strategy's pause).
        poll_s: interval between two samples of each version.
        watch_s: post-promotion watch (burn rates keep running); 0 disables it.
        standby_s: how long the previous version stays warm after promotion.
        on_inconclusive: ``rollback`` (default, fail closed) or ``pause`` once the grace has run out.
        inconclusive_grace_s: extra analysis of an Inconclusive step before the policy applies.
        time_scale: burn-rate window scale (1/720: 1 h → 5 s).
        min_requests: minimum-request guard of the burn-rate alerts.
        judge: thresholds of the canary judge.
        stop_canary_on_rollback: stop the canary process after the switch (benchmarks keep it to reuse it).
    """

    strategy: Literal["canary", "blue-green"] = "canary"
    steps: tuple[int, ...] = (10, 25, 50, 100)
    pause_s: float = 5.0
    poll_s: float = 0.5
    watch_s: float = 10.0
    standby_s: float = 300.0
    on_inconclusive: Literal["rollback", "pause"] = "rollback"
    inconclusive_grace_s: float = 5.0
    time_scale: float = ROLLOUT_TIME_SCALE
    min_requests: int = 20
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    stop_canary_on_rollback: bool = True

    def __post_init__(self) -> None:
        if self.strategy not in ("canary", "blue-green"):
            raise InputError(f"unknown strategy {self.strategy!r}", hint="canary or blue-green")
        if (
            not self.steps
            or self.steps[-1] != 100
            or any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False))
        ):
            raise InputError(f"steps {self.steps} must increase to 100", hint="e.g. (10, 25, 50, 100)")
        if self.on_inconclusive not in ("rollback", "pause"):
            raise InputError(f"on_inconclusive {self.on_inconclusive!r}", hint="rollback or pause")


@dataclass
class RolloutResult:
    """How a rollout ended: ``outcome`` (promoted / rolled_back / paused), when and why, with the evidence.

    ``rolled_back_at`` is the Unix time (s) the baseline got 100 % of the traffic; ``phase`` is ``step`` or
    ``watch``; ``assessment`` the analysis that decided.
    """

    outcome: str
    reason: str = ""
    phase: str = ""
    step: int = -1
    weight: int = 0
    rolled_back_at: float | None = None
    assessment: Assessment | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class Rollout:
    """Drives one deployment; see the module docstring.

    Args:
        runtime: where the route lives.
        route: the traffic split between ``baseline`` and ``canary`` (versions = their workload versions).
        baseline, canary: the running instances.
        source: where samples come from (direct scrape or PromQL).
        slo: the service's objectives.
        config: steps, pauses and policies.
        on_event: optional async sink of progress events.
        alive: optional check that an instance's process still runs (a dead canary fails at once).
    """

    def __init__(
        self,
        runtime: Runtime,
        route: Route,
        baseline: Instance,
        canary: Instance,
        source: MetricSource,
        slo: SLOSpec,
        config: RolloutConfig,
        *,
        on_event: EventSink | None = None,
        alive: Callable[[Instance], bool] | None = None,
    ) -> None:
        self.runtime, self.route, self.source, self.slo, self.config = runtime, route, source, slo, config
        self.baseline, self.canary = baseline, canary
        self.base_v, self.canary_v = baseline.workload.version, canary.workload.version
        self.on_event, self.alive = on_event, alive
        self.standby_task: asyncio.Task[None] | None = None
        self._history: list[dict[str, Any]] = []

    async def _emit(self, kind: str, data: dict[str, Any]) -> None:
        if self.on_event is not None:
            await self.on_event(kind, data)

    async def _observe(self, duration_s: float, with_baseline: bool, grace_s: float = 0.0) -> Assessment:
        """Poll for ``duration_s`` (+ ``grace_s`` while Inconclusive); return at the first Fail, else the last verdict.

        :func:`pilotage.rollout.observation.observe` does the work (the reliability agent uses it too).
        """
        settings = AnalysisSettings(self.config.judge, self.config.time_scale, self.config.min_requests)
        seen = await observe(
            self.source,
            self.slo,
            self.canary,
            self.baseline if with_baseline else None,
            duration_s=duration_s,
            poll_s=self.config.poll_s,
            grace_s=grace_s,
            settings=settings,
            alive=self.alive,
        )
        return seen.assessment

    async def run(self) -> RolloutResult:
        """Run the rollout to its end: promoted (and watched), rolled back, or paused."""
        steps = (100,) if self.config.strategy == "blue-green" else self.config.steps
        for index, weight in enumerate(steps):
            await self.runtime.set_weights(self.route, {self.base_v: 100 - weight, self.canary_v: weight})
            await self._emit("step", {"step": index, "weight": weight, "strategy": self.config.strategy})
            if weight == 100:
                break  # promotion: judged by the post-promotion watch
            found = await self._observe(self.config.pause_s, True, self.config.inconclusive_grace_s)
            await self._emit("assessment", {"step": index, "weight": weight, **found.to_dict()})
            self._history.append({"step": index, "weight": weight, "outcome": found.outcome.value})
            if found.outcome is Outcome.FAIL:
                return await self.rollback(found, "step", index, weight)
            if found.outcome is Outcome.INCONCLUSIVE:
                if self.config.on_inconclusive == "rollback":
                    return await self.rollback(found, "step", index, weight)
                await self._emit("paused", {"step": index, "weight": weight, **found.to_dict()})
                return RolloutResult("paused", found.summary(), "step", index, weight, None, found, self._history)
        return await self._promote_and_watch(len(steps) - 1)

    async def _promote_and_watch(self, step: int) -> RolloutResult:
        self.standby_task = asyncio.create_task(self._standby_timer(), name=f"standby-{self.route.name}")
        await self._emit(
            "promoted",
            {
                "version": self.canary_v,
                "standby": self.base_v,
                "standby_s": self.config.standby_s,
                "watch_s": self.config.watch_s,
            },
        )
        if self.config.watch_s <= 0:
            return RolloutResult("promoted", "no watch", "watch", step, 100, None, None, self._history)
        found = await self._observe(self.config.watch_s, with_baseline=False)
        await self._emit("assessment", {"step": step, "weight": 100, "phase": "watch", **found.to_dict()})
        self._history.append({"step": step, "weight": 100, "phase": "watch", "outcome": found.outcome.value})
        if found.outcome is Outcome.FAIL:
            return await self.rollback(found, "watch", step, 100)
        return RolloutResult("promoted", found.summary(), "watch", step, 100, None, found, self._history)

    async def _standby_timer(self) -> None:
        await asyncio.sleep(self.config.standby_s)
        await self.release_standby()

    async def release_standby(self) -> None:
        """Stop the previous version kept warm after promotion (idempotent; only while the canary has 100 %)."""
        if self.route.weights.get(self.canary_v) == 100:
            await self.runtime.stop(self.baseline)
            await self._emit("standby_released", {"version": self.base_v})

    async def rollback(self, found: Assessment, phase: str, step: int, weight: int) -> RolloutResult:
        """Baseline to 100 % first (the fast path), then stop the canary and report ``rolled_back``.

        Raises:
            BackendError: the standby was already released during the watch (nothing to switch back to).
        """
        if self.standby_task is not None:
            self.standby_task.cancel()
        if self.alive is not None and not self.alive(self.baseline):
            raise BackendError(
                f"cannot roll back {self.route.name}: standby {self.base_v} is not running",
                hint="raise standby_s above watch_s",
            )
        await self.runtime.set_weights(self.route, {self.base_v: 100, self.canary_v: 0})
        at = time.time()
        if self.config.stop_canary_on_rollback:
            await self.runtime.stop(self.canary)
        reason = found.summary()
        await self._emit(
            "rolled_back",
            {"phase": phase, "step": step, "weight": weight, "at": at, "reason": reason, **found.to_dict()},
        )
        return RolloutResult("rolled_back", reason, phase, step, weight, at, found, self._history)
