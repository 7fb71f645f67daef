"""The judge's verdict on a rate (errors, share over an SLO threshold), the latency verdicts and their combination."""

from __future__ import annotations

import math

import pytest

from pilotage.observe.judge import DEFAULT_JUDGE, JudgeConfig, MetricVerdict, Outcome, RateCounts, combine, judge_rate
from pilotage.observe.latency import (
    distribution_verdict,
    histogram_quantile,
    quantile_interval,
    quantile_verdict,
    slo_threshold_counts,
)
from pilotage.observe.samples import WindowDelta
from pilotage.observe.sequential import Table, bernoulli_bounds

BUDGET = 0.001  # a 99.9 % availability objective


def counts(per_interval: list[tuple[int, int, int, int]], baseline: bool = True) -> RateCounts:
    return RateCounts(tuple(Table(*t) for t in per_interval), baseline)


def errors(rate_counts: RateCounts, config: JudgeConfig = DEFAULT_JUDGE) -> MetricVerdict:
    return judge_rate("error_rate", rate_counts, reference=BUDGET, materiality=BUDGET, alpha=0.005, config=config)


def test_errors_only_in_the_canary_fail_once_the_evidence_reaches_one_over_alpha() -> None:
    # each interval: 1 error among 10 canary requests, none among 30 baseline requests (a 25 % weight)
    four = errors(counts([(1, 10, 0, 30)] * 4))
    five = errors(counts([(1, 10, 0, 30)] * 5))
    assert four.outcome is not Outcome.FAIL and five.outcome is Outcome.FAIL  # alpha 0.005 here: e ≥ 200 fails
    assert four.evidence["e_value"] < 200 <= five.evidence["e_value"]
    assert five.p_value == pytest.approx(1 / five.evidence["e_value"])
    assert five.effect_size == pytest.approx(5 / 50)


def test_a_significant_excess_below_what_the_slo_allows_does_not_fail() -> None:
    # 3 errors in 10,000 canary requests against none in 30,000: significant, but 0.03 % < the 0.1 % budget
    found = errors(counts([(1, 1000, 0, 3000)] * 3 + [(0, 1000, 0, 3000)] * 7))
    assert found.outcome is not Outcome.FAIL
    assert found.evidence["estimate"] < BUDGET


def test_clean_versions_pass_when_the_bound_rules_out_the_tolerance_and_record_the_detectable_effect() -> None:
    found = errors(counts([(0, 10, 0, 30)] * 20))  # 200 canary requests, no error anywhere
    _, upper = bernoulli_bounds(0, 200, 0.008)  # 0.8 beta for the canary; the baseline's lower bound is 0
    assert found.outcome is Outcome.PASS
    assert found.evidence["upper_bound"] == pytest.approx(upper)
    assert found.evidence["mde"] == pytest.approx(upper) and upper < 0.05
    thin = errors(counts([(0, 10, 0, 30)] * 5))  # 50 requests cannot rule out a 5 % regression
    assert thin.outcome is Outcome.INCONCLUSIVE and "not yet sufficient" in thin.reason


def test_too_few_requests_are_inconclusive_even_with_a_tolerant_config() -> None:
    found = errors(counts([(0, 5, 0, 15)] * 3), JudgeConfig(error_tolerance=0.99))
    assert found.outcome is Outcome.INCONCLUSIVE and found.reason.startswith("only 15 canary requests")


def test_without_a_baseline_the_canary_is_tested_against_the_allowed_rate() -> None:
    bad = errors(counts([(1, 20, 0, 0)] * 5, baseline=False))  # 5 % against a 0.1 % budget
    assert bad.outcome is Outcome.FAIL and "allowed 0.100%" in bad.reason and bad.evidence["baseline"] is None
    # e-value: mean over the factors f with f p0 < 1 of (f p0 / p0)^x ((1 - f p0) / (1 - p0))^(n - x), x=5, n=100
    expected = sum(f**5 * ((1 - f * BUDGET) / (1 - BUDGET)) ** 95 for f in (1.5, 2, 4, 10, 30, 100)) / 6
    assert bad.evidence["e_value"] == pytest.approx(expected, rel=1e-9)
    assert errors(counts([(0, 20, 0, 0)] * 10, baseline=False)).outcome is Outcome.PASS


def test_both_versions_at_the_same_high_rate_do_not_fail() -> None:
    found = errors(counts([(4, 20, 12, 60)] * 30))  # 20 % errors in both
    assert found.outcome is not Outcome.FAIL
    assert found.evidence["e_value"] < 1.0


def test_combine_fail_wins_gates_decide_and_detectors_never_hold_a_pass() -> None:
    ok = errors(counts([(0, 10, 0, 30)] * 20))
    unsure = errors(counts([(0, 10, 0, 30)] * 3))
    bad = errors(counts([(1, 10, 0, 30)] * 8))
    detector = MetricVerdict("latency_p99_s", Outcome.INCONCLUSIVE, "t", None, None, None, {}, "", gate=False)
    assert combine([ok, detector]) is Outcome.PASS
    assert combine([ok, unsure]) is Outcome.INCONCLUSIVE
    assert combine([unsure, bad]) is Outcome.FAIL
    assert combine([detector]) is Outcome.INCONCLUSIVE  # no gating verdict at all
    assert combine([]) is Outcome.INCONCLUSIVE
    assert bad.to_dict()["outcome"] == "fail" and isinstance(bad.to_dict()["evidence"]["e_value"], float)


