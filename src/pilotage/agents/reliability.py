"""The reliability agent: judge each rollout step on measured error rates and roll back on a breach.

Terminology follows the Google SRE Workbook (2018), chapter 2 "Implementing SLOs" and chapter 16 "Canarying
Releases": the *SLI* is the share of requests answered without a server error (status 5xx), the *SLO* threshold
is ``settings.slo_error_rate`` (default 5 %), the canary population is compared with the control (baseline)
population over the same window.

Perceive (on ``deploy.step``): scrape ``/metrics`` of the baseline and the canary, wait
``settings.analysis_window_s`` while the synthetic traffic flows and then until the canary has served
``settings.min_requests_per_step`` requests (at most :data:`MAX_WAIT_FACTOR` × the window), scrape again. The
proxy's own per-version counters are recorded beside them and stand in for a canary whose ``/metrics`` cannot be
reached (a crashed canary still shows as 502s at the proxy).

Reason (``slo.judgement``, pure): :func:`judge`.

Act: emit ``slo.evaluated`` always. On ``rollback``: ``slo.breach``, ``authorize("rollback")``, baseline 100 %,
canary stopped, traffic stopped, an incident report ``<artifacts>/incidents/<incident_id>.md``,
``incident.opened`` and ``deploy.rolled_back``.

Learn: ``MetricSample`` nodes per version per step (``Deployment -MEASURED-> MetricSample``), an ``Incident`` node
(``Deployment -CAUSED-> Incident``) and the deployment's ``outcome``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import httpx

from pilotage.agent import Agent, Decision, Reasoning
from pilotage.agents.deployment import find_event, rollout_info
from pilotage.errors import BackendError, InputError
from pilotage.events import CloudEvent, EventType
from pilotage.observe.judge import JudgeConfig, Outcome, compare_error_counts
from pilotage.observe.metrics import MetricsSnapshot, RequestWindow, scrape, window
from pilotage.runtime.local import route_registry
from pilotage.runtime.proxy import RouteStats
from pilotage.runtime.traffic import stop_traffic

__all__ = ["MAX_WAIT_FACTOR", "ReliabilityAgent", "judge"]

#: A step waits at most this many analysis windows for ``min_requests_per_step`` canary requests.
MAX_WAIT_FACTOR = 10
#: Seconds between scrapes while waiting for enough canary requests.
POLL_S = 0.25


def judge(inputs: dict[str, Any]) -> Reasoning:
    """Decide ``rollback`` or ``continue`` for one rollout step (pure).

    ``inputs``: ``canary`` and ``baseline`` {requests, errors, error_rate}, ``slo_error_rate``, ``min_requests``.

    Rule (threshold test of the canary against the SLO, SRE Workbook ch. 16):

    * canary requests ≥ min_requests and canary error rate > slo_error_rate → **rollback**;
    * canary requests < min_requests (too few to judge) → **rollback** only if even counting the missing requests
      as successes the rate exceeds the SLO (``errors / min_requests > slo_error_rate``), else **continue**;
    * otherwise → **continue**.

    The baseline's error rate is reported beside it (``excess`` = canary − baseline) for the incident evidence;
    it does not excuse a canary above the absolute threshold.
    """
    canary, baseline = inputs["canary"], inputs.get("baseline") or {}
    slo, min_requests = float(inputs["slo_error_rate"]), int(inputs["min_requests"])
    requests, errors = int(canary["requests"]), int(canary["errors"])
    rate = errors / requests if requests else 0.0
    excess = rate - float(baseline.get("error_rate", 0.0))
    score: dict[str, Any] = {
        "canary_error_rate": round(rate, 6),
        "slo_error_rate": slo,
        "excess_over_baseline": round(excess, 6),
    }
    if requests >= min_requests:
        breach = rate > slo
        rule = "rollback if canary 5xx rate > SLO threshold (requests ≥ min)"
        rationale = (
            f"canary answered {errors} of {requests} requests with 5xx ({rate:.1%}); threshold {slo:.1%}: "
            + ("breach, roll back" if breach else "within the SLO, continue")
            + f"; baseline {float(baseline.get('error_rate', 0.0)):.1%}"
        )
    else:
        bound = errors / min_requests
        breach = bound > slo
        rule = "too few requests: rollback if errors / min_requests > SLO threshold"
        rationale = (
            f"only {requests} canary requests (< {min_requests}); {errors} errors give at least {bound:.1%} "
            f"over {min_requests} requests; threshold {slo:.1%}: " + ("breach, roll back" if breach else "continue")
        )
    # --- issue 3: statistical canary judge beside the threshold (only when the inputs ask for it, so decisions
    # recorded before it replay unchanged): Fisher's exact test of the canary's 5xx count against the baseline's
    # (pilotage.observe.judge.compare_error_counts), a Fail rolls back even under the absolute threshold.
    if "judge_alpha" in inputs and baseline.get("requests"):
        verdict = compare_error_counts(
            errors,
            requests,
            int(baseline.get("errors", 0)),
            int(baseline["requests"]),
            JudgeConfig(alpha=float(inputs["judge_alpha"]), min_requests=min_requests),
        )
        score["judge"] = verdict.to_dict()
        if verdict.outcome is Outcome.FAIL and not breach:
            breach = True
            rule += "; or canary 5xx count significantly above the baseline (Fisher exact, one-sided)"
            rationale += f"; judge: {verdict.reason} → fail, roll back"
    # --- end issue 3 ---
    return Reasoning(action="rollback" if breach else "continue", rule=rule, score=score, rationale=rationale)


def _proxy_window(before: RouteStats | None, after: RouteStats | None, version: str) -> dict[str, int]:
    if before is None or after is None or version not in after.versions:
        return {"requests": 0, "errors": 0}
    old = before.versions.get(version)
    new = after.versions[version]
    return {
        "requests": new.requests - (old.requests if old else 0),
        "errors": new.errors - (old.errors if old else 0),
    }


class ReliabilityAgent(Agent):
    """Watches every rollout step, judges it against the SLO and rolls back a breaching canary."""

    name: ClassVar[str] = "reliability"
    subscribes: ClassVar[tuple[str, ...]] = (EventType.DEPLOY_STEP,)

    def reason(self, kind: str, inputs: dict[str, Any]) -> Reasoning:
        """``slo.judgement`` → :func:`judge`."""
        if kind == "slo.judgement":
            return judge(inputs)
        return super().reason(kind, inputs)

    async def on_event(self, event: CloudEvent) -> None:
        """Measure one ``deploy.step``, judge it, emit ``slo.evaluated`` and roll back on a breach."""
        deployment_id = event.data["deployment_id"]
        step, weight = int(event.data["step"]), int(event.data["weight"])
        info = await rollout_info(self.ctx.bus, event.runid, deployment_id)  # crash safety: newest instances
        if info is None:
            raise InputError(f"no deploy.started for deployment {deployment_id}", hint="start the rollout again")
        bus = self.ctx.bus
        judged = await find_event(bus, EventType.SLO_EVALUATED, event.runid, deployment_id=deployment_id, step=step)
        if judged is not None:
            await self._finish_interrupted_rollback(event, info, judged)  # crash safety (issue #7)
            return  # redelivered: this step was judged already
        measured = await self._measure(deployment_id, info)
        inputs = {
            "deployment_id": deployment_id,
            "step": step,
            "weight": weight,
            "canary": measured["canary"],
            "baseline": measured["baseline"],
            "slo_error_rate": self.ctx.settings.slo_error_rate,
            "min_requests": self.ctx.settings.min_requests_per_step,
            "judge_alpha": self.ctx.settings.judge_alpha,  # issue 3: the statistical judge (see judge())
        }
        decision = await self.decide("slo.judgement", inputs, cause=event)
        self._record_samples(deployment_id, step, weight, info, measured)
        healthy = decision.action == "continue"
        await self.emit(
            EventType.SLO_EVALUATED,
            {
                **{k: inputs[k] for k in ("deployment_id", "step", "weight", "canary", "baseline", "slo_error_rate")},
                "healthy": healthy,
                "decision_id": decision.id,
                "window_s": measured["window_s"],
            },
            cause=event,
        )
        if not healthy:
            await self._roll_back(event, info, step, weight, measured, decision)

    async def _finish_interrupted_rollback(self, event: CloudEvent, info: dict[str, Any], judged: CloudEvent) -> None:
        """Crash safety (issue #7): finish a rollback the log decided but a crash interrupted.

        The step was judged unhealthy (``slo.evaluated``) but no ``deploy.rolled_back`` followed: roll back now
        with the recorded measurements and the recorded decision, not with a new judgement. Events the first
        attempt already published keep their ids (deterministic), so they are not duplicated.
        """
        data = judged.data
        deployment_id = info["deployment_id"]
        if data.get("healthy") or await find_event(
            self.ctx.bus, EventType.DEPLOY_ROLLED_BACK, event.runid, deployment_id=deployment_id
        ):
            return
        recorded = await self._recorded_decision(data.get("decision_id", ""))
        if recorded is None:
            raise InputError(f"decision {data.get('decision_id')} of {deployment_id} is not in the log", hint="replay")
        measured = {"canary": data["canary"], "baseline": data["baseline"], "window_s": data.get("window_s", 0.0)}
        await self._roll_back(event, info, int(data["step"]), int(data["weight"]), measured, recorded)

    async def _recorded_decision(self, decision_id: str) -> Decision | None:
        offset = 1
        while True:
            batch = await self.ctx.bus.read(offset, 1000, pattern=EventType.DECISION)
            if not batch:
                return None
            for record in batch:
                if record.event.id == decision_id:
                    fields = Decision.__dataclass_fields__
                    return Decision(**{k: v for k, v in record.event.data.items() if k in fields})
            offset = batch[-1].offset + 1

    async def _measure(self, deployment_id: str, info: dict[str, Any]) -> dict[str, Any]:
        registry = route_registry(self.ctx.runtime)
        urls = {role: info[role]["url"] + "/metrics" for role in ("baseline", "canary")}
        versions = {role: info[role]["version"] for role in ("baseline", "canary")}

        client = httpx.AsyncClient(timeout=2.0)  # one client: scrapes and proxy snapshots milliseconds apart

        async def safe_scrape(role: str) -> MetricsSnapshot | None:
            try:
                return await scrape(urls[role], client=client)
            except BackendError:
                return None

        def proxy_stats() -> RouteStats | None:
            return registry.route_stats(deployment_id) if registry.get_route(deployment_id) else None

        try:
            return await self._windows(urls, versions, safe_scrape, proxy_stats)
        finally:
            await client.aclose()

    async def _windows(
        self,
        urls: dict[str, str],
        versions: dict[str, str],
        safe_scrape: Callable[[str], Awaitable[MetricsSnapshot | None]],
        proxy_stats: Callable[[], RouteStats | None],
    ) -> dict[str, Any]:
        settings = self.ctx.settings
        proxy_before = proxy_stats()
        scraped = await asyncio.gather(*(safe_scrape(role) for role in urls))
        before = dict(zip(urls, scraped, strict=True))
        started = time.monotonic()
        await asyncio.sleep(settings.analysis_window_s)
        max_wait = settings.analysis_window_s * MAX_WAIT_FACTOR
        while True:
            canary_now = await safe_scrape("canary")
            c0 = before["canary"]
            enough = (
                canary_now is not None
                and c0 is not None
                and window(c0, canary_now).requests >= settings.min_requests_per_step
            )
            if enough or canary_now is None or time.monotonic() - started >= max_wait:
                break
            await asyncio.sleep(POLL_S)
        after = {"canary": canary_now, "baseline": await safe_scrape("baseline")}
        proxy_after = proxy_stats()
        out: dict[str, Any] = {"window_s": round(time.monotonic() - started, 3)}
        for role in ("baseline", "canary"):
            via_proxy = _proxy_window(proxy_before, proxy_after, versions[role])
            b, a = before[role], after[role]
            if b is not None and a is not None:
                measured: dict[str, Any] = {**window(b, a).to_dict(), "source": "metrics"}
            else:  # /metrics unreachable (crashed process): the proxy's counts are the evidence
                fallback = RequestWindow(via_proxy["requests"], via_proxy["errors"], time.monotonic() - started)
                measured = {**fallback.to_dict(), "source": "proxy", "scrape_failed": urls[role]}
            out[role] = {**measured, "proxy": via_proxy, "version": versions[role]}
        return out

    def _record_samples(
        self, deployment_id: str, step: int, weight: int, info: dict[str, Any], measured: dict[str, Any]
    ) -> None:
        graph = self.ctx.graph
        dep = graph.upsert_node("Deployment", deployment_id, {})
        for role in ("baseline", "canary"):
            sample = measured[role]
            node = graph.upsert_node(
                "MetricSample",
                f"{deployment_id}/{step}/{role}",
                {
                    "deployment_id": deployment_id,
                    "step": step,
                    "weight": weight if role == "canary" else 100 - weight,
                    "role": role,
                    "version": info[role]["version"],
                    "requests": sample["requests"],
                    "errors": sample["errors"],
                    "error_rate": sample["error_rate"],
                    "window_s": measured["window_s"],
                    "source": sample["source"],
                    "at": datetime.now(UTC).isoformat(timespec="seconds"),
                },
            )
            graph.upsert_edge(dep.id, "MEASURED", node.id)

    async def _roll_back(
        self,
        event: CloudEvent,
        info: dict[str, Any],
        step: int,
        weight: int,
        measured: dict[str, Any],
        decision: Decision,
    ) -> None:
        run = await self.run_spec(event)
        deployment_id = info["deployment_id"]
        slo = self.ctx.settings.slo_error_rate
        await self.emit(
            EventType.SLO_BREACH,
            {"deployment_id": deployment_id, "step": step, "canary": measured["canary"], "slo_error_rate": slo},
            cause=event,
        )
        verdict = await self.authorize(
            "rollback",
            {
                "service": run.service,
                "deployment_id": deployment_id,
                "version": info["baseline"]["version"],
                "reason": decision.rationale,
                "strategy": info["strategy"],
                "step": step,
                "canary": measured["canary"],
                "slo_error_rate": slo,
                "decision_id": decision.id,
            },
            cause=event,
        )
        registry = route_registry(self.ctx.runtime)
        base_version, head_version = info["baseline"]["version"], info["canary"]["version"]
        route = registry.get_route(deployment_id)
        log_tail: list[str] = []
        if route is not None:
            await self.ctx.runtime.set_weights(route, {base_version: 100, head_version: 0})
            canary = route.backends.get(head_version)
            if canary is not None:
                log_tail = _log_tail(canary.log_path)
                await self.ctx.runtime.stop(canary)
        traffic = await stop_traffic(deployment_id)
        incident_id = f"INC-{event.id[:8]}"
        canary_m = measured["canary"]
        summary = (
            f"canary {head_version} of {run.service} failed {canary_m['errors']} of {canary_m['requests']} requests "
            f"({canary_m['error_rate']:.1%}) at step {step} ({weight}% traffic), above the {slo:.1%} SLO threshold; "
            f"rolled back to {base_version}"
        )
        evidence = {
            "step": step,
            "weight": weight,
            "canary": canary_m,
            "baseline": measured["baseline"],
            "slo_error_rate": slo,
            "window_s": measured["window_s"],
            "decision_id": decision.id,
            "rule": decision.rule,
            "traffic": traffic.to_dict() if traffic is not None else None,
        }
        report = run.artifacts_path / "incidents" / f"{incident_id}.md"
        _write_report(report, incident_id, summary, info, evidence, decision, verdict.to_dict(), log_tail)
        graph = self.ctx.graph
        dep = graph.upsert_node("Deployment", deployment_id, {"outcome": "rolled_back"})
        incident = graph.upsert_node(
            "Incident",
            incident_id,
            {"summary": summary, "report_path": str(report), "deployment_id": deployment_id, "step": step},
        )
        graph.upsert_edge(dep.id, "CAUSED", incident.id)
        await self.emit(
            EventType.INCIDENT_OPENED,
            {
                "incident_id": incident_id,
                "deployment_id": deployment_id,
                "summary": summary,
                "report_path": str(report),
                "evidence": evidence,
            },
            cause=event,
        )
        await self.emit(
            EventType.DEPLOY_ROLLED_BACK,
            {
                "deployment_id": deployment_id,
                "strategy": info["strategy"],
                "version": head_version,
                "reason": summary,
                "incident_id": incident_id,
            },
            cause=event,
        )


def _log_tail(path: Path | None, lines: int = 15) -> list[str]:
    if path is None or not path.exists():
        return []
    return path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]


def _write_report(
    path: Path,
    incident_id: str,
    summary: str,
    info: dict[str, Any],
    evidence: dict[str, Any],
    decision: Decision,
    verdict: dict[str, Any],
    log_tail: list[str],
) -> None:
    """Write the incident report as Markdown (summary, impact table, decision, actions, canary log tail)."""
    canary, baseline = evidence["canary"], evidence["baseline"]
    rows = [
        f"| {role} | {m['version']} | {m['requests']} | {m['errors']} | {m['error_rate']:.2%} | {m['source']} |"
        for role, m in (("canary", canary), ("baseline", baseline))
    ]
    text = "\n".join(
        [
            f"# Incident {incident_id}",
            "",
            f"- **Opened:** {datetime.now(UTC).isoformat(timespec='seconds')}",
            f"- **Deployment:** {info['deployment_id']} ({info['strategy']}, commit {info.get('commit', '?')})",
            f"- **Summary:** {summary}",
            "",
            "## Evidence",
            "",
            f"Step {evidence['step']} sent {evidence['weight']}% of traffic to the canary for "
            f"{evidence['window_s']} s. SLO threshold: {evidence['slo_error_rate']:.2%} of requests may fail (5xx).",
            "",
            "| population | version | requests | 5xx | error rate | source |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "## Decision",
            "",
            f"- decision `{decision.id}`: **{decision.action}** — rule: {decision.rule}",
            f"- rationale: {decision.rationale}",
            f"- policy verdict: allow={verdict.get('allow')} engine={verdict.get('engine')} "
            f"policies={verdict.get('policies')}",
            "",
            "## Actions taken",
            "",
            f"1. traffic weights set to baseline {info['baseline']['version']} 100% / canary 0%",
            f"2. canary {info['canary']['version']} (pid {info['canary']['pid']}) stopped",
            "3. synthetic traffic stopped",
            "",
            "## Canary log (last lines)",
            "",
            "```",
            *(log_tail or ["(no log)"]),
            "```",
            "",
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
