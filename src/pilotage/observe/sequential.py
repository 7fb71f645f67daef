"""Always-valid sequential tests and confidence sequences: the statistics of the canary judge (pure numpy/scipy).

A rollout looks at its data every poll for as long as a step lasts, so a test that is valid for one look is not
valid here: a 0.1 % test repeated at 60 polls raises far more than 0.1 % false alarms, and a fixed-size test
passes on thin evidence. Every test below is an **e-process**: a non-negative process ``E_t`` whose expectation
is at most 1 at every stopping time when the null hypothesis holds, so by Ville's inequality
``P(sup_t E_t ≥ 1/α) ≤ α`` however long and however often it is watched (Ville 1939; the always-valid p-value is
``1 / sup E``: Johari, Koomen, Pekelis & Walsh 2017, "Peeking at A/B tests: why it matters, and what to do about
it", KDD '17 / "Always valid inference", Operations Research 2022). The alternatives are mixed over a fixed grid,
Robbins' mixture sequential probability ratio test (Robbins 1970, "Statistical methods related to the law of the
iterated logarithm"; Wald 1945 for the SPRT it generalises): a mixture of likelihood ratios is again one.

* :func:`conditional_log_e` — canary vs baseline on a binary outcome (a 5xx answer; a request slower than a
  latency bound). Each interval is a 2×2 table; conditional on its margins the canary's count is Fisher's
  non-central hypergeometric with the odds ratio ψ (Fisher 1935; the conditional likelihood of stratified 2×2
  tables, as in Mantel-Haenszel / Zelen's exact test), which removes the unknown baseline rate exactly. The
  likelihood ratio ψ₁ vs ψ = 1 has expectation ≤ 1 for every ψ ≤ 1 (monotone likelihood ratio), so the product
  over intervals, mixed over :data:`ODDS_GRID`, is an e-process for "the canary is not worse".
* :func:`binomial_log_e` — one population against a known rate (no baseline: the SLO's allowed rate). The
  likelihood ratio p₁ vs p₀ mixed over multiples of p₀ (:data:`RATE_FACTORS`); valid for every p ≤ p₀.
* :func:`ridit_log_e` — a distribution test on bucketed latencies: each canary request scores the ridit of its
  bucket in the interval's pooled histogram (Bross 1958, "How to use ridit analysis"; the mean ridit is the
  Mann-Whitney probability that a canary request is slower, ties counted half). Conditional on the pooled
  histogram the canary's score is a sample without replacement, whose moment generating function is at most the
  with-replacement one (Hoeffding 1963, "Probability inequalities for sums of bounded random variables", thm 4),
  so ``exp(λS − n·log M(λ))`` is an e-value per interval, mixed over :data:`RIDIT_LAMBDAS`.
* :func:`bernoulli_bounds` — the Pass side: a confidence sequence for a rate, ``{p : M_n(p) < 1/α}`` with the
  beta-binomial mixture martingale ``M_n(p) = B(a + x, b + n − x) / B(a, b) / (p^x (1 − p)^(n − x))`` (Robbins
  1970; Howard, Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic confidence
  sequences", Annals of Statistics 49(2), §3). It covers the true rate at every n at once with probability
  ≥ 1 − α. The prior Beta(0.25, 20) (:data:`CS_PRIOR`) puts its mass on small rates, where errors and slow
  requests live: the bound with 0 events in 150 trials is 3.8 % at α = 0.005 (a fixed-n Clopper-Pearson bound,
  valid for one look only, is 3.5 %).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.optimize import brentq
from scipy.special import betaln, gammaln, logsumexp

__all__ = [
    "CS_PRIOR",
    "ODDS_GRID",
    "RATE_FACTORS",
    "RIDIT_LAMBDAS",
    "Table",
    "bernoulli_bounds",
    "binomial_log_e",
    "conditional_log_e",
    "ridit_log_e",
]

#: Alternatives ψ₁ (odds ratio canary / baseline) of the conditional test and their mixture weights. Half the weight
#: sits on a near-infinite ratio — errors only in the canary, the common regression against a clean baseline —
#: so that each such error multiplies the evidence by almost 1 / (canary share of the requests).
ODDS_GRID: tuple[tuple[float, float], ...] = (
    (1.5, 0.05),
    (2.0, 0.05),
    (3.0, 0.05),
    (5.0, 0.05),
    (10.0, 0.1),
    (30.0, 0.1),
    (100.0, 0.1),
    (1e4, 0.5),
)
#: Alternatives p₁ = factor × p₀ of the one-sample test, equal weights.
RATE_FACTORS = (1.5, 2.0, 4.0, 10.0, 30.0, 100.0, 1000.0)
#: Tilts λ of the ridit test (a ridit lies in [0, 1]), equal weights.
RIDIT_LAMBDAS = (0.5, 1.0, 2.0, 4.0, 8.0)
#: Beta(a, b) prior of the confidence sequence of a rate (see the module docstring).
CS_PRIOR = (0.25, 20.0)


@dataclass(frozen=True)
class Table:
    """One interval's 2×2 table: ``x`` events of ``n`` canary trials, ``y`` events of ``m`` baseline trials."""

    x: int
    n: int
    y: int
    m: int


