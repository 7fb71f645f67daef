"""Observe one rollout step: poll both versions, assess at every poll, stop at the first Fail (fast rollback).

Used by the reliability agent for every step of every rollout (``pilotage demo``, ``run``, ``serve`` and
``benchmarks/bench_rollback.py``, which drives the same agents):

1. sample the canary (and the baseline when it gets traffic) every ``poll_s`` seconds for ``duration_s``;
2. after each poll run :func:`pilotage.rollout.analysis.assess` on everything sampled so far; the first **Fail**
   ends the observation at once (the caller rolls back without waiting for the end of the pause); a canary whose
   process exited is a Fail without waiting for metrics; a **Pass** ends it at the end of ``duration_s`` (the
   step's minimum);
3. still **Inconclusive** at the end — the sequential tests have not yet ruled a regression in or out, or both
   versions burn the same budget (cause ``shared_degradation``: a passing load spike may end, or the canary be
   shown worse or better): keep sampling the same series for up to ``grace_s`` more seconds (the step extends
   while the evidence is not sufficient either way) until the assessment is no longer Inconclusive; at that limit
   it stays Inconclusive, never a pass (what then happens to an Inconclusive step is the caller's policy: the
   reliability agent pauses a shared degradation for a person and applies ``rollout_on_inconclusive`` to the
   rest) —
   unless ``grace_needs_requests`` and no population got a single request: waiting for traffic that nothing
   sends is pointless (a rollout whose traffic plan has nothing to call, issue 17).

What is compared is a :class:`Population`: an instance's requests, optionally narrowed to a label set. A
version rollout compares two instances (``Population(canary_instance)`` vs ``Population(baseline_instance)``); a
flag release compares the requests of ONE instance with its release flag on and off
(``Population(instance, {"flag": "on"})`` vs ``Population(instance, {"flag": "off"})``, the label of the
generated-service conventions, :mod:`pilotage.runtime.flags`). A bare :class:`~pilotage.runtime.base.Instance` is
accepted wherever a population is and means all its requests.

:func:`recorded_inputs` turns an :class:`Observation` into plain data (the sample series, the source errors and
the thresholds) and :func:`assess_recorded` recomputes the same :class:`~pilotage.rollout.analysis.Assessment`
from it, purely: the reliability agent records the first as a decision's inputs and calls the second in its
``reason``, so ``pilotage events replay`` reproduces every verdict.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pilotage.errors import BackendError
from pilotage.observe.judge import JudgeConfig, Outcome
from pilotage.observe.prometheus import MetricSource
from pilotage.observe.samples import Sample, increase
from pilotage.observe.slo import SLOSpec, parse_slo
from pilotage.rollout.analysis import Assessment, assess
from pilotage.runtime.base import Instance

__all__ = [
    "AnalysisSettings",
    "Observation",
    "Population",
    "assess_recorded",
    "observe",
    "recorded_inputs",
    "sample_from_dict",
    "sample_to_dict",
]

#: Source errors of this many recent polls hold a verdict (Inconclusive). Older ones were followed by good samples,
#: and a missed scrape loses no request: the next sample's cumulative counters hold it (issue 21: with 5, a source
#: of intermittent errors kept sound evidence from ever passing).
RECENT_ERRORS = 2


@dataclass(frozen=True)
class Population:
    """The requests of one instance, optionally only those whose metric series carry all of ``labels``.

    Attributes:
        instance: the process that served them.
        labels: label pairs the series must carry (``{"flag": "on"}``); None or {} means every request.
    """

    instance: Instance
    labels: Mapping[str, str] | None = None

    @property
    def name(self) -> str:
        """How verdicts and source errors name it: ``v2`` or ``v2{flag="on"}``."""
        pairs = ",".join(f'{k}="{v}"' for k, v in sorted((self.labels or {}).items()))
        return self.instance.workload.version + (f"{{{pairs}}}" if pairs else "")


def _as_population(target: Instance | Population) -> Population:
    """Return ``target`` as a :class:`Population` (an instance means all its requests)."""
    return target if isinstance(target, Population) else Population(target)


@dataclass(frozen=True)
class AnalysisSettings:
    """Thresholds of one analysis: the judge's, the burn-rate window scale and the minimum-request guard."""

    judge: JudgeConfig = field(default_factory=JudgeConfig)
    time_scale: float = 1.0 / 720.0
    min_requests: int = 20


