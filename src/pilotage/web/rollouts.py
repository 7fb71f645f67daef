"""A rollout as the dashboard draws it, folded from the log: steps, the judge's verdicts and the sample series.

Events of one deployment (``data.deployment_id``): ``deploy.requested`` (the plan), ``deploy.started``,
``deploy.step`` (one per step: weight, phase), ``slo.evaluated`` (the verdict on a step), and the end:
``deploy.promoted`` / ``deploy.rolled_back`` / ``deploy.paused``. The samples behind a verdict are the inputs of
the reliability agent's ``slo.assessment`` decision the verdict names (``decision_id``): cumulative counters per
poll, turned here into one point per polling interval (requests, 5xx errors, error rate, p50/p95 latency from the
histogram buckets, :func:`pilotage.observe.latency.histogram_quantile`).
"""

from __future__ import annotations

from typing import Any

from pilotage.bus.base import Bus
from pilotage.bus.query import EventLog
from pilotage.events import CloudEvent, EventType
from pilotage.observe.latency import histogram_quantile
from pilotage.observe.samples import WindowDelta, intervals
from pilotage.rollout.observation import sample_from_dict

__all__ = ["ROLLOUT_TYPES", "rollout_view", "rollouts", "series_points"]

#: The event types of a rollout (each carries ``data.deployment_id``).
ROLLOUT_TYPES = (
    EventType.DEPLOY_REQUESTED,
    EventType.DEPLOY_STARTED,
    EventType.DEPLOY_STEP,
    EventType.SLO_EVALUATED,
    EventType.DEPLOY_PROMOTED,
    EventType.DEPLOY_ROLLED_BACK,
    EventType.DEPLOY_PAUSED,
)
_ENDS = {
    EventType.DEPLOY_PROMOTED: "promoted",
    EventType.DEPLOY_ROLLED_BACK: "rolled_back",
    EventType.DEPLOY_PAUSED: "paused",
}


def _point(part: WindowDelta, at: float) -> dict[str, Any]:
    bounds = sorted(part.good_latency)
    cumulative = [part.good_latency[b] for b in bounds]
    return {
        "at": at,
        "duration_s": round(part.duration_s, 6),
        "requests": part.requests,
        "errors": part.errors,
        "error_rate": round(part.error_ratio, 6),
        "p50_s": histogram_quantile(0.5, bounds, cumulative) if bounds else None,
        "p95_s": histogram_quantile(0.95, bounds, cumulative) if bounds else None,
    }


def series_points(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return one :class:`~pilotage.web.models.SamplePoint` dict per interval of recorded cumulative ``samples``.

    ``at`` is the end of the interval (Unix s). Fewer than two samples, or samples that do not parse, give [].
    """
    try:
        parsed = [sample_from_dict(s) for s in samples]
        parts = intervals(parsed) if len(parsed) >= 2 else []
    except (KeyError, TypeError, ValueError):
        return []
    return [_point(part, sample.at) for part, sample in zip(parts, parsed[1:], strict=False)]


async def _verdict(log: EventLog, event: CloudEvent) -> dict[str, Any]:
    """A ``slo.evaluated`` as a StepVerdict dict, with the sample series of the decision it names."""
    d = event.data
    decision = await log.by_id(str(d.get("decision_id", "")), EventType.DECISION, run=event.runid)
    inputs = (decision.event.data.get("inputs") or {}) if decision is not None else {}
    keys = ("action", "cause", "healthy", "outcome", "reasons", "rule", "rationale", "decision_id", "window_s")
    return {
        "time": event.time,
        **{k: d.get(k) for k in keys},
        "canary": d.get("canary") or {},
        "baseline": d.get("baseline"),
        "evidence": d.get("evidence") or [],
        "alerts": (d.get("assessment") or {}).get("alerts") or [],
        "canary_series": series_points(inputs.get("canary_series") or []),
        "baseline_series": series_points(inputs.get("baseline_series") or []),
    }


def _summary(events: list[CloudEvent]) -> dict[str, Any]:
    first = events[0]
    plan = next((e.data for e in events if e.type == EventType.DEPLOY_REQUESTED), None)
    end = next((e for e in events if e.type in _ENDS), None)
    return {
        "deployment_id": first.data["deployment_id"],
        "run_id": first.runid,
        "service": (plan or {}).get("service") or first.subject,
        "strategy": str(first.data.get("strategy") or (plan or {}).get("strategy") or ""),
        "status": _ENDS[end.type] if end is not None else "running",
        "started": first.time,
    }


def _ended_at(end: CloudEvent | None, steps: dict[int, dict[str, Any]]) -> int | None:
    """The step a rollout ended at: the paused one, the last judged ``rollback``, else the last step."""
    if end is None or not steps:
        return None
    if end.type == EventType.DEPLOY_PAUSED:
        return int(end.data["step"])
    rolled = [n for n, s in sorted(steps.items()) if any(v["action"] == "rollback" for v in s["verdicts"])]
    return rolled[-1] if rolled and end.type == EventType.DEPLOY_ROLLED_BACK else max(steps)


async def _deployments(bus: Bus, deployment_id: str | None = None) -> dict[str, list[CloudEvent]]:
    """Events of every deployment (or of one), grouped by id, in log order."""
    match: dict[str, Any] = {"deployment_id": deployment_id} if deployment_id is not None else {}
    grouped: dict[str, list[CloudEvent]] = {}
    for event in await EventLog(bus).all("dev.pilotage.deploy.*", **match):
        if event.type in ROLLOUT_TYPES and isinstance(event.data, dict) and event.data.get("deployment_id"):
            grouped.setdefault(str(event.data["deployment_id"]), []).append(event)
    return grouped


async def rollouts(bus: Bus) -> list[dict[str, Any]]:
    """Return a RolloutSummary dict per deployment of the log, newest first."""
    return [_summary(events) for events in reversed((await _deployments(bus)).values())]


async def rollout_view(bus: Bus, deployment_id: str) -> dict[str, Any] | None:
    """Return the RolloutOut dict of ``deployment_id`` (steps with their verdicts and series), or None if unknown."""
    events = (await _deployments(bus, deployment_id)).get(deployment_id)
    if not events:
        return None
    log = EventLog(bus)
    verdicts = await log.all(EventType.SLO_EVALUATED, run=events[0].runid, deployment_id=deployment_id)
    steps: dict[int, dict[str, Any]] = {}
    for e in events:
        if e.type == EventType.DEPLOY_STEP:
            steps[int(e.data["step"])] = {
                "step": int(e.data["step"]),
                "weight": int(e.data["weight"]),
                "phase": str(e.data.get("phase", "step")),
                "time": e.time,
                "verdicts": [],
            }
    for v in verdicts:
        step = steps.setdefault(int(v.data["step"]), {"step": int(v.data["step"]), "weight": int(v.data["weight"]),
                                                      "phase": str(v.data.get("phase")), "time": v.time,
                                                      "verdicts": []})  # fmt: skip
        step["verdicts"].append(await _verdict(log, v))
    end = next((e for e in events if e.type in _ENDS), None)
    return {
        **_summary(events),
        "plan": next((e.data for e in events if e.type == EventType.DEPLOY_REQUESTED), None),
        "steps": [steps[k] for k in sorted(steps)],
        "ended_at_step": _ended_at(end, steps),
        "end": {"type": end.type, "time": end.time, **end.data} if end is not None else None,
    }
