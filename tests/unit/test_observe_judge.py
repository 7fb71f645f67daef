from __future__ import annotations

import math

import pytest

from pilotage.observe.judge import (
    JudgeConfig,
    Outcome,
    combine,
    compare_distributions,
    compare_error_counts,
    compare_variance,
)


def test_fisher_exact_known_answer_fails_sparse_canary_errors() -> None:
    # 5 errors in 100 canary requests, 0 in 900 baseline: P(all 5 errors fall in the canary) = C(100,5)/C(1000,5).
    verdict = compare_error_counts(5, 100, 0, 900)
    expected = math.comb(100, 5) / math.comb(1000, 5)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.p_value == pytest.approx(expected, rel=1e-9)
    assert verdict.effect_size == pytest.approx(0.05)
    assert verdict.threshold["alpha"] == 0.001
    assert verdict.test.startswith("fisher")


def test_fisher_one_error_is_not_enough() -> None:
    # 1 error of 100 vs 0 of 900: p = 100/1000 = 0.1 → not significant → pass.
    verdict = compare_error_counts(1, 100, 0, 900)
    assert verdict.p_value == pytest.approx(0.1)
    assert verdict.outcome is Outcome.PASS


def test_all_zero_errors_pass_with_enough_requests_and_inconclusive_without() -> None:
    assert compare_error_counts(0, 50, 0, 450).outcome is Outcome.PASS
    few = compare_error_counts(0, 5, 0, 45)
    assert few.outcome is Outcome.INCONCLUSIVE
    assert "only 5 canary requests" in few.reason


def test_binomial_without_baseline_known_answer() -> None:
    p0 = 0.001
    verdict = compare_error_counts(3, 100, config=JudgeConfig(allowed_error_rate=p0, error_tolerance=0.0))
    expected = 1 - sum(math.comb(100, k) * p0**k * (1 - p0) ** (100 - k) for k in range(3))
    assert verdict.p_value == pytest.approx(expected, rel=1e-6)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.test.startswith("binomial")


def test_error_counts_reject_bad_input() -> None:
    with pytest.raises(ValueError):
        compare_error_counts(5, 4, 0, 10)


def test_mann_whitney_full_separation_known_p_value_and_effect_tolerance() -> None:
    baseline = [0.0100, 0.0105, 0.0110, 0.0115, 0.0120, 0.0102, 0.0107, 0.0112]  # no ties: exact test
    doubled = [2 * x + 0.0001 * i for i, x in enumerate(baseline)]
    verdict = compare_distributions("latency_mean_s", baseline, doubled)
    assert verdict.statistic == 64.0
    assert verdict.p_value == pytest.approx(1 / math.comb(16, 8), rel=1e-6)
    assert verdict.effect_size == pytest.approx(2.0, rel=0.02)
    assert verdict.outcome is Outcome.FAIL
    slightly = [x * 1.2 + 0.0001 * i for i, x in enumerate(baseline)]  # significant, but within +50 %
    within = compare_distributions("latency_mean_s", baseline, slightly)
    assert within.p_value is not None and within.p_value < 0.001
    assert within.outcome is Outcome.PASS


def test_mann_whitney_needs_enough_intervals() -> None:
    verdict = compare_distributions("latency_mean_s", [0.01] * 3, [0.05] * 3)
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert "< 8" in verdict.reason


def test_variance_increase_fails_and_decrease_passes() -> None:
    baseline = [0.010, 0.011, 0.009, 0.010, 0.011, 0.009, 0.010, 0.011, 0.009, 0.010] * 2
    wide = [0.010, 0.030, 0.001, 0.025, 0.002, 0.028, 0.003, 0.020, 0.001, 0.030] * 2
    verdict = compare_variance("latency_mean_s", baseline, wide)
    assert verdict.outcome is Outcome.FAIL
    assert verdict.effect_size is not None and verdict.effect_size > 3.0
    assert verdict.p_value is not None and verdict.p_value < 0.001
    assert compare_variance("latency_mean_s", wide, baseline).outcome is Outcome.PASS
    assert compare_variance("x", [1.0] * 8, [1.0] * 8).outcome is Outcome.INCONCLUSIVE


def test_sub_millisecond_jitter_is_not_a_variance_regression() -> None:
    # the case a first-use review hit: per-interval means of 1.3-3.4 ms vs 1.5-2.1 ms, a ×15-×24 variance ratio,
    # significant, yet the standard deviation grew by well under the 5 ms floor
    baseline = [0.0015, 0.0021, 0.0018, 0.0016, 0.0020, 0.0017, 0.0019, 0.0018] * 2
    jitter = [0.0013, 0.0034, 0.0014, 0.0033, 0.0013, 0.0034, 0.0015, 0.0032] * 2
    verdict = compare_variance("latency_mean_s", baseline, jitter)
    assert verdict.effect_size is not None and verdict.effect_size > 10
    assert verdict.p_value is not None and verdict.p_value < 0.001
    assert verdict.outcome is Outcome.PASS and "fails above +5 ms" in verdict.reason


def test_combine_never_turns_inconclusive_into_pass() -> None:
    ok = compare_error_counts(0, 50, 0, 450)
    unsure = compare_error_counts(0, 5, 0, 45)
    bad = compare_error_counts(5, 100, 0, 900)
    assert combine([ok, ok]) is Outcome.PASS
    assert combine([ok, unsure]) is Outcome.INCONCLUSIVE
    assert combine([unsure, bad]) is Outcome.FAIL
    assert combine([]) is Outcome.INCONCLUSIVE
    assert bad.to_dict()["outcome"] == "fail"


def test_sub_millisecond_shift_is_noise_not_a_fail() -> None:
    # recorded in the A/A benchmark: medians 0.67 ms vs 1.0 ms, fully separated, ×1.5 — below the 5 ms floor.
    baseline = [0.00066 + 0.00001 * i for i in range(8)]
    canary = [0.00100 + 0.00001 * i for i in range(8)]
    verdict = compare_distributions("latency_mean_s", baseline, canary, JudgeConfig(latency_tolerance=0.4))
    assert verdict.p_value is not None and verdict.p_value < 0.001
    assert verdict.outcome is Outcome.PASS