@dataclass
class Observation:
    """What one observation saw and concluded.

    Attributes:
        assessment: the verdict of the last analysis (the one that ended the observation).
        canary, baseline: the sample series (oldest first) that verdict was computed from.
        errors: the source errors that verdict counted.
        canary_exited: the canary's process had exited (the verdict is then Fail without metrics).
        with_baseline: the baseline took part (it received traffic); the latency tests need it.
        elapsed_s: seconds from the first poll to the verdict.
        polls: number of polls taken.
    """

    assessment: Assessment
    canary: list[Sample]
    baseline: list[Sample]
    errors: list[str]
    canary_exited: bool
    with_baseline: bool
    elapsed_s: float
    polls: int


def sample_to_dict(sample: Sample) -> dict[str, Any]:
    """Return ``sample`` as JSON-ready data (bucket bounds as strings, metric names sorted)."""
    return {
        "at": sample.at,
        "statuses": dict(sample.statuses),
        "latency_sum_s": sample.latency_sum_s,
        "latency_count": sample.latency_count,
        "buckets": {repr(k): v for k, v in sample.buckets.items()},
        "metrics": sorted(sample.metrics),
    }


def sample_from_dict(data: dict[str, Any]) -> Sample:
    """Inverse of :func:`sample_to_dict`."""
    return Sample(
        at=float(data["at"]),
        statuses={str(k): float(v) for k, v in data.get("statuses", {}).items()},
        latency_sum_s=float(data.get("latency_sum_s", 0.0)),
        latency_count=float(data.get("latency_count", 0.0)),
        buckets={float(k): float(v) for k, v in data.get("buckets", {}).items()},
        metrics=frozenset(data.get("metrics", [])),
    )


def _analyse(
    slo: SLOSpec,
    canary: list[Sample],
    baseline: list[Sample],
    errors: list[str],
    exited: bool,
    with_baseline: bool,
    settings: AnalysisSettings,
    version: str,
) -> Assessment:
    if exited:
        return Assessment(Outcome.FAIL, reasons=(f"canary {version} process exited",))
    return assess(
        slo,
        canary,
        baseline if with_baseline else (),
        config=settings.judge,
        time_scale=settings.time_scale,
        min_requests=settings.min_requests,
        errors=errors,
        judge_latency=with_baseline,
    )


async def _sample(source: MetricSource, population: Population, errors: list[str]) -> Sample | None:
    instance = population.instance
    try:
        if population.labels:
            return await source.sample(instance.workload.version, instance.url, population.labels)
        return await source.sample(instance.workload.version, instance.url)  # sources predating populations
    except BackendError as exc:
        errors.append(f"{population.name}: {exc}")
        return None


