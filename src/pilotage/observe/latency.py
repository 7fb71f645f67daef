"""Latency beyond the median: the canary's latency distribution judged from the histogram buckets, sequentially.

Per-request latencies are only known to their histogram bucket (``http_request_duration_seconds_bucket``), so
everything here works on bucket counts per interval (:class:`~pilotage.observe.samples.WindowDelta`
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

import numpy as np

from pilotage.observe.columns import Windows
from pilotage.observe.judge import DEFAULT_JUDGE, JudgeConfig, MetricVerdict, Outcome, RateCounts
from pilotage.observe.samples import WindowDelta
from pilotage.observe.sequential import (
    CS_PRIOR,
    TableColumns,
    conditional_log_e,
    outside_bounds,
    ridit_columns_log_e,
)

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


def _aligned(
    canary: Windows | Sequence[WindowDelta], baseline: Windows | Sequence[WindowDelta]
) -> tuple[Windows, Windows]:
    """Both populations' windows as columns over the union of their bounds."""
    c, b = Windows.of(canary), Windows.of(baseline)
    if np.array_equal(c.bounds, b.bounds):
        return c, b
    bounds = np.union1d(c.bounds, b.bounds)
    return c.on(bounds), b.on(bounds)


def _summed(windows: Windows) -> list[float]:
    """Requests at most each bound over all windows (the ``+Inf`` bucket is the timed count)."""
    return [float(v) for v in windows.cumulative().sum(axis=0)]


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
    whose share is surely at least q (time-uniform bounds of the share of slower requests at ``alpha``,
    :func:`~pilotage.observe.sequential.outside_bounds`, with the small-rate prior for q ≥ 0.9 and Jeffreys'
    Beta(½, ½) for the median); (0, inf) without requests.
    """
    total = int(round(cumulative[-1])) if len(cumulative) else 0
    prior = CS_PRIOR if q >= 0.9 else (0.5, 0.5)  # a tail share is small (the default prior's side); a median's not
    slower = total - np.minimum(np.rint(np.asarray(cumulative, dtype=float)), total)
    surely_below, surely_above = outside_bounds(1.0 - q, slower, np.full(slower.shape, total), alpha, prior)
    # the share at a bound is surely below q when 1 − q is under the slower share's bounds, at least q when above
    lows = [le for le, below in zip(bounds, surely_below, strict=True) if below]
    highs = [le for le, above in zip(bounds, surely_above, strict=True) if above]
    return (lows[-1] if lows else 0.0), (highs[0] if highs else math.inf)


def _slower_tables(canary: Windows, baseline: Windows | None, bound: float | np.ndarray) -> TableColumns:
    """Per window: requests slower than a bound of each population (x of n, y of m).

    ``bound``: the bound (s; a bound the windows lack counts every timed request as slower), or per window the
    index of its bound in :attr:`Windows.bounds`.
    """

    def slower(w: Windows) -> tuple[np.ndarray, np.ndarray]:
        n = np.rint(w.latency_count).astype(np.int64)
        if isinstance(bound, np.ndarray):
            good = w.good[np.arange(len(w)), bound]
        else:
            hit = np.flatnonzero(w.bounds == bound)
            good = w.good[:, hit[0]] if hit.size else np.zeros(len(w))
        return np.maximum(0, n - np.rint(good).astype(np.int64)), n

    x, n = slower(canary)
    y, m = slower(baseline) if baseline is not None else (np.zeros_like(x), np.zeros_like(n))
    return TableColumns(x, n, y, m)


def _quantile_columns(q: float, need: int, baseline: Windows) -> np.ndarray:
    """Per window, the index of the bound judged (−1: none).

    The smallest bound at or above the baseline's q-quantile over the windows before it, once they hold ``need``
    requests (:func:`histogram_quantile`'s rule, so the bound is fixed before the window's counts are seen).
    """
    bounds = baseline.bounds
    per_window = baseline.cumulative()
    past = np.vstack([np.zeros((1, bounds.size)), np.cumsum(per_window, axis=0)[:-1]]) if len(baseline) else per_window
    column = np.full(len(baseline), -1)
    ready = np.flatnonzero(past[:, -1] >= need) if bounds.size else np.array([], dtype=int)
    if ready.size == 0:
        return column
    past = past[ready]
    rank = q * past[:, -1]
    at = np.argmax(past >= rank[:, None], axis=1)  # the bucket holding the rank
    rows = np.arange(ready.size)
    lower_bound = np.where(at > 0, bounds[np.maximum(at - 1, 0)], 0.0)
    lower_count = np.where(at > 0, past[rows, np.maximum(at - 1, 0)], 0.0)
    inside = past[rows, at] - lower_count
    share = np.divide(rank - lower_count, inside, out=np.ones_like(inside), where=inside > 0)
    with np.errstate(invalid="ignore"):  # inf − lower in the +Inf bucket: the estimate is then the lower bound
        estimate = np.where(np.isinf(bounds[at]), lower_bound, lower_bound + (bounds[at] - lower_bound) * share)
    chosen = np.searchsorted(bounds, estimate, side="left")
    judged = chosen < bounds.size
    judged[judged] = ~np.isinf(bounds[chosen[judged]])
    column[ready[judged]] = chosen[judged]
    return column


def _quantile_tables(q: float, need: int, canary: Windows, baseline: Windows) -> TableColumns:
    """Per interval: slower-than-bound counts, the bound set from the baseline's intervals before it."""
    both = min(len(canary), len(baseline))
    column = _quantile_columns(q, need, baseline.head(both))
    judged = column >= 0
    tables = _slower_tables(canary.head(both), baseline.head(both), np.maximum(column, 0))
    return TableColumns(tables.x[judged], tables.n[judged], tables.y[judged], tables.m[judged])