def _log_mixture(log_lrs: np.ndarray, weights: np.ndarray) -> float:
    """Log Σ w_k exp(l_k)."""
    return float(logsumexp(log_lrs, b=weights))


def _log_comb(n: np.ndarray | int, k: np.ndarray) -> np.ndarray:
    return np.asarray(gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1))


@lru_cache(maxsize=1 << 16)
def _table_log_lr(table: Table, odds: tuple[float, ...]) -> tuple[float, ...]:
    """Log P_ψ(x) − log P_1(x) of one table for every ψ of ``odds`` (0 when the margins fix x).

    Cached: the rollout judges the whole series again at every poll, so each interval's table is met many times.
    """
    total = table.x + table.y
    low, high = max(0, total - table.m), min(total, table.n)
    if total == 0 or low == high:
        return (0.0,) * len(odds)
    log_odds = np.log(odds)
    ks = np.arange(low, high + 1, dtype=float)
    base = _log_comb(table.n, ks) + _log_comb(table.m, total - ks)
    log_z = logsumexp(base[None, :] + ks[None, :] * log_odds[:, None], axis=1)
    return tuple(float(v) for v in table.x * log_odds - log_z + logsumexp(base))


def conditional_log_e(tables: Sequence[Table], grid: Sequence[tuple[float, float]] = ODDS_GRID) -> float:
    """Log of the mixture e-value against "odds ratio canary/baseline ≤ 1" over per-interval 2×2 tables.

    Args:
        tables: one :class:`Table` per interval, in time order (intervals without events contribute nothing).
        grid: (ψ₁, weight) pairs; weights sum to 1.

    Returns:
        log E (natural log; 0 with no informative interval).
    """
    odds = tuple(psi for psi, _ in grid)
    weights = np.array([w for _, w in grid])
    total = np.zeros(len(grid))
    for table in tables:
        if table.x + table.y:
            total += _table_log_lr(table, odds)
    return _log_mixture(total, weights)


def binomial_log_e(x: int, n: int, p0: float, factors: Sequence[float] = RATE_FACTORS) -> float:
    """Log of the mixture e-value against "rate ≤ p0" after ``x`` events in ``n`` trials.

    Alternatives p₁ = f × p0 below 1 (equal weights). ``p0`` outside (0, 1) gives 0 (no test).
    """
    if not 0.0 < p0 < 1.0 or n <= 0:
        return 0.0
    p1 = np.array([f * p0 for f in factors if f * p0 < 1.0])
    if p1.size == 0:
        return 0.0
    log_lr = x * np.log(p1 / p0) + (n - x) * (np.log1p(-p1) - math.log1p(-p0))
    return _log_mixture(log_lr, np.full(p1.size, 1.0 / p1.size))


