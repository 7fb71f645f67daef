"""Multiwindow, multi-burn-rate SLO alerts (Google SRE Workbook, ch. 5 "Alerting on SLOs").

Source: Betsy Beyer et al., *The Site Reliability Workbook*, O'Reilly 2018, chapter 5, section 6 "Multiwindow,
Multi-Burn-Rate Alerts" (https://sre.google/workbook/alerting-on-slos/), table 5-8. The *burn rate* of a window is
how fast the error budget is spent relative to spending it exactly over the SLO period::

    burn_rate(W) = bad_ratio(W) / (1 - target)

An alert fires when the burn rate exceeds a factor over a long window **and** over a short window (one twelfth
of the long one, so the alert resets soon after the problem stops). The workbook's paging rules, the defaults
here (:data:`PAGE_RULES`):

========  ===========  ============  ========================================
factor    long window  short window  budget spent when it fires (30-day SLO)
========  ===========  ============  ========================================
14.4      1 h          5 m           2 %
6         6 h          30 m          5 %
========  ===========  ============  ========================================

**Scaled windows for rollouts.** A rollout lasts seconds to minutes, not hours, so every window is multiplied by
``time_scale`` (default :data:`ROLLOUT_TIME_SCALE` = 1/720: 1 h → 5 s, 5 m → 0.42 s, 6 h → 30 s, 30 m → 2.5 s;
post-promotion watches use the same factor). The burn-rate factors are unchanged: a version that burns budget
14.4× too fast is as bad over 5 s as over 1 h, only the evidence is thinner — hence the guard below. A window
shorter than the interval between two samples is measured over the newest interval; a window longer than the
series is measured over the whole series (a fresh version has no older data).

**Minimum-request guard** (the workbook's "low-traffic services" section): an alert does not fire while the
long window holds fewer than ``min_requests`` events; the result then says ``guarded`` so the caller can count
it as *no evidence* (Inconclusive), not as healthy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pilotage.observe.prometheus import Sample
from pilotage.observe.slo import SLOObjective, SLOSpec, evaluate

__all__ = ["PAGE_RULES", "ROLLOUT_TIME_SCALE", "BurnAlert", "BurnRule", "burn_alerts", "sample_at_or_before"]


@dataclass(frozen=True)
class BurnRule:
    """One multiwindow rule: fire when burn > ``factor`` over ``long_s`` and over ``short_s`` (unscaled seconds)."""

    name: str
    factor: float
    long_s: float
    short_s: float


#: SRE Workbook table 5-8, paging rows.
PAGE_RULES: tuple[BurnRule, ...] = (
    BurnRule("page-fast", 14.4, 3600.0, 300.0),
    BurnRule("page-slow", 6.0, 6 * 3600.0, 1800.0),
)
#: Default window scale for rollouts: 1 h of production alerting ≙ 5 s of rollout (1/720).
ROLLOUT_TIME_SCALE = 1.0 / 720.0


@dataclass(frozen=True)
class BurnAlert:
    """Outcome of one rule for one objective.

    Attributes:
        objective, rule: names. factor: burn-rate threshold. long_window_s, short_window_s: scaled windows (s).
        long_burn, short_burn: measured burn rates (None when the SLI has no value). long_events: events in the
        long window. firing: both burn rates > factor and the guard passed. guarded: too few events to judge.
        reason: why there is no value, or why it is guarded ('' otherwise).
    """

    objective: str
    rule: str
    factor: float
    long_window_s: float
    short_window_s: float
    long_burn: float | None
    short_burn: float | None
    long_events: float
    firing: bool
    guarded: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return plain data (for events and incident evidence)."""
        out = asdict(self)
        for key in ("long_burn", "short_burn"):
            if out[key] is not None:
                out[key] = round(out[key], 3)
        return out


def sample_at_or_before(series: Sequence[Sample], t: float) -> Sample:
    """Return the newest sample taken at or before ``t`` (the oldest sample when all are newer).

    Raises:
        ValueError: ``series`` is empty.
    """
    if not series:
        raise ValueError("empty series")
    chosen = series[0]
    for s in series:
        if s.at <= t:
            chosen = s
        else:
            break
    return chosen


def _window_start(series: Sequence[Sample], window_s: float) -> Sample:
    newest = series[-1]
    start = sample_at_or_before(series, newest.at - window_s)
    if start is newest and len(series) >= 2:  # window shorter than one interval: the newest interval
        start = series[-2]
    return start


def _rule(objective: SLOObjective, rule: BurnRule, series: Sequence[Sample], scale: float, min_req: int) -> BurnAlert:
    long_s, short_s = rule.long_s * scale, rule.short_s * scale
    newest = series[-1]
    long_v = evaluate(objective, _window_start(series, long_s), newest)
    short_v = evaluate(objective, _window_start(series, short_s), newest)
    base: dict[str, Any] = {
        "objective": objective.name,
        "rule": rule.name,
        "factor": rule.factor,
        "long_window_s": round(long_s, 3),
        "short_window_s": round(short_s, 3),
    }
    if not long_v.known or not short_v.known:
        reason = long_v.reason or short_v.reason
        return BurnAlert(
            **base, long_burn=None, short_burn=None, long_events=0.0, firing=False, guarded=True, reason=reason
        )
    budget = objective.error_budget
    long_burn, short_burn = long_v.bad_ratio / budget, short_v.bad_ratio / budget
    if long_v.total < min_req:
        return BurnAlert(
            **base,
            long_burn=long_burn,
            short_burn=short_burn,
            long_events=long_v.total,
            firing=False,
            guarded=True,
            reason=f"only {long_v.total:.0f} events in the long window (< {min_req})",
        )
    firing = long_burn > rule.factor and short_burn > rule.factor and short_v.total > 0
    return BurnAlert(
        **base, long_burn=long_burn, short_burn=short_burn, long_events=long_v.total, firing=firing, guarded=False
    )


def burn_alerts(
    slo: SLOSpec,
    series: Sequence[Sample],
    *,
    rules: Sequence[BurnRule] = PAGE_RULES,
    time_scale: float = ROLLOUT_TIME_SCALE,
    min_requests: int = 20,
) -> list[BurnAlert]:
    """Evaluate every rule for every objective of ``slo`` on one version's ``series`` (oldest first).

    Args:
        slo: the service's objectives.
        series: cumulative samples of one version, oldest first, at least two.
        rules: burn-rate rules (default: the workbook's two paging rules).
        time_scale: multiplier of every window (see the module docstring).
        min_requests: events the long window needs before a rule may fire.

    Returns:
        One :class:`BurnAlert` per (objective, rule), in that order.

    Raises:
        ValueError: fewer than two samples.
    """
    if len(series) < 2:
        raise ValueError("burn rates need at least two samples")
    return [_rule(o, r, series, time_scale, min_requests) for o in slo.objectives for r in rules]