async def observe(
    source: MetricSource,
    slo: SLOSpec,
    canary: Instance | Population,
    baseline: Instance | Population | None,
    *,
    duration_s: float,
    poll_s: float,
    grace_s: float = 0.0,
    settings: AnalysisSettings | None = None,
    alive: Callable[[Instance], Awaitable[bool]] | None = None,
    grace_needs_requests: bool = False,
) -> Observation:
    """Observe one step; see the module docstring.

    Args:
        source: where samples come from (direct scrape or PromQL).
        slo: the service's objectives (burn-rate alerts run on each).
        canary: what is judged: the new version's instance, or a population (a flag release: the instance's
            flag-on requests).
        baseline: what it is compared with: the previous version's instance while it gets traffic, or a
            population (the same instance's flag-off requests); ``None`` at 100 % or for blue-green (then only the
            burn rates and the binomial test against the SLO run).
        duration_s: analysis time (the step's pause), seconds.
        poll_s: seconds between two polls.
        grace_s: extra seconds an Inconclusive verdict may keep sampling.
        settings: judge thresholds, burn-rate scale, minimum requests.
        alive: async check that an instance's process still runs (a dead canary's instance fails at once), e.g.
            ``lambda i: runtime.health(i)`` mapped to ``running``.
        grace_needs_requests: take the grace only when some population got a request during the window (the
            caller sends no synthetic traffic, so only real requests can end an Inconclusive verdict).

    Returns:
        The :class:`Observation`; a Fail returns at the poll that found it.
    """
    settings = settings or AnalysisSettings()
    with_baseline = baseline is not None
    judged = _as_population(canary)
    targets = [judged] + ([_as_population(baseline)] if baseline is not None else [])
    series: list[list[Sample]] = [[], []]
    recent: list[list[str]] = []
    started = time.monotonic()
    deadline, grace_end = started + duration_s, started + duration_s + grace_s
    polls = 0
    while True:
        errors: list[str] = []
        got = await asyncio.gather(*(_sample(source, inst, errors) for inst in targets))
        polls += 1
        for index, sample in enumerate(got):
            if sample is not None:
                series[index].append(sample)
        recent = [*recent, errors][-RECENT_ERRORS:]
        counted = [e for poll in recent for e in poll]
        exited = alive is not None and not await alive(judged.instance)
        found = _analyse(slo, series[0], series[1], counted, exited, with_baseline, settings, judged.name)
        now = time.monotonic()
        done = found.outcome is Outcome.FAIL or now >= grace_end
        done = done or (now >= deadline and found.outcome is not Outcome.INCONCLUSIVE)
        done = done or (now >= deadline and grace_needs_requests and not _any_request(series))
        if done and (polls >= 2 or found.outcome is Outcome.FAIL):  # a Fail on the first poll: a dead canary
            return Observation(found, series[0], series[1], counted, exited, with_baseline, now - started, polls)
        await asyncio.sleep(max(0.0, started + polls * poll_s - time.monotonic()))  # fixed cadence, no drift


def _any_request(series: list[list[Sample]]) -> bool:
    """True when some series counted a request between its first and last sample."""
    return any(len(samples) >= 2 and increase(samples).requests > 0 for samples in series)


def recorded_inputs(observation: Observation, slo: SLOSpec, settings: AnalysisSettings) -> dict[str, Any]:
    """Return the observation as decision inputs: everything :func:`assess_recorded` needs, as plain data."""
    return {
        "slo": slo.to_dict(),
        "canary_series": [sample_to_dict(s) for s in observation.canary],
        "baseline_series": [sample_to_dict(s) for s in observation.baseline],
        "source_errors": list(observation.errors),
        "canary_exited": observation.canary_exited,
        "with_baseline": observation.with_baseline,
        "judge": asdict(settings.judge),
        "time_scale": settings.time_scale,
        "min_requests": settings.min_requests,
    }


def assess_recorded(inputs: dict[str, Any], version: str = "canary") -> Assessment:
    """Recompute the :class:`Assessment` of recorded inputs (pure; same result as the live observation).

    Raises:
        InputError: the recorded SLO is malformed (as :func:`pilotage.observe.slo.parse_slo`).
    """
    recorded = inputs["slo"]
    slo = parse_slo(
        {"window_days": recorded.get("window_days", 30), "objectives": recorded["objectives"]},
        where=recorded.get("path") or "(recorded SLO)",
        service=recorded.get("service", ""),
    )
    settings = AnalysisSettings(
        judge=JudgeConfig.from_dict(inputs["judge"]),
        time_scale=float(inputs["time_scale"]),
        min_requests=int(inputs["min_requests"]),
    )
    return _analyse(
        slo,
        [sample_from_dict(s) for s in inputs["canary_series"]],
        [sample_from_dict(s) for s in inputs["baseline_series"]],
        list(inputs["source_errors"]),
        bool(inputs["canary_exited"]),
        bool(inputs["with_baseline"]),
        settings,
        version,
    )
