"""One analysis of a rollout: burn-rate alerts plus the sequential canary judge on the samples so far (pure).

:func:`assess` is what the reliability agent runs at every poll and records as a decision: it takes the two
versions' sample series (cumulative counters, oldest first, see :mod:`pilotage.observe.prometheus`) and returns
an :class:`Assessment`:

* **Fail** — the canary restarted during the analysis (a counter reset: a crash-looping canary is a regression
  in itself, and its errors before each restart are still counted, :func:`~pilotage.observe.prometheus.increase`);
  a burn-rate alert fires on the canary alone (SRE Workbook ch. 5 with a minimum of bad events and a confidence
  bound, :mod:`pilotage.observe.burn_rate`); or a judge test fails (:mod:`pilotage.observe.judge`: the error rate
  and every latency objective of the SLO against the baseline — or against the SLO without one —, p50/p95/p99
  and the latency distribution from the histogram buckets, :mod:`pilotage.observe.latency`).
* **Inconclusive** — no Fail, but the evidence does not yet rule out a regression of the tolerance (the rollout
  keeps observing), or some evidence is missing: a source error, an SLO objective whose SLI kind or metric is
  unknown. Every reason is listed. Inconclusive is never a pass. With ``cause = "shared_degradation"`` both
  versions burn the same objective's budget: the canary is not the cause, so the rollout holds and alerts
  instead of blaming it (the reliability agent turns it into ``pause``).
* **Pass** — every gating test ruled out a regression and nothing failed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pilotage.observe.burn_rate import BurnAlert, burn_alerts
from pilotage.observe.judge import DEFAULT_JUDGE, JudgeConfig, MetricVerdict, Outcome, RateCounts, combine, judge_rate
from pilotage.observe.latency import QUANTILES, distribution_verdict, quantile_verdict, slo_threshold_counts
from pilotage.observe.prometheus import Sample, WindowDelta, increase, intervals
from pilotage.observe.sequential import Table
from pilotage.observe.slo import SLOObjective, SLOSpec, evaluate

__all__ = ["Assessment", "assess", "paired_intervals"]

#: Cause of an Inconclusive assessment where both versions burn the budget alike (the canary is not blamed).
SHARED = "shared_degradation"


@dataclass(frozen=True)
class Assessment:
    """Outcome of one analysis with its evidence: judge verdicts, burn alerts, the reasons of a non-pass, a cause."""

    outcome: Outcome
    verdicts: tuple[MetricVerdict, ...] = ()
    alerts: tuple[BurnAlert, ...] = ()
    reasons: tuple[str, ...] = ()
    counts: dict[str, Any] = field(default_factory=dict)
    cause: str = ""

    def summary(self) -> str:
        """One line: the outcome and the first reasons."""
        return f"{self.outcome.value}: " + ("; ".join(self.reasons[:3]) or "all checks passed")

    def to_dict(self) -> dict[str, Any]:
        """Return plain data (for events, decisions and incident evidence)."""
        return {
            "outcome": self.outcome.value,
            "cause": self.cause,
            "reasons": list(self.reasons),
            "verdicts": [v.to_dict() for v in self.verdicts],
            "alerts": [a.to_dict() for a in self.alerts],
            "counts": self.counts,
        }


def paired_intervals(
    canary: Sequence[Sample], baseline: Sequence[Sample]
) -> tuple[list[WindowDelta], list[WindowDelta]]:
    """The same intervals of both series: between consecutive polls where both were sampled.

    Both populations are sampled at each poll; a poll that missed one of them (a source error) merges its two
    intervals into one, so every pair of windows covers the same time. Samples pair when their times differ by
    at most half the canary's smallest sampling gap.
    """
    gaps = [b.at - a.at for a, b in zip(canary, canary[1:], strict=False) if b.at > a.at]
    tolerance_s = min(gaps) / 2.0 if gaps else 0.0
    pairs: list[tuple[int, int]] = []
    j = 0
    for i, sample in enumerate(canary):
        while j + 1 < len(baseline) and abs(baseline[j + 1].at - sample.at) <= abs(baseline[j].at - sample.at):
            j += 1
        if baseline and abs(baseline[j].at - sample.at) <= tolerance_s and (not pairs or j > pairs[-1][1]):
            pairs.append((i, j))
    c_out, b_out = [], []
    for (i0, j0), (i1, j1) in zip(pairs, pairs[1:], strict=False):
        c_out.append(increase(canary[i0 : i1 + 1]))
        b_out.append(increase(baseline[j0 : j1 + 1]))
    return c_out, b_out


def _error_counts(c_windows: Sequence[WindowDelta], b_windows: Sequence[WindowDelta] | None) -> RateCounts:
    if b_windows is None:
        return RateCounts(tuple(Table(round(c.errors), round(c.requests), 0, 0) for c in c_windows), False)
    tables = tuple(
        Table(round(c.errors), round(c.requests), round(b.errors), round(b.requests))
        for c, b in zip(c_windows, b_windows, strict=False)
    )
    return RateCounts(tables, True)


def _objective_verdict(
    objective: SLOObjective,
    c_windows: Sequence[WindowDelta],
    b_windows: Sequence[WindowDelta] | None,
    newest: Sample,
    alpha: float,
    config: JudgeConfig,
) -> MetricVerdict | None:
    """The verdict of one SLO objective (errors or its latency threshold), None when it cannot be measured."""
    if objective.sli == "availability":
        counts = _error_counts(c_windows, b_windows)
        return judge_rate("error_rate", counts, reference=objective.error_budget, materiality=objective.error_budget,
                          alpha=alpha, config=config)  # fmt: skip
    if objective.sli != "latency" or not evaluate(objective, newest, newest).known:
        return None
    bound_s = next(le for le in newest.buckets if math.isclose(le, (objective.threshold_ms or 0.0) / 1000.0))
    counts = slo_threshold_counts(bound_s, c_windows, b_windows)
    metric = f"latency>{objective.threshold_ms:g}ms"
    budget = objective.error_budget
    return judge_rate(metric, counts, reference=budget, materiality=budget, alpha=alpha, config=config)


def _verdicts(
    slo: SLOSpec,
    canary: Sequence[Sample],
    baseline: Sequence[Sample],
    config: JudgeConfig,
    judge_latency: bool,
) -> list[MetricVerdict]:
    with_baseline = len(baseline) >= 2
    if with_baseline:
        c_windows, b_list = paired_intervals(canary, baseline)
        b_windows: list[WindowDelta] | None = b_list
    else:
        c_windows, b_windows = intervals(canary), None
    latency_objectives = [o for o in slo.objectives if o.sli == "latency"]
    histogram = bool(canary[-1].buckets) and bool(baseline) and bool(baseline[-1].buckets)
    detectors = (len(QUANTILES) + 1) if judge_latency and with_baseline and histogram else 0
    n_latency = len(latency_objectives) + detectors
    out: list[MetricVerdict] = []
    if not any(o.sli == "availability" for o in slo.objectives):  # errors are always judged
        budget = config.allowed_error_rate
        counts = _error_counts(c_windows, b_windows)
        out.append(judge_rate("error_rate", counts, reference=budget, materiality=budget,
                              alpha=config.alpha_for("errors", n_latency), config=config))  # fmt: skip
    for objective in slo.objectives:
        test = "errors" if objective.sli == "availability" else "latency"
        found = _objective_verdict(
            objective, c_windows, b_windows, canary[-1], config.alpha_for(test, n_latency), config
        )
        if found is not None:
            out.append(found)
    if detectors and b_windows is not None:
        alpha = config.alpha_for("latency", n_latency)
        out.extend(quantile_verdict(q, need, c_windows, b_windows, alpha, config) for q, need in QUANTILES)
        out.append(distribution_verdict(c_windows, b_windows, alpha, config))
    return out


def _shared(alerts: Sequence[BurnAlert], baseline_alerts: Sequence[BurnAlert]) -> list[str]:
    """Objectives whose canary alert fires while the baseline burns the same budget at least as fast as the rule."""
    hot = {(a.objective, a.rule) for a in baseline_alerts if a.long_burn is not None and a.long_burn > a.factor}
    return sorted({a.objective for a in alerts if a.firing and (a.objective, a.rule) in hot})


def _burn_reason(a: BurnAlert) -> str:
    return (
        f"burn rate {a.objective}/{a.rule}: {a.long_burn:.1f}× over {a.long_window_s} s (at least "
        f"{a.long_bound:.1f}× with confidence, {a.long_bad:.0f} bad events) and {a.short_burn:.1f}× over "
        f"{a.short_window_s} s (> {a.factor}×)"
    )


def _counts(canary: Sequence[Sample], baseline: Sequence[Sample]) -> dict[str, Any]:
    c = increase(canary)
    counts: dict[str, Any] = {
        "canary": {"requests": c.requests, "errors": c.errors, "window_s": round(c.duration_s, 3), "restarts": c.resets}
    }
    if len(baseline) >= 2:
        b = increase(baseline)
        counts["baseline"] = {
            "requests": b.requests,
            "errors": b.errors,
            "window_s": round(b.duration_s, 3),
            "restarts": b.resets,
        }
    return counts


def assess(
    slo: SLOSpec,
    canary: Sequence[Sample],
    baseline: Sequence[Sample] = (),
    *,
    config: JudgeConfig = DEFAULT_JUDGE,
    time_scale: float,
    min_requests: int,
    errors: Sequence[str] = (),
    judge_latency: bool = True,
) -> Assessment:
    """Judge the canary's series (against the baseline's when given), its restarts and its burn rates.

    Args:
        slo: the service's objectives (burn-rate alerts and one gating test run on each).
        canary: canary samples of the analysis so far, oldest first.
        baseline: baseline samples of the same polls; empty when there is none (blue-green, post-promotion).
        config: judge thresholds.
        time_scale: burn-rate window scale (:data:`pilotage.observe.burn_rate.ROLLOUT_TIME_SCALE`).
        min_requests: minimum-request guard of the burn-rate alerts.
        errors: source errors met while sampling (each becomes an Inconclusive reason).
        judge_latency: run the latency detectors (p50/p95/p99, distribution; they need a baseline).

    Returns:
        The :class:`Assessment`; Fail wins over a shared degradation, which wins over Inconclusive and Pass.
    """
    reasons = [f"metrics: {e}" for e in errors]
    if len(canary) < 2:
        reasons.append(f"canary: {len(canary)} sample(s), need 2")
        return Assessment(Outcome.INCONCLUSIVE, reasons=tuple(reasons))
    counts = _counts(canary, baseline)
    restarts = counts["canary"]["restarts"]
    alerts = tuple(burn_alerts(slo, canary, time_scale=time_scale, min_requests=min_requests))
    control = burn_alerts(slo, baseline, time_scale=time_scale, min_requests=min_requests) if len(baseline) >= 2 else []
    verdicts = _verdicts(slo, canary, baseline, config, judge_latency)
    shared = _shared(alerts, control)
    firing = [a for a in alerts if a.firing and a.objective not in shared]
    failures = [f"canary restarted {restarts} time(s) during the analysis (its counters reset)"] if restarts else []
    failures += [_burn_reason(a) for a in firing]
    failures += [f"{v.metric} fail: {v.reason}" for v in verdicts if v.outcome is Outcome.FAIL]
    held = [f"both versions burn the {o} budget at the paging rate: the canary is not the cause" for o in shared]
    unknown = [f"slo {a.objective}: {a.reason}" for a in alerts if a.reason and not a.reason.startswith("only")]
    pending = [f"{v.metric} inconclusive: {v.reason}" for v in verdicts if v.gate and v.outcome is Outcome.INCONCLUSIVE]
    reasons = list(dict.fromkeys([*failures, *held, *reasons, *unknown, *pending]))
    if failures:
        return Assessment(Outcome.FAIL, tuple(verdicts), alerts, tuple(reasons), counts)
    if held:
        return Assessment(Outcome.INCONCLUSIVE, tuple(verdicts), alerts, tuple(reasons), counts, SHARED)
    outcome = Outcome.INCONCLUSIVE if reasons or combine(verdicts) is not Outcome.PASS else Outcome.PASS
    return Assessment(outcome, tuple(verdicts), alerts, tuple(reasons), counts)
