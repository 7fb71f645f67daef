"""One analysis of a rollout: burn-rate alerts plus the sequential canary judge on the samples so far (pure).

:func:`assess` is what the reliability agent runs at every poll and records as a decision: it takes the two
versions' sample series (cumulative counters, oldest first, see :mod:`pilotage.observe.samples`) and returns
an :class:`Assessment`:

* **Fail** — the canary restarted during the analysis (a counter reset: a crash-looping canary is a regression
  in itself, and its errors before each restart are still counted, :func:`~pilotage.observe.samples.increase`);
  a burn-rate alert fires on the canary alone (SRE Workbook ch. 5 with a minimum of bad events and a confidence
  bound, :mod:`pilotage.observe.burn_rate`); or a judge test fails (:mod:`pilotage.observe.judge`: the error rate
  and every latency objective of the SLO against the baseline — or against the SLO without one —, p50/p95/p99
  and the latency distribution from the histogram buckets, :mod:`pilotage.observe.latency`).
* **Inconclusive** — no Fail, but the evidence does not yet rule out a regression of the tolerance (the rollout
  keeps observing), the canary burns an objective's budget faster than the slow page's factor (6×) over the step
  — never a pass while it does —, or some evidence is missing: a source error, an SLO objective whose SLI kind or
  metric is unknown. Every reason is listed. Inconclusive is never a pass. With ``cause = "shared_degradation"``
  the baseline burns an objective's budget (at least :data:`~pilotage.observe.burn_rate.MIN_BAD_EVENTS` bad
  events, a measured burn above 6× and an e-value against the budget at ``1/alpha``) and the canary cannot be
  shown to burn less (its upper bound at ``beta`` is above 6×): the environment degrades, not the new version, so
  the canary's burn-rate alerts do not fail it and the rollout holds and alerts instead (the step extends to its
  limit, then the reliability agent turns it into ``pause``, never ``rollback``). The comparative test of that
  objective still fails a canary that is clearly worse than the degraded baseline, but only by what the canary
  *adds*: its excess over the baseline must be significant (the e-value at ``1/alpha``, as always) **and** larger
  than the slow page's burn, :data:`SLOW_FACTOR` × the objective's budget (:func:`_degraded`). The rule: the SLO's
  budget is the materiality of a comparison against a baseline that meets the SLO; against a baseline that itself
  burns more than 6× (the SRE Workbook's slow-page factor, table 5-8), an excess that would not page on its own
  is within what the shared degradation does to two versions that are not exchangeable (a fresh process beside a
  warm one, a preview's own route) and is not shown to be the canary's — that objective's verdict is
  Inconclusive (hold), not Fail. An excess that would page on its own still fails, and so do the latency
  detectors (p50/p95/p99, distribution), which judge relative shifts.
* **Pass** — every gating test ruled out a regression and nothing failed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pilotage.observe.burn_rate import MIN_BAD_EVENTS, PAGE_RULES, BurnAlert, burn_alerts
from pilotage.observe.columns import Windows, paired_windows, series_windows
from pilotage.observe.judge import DEFAULT_JUDGE, JudgeConfig, MetricVerdict, Outcome, RateCounts, combine, judge_rate
from pilotage.observe.latency import QUANTILES, distribution_verdict, quantile_verdict, slo_threshold_counts
from pilotage.observe.samples import Sample, WindowDelta
from pilotage.observe.sequential import TableColumns, bernoulli_bounds, binomial_log_e
from pilotage.observe.slo import SLOObjective, SLOSpec, evaluate

__all__ = ["Assessment", "assess", "paired_intervals"]

#: Cause of an Inconclusive assessment where both versions burn the budget alike (the canary is not blamed).
SHARED = "shared_degradation"
#: A population "burns" an objective's budget above the slow page's factor (SRE Workbook table 5-8: 6×).
SLOW_FACTOR = PAGE_RULES[-1].factor


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
    intervals into one, so every pair of windows covers the same time (:func:`~pilotage.observe.columns.paired_windows`,
    what :func:`assess` judges, as columns).
    """
    c_windows, b_windows = paired_windows(canary, baseline)
    return c_windows.deltas(), b_windows.deltas()


def _error_counts(c_windows: Windows, b_windows: Windows | None) -> RateCounts:
    duration_s = float(c_windows.duration_s.sum())

    def counts(w: Windows) -> tuple[np.ndarray, np.ndarray]:
        return np.rint(w.errors).astype(np.int64), np.rint(w.requests).astype(np.int64)

    x, n = counts(c_windows)
    if b_windows is None:
        return RateCounts(TableColumns(x, n, np.zeros_like(x), np.zeros_like(n)), False, duration_s)
    both = min(len(c_windows), len(b_windows))
    y, m = counts(b_windows.head(both))
    return RateCounts(TableColumns(x[:both], n[:both], y, m), True, duration_s)


@dataclass(frozen=True)
class _Judged:
    """One SLO objective (or the always-judged error rate): its budget, the counts and the gating verdict."""

    name: str
    budget: float
    counts: RateCounts
    verdict: MetricVerdict