def _shift_material(canary_s: float | None, baseline_s: float | None, config: JudgeConfig) -> bool:
    if canary_s is None or baseline_s is None:
        return False
    return (
        canary_s > baseline_s * (1.0 + config.latency_tolerance) and canary_s - baseline_s > config.latency_min_shift_s
    )


def quantile_verdict(
    q: float,
    need: int,
    canary: Windows | Sequence[WindowDelta],
    baseline: Windows | Sequence[WindowDelta],
    alpha: float,
    config: JudgeConfig = DEFAULT_JUDGE,
) -> MetricVerdict:
    """Sequential verdict on the canary's q-quantile against the baseline's (see the module docstring).

    Args:
        q: the quantile (0.5, 0.95, 0.99).
        need: baseline requests before a bound is taken from the baseline.
        canary: per-interval windows of the canary (or their columns).
        baseline: the baseline's windows of the same intervals.
        alpha: this test's share of the false-alarm budget.
        config: ``latency_tolerance``, ``latency_min_shift_s``, ``beta`` (the intervals' confidence).
    """
    metric = f"latency_p{round(q * 100)}_s"
    c_windows, b_windows = _aligned(canary, baseline)
    bounds = [float(le) for le in c_windows.bounds]
    tables = _quantile_tables(q, need, c_windows, b_windows)
    log_e = conditional_log_e(tables)
    c_cum, b_cum = _summed(c_windows), _summed(b_windows)
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
    outcome = Outcome.FAIL if failed else (Outcome.PASS if len(tables) else Outcome.INCONCLUSIVE)
    reason = said if len(tables) else f"no interval with enough baseline requests yet (needs {need}); {said}"
    threshold = {"alpha": alpha, "max_effect": 1.0 + config.latency_tolerance}
    p_value = min(1.0, 1.0 / e_value)
    test = "sequential conditional test of the share slower than the baseline's quantile bucket"
    return MetricVerdict(metric, outcome, test, log_e, p_value, effect, threshold, reason, evidence, gate=False)


def distribution_verdict(
    canary: Windows | Sequence[WindowDelta],
    baseline: Windows | Sequence[WindowDelta],
    alpha: float,
    config: JudgeConfig = DEFAULT_JUDGE,
) -> MetricVerdict:
    """Sequential ridit test of the bucketed per-request latencies; Fail needs a material mean shift too."""
    c_windows, b_windows = _aligned(canary, baseline)
    both = min(len(c_windows), len(b_windows))
    c_per, b_per = _per_bucket(c_windows.head(both).cumulative()), _per_bucket(b_windows.head(both).cumulative())
    log_e, ridit = ridit_columns_log_e(c_per, b_per)
    c_mean, b_mean = _mean_s(c_windows), _mean_s(b_windows)
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
    outcome = Outcome.FAIL if failed else (Outcome.PASS if both else Outcome.INCONCLUSIVE)
    threshold = {"alpha": alpha, "max_effect": 1.0 + config.latency_tolerance}
    test = "sequential ridit (bucketed Mann-Whitney) test"
    effect = c_mean / b_mean if c_mean is not None and b_mean else None
    p_value = min(1.0, 1.0 / e_value)
    return MetricVerdict(
        "latency_distribution", outcome, test, log_e, p_value, effect, threshold, said, evidence, False
    )


def _mean_s(windows: Windows) -> float | None:
    count = float(windows.latency_count.sum())
    return float(windows.latency_sum_s.sum()) / count if count > 0 else None


def _per_bucket(cumulative: np.ndarray) -> np.ndarray:
    """(N, B) requests per bucket from cumulative counts (a count below an earlier one adds nothing)."""
    previous = np.maximum.accumulate(np.maximum(cumulative, 0.0), axis=1)
    previous = np.hstack([np.zeros((cumulative.shape[0], 1)), previous[:, :-1]])
    return np.asarray(np.maximum(0.0, cumulative - previous))


def slo_threshold_counts(
    bound_s: float,
    canary: Windows | Sequence[WindowDelta],
    baseline: Windows | Sequence[WindowDelta] | None,
) -> RateCounts:
    """Per-interval counts of requests slower than ``bound_s`` (an SLO objective's threshold, a bucket bound)."""
    c_windows = Windows.of(canary)
    duration_s = float(c_windows.duration_s.sum())
    if baseline is None:
        return RateCounts(_slower_tables(c_windows, None, bound_s), False, duration_s)
    c_windows, b_windows = _aligned(c_windows, baseline)
    both = min(len(c_windows), len(b_windows))
    return RateCounts(_slower_tables(c_windows.head(both), b_windows.head(both), bound_s), True, duration_s)


def _ms(value_s: float | None) -> str:
    return "n/a" if value_s is None else f"{value_s * 1000:.4g} ms"