def ridit_log_e(pairs: Sequence[tuple[Sequence[float], Sequence[float]]]) -> tuple[float, float]:
    """Log mixture e-value against "canary latencies are not stochastically larger", and the mean canary ridit.

    Args:
        pairs: per interval, (canary counts per bucket, baseline counts per bucket), the same buckets in order
            of their bounds (non-cumulative counts).

    Returns:
        (log E, mean ridit of the canary's requests: 0.5 = same distribution, 1 = every request slower); the mean
        is 0.5 without canary requests.
    """
    total = np.zeros(len(RIDIT_LAMBDAS))
    score = count = 0.0
    for canary, baseline in pairs:
        key = (tuple(float(v) for v in canary), tuple(float(v) for v in baseline))
        log_lr, s, n_c = _ridit_interval(key)
        total += log_lr
        score, count = score + s, count + n_c
    weights = np.full(len(RIDIT_LAMBDAS), 1.0 / len(RIDIT_LAMBDAS))
    return _log_mixture(total, weights), (score / count if count else 0.5)


@lru_cache(maxsize=1 << 14)
def _ridit_interval(key: tuple[tuple[float, ...], tuple[float, ...]]) -> tuple[np.ndarray, float, float]:
    """(log e-values per λ, canary ridit sum, canary requests) of one interval; cached as the tables are."""
    lambdas = np.array(RIDIT_LAMBDAS)
    c, b = np.array(key[0]), np.array(key[1])
    pooled = c + b
    n_pool, n_c = float(pooled.sum()), float(c.sum())
    if n_c == 0 or n_pool == n_c:
        return np.zeros(lambdas.size), 0.0, 0.0
    ridits = (np.cumsum(pooled) - pooled / 2.0) / n_pool
    s = float(c @ ridits)
    log_mgf = logsumexp(lambdas[:, None] * ridits[None, :], b=pooled[None, :] / n_pool, axis=1)
    return lambdas * s - n_c * log_mgf, s, n_c


def _log_martingale(p: float, x: int, n: int, prior: tuple[float, float]) -> float:
    a, b = prior
    return float(betaln(a + x, b + n - x) - betaln(a, b) - x * math.log(p) - (n - x) * math.log1p(-p))


def bernoulli_bounds(x: int, n: int, alpha: float, prior: tuple[float, float] = CS_PRIOR) -> tuple[float, float]:
    """Time-uniform confidence bounds (lower, upper) of a rate after ``x`` events in ``n`` trials.

    The set ``{p : M_n(p) < 1/alpha}`` of the beta-binomial mixture (module docstring); it holds at every n at
    once with probability ≥ 1 − alpha, so it may be looked at every poll. (0, 1) without trials.

    Raises:
        ValueError: x outside [0, n] or alpha outside (0, 1).
    """
    if not 0 <= x <= n or not 0.0 < alpha < 1.0:
        raise ValueError(f"bad bound request: {x} events of {n}, alpha {alpha}")
    if n == 0:
        return 0.0, 1.0
    level = math.log(1.0 / alpha)
    tiny = 1e-12
    centre = min(max(x / n, tiny), 1.0 - tiny)

    def excess(p: float) -> float:
        return _log_martingale(p, x, n, prior) - level

    if excess(centre) >= 0.0:  # not even the estimate is inside: degenerate; report the widest bounds
        return 0.0, 1.0
    lower = 0.0 if x == 0 or excess(tiny) < 0.0 else brentq(excess, tiny, centre, xtol=1e-10)
    upper = 1.0 if x == n or excess(1.0 - tiny) < 0.0 else brentq(excess, centre, 1.0 - tiny, xtol=1e-10)
    return float(lower), float(upper)