def test_config_alpha_split_and_older_recorded_keys() -> None:
    config = JudgeConfig(alpha=0.01)
    assert config.alpha_for("errors", 1, 4) == pytest.approx(0.006)
    assert config.alpha_for("objective", 1, 4) == pytest.approx(0.0025)
    assert config.alpha_for("detector", 1, 4) == pytest.approx(0.000375)
    assert config.alpha_for("errors", 0, 4) == pytest.approx(0.0085)  # no latency objective: its share to errors
    assert config.alpha_for("errors", 0, 0) == pytest.approx(0.01)
    old = {"alpha": 0.001, "min_intervals": 8, "variance_tolerance": 2.0, "error_tolerance": 0.01}
    assert JudgeConfig.from_dict(old) == JudgeConfig(alpha=0.001, error_tolerance=0.01)


# --- latency from the histogram buckets ------------------------------------------------------------------------------

BOUNDS = [0.01, 0.05, 0.1, 0.5, math.inf]


def window(per_bucket: list[int], mean_s: float = 0.03) -> WindowDelta:
    """A window with ``per_bucket`` requests in the buckets of BOUNDS."""
    cumulative, total = {}, 0
    for le, count in zip(BOUNDS, per_bucket, strict=True):
        total += count
        cumulative[le] = float(total)
    return WindowDelta(0.5, float(total), 0.0, float(total), mean_s * total, cumulative)


def test_histogram_quantile_interpolates_inside_the_bucket_like_promql() -> None:
    cumulative = [10.0, 50.0, 90.0, 100.0, 100.0]
    assert histogram_quantile(0.5, BOUNDS, cumulative) == pytest.approx(0.05)  # exactly the 50th request
    assert histogram_quantile(0.7, BOUNDS, cumulative) == pytest.approx(0.05 + 0.05 * 20 / 40)
    assert histogram_quantile(0.05, BOUNDS, cumulative) == pytest.approx(0.01 * 0.5)
    assert histogram_quantile(0.99, BOUNDS, [0.0, 0.0, 0.0, 50.0, 100.0]) == 0.5  # in +Inf: the largest bound
    assert histogram_quantile(0.5, BOUNDS, [0.0] * 5) is None


def test_quantile_interval_brackets_the_quantile_to_bucket_resolution() -> None:
    cumulative = [100.0, 500.0, 900.0, 1000.0, 1000.0]
    low, high = quantile_interval(0.5, BOUNDS, cumulative, 0.01)
    assert (low, high) == (0.01, 0.1)  # the median is at 0.05 exactly: bounds on both sides of it
    assert quantile_interval(0.5, BOUNDS, [0.0] * 5, 0.01) == (0.0, math.inf)


def test_a_p99_regression_fails_and_identical_tails_do_not() -> None:
    base = [window([300, 600, 90, 10, 0])] * 30  # 1 % of requests in (0.1, 0.5]
    slow_tail = [window([300, 600, 60, 10, 30], mean_s=0.06)] * 30  # 3 % beyond 0.5 s
    found = quantile_verdict(0.99, 200, slow_tail, base, alpha=0.001)
    assert found.outcome is Outcome.FAIL and not found.gate
    assert found.evidence["canary_s"] == 0.5  # in the +Inf bucket: the largest finite bound, as PromQL says
    assert found.evidence["baseline_s"] == pytest.approx(0.1)
    same = quantile_verdict(0.99, 200, base, base, alpha=0.001)
    assert same.outcome is Outcome.PASS and same.evidence["e_value"] <= 1.0


def test_quantile_verdict_waits_for_enough_baseline_requests() -> None:
    found = quantile_verdict(0.99, 200, [window([1, 1, 0, 0, 0])] * 3, [window([5, 5, 0, 0, 0])] * 3, alpha=0.001)
    assert found.outcome is Outcome.INCONCLUSIVE and "needs 200" in found.reason


def test_distribution_shift_fails_only_when_the_mean_moved_materially() -> None:
    base = [window([10, 30, 10, 0, 0], mean_s=0.04)] * 20
    shifted = [window([0, 10, 30, 10, 0], mean_s=0.09)] * 20
    found = distribution_verdict(shifted, base, alpha=0.001)
    assert found.outcome is Outcome.FAIL and found.evidence["mean_ridit"] > 0.6
    small = [window([0, 10, 30, 10, 0], mean_s=0.045)] * 20  # same buckets, mean only +5 ms: not material
    assert distribution_verdict(small, base, alpha=0.001).outcome is Outcome.PASS


def test_slo_threshold_counts_are_the_requests_slower_than_the_bound() -> None:
    found = slo_threshold_counts(0.1, [window([1, 2, 3, 4, 5])], [window([5, 0, 0, 0, 1])])
    assert found.tables == (Table(9, 15, 1, 6),) and found.baseline
    alone = slo_threshold_counts(0.1, [window([1, 2, 3, 4, 5])], None)
    assert alone.tables == (Table(9, 15, 0, 0),) and not alone.baseline
