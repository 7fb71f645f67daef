"""The statistical floors of ``benchmarks/bench_judge_ceiling.py`` (#21): closed forms where they exist."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from bench_judge_ceiling import conditional_power, fixed_n, kl, median_n, wald_n  # noqa: E402


def test_pass_floors_against_a_clean_rate_have_closed_forms() -> None:
    # p0 = 0, rule out delta = 1 % with beta = 1 %: the counts are all 0 under p0, so a Pass by n is "no event
    # yet" (randomised): (1 - delta)^n <= 2 beta lets half the clean traces pass; Wald: d(1 - alpha || beta) / KL
    delta, beta, alpha = 0.01, 0.01, 0.006
    assert median_n(0.0, delta, beta) == math.ceil(math.log(1 / (2 * beta)) / -math.log1p(-delta))  # 390
    expected = ((1 - alpha) * math.log((1 - alpha) / beta) + alpha * math.log(alpha / (1 - beta))) / -math.log1p(-delta)
    assert wald_n(0.0, delta, alpha, beta) == pytest.approx(expected)
    assert wald_n(0.0, delta, alpha, beta) == pytest.approx(451.8, abs=0.1)
    # the fixed-sample test: critical count 1 (any event fails), power 99 % at delta needs (1 - delta)^n <= 0.01
    assert fixed_n(0.0, delta, alpha, beta) == math.ceil(math.log(beta) / math.log1p(-delta))  # 459


def test_fixed_sample_size_is_the_smallest_with_the_power() -> None:
    n = int(fixed_n(0.001, 0.02, 0.0025, 0.01))
    critical = int(stats.binom.isf(0.0025, n, 0.001)) + 1
    assert stats.binom.sf(critical - 1, n, 0.02) >= 0.99
    assert n == 499


def test_two_sample_floor_needs_the_events_a_shared_rate_cannot_explain() -> None:
    # baseline at 0 errors: every event is the canary's, and under equal rates k events all fall in the canary
    # with probability h_k = C(n, k) / C(n + m, k) (about the canary's share^k); the size-0.25 % test rejects
    # that outcome with probability min(1, 0.0025 / h_k): fully from 5 events on at a 25 % share
    n, m, p1, size = 200, 600, 0.02, 0.0025
    power = conditional_power(n, m, 0.0, p1, size)
    events = stats.binom(n, p1)
    h = [stats.hypergeom(n + m, n, k).pmf(k) for k in range(n + 1)]
    assert h[4] > size > h[5]
    expected = sum(events.pmf(k) * min(1.0, size / h[k]) for k in range(1, 60))
    assert power == pytest.approx(expected, rel=1e-6)
    assert power == pytest.approx(0.539, abs=0.001)


def test_kl_is_infinite_against_an_impossible_rate() -> None:
    assert kl(0.02, 0.0) == math.inf
    assert kl(0.0, 0.01) == pytest.approx(-math.log(0.99))