def _objective_counts(
    objective: SLOObjective, c_windows: Windows, b_windows: Windows | None, newest: Sample
) -> tuple[str, RateCounts] | None:
    """(metric name, per-interval counts) of one objective; None when it cannot be measured (a reason elsewhere)."""
    if objective.sli == "availability":
        return "error_rate", _error_counts(c_windows, b_windows)
    if objective.sli != "latency" or not evaluate(objective, newest, newest).known:
        return None
    bound_s = next(le for le in newest.buckets if math.isclose(le, (objective.threshold_ms or 0.0) / 1000.0))
    return f"latency>{objective.threshold_ms:g}ms", slo_threshold_counts(bound_s, c_windows, b_windows)


@dataclass(frozen=True)
class _Series:
    """The intervals of an analysis: each series' own (for its totals) and the windows judged."""

    canary: Windows
    baseline: Windows | None
    judged: Windows
    judged_baseline: Windows | None


def _series(canary: Sequence[Sample], baseline: Sequence[Sample]) -> _Series:
    """Each series' intervals once; with a baseline the judged windows are the paired ones, else the canary's own."""
    own = series_windows(canary)
    if len(baseline) < 2:
        return _Series(own, None, own, None)
    base = series_windows(baseline)
    c_windows, b_windows = paired_windows(canary, baseline, (own, base))
    return _Series(own, base, c_windows, b_windows)


def _judged(
    slo: SLOSpec, c_windows: Windows, b_windows: Windows | None, newest: Sample,
    tests: tuple[int, int], config: JudgeConfig,
) -> list[_Judged]:  # fmt: skip
    """The gating verdicts: one per measurable objective, and the error rate even without an availability one."""
    out = []
    if not any(o.sli == "availability" for o in slo.objectives):
        budget = config.allowed_error_rate
        counts = _error_counts(c_windows, b_windows)
        alpha = config.alpha_for("errors", *tests)
        verdict = judge_rate("error_rate", counts, reference=budget, materiality=budget, alpha=alpha, config=config)
        out.append(_Judged("availability", budget, counts, verdict))
    for objective in slo.objectives:
        found = _objective_counts(objective, c_windows, b_windows, newest)
        if found is None:
            continue
        metric, counts = found
        budget = objective.error_budget
        alpha = config.alpha_for("errors" if objective.sli == "availability" else "objective", *tests)
        verdict = judge_rate(metric, counts, reference=budget, materiality=budget, alpha=alpha, config=config)
        out.append(_Judged(objective.name, budget, counts, verdict))
    return out


def _detectors(c_windows: Windows, b_windows: Windows, alpha: float, config: JudgeConfig) -> list[MetricVerdict]:
    """p50/p95/p99 and the distribution test (Fail on evidence; they never hold a Pass)."""
    out = [quantile_verdict(q, need, c_windows, b_windows, alpha, config) for q, need in QUANTILES]
    out.append(distribution_verdict(c_windows, b_windows, alpha, config))
    return out


def _warm(events: int, trials: int, budget: float) -> bool:
    """At least MIN_BAD_EVENTS bad events and a measured burn above the slow page's factor over the step."""
    return events >= MIN_BAD_EVENTS and trials > 0 and events / trials > SLOW_FACTOR * budget


def _burning(events: int, trials: int, budget: float, alpha: float) -> bool:
    """Whether a population burns an objective's budget: warm and significantly above it (e-value ≥ 1/alpha)."""
    return _warm(events, trials, budget) and binomial_log_e(events, trials, budget) >= math.log(1.0 / alpha)


def _shared(judged: Sequence[_Judged], config: JudgeConfig) -> list[str]:
    """Objectives whose budget the baseline burns while the canary cannot be shown to burn less than the slow page.

    The environment degrades, not the new version: its burn-rate alerts do not fail the canary, and it may not
    pass (hold and alert). A canary shown below 6× (upper bound at ``beta``) is judged on its own.
    """
    out = []
    for j in judged:
        if not j.counts.baseline or not _burning(*j.counts.control, j.budget, config.alpha):
            continue
        if bernoulli_bounds(*j.counts.canary, config.beta)[1] >= SLOW_FACTOR * j.budget:
            out.append(j.name)
    return out


def _degraded(judged: _Judged) -> _Judged:
    """The verdict of an objective whose budget the baseline burns too (:func:`_shared`; see the module docstring).

    A Fail stands only when the canary's excess over the baseline is above :data:`SLOW_FACTOR` × the budget (it
    would page by itself); a smaller significant excess becomes Inconclusive, with the evidence kept.
    """
    verdict, limit = judged.verdict, SLOW_FACTOR * judged.budget
    if verdict.outcome is not Outcome.FAIL or (verdict.effect_size or 0.0) > limit:
        return judged
    reason = (
        f"the baseline burns the {judged.name} budget too: the canary's excess is significant but not above "
        f"{SLOW_FACTOR:g}× the budget ({limit:.2%}), so it is not shown to be the cause; {verdict.reason}"
    )
    held = replace(
        verdict,
        outcome=Outcome.INCONCLUSIVE,
        reason=reason,
        threshold={**verdict.threshold, "degraded_materiality": limit},
    )
    return replace(judged, verdict=held)


