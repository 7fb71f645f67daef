"""Statistical canary judge: baseline vs canary, per metric, Pass / Fail / Inconclusive with the evidence.

Three tests, each giving a :class:`MetricVerdict` that carries its statistic, p-value, effect size and threshold:

* :func:`compare_distributions` — **Mann-Whitney U**, one-sided (canary greater), on per-interval metric values
  (e.g. mean latency of each scrape interval), with an **effect-size tolerance** as in Netflix/Google's Kayenta
  (``MannWhitneyClassifier``: a significant difference only fails when the effect exceeds the allowed
  increase; https://github.com/spinnaker/kayenta, ``kayenta-judge``). Effect size = median(canary) /
  median(baseline). Source of the test: Mann & Whitney (1947); ``scipy.stats.mannwhitneyu``.
* :func:`compare_variance` — what Kayenta misses: a canary with the same median but a wider spread (jitter,
  timeouts on some requests). **Brown-Forsythe** test (Levene with median centring, robust to non-normal data;
  Brown & Forsythe 1974, ``scipy.stats.levene(center="median")``); effect = variance ratio canary / baseline,
  fails only when the canary's variance is the larger one beyond the tolerance.
* :func:`compare_error_counts` — error counts are sparse (mostly zeros per interval), where a rank test on
  per-interval rates has no power and ties everywhere. Instead, the totals: **Fisher's exact test**, one-sided
  (canary error share greater), on the 2×2 table (errors, successes) × (canary, baseline); with no baseline (a
  blue-green switch, a post-promotion watch) an exact **binomial test** of the canary's errors against the allowed
  error rate. Effect size = canary error rate − baseline (or allowed) rate, tolerance absolute.

Outcomes: Fail needs significance (p < alpha) *and* an effect beyond tolerance; Pass needs enough data and no
Fail; too few samples or no data is **Inconclusive** with a reason. :func:`combine`: any Fail → Fail, else any
Inconclusive → Inconclusive (never a pass), else Pass.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from scipy import stats

__all__ = [
    "JudgeConfig",
    "MetricVerdict",
    "Outcome",
    "combine",
    "compare_distributions",
    "compare_error_counts",
    "compare_variance",
    "DEFAULT_JUDGE",
]


class Outcome(StrEnum):
    """Result of one comparison. Inconclusive never counts as a pass."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class JudgeConfig:
    """Thresholds of the judge.

    Attributes:
        alpha: significance level of every one-sided test (default 0.001: the rollout tests again at every poll,
            so a small alpha keeps the family-wise false-alarm rate of a whole rollout low).
        min_intervals: per-interval values each side needs for the rank and variance tests (default 8).
        min_requests: canary requests needed for the error-count test (default 20, the rollout step minimum).
        latency_tolerance: allowed relative increase of the canary's median (default 0.5: +50 %, Kayenta's
            "allowed increase" style; small shifts on a shared 2-core machine are noise, not regressions).
        latency_min_shift_s: smallest absolute increase of the median (rank test) or of the standard deviation
            (spread test) that can fail (default 0.005 s): a relative tolerance alone flags 0.67 ms → 1.0 ms (×1.5),
            noise on a shared machine (seen in the A/A benchmark and in a first-use review).
        variance_tolerance: allowed relative increase of the variance (default 2.0: up to 3× the baseline's).
        error_tolerance: allowed absolute excess of the canary's error rate over the baseline (default 0.01).
        allowed_error_rate: the error rate of the binomial test without a baseline (default 0.001: a 99.9 % SLO).
    """

    alpha: float = 0.001
    min_intervals: int = 8
    min_requests: int = 20
    latency_tolerance: float = 0.5
    latency_min_shift_s: float = 0.005
    variance_tolerance: float = 2.0
    error_tolerance: float = 0.01
    allowed_error_rate: float = 0.001


