"""Latency beyond the median: the canary's latency distribution judged from the histogram buckets, sequentially.

Per-request latencies are only known to their histogram bucket (``http_request_duration_seconds_bucket``), so
everything here works on bucket counts per interval (:class:`~pilotage.observe.prometheus.WindowDelta`
``good_latency``) — never on per-interval means, whose variance shrinks with the requests per interval and so
differs between a 10 % canary and its 90 % baseline even when the versions are identical.

* :func:`quantile_verdict` — p50, p95 and p99. In each interval the bound is the smallest bucket bound at or above
  the baseline's q-quantile *of the intervals before it* (so it is fixed before the interval's counts are seen:
  the e-process stays valid whatever bound is chosen); the shares of canary and baseline requests slower than it
  are compared with the conditional odds-ratio e-process. Fail when the e-value reaches ``1/alpha`` and the
  canary's q-quantile exceeds the baseline's by more than ``latency_tolerance`` (relative) and
  ``latency_min_shift_s`` (absolute). Both quantiles are reported with time-uniform confidence intervals to bucket
  resolution (:func:`quantile_interval`).
* :func:`distribution_verdict` — the whole distribution: the sequential ridit test on the bucketed per-request
  latencies (:func:`~pilotage.observe.sequential.ridit_log_e`, a bucketed Mann-Whitney); Fail when significant and
  the canary's mean latency (``_sum``/``_count``) is above the baseline's by the same tolerances.
* :func:`slo_threshold_counts` — the share of requests slower than an SLO objective's ``threshold_ms``, per interval,
  for :func:`~pilotage.observe.judge.judge_rate` (the SLO's own threshold and budget).

Quantiles are interpolated linearly inside their bucket, as PromQL ``histogram_quantile()`` does
(https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile). These verdicts are
detectors (``gate = False``): a tail regression fails the step once the evidence shows it, and the SLO's own
objectives decide when a step may pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pilotage.observe.judge import DEFAULT_JUDGE, JudgeConfig, MetricVerdict, Outcome, RateCounts
from pilotage.observe.prometheus import WindowDelta
from pilotage.observe.sequential import CS_PRIOR, Table, bernoulli_bounds, conditional_log_e, ridit_log_e

__all__ = [
    "QUANTILES",
    "distribution_verdict",
    "histogram_quantile",
    "quantile_interval",
    "quantile_verdict",
    "slo_threshold_counts",
]

#: The quantiles judged, with the baseline requests needed before their bound is taken from the baseline
#: (2 / (1 − q): enough for the quantile to fall inside the data rather than at its maximum).
QUANTILES: tuple[tuple[float, int], ...] = ((0.5, 4), (0.95, 40), (0.99, 200))


def _bounds(windows: Sequence[WindowDelta]) -> list[float]:
    seen: set[float] = set()
    for w in windows:
        seen.update(w.good_latency)
    return sorted(seen)


def _cumulative(window: WindowDelta, bounds: Sequence[float]) -> list[float]:
    """Requests at most each bound (the ``+Inf`` bucket is the timed count)."""
    return [window.latency_count if math.isinf(le) else window.good_latency.get(le, 0.0) for le in bounds]


def _total(windows: Sequence[WindowDelta]) -> WindowDelta | None:
    if not windows:
        return None
    total = windows[0]
    for w in windows[1:]:
        total = total + w
    return total


def histogram_quantile(q: float, bounds: Sequence[float], cumulative: Sequence[float]) -> float | None:
    """The q-quantile (s) of a cumulative histogram, linear inside its bucket; None without requests.

    A quantile in the ``+Inf`` bucket is the largest finite bound (PromQL's rule).
    """
    total = cumulative[-1] if cumulative else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, count in zip(bounds, cumulative, strict=True):
        if count >= rank:
            if math.isinf(le):
                return lower_bound
            inside = count - lower_count
            share = (rank - lower_count) / inside if inside > 0 else 1.0
            return lower_bound + (le - lower_bound) * share
        lower_bound, lower_count = le, count
    return lower_bound


def quantile_interval(
    q: float, bounds: Sequence[float], cumulative: Sequence[float], alpha: float
) -> tuple[float, float]:
    """Time-uniform confidence interval (s) of the q-quantile, to bucket resolution.

    The lower end is the largest bound whose cumulative share is surely below q, the upper end the smallest bound
    whose share is surely at least q (time-uniform bounds of the share of slower requests at ``alpha``, with the
    small-rate prior for q ≥ 0.9 and Jeffreys' Beta(½, ½) for the median); (0, inf) without requests.
    """
    total = int(round(cumulative[-1])) if cumulative else 0
    prior = CS_PRIOR if q >= 0.9 else (0.5, 0.5)  # a tail share is small (the default prior's side); a median's not
    low, high = 0.0, math.inf
    for le, count in zip(bounds, cumulative, strict=True):
        slower = total - min(int(round(count)), total)
        slower_low, slower_high = bernoulli_bounds(slower, total, alpha, prior=prior)
        share_low, share_high = 1.0 - slower_high, 1.0 - slower_low
        if share_high < q:
            low = le
        if share_low >= q and math.isinf(high):
            high = le
    return low, high


def _slower_table(canary: WindowDelta, baseline: WindowDelta, bound: float) -> Table:
    def slower(w: WindowDelta) -> tuple[int, int]:
        n = int(round(w.latency_count))
        return max(0, n - int(round(w.good_latency.get(bound, 0.0)))), n

    (x, n), (y, m) = slower(canary), slower(baseline)
    return Table(x, n, y, m)


def _quantile_tables(
    q: float, need: int, canary: Sequence[WindowDelta], baseline: Sequence[WindowDelta], bounds: list[float]
) -> list[Table]:
    """Per interval: slower-than-bound counts, the bound set from the baseline's intervals before it."""
    tables: list[Table] = []
    past = [0.0] * len(bounds)
    for c, b in zip(canary, baseline, strict=False):
        if past[-1] >= need:
            estimate = histogram_quantile(q, bounds, past)
            bound = next((le for le in bounds if estimate is not None and le >= estimate), math.inf)
            if not math.isinf(bound):
                tables.append(_slower_table(c, b, bound))
        past = [p + v for p, v in zip(past, _cumulative(b, bounds), strict=True)]
    return tables


def _shift_material(canary_s: float | None, baseline_s: float | None, config: JudgeConfig) -> bool:
    if canary_s is None or baseline_s is None:
        return False
    return (
        canary_s > baseline_s * (1.0 + config.latency_tolerance) and canary_s - baseline_s > config.latency_min_shift_s
    )


def quantile_verdict(
    q: float,
    need: int,
    canary: Sequence[WindowDelta],
    baseline: Sequence[WindowDelta],
    alpha: float,
    config: JudgeConfig = DEFAULT_JUDGE,
) -> MetricVerdict:
    """Sequential verdict on the canary's q-quantile against the baseline's (see the module docstring).

    Args:
        q: the quantile (0.5, 0.95, 0.99).
        need: baseline requests before a bound is taken from the baseline.
        canary: per-interval windows of the canary.
        baseline: the baseline's windows of the same intervals.
        alpha: this test's share of the false-alarm budget.
        config: ``latency_tolerance``, ``latency_min_shift_s``, ``beta`` (the intervals' confidence).
    """
    metric = f"latency_p{round(q * 100)}_s"
    bounds = _bounds([*canary, *baseline])
    tables = _quantile_tables(q, need, canary, baseline, bounds)
    log_e = conditional_log_e(tables)
    c_total, b_total = _total(canary), _total(baseline)
    c_cum = _cumulative(c_total, bounds) if c_total else [0.0] * len(bounds)
    b_cum = _cumulative(b_total, bounds) if b_total else [0.0] * len(bounds)
    c_q, b_q = histogram_quantile(q, bounds, c_cum), histogram_quantile(q, bounds, b_cum)
    e_value, threshold_e = math.exp(min(log_e, 700.0)), 1.0 / alpha
    evidence = {
        "e_value": e_value,
        "e_threshold": threshold_e,
        "canary_s": c_q,
        "canary_interval_s": list(quantile_interval(q, bounds, c_cum, config.beta)) if bounds else None,
        "baseline_s": b_q,
        "baseline_interval_s": list(quantile_interval(q, bounds, b_cum, config.beta)) if bounds else None,
        "intervals": len(tables),
    }
    effect = c_q / b_q if c_q is not None and b_q else None
    said = (
        f"canary p{round(q * 100)} {_ms(c_q)} vs baseline {_ms(b_q)} (fails above ×{1 + config.latency_tolerance:.3g} "
        f"and +{config.latency_min_shift_s * 1000:.3g} ms once significant); e={e_value:.3g} of {threshold_e:.0f}"
    )
    failed = log_e >= math.log(threshold_e) and _shift_material(c_q, b_q, config)
    outcome = Outcome.FAIL if failed else (Outcome.PASS if tables else Outcome.INCONCLUSIVE)
    reason = said if tables else f"no interval with enough baseline requests yet (needs {need}); {said}"
    threshold = {"alpha": alpha, "max_effect": 1.0 + config.latency_tolerance}
    p_value = min(1.0, 1.0 / e_value)
    test = "sequential conditional test of the share slower than the baseline's quantile bucket"
    return MetricVerdict(metric, outcome, test, log_e, p_value, effect, threshold, reason, evidence, gate=False)


def distribution_verdict(
    canary: Sequence[WindowDelta],
    baseline: Sequence[WindowDelta],
    alpha: float,
    config: JudgeConfig = DEFAULT_JUDGE,
) -> MetricVerdict:
    """Sequential ridit test of the bucketed per-request latencies; Fail needs a material mean shift too."""
    bounds = _bounds([*canary, *baseline])
    pairs = []
    for c, b in zip(canary, baseline, strict=False):
        c_cum, b_cum = _cumulative(c, bounds), _cumulative(b, bounds)
        pairs.append((_per_bucket(c_cum), _per_bucket(b_cum)))
    log_e, ridit = ridit_log_e(pairs)
    c_total, b_total = _total(canary), _total(baseline)
    c_mean = c_total.mean_latency_s if c_total else None
    b_mean = b_total.mean_latency_s if b_total else None
    e_value, threshold_e = math.exp(min(log_e, 700.0)), 1.0 / alpha
    evidence = {
        "e_value": e_value,
        "e_threshold": threshold_e,
        "mean_ridit": ridit,
        "canary_mean_s": c_mean,
        "baseline_mean_s": b_mean,
    }
    said = (
        f"P(canary request slower) {ridit:.3f} (0.5 = same); mean {_ms(c_mean)} vs {_ms(b_mean)} "
        f"(fails above ×{1 + config.latency_tolerance:.3g} once significant); e={e_value:.3g} of {threshold_e:.0f}"
    )
    failed = log_e >= math.log(threshold_e) and _shift_material(c_mean, b_mean, config)
    outcome = Outcome.FAIL if failed else (Outcome.PASS if pairs else Outcome.INCONCLUSIVE)
    threshold = {"alpha": alpha, "max_effect": 1.0 + config.latency_tolerance}
    test = "sequential ridit (bucketed Mann-Whitney) test"
    effect = c_mean / b_mean if c_mean is not None and b_mean else None
    p_value = min(1.0, 1.0 / e_value)
    return MetricVerdict(
        "latency_distribution", outcome, test, log_e, p_value, effect, threshold, said, evidence, False
    )


def _per_bucket(cumulative: Sequence[float]) -> list[float]:
    out, previous = [], 0.0
    for count in cumulative:
        out.append(max(0.0, count - previous))
        previous = max(previous, count)
    return out


def slo_threshold_counts(
    bound_s: float, canary: Sequence[WindowDelta], baseline: Sequence[WindowDelta] | None
) -> RateCounts:
    """Per-interval counts of requests slower than ``bound_s`` (an SLO objective's threshold, a bucket bound)."""
    empty = WindowDelta(0.0, 0.0, 0.0, 0.0, 0.0, {})
    duration_s = sum(c.duration_s for c in canary)
    if baseline is None:
        tables = tuple(_slower_table(c, empty, bound_s) for c in canary)
        return RateCounts(tables, False, duration_s)
    pairs = zip(canary, baseline, strict=False)
    return RateCounts(tuple(_slower_table(c, b, bound_s) for c, b in pairs), True, duration_s)


def _ms(value_s: float | None) -> str:
    return "n/a" if value_s is None else f"{value_s * 1000:.4g} ms"