def _shared_reasons(shared: Sequence[str], *, failing: bool) -> list[str]:
    """The reasons a shared degradation adds: the hold (nothing failed), else a note beside the canary's failures.

    "Not the cause" is said only of a canary nothing failed: a Fail names its own evidence, so the note beside it
    says the baseline burns the budget too, never that the canary is not the cause.
    """
    if failing:
        return [
            f"the baseline burns the {o} budget too (> {SLOW_FACTOR:g}×), but the canary fails on the evidence above"
            for o in shared
        ]
    return [
        f"the baseline burns the {o} budget (> {SLOW_FACTOR:g}×) and the canary may too: the canary is not the cause"
        for o in shared
    ]


def _burn_hold(judged: _Judged) -> str:
    events, trials = judged.counts.canary
    burn = events / trials / judged.budget
    return f"the canary burns the {judged.name} budget at {burn:.1f}× over the step (> {SLOW_FACTOR:g}×): no pass"


def _burn_reason(a: BurnAlert) -> str:
    return (
        f"burn rate {a.objective}/{a.rule}: {a.long_burn:.1f}× over {a.long_window_s} s (at least "
        f"{a.long_bound:.1f}× with confidence, {a.long_bad:.0f} bad events) and {a.short_burn:.1f}× over "
        f"{a.short_window_s} s (> {a.factor}×)"
    )


def _counts(series: _Series) -> dict[str, Any]:
    def summary(windows: Windows) -> dict[str, Any]:
        total = windows.total()
        return {
            "requests": total.requests,
            "errors": total.errors,
            "window_s": round(total.duration_s, 3),
            "restarts": total.resets,
        }

    counts: dict[str, Any] = {"canary": summary(series.canary)}
    if series.baseline is not None:
        counts["baseline"] = summary(series.baseline)
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
        The :class:`Assessment`; Fail wins over a shared degradation (where the comparison of a shared objective
        fails only above :data:`SLOW_FACTOR` × its budget, :func:`_degraded`), which wins over Inconclusive and
        Pass.
    """
    reasons = [f"metrics: {e}" for e in errors]
    if len(canary) < 2:
        reasons.append(f"canary: {len(canary)} sample(s), need 2")
        return Assessment(Outcome.INCONCLUSIVE, reasons=tuple(reasons))
    series = _series(canary, baseline)
    counts = _counts(series)
    restarts = counts["canary"]["restarts"]
    control = baseline if len(baseline) >= 2 else ()
    own = (series.canary, series.baseline)
    alerts = tuple(burn_alerts(slo, canary, time_scale=time_scale, min_requests=min_requests, control=control, own=own))
    c_windows, b_windows = series.judged, series.judged_baseline
    histogram = judge_latency and b_windows is not None and bool(canary[-1].buckets) and bool(baseline[-1].buckets)
    tests = (sum(o.sli == "latency" for o in slo.objectives), len(QUANTILES) + 1 if histogram else 0)
    judged = _judged(slo, c_windows, b_windows, canary[-1], tests, config)
    shared = _shared(judged, config)
    judged = [_degraded(j) if j.name in shared else j for j in judged]
    verdicts = [j.verdict for j in judged]
    if histogram and b_windows is not None:
        verdicts += _detectors(c_windows, b_windows, config.alpha_for("detector", *tests), config)
    burns = [_burn_hold(j) for j in judged if _warm(*j.counts.canary, j.budget) and j.name not in shared]
    failures = [f"canary restarted {restarts} time(s) during the analysis (its counters reset)"] if restarts else []
    failures += [_burn_reason(a) for a in alerts if a.firing and a.objective not in shared]
    failures += [f"{v.metric} fail: {v.reason}" for v in verdicts if v.outcome is Outcome.FAIL]
    held = [] if failures else _shared_reasons(shared, failing=False)
    failures += _shared_reasons(shared, failing=True) if failures else []
    unknown = [f"slo {a.objective}: {a.reason}" for a in alerts if a.reason and not a.reason.startswith("only")]
    pending = [f"{v.metric} inconclusive: {v.reason}" for v in verdicts if v.gate and v.outcome is Outcome.INCONCLUSIVE]
    reasons = list(dict.fromkeys([*failures, *held, *reasons, *unknown, *burns, *pending]))
    if failures:
        return Assessment(Outcome.FAIL, tuple(verdicts), alerts, tuple(reasons), counts)
    if held:
        return Assessment(Outcome.INCONCLUSIVE, tuple(verdicts), alerts, tuple(reasons), counts, SHARED)
    outcome = Outcome.INCONCLUSIVE if reasons or combine(verdicts) is not Outcome.PASS else Outcome.PASS
    return Assessment(outcome, tuple(verdicts), alerts, tuple(reasons), counts)