@dataclass(frozen=True)
class MetricVerdict:
    """One test on one metric: outcome, test name, statistic, p-value, effect size, threshold and a reason."""

    metric: str
    outcome: Outcome
    test: str
    statistic: float | None
    p_value: float | None
    effect_size: float | None
    threshold: dict[str, float]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Return plain data (floats rounded to 6 significant places)."""
        out = asdict(self)
        out["outcome"] = self.outcome.value
        for key in ("statistic", "p_value", "effect_size"):
            value = out[key]
            if value is not None:
                out[key] = float(f"{value:.6g}") if math.isfinite(value) else str(value)
        return out


#: The default thresholds (a module-level instance, used as the default argument).
DEFAULT_JUDGE = JudgeConfig()


def _inconclusive(metric: str, test: str, reason: str, threshold: dict[str, float]) -> MetricVerdict:
    return MetricVerdict(metric, Outcome.INCONCLUSIVE, test, None, None, None, threshold, reason)


def _too_few(
    metric: str,
    test: str,
    baseline: Sequence[float],
    canary: Sequence[float],
    config: JudgeConfig,
    threshold: dict[str, float],
) -> MetricVerdict | None:
    """Return an Inconclusive verdict when either side has fewer than ``config.min_intervals`` values, else None."""
    if len(baseline) < config.min_intervals or len(canary) < config.min_intervals:
        return _inconclusive(
            metric,
            test,
            f"{len(canary)} canary / {len(baseline)} baseline intervals (< {config.min_intervals})",
            threshold,
        )
    return None


def compare_distributions(
    metric: str, baseline: Sequence[float], canary: Sequence[float], config: JudgeConfig = DEFAULT_JUDGE
) -> MetricVerdict:
    """Mann-Whitney U (one-sided: canary greater) with an effect-size tolerance on per-interval values.

    Args:
        metric: name for the verdict (``latency_mean_s``).
        baseline: one value per interval (e.g. mean latency of each scrape interval, seconds).
        canary: the canary's values, same unit.
        config: ``alpha``, ``min_intervals``, ``latency_tolerance``.

    Returns:
        Fail when p < alpha and median(canary)/median(baseline) > 1 + tolerance; Pass otherwise; Inconclusive
        with fewer than ``min_intervals`` values on a side.
    """
    limit = 1.0 + config.latency_tolerance
    threshold = {"alpha": config.alpha, "max_effect": limit, "min_intervals": float(config.min_intervals)}
    test = "mann-whitney-u (one-sided, greater)"
    too_few = _too_few(metric, test, baseline, canary, config, threshold)
    if too_few is not None:
        return too_few
    result = stats.mannwhitneyu(canary, baseline, alternative="greater", method="auto")
    u, p = float(result.statistic), float(result.pvalue)
    b_med, c_med = statistics.median(baseline), statistics.median(canary)
    effect = c_med / b_med if b_med > 0 else (1.0 if c_med == 0 else math.inf)
    failed = p < config.alpha and effect > limit and c_med - b_med > config.latency_min_shift_s
    reason = (
        f"canary median {c_med:.4g} vs baseline {b_med:.4g} (×{effect:.3g}, allowed ×{limit:.3g}); "
        f"p={p:.3g} (alpha {config.alpha})"
    )
    return MetricVerdict(metric, Outcome.FAIL if failed else Outcome.PASS, test, u, p, effect, threshold, reason)


def compare_variance(
    metric: str, baseline: Sequence[float], canary: Sequence[float], config: JudgeConfig = DEFAULT_JUDGE
) -> MetricVerdict:
    """Brown-Forsythe test for a *larger* canary variance, with a tolerance on the variance ratio.

    Returns:
        Fail when p < alpha, var(canary) > var(baseline), the ratio exceeds 1 + ``variance_tolerance`` *and* the
        standard deviation grew by more than ``latency_min_shift_s`` (5 ms: a ×24 ratio of sub-millisecond jitter,
        seen on a loaded 2-core machine, is noise, not a regression); Pass otherwise; Inconclusive with too few
        values or when both sides are constant (no spread to compare).
    """
    limit = 1.0 + config.variance_tolerance
    threshold = {"alpha": config.alpha, "max_effect": limit, "min_intervals": float(config.min_intervals)}
    test = "brown-forsythe (levene, median-centred)"
    too_few = _too_few(metric, test, baseline, canary, config, threshold)
    if too_few is not None:
        return too_few
    b_var, c_var = statistics.variance(baseline), statistics.variance(canary)
    if b_var == 0 and c_var == 0:
        return _inconclusive(metric, test, "both populations are constant", threshold)
    result = stats.levene(canary, baseline, center="median")
    w, p = float(result.statistic), float(result.pvalue)
    effect = c_var / b_var if b_var > 0 else math.inf
    spread_increase_s = math.sqrt(c_var) - math.sqrt(b_var)
    failed = p < config.alpha and effect > limit and spread_increase_s > config.latency_min_shift_s
    reason = (
        f"variance ratio canary/baseline ×{effect:.3g} (allowed ×{limit:.3g}), standard deviation "
        f"+{spread_increase_s * 1000:.3g} ms (fails above +{config.latency_min_shift_s * 1000:.3g} ms); "
        f"p={p:.3g} (alpha {config.alpha})"
    )
    return MetricVerdict(metric, Outcome.FAIL if failed else Outcome.PASS, test, w, p, effect, threshold, reason)


def compare_error_counts(
    canary_errors: int,
    canary_requests: int,
    baseline_errors: int | None = None,
    baseline_requests: int | None = None,
    config: JudgeConfig = DEFAULT_JUDGE,
    metric: str = "error_rate",
) -> MetricVerdict:
    """Exact test of the canary's error count: Fisher vs the baseline, or binomial vs the allowed rate.

    Args:
        canary_errors: canary 5xx answers over the analysis window.
        canary_requests: canary requests over the window.
        baseline_errors: the baseline's 5xx answers; None → binomial test against ``config.allowed_error_rate``.
        baseline_requests: the baseline's requests; None or 0 → the binomial test.
        config: ``alpha``, ``min_requests``, ``error_tolerance``, ``allowed_error_rate``.
        metric: name for the verdict.

    Returns:
        Fail when p < alpha and the canary's rate exceeds the reference by more than ``error_tolerance``;
        Inconclusive below ``min_requests`` canary requests unless the errors alone already prove a Fail.

    Raises:
        ValueError: negative counts or errors > requests.
    """
    for e, n in ((canary_errors, canary_requests), (baseline_errors or 0, baseline_requests or 0)):
        if e < 0 or n < 0 or e > n:
            raise ValueError(f"bad counts: {e} errors of {n} requests")
    c_rate = canary_errors / canary_requests if canary_requests else 0.0
    threshold = {
        "alpha": config.alpha,
        "max_excess": config.error_tolerance,
        "min_requests": float(config.min_requests),
    }
    if baseline_requests:
        assert baseline_errors is not None
        b_rate = baseline_errors / baseline_requests
        table = [
            [canary_errors, canary_requests - canary_errors],
            [baseline_errors, baseline_requests - baseline_errors],
        ]
        res = stats.fisher_exact(table, alternative="greater")
        statistic, p, test = float(res.statistic), float(res.pvalue), "fisher-exact (one-sided, greater)"
        ref = f"baseline {baseline_errors}/{baseline_requests} ({b_rate:.2%})"
    else:
        b_rate = config.allowed_error_rate
        threshold["allowed_error_rate"] = b_rate
        if canary_requests == 0:
            return _inconclusive(metric, "binomial (one-sided, greater)", "no canary requests", threshold)
        bres = stats.binomtest(canary_errors, canary_requests, b_rate, alternative="greater")
        statistic, p, test = float(canary_errors), float(bres.pvalue), "binomial (one-sided, greater)"
        ref = f"allowed rate {b_rate:.2%}"
    effect = c_rate - b_rate
    failed = p < config.alpha and effect > config.error_tolerance
    reason = (
        f"canary {canary_errors}/{canary_requests} errors ({c_rate:.2%}) vs {ref}: excess {effect:+.2%} "
        f"(allowed {config.error_tolerance:.2%}); p={p:.3g} (alpha {config.alpha})"
    )
    if not failed and canary_requests < config.min_requests:
        return MetricVerdict(
            metric,
            Outcome.INCONCLUSIVE,
            test,
            statistic,
            p,
            effect,
            threshold,
            f"only {canary_requests} canary requests (< {config.min_requests}); " + reason,
        )
    return MetricVerdict(
        metric, Outcome.FAIL if failed else Outcome.PASS, test, statistic, p, effect, threshold, reason
    )


def combine(verdicts: Sequence[MetricVerdict]) -> Outcome:
    """Overall outcome: any Fail → Fail; else any Inconclusive (or no verdict) → Inconclusive; else Pass."""
    outcomes = {v.outcome for v in verdicts}
    if Outcome.FAIL in outcomes:
        return Outcome.FAIL
    if Outcome.INCONCLUSIVE in outcomes or not verdicts:
        return Outcome.INCONCLUSIVE
    return Outcome.PASS
