"""One analysis of a rollout: burn-rate alerts plus the canary judge on the samples collected so far (pure).

:func:`assess` is what the reliability agent runs at every poll and records as a decision:
it takes the two versions' sample series (cumulative counters, oldest first, see
:mod:`pilotage.observe.prometheus`) and returns an :class:`Assessment`:

* **Fail** — any burn-rate alert fires on the canary (SRE Workbook ch. 5, :mod:`pilotage.observe.burn_rate`), or
  any judge test fails (:mod:`pilotage.observe.judge`): error counts (Fisher vs the baseline, binomial without
  one), mean latency per interval (Mann-Whitney U with effect tolerance) and its spread (Brown-Forsythe).
* **Inconclusive** — no Fail, but some evidence is missing: a source error (unreachable, PromQL error, empty
  result, a version that stopped exposing metrics), an SLO objective whose SLI kind or metric is unknown, too few
  requests or intervals. Every reason is listed. Inconclusive is never a pass.
* **Pass** — everything measured and nothing failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pilotage.observe.burn_rate import BurnAlert, burn_alerts
from pilotage.observe.judge import (
    DEFAULT_JUDGE,
    JudgeConfig,
    MetricVerdict,
    Outcome,
    combine,
    compare_distributions,
    compare_error_counts,
    compare_variance,
)
from pilotage.observe.prometheus import Sample, delta
from pilotage.observe.slo import SLOSpec

__all__ = ["Assessment", "assess", "interval_means"]


@dataclass(frozen=True)
class Assessment:
    """Outcome of one analysis with its evidence: judge verdicts, burn alerts, and the reasons of a non-pass."""

    outcome: Outcome
    verdicts: tuple[MetricVerdict, ...] = ()
    alerts: tuple[BurnAlert, ...] = ()
    reasons: tuple[str, ...] = ()
    counts: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: the outcome and the first reasons."""
        return f"{self.outcome.value}: " + ("; ".join(self.reasons[:3]) or "all checks passed")

    def to_dict(self) -> dict[str, Any]:
        """Return plain data (for events, decisions and incident evidence)."""
        return {
            "outcome": self.outcome.value,
            "reasons": list(self.reasons),
            "verdicts": [v.to_dict() for v in self.verdicts],
            "alerts": [a.to_dict() for a in self.alerts],
            "counts": self.counts,
        }


def interval_means(series: Sequence[Sample]) -> list[float]:
    """Mean request latency (s) of each interval between consecutive samples that timed at least one request."""
    out = []
    for before, after in zip(series, series[1:], strict=False):
        mean = delta(before, after).mean_latency_s
        if mean is not None:
            out.append(mean)
    return out


def _error_verdict(baseline: Sequence[Sample], canary: Sequence[Sample], config: JudgeConfig) -> MetricVerdict:
    c = delta(canary[0], canary[-1])
    if len(baseline) >= 2:
        b = delta(baseline[0], baseline[-1])
        if b.requests > 0:
            return compare_error_counts(round(c.errors), round(c.requests), round(b.errors), round(b.requests), config)
    return compare_error_counts(round(c.errors), round(c.requests), None, None, config)


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
    """Judge the canary's series (against the baseline's when given) and its burn rates.

    Args:
        slo: the service's objectives (burn-rate alerts run on each).
        canary: canary samples of the analysis window, oldest first.
        baseline: baseline samples of the same window; empty when there is none (blue-green, post-promotion).
        config: judge thresholds.
        time_scale: burn-rate window scale (:data:`pilotage.observe.burn_rate.ROLLOUT_TIME_SCALE`).
        min_requests: minimum-request guard of the burn-rate alerts.
        errors: source errors met while sampling (each becomes an Inconclusive reason).
        judge_latency: run the latency rank and variance tests (needs a baseline).

    Returns:
        The :class:`Assessment`; Fail wins over Inconclusive, which wins over Pass.
    """
    reasons = [f"metrics: {e}" for e in errors]
    if len(canary) < 2:
        reasons.append(f"canary: {len(canary)} sample(s), need 2")
        return Assessment(Outcome.INCONCLUSIVE, reasons=tuple(reasons))
    alerts = tuple(burn_alerts(slo, canary, time_scale=time_scale, min_requests=min_requests))
    verdicts = [_error_verdict(baseline, canary, config)]
    if judge_latency and len(baseline) >= 2:
        b_lat, c_lat = interval_means(baseline), interval_means(canary)
        verdicts.append(compare_distributions("latency_mean_s", b_lat, c_lat, config))
        verdicts.append(compare_variance("latency_mean_s", b_lat, c_lat, config))
    firing = [a for a in alerts if a.firing]
    for a in firing:
        reasons.append(
            f"burn rate {a.objective}/{a.rule}: {a.long_burn:.1f}× over {a.long_window_s} s and "
            f"{a.short_burn:.1f}× over {a.short_window_s} s (> {a.factor}×)"
        )
    # failures first, then what the SLO could not measure (the usual root cause), then the tests short of data
    reasons.extend(f"{v.metric} fail: {v.reason}" for v in verdicts if v.outcome is Outcome.FAIL)
    reasons.extend(f"slo {a.objective}: {a.reason}" for a in alerts if a.reason and not a.reason.startswith("only"))
    reasons.extend(f"{v.metric} inconclusive: {v.reason}" for v in verdicts if v.outcome is Outcome.INCONCLUSIVE)
    reasons = list(dict.fromkeys(reasons))  # the rank and spread tests can give the same "too few" reason
    c = delta(canary[0], canary[-1])
    counts: dict[str, Any] = {
        "canary": {"requests": c.requests, "errors": c.errors, "window_s": round(c.duration_s, 3)}
    }
    if len(baseline) >= 2:
        b = delta(baseline[0], baseline[-1])
        counts["baseline"] = {"requests": b.requests, "errors": b.errors, "window_s": round(b.duration_s, 3)}
    if firing or combine(verdicts) is Outcome.FAIL:
        outcome = Outcome.FAIL
    elif reasons or combine(verdicts) is Outcome.INCONCLUSIVE:
        outcome = Outcome.INCONCLUSIVE
    else:
        outcome = Outcome.PASS
    return Assessment(outcome, tuple(verdicts), alerts, tuple(reasons), counts)
