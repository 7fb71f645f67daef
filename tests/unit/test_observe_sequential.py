"""The always-valid statistics: known answers, and the false-alarm bound checked on seeded identical versions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import betaln

from pilotage.observe.sequential import (
    CS_PRIOR,
    Table,
    bernoulli_bounds,
    binomial_log_e,
    conditional_log_e,
    ridit_log_e,
)


def test_conditional_likelihood_ratio_of_one_table_known_answer() -> None:
    # 2 canary and 2 baseline trials, 1 event, in the canary: P_psi(1) = 2 psi / (2 + 2 psi), P_1(1) = 1/2
    assert conditional_log_e([Table(1, 2, 0, 2)], grid=((3.0, 1.0),)) == pytest.approx(math.log(2 * 3 / 4))
    assert conditional_log_e([Table(0, 2, 1, 2)], grid=((3.0, 1.0),)) == pytest.approx(math.log(2 * 1 / 4))
    # tables the margins decide (no event, every trial an event, no baseline) carry no evidence
    assert conditional_log_e([Table(0, 5, 0, 5), Table(5, 5, 5, 5), Table(3, 5, 0, 0)]) == pytest.approx(0.0)


def test_conditional_evidence_multiplies_over_intervals_and_mixes_over_the_grid() -> None:
    grid = ((3.0, 0.5), (9.0, 0.5))
    one = [math.exp(conditional_log_e([Table(1, 2, 0, 2)], grid=((psi, 1.0),))) for psi, _ in grid]
    two = conditional_log_e([Table(1, 2, 0, 2)] * 2, grid=grid)
    assert two == pytest.approx(math.log(0.5 * one[0] ** 2 + 0.5 * one[1] ** 2))


def test_binomial_e_value_known_answer() -> None:
    expected = (0.2 / 0.1) ** 2 * (0.8 / 0.9) ** 8
    assert binomial_log_e(2, 10, 0.1, factors=(2.0,)) == pytest.approx(math.log(expected))
    assert binomial_log_e(2, 10, 0.0) == 0.0 and binomial_log_e(0, 0, 0.1) == 0.0


def test_bernoulli_bounds_are_the_level_set_of_the_mixture_martingale() -> None:
    lower, upper = bernoulli_bounds(5, 100, 0.01)
    a, b = CS_PRIOR

    def log_m(p: float) -> float:
        return betaln(a + 5, b + 95) - betaln(a, b) - 5 * math.log(p) - 95 * math.log1p(-p)

    assert lower < 0.05 < upper
    assert log_m(lower) == pytest.approx(math.log(100), abs=1e-6)
    assert log_m(upper) == pytest.approx(math.log(100), abs=1e-6)
    assert bernoulli_bounds(0, 0, 0.01) == (0.0, 1.0)
    assert bernoulli_bounds(0, 150, 0.005)[1] == pytest.approx(0.038, abs=0.001)  # the module docstring's figure
    with pytest.raises(ValueError):
        bernoulli_bounds(3, 2, 0.01)


def test_ridit_known_answer_for_one_interval() -> None:
    # canary: 1 request in the top bucket; baseline: one in each lower bucket; pooled ridits 1/6, 1/2, 5/6
    log_e, mean = ridit_log_e([([0, 0, 1], [1, 1, 0])])
    lambdas = (0.5, 1.0, 2.0, 4.0, 8.0)
    per = [math.exp(lam * 5 / 6) / (sum(math.exp(lam * r) for r in (1 / 6, 1 / 2, 5 / 6)) / 3) for lam in lambdas]
    assert log_e == pytest.approx(math.log(sum(per) / len(per)))
    assert mean == pytest.approx(5 / 6)


def test_identical_versions_rarely_reach_the_threshold_however_long_they_are_watched() -> None:
    # 300 seeded A/A traces of 240 intervals (2 minutes of polls), 3 % events, a 20 % weight, checked every poll:
    # Ville's inequality bounds the share that ever reach 1/alpha = 20 by alpha = 5 %.
    rng = np.random.default_rng(2024)
    crossed = 0
    for _ in range(300):
        n, m = rng.poisson(5, 240), rng.poisson(20, 240)
        x, y = rng.binomial(n, 0.03), rng.binomial(m, 0.03)
        tables = [Table(int(a), int(b), int(c), int(d)) for a, b, c, d in zip(x, n, y, m, strict=True)]
        crossed += max(conditional_log_e(tables[:k]) for k in range(1, 241, 4)) >= math.log(20)
    assert crossed / 300 <= 0.05


def test_confidence_sequence_covers_the_rate_at_every_look() -> None:
    rng = np.random.default_rng(7)
    missed = 0
    for _ in range(200):
        trials = rng.poisson(20, 60)
        events = rng.binomial(trials, 0.02)
        x, n = np.cumsum(events), np.cumsum(trials)
        bounds = [bernoulli_bounds(int(a), int(b), 0.05) for a, b in zip(x, n, strict=True)]
        missed += any(not lo <= 0.02 <= hi for lo, hi in bounds)
    assert missed / 200 <= 0.05
