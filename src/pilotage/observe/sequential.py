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
from typing import overload

import numpy as np
from scipy.optimize import brentq
from scipy.special import betaln, gammaln

__all__ = [
    "CS_PRIOR",
    "ODDS_GRID",
    "RATE_FACTORS",
    "RIDIT_LAMBDAS",
    "Table",
    "TableColumns",
    "bernoulli_bounds",
    "binomial_log_e",
    "conditional_log_e",
    "outside_bounds",
    "ridit_columns_log_e",
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


def _logsumexp(a: np.ndarray, axis: int | None = None, b: np.ndarray | None = None) -> np.ndarray:
    """Log Σ b·exp(a) along ``axis`` (scipy's ``logsumexp`` without its per-call overhead, which dominated a poll).

    Every slice must hold a finite entry (−inf entries are padding).
    """
    top = np.max(a, axis=axis, keepdims=True)
    scaled = np.exp(a - top) if b is None else b * np.exp(a - top)
    return np.asarray(np.log(np.sum(scaled, axis=axis)) + np.squeeze(top, axis=axis))


def _log_mixture(log_lrs: np.ndarray, weights: np.ndarray) -> float:
    """Log Σ w_k exp(l_k)."""
    return float(_logsumexp(log_lrs, b=weights))


def _log_comb(n: np.ndarray | int, k: np.ndarray) -> np.ndarray:
    return np.asarray(gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1))


class TableColumns(Sequence[Table]):
    """Per-interval 2×2 tables as integer columns ``x``, ``n``, ``y``, ``m`` (each of shape (N,)).

    A sequence of :class:`Table` (equal to any sequence of the same tables), so the tests below take either; the
    judge builds these from :class:`~pilotage.observe.columns.Windows` without a Python object per interval.
    """

    __slots__ = ("m", "n", "x", "y")

    def __init__(self, x: np.ndarray, n: np.ndarray, y: np.ndarray, m: np.ndarray) -> None:
        self.x, self.n, self.y, self.m = (np.asarray(a, dtype=np.int64).reshape(-1) for a in (x, n, y, m))

    @classmethod
    def of(cls, tables: Sequence[Table]) -> TableColumns:
        """``tables`` as columns (returned as is when they already are)."""
        if isinstance(tables, TableColumns):
            return tables
        rows = np.array([(t.x, t.n, t.y, t.m) for t in tables], dtype=np.int64).reshape(len(tables), 4)
        return cls(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3])

    def __len__(self) -> int:
        return int(self.x.size)

    @overload
    def __getitem__(self, index: int) -> Table: ...
    @overload
    def __getitem__(self, index: slice) -> TableColumns: ...
    def __getitem__(self, index: int | slice) -> Table | TableColumns:
        if isinstance(index, slice):
            return TableColumns(self.x[index], self.n[index], self.y[index], self.m[index])
        return Table(int(self.x[index]), int(self.n[index]), int(self.y[index]), int(self.m[index]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]  # mutable arrays

    def __repr__(self) -> str:
        return f"TableColumns({list(self)!r})"


def _tables_log_lr(tables: TableColumns, log_odds: np.ndarray) -> np.ndarray:
    """Σ over tables of log P_ψ(x) − log P_1(x), for every ψ of ``log_odds`` (tables whose margins fix x add 0).

    Each table's support runs from max(0, total − m) to min(total, n); tables are padded to a common support width
    by groups of widths within a factor 2, so the work stays proportional to the summed support.
    """
    total = tables.x + tables.y
    low, high = np.maximum(0, total - tables.m), np.minimum(total, tables.n)
    keep = (total > 0) & (low < high)
    out = np.zeros(log_odds.size)
    if not keep.any():
        return out
    x, n, m, total, low, high = (a[keep] for a in (tables.x, tables.n, tables.m, total, low, high))
    width = high - low + 1
    group = np.ceil(np.log2(width)).astype(int)
    for g in np.unique(group):
        rows = group == g
        ks = (low[rows, None] + np.arange(width[rows].max())[None, :]).astype(float)
        valid = ks <= high[rows, None]
        ks = np.minimum(ks, high[rows, None])  # padding: any valid k, then masked
        base = _log_comb(n[rows, None], ks) + _log_comb(m[rows, None], total[rows, None] - ks)
        base = np.where(valid, base, -np.inf)
        log_z = _logsumexp(base[:, None, :] + ks[:, None, :] * log_odds[None, :, None], axis=2)
        log_lr = x[rows, None] * log_odds[None, :] - log_z + _logsumexp(base, axis=1)[:, None]
        out += log_lr.sum(axis=0)
    return out


def conditional_log_e(tables: Sequence[Table], grid: Sequence[tuple[float, float]] = ODDS_GRID) -> float:
    """Log of the mixture e-value against "odds ratio canary/baseline ≤ 1" over per-interval 2×2 tables.

    Args:
        tables: one :class:`Table` per interval, in time order (intervals without events contribute nothing);
            a :class:`TableColumns` is taken as is.
        grid: (ψ₁, weight) pairs; weights sum to 1.

    Returns:
        log E (natural log; 0 with no informative interval).
    """
    log_odds = np.log(np.array([psi for psi, _ in grid], dtype=float))
    weights = np.array([w for _, w in grid])
    return _log_mixture(_tables_log_lr(TableColumns.of(tables), log_odds), weights)


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
    if not pairs:
        return ridit_columns_log_e(np.zeros((0, 0)), np.zeros((0, 0)))
    return ridit_columns_log_e(np.array([c for c, _ in pairs], dtype=float), np.array([b for _, b in pairs], float))


def ridit_columns_log_e(canary: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    """:func:`ridit_log_e` of per-interval bucket counts as (N, B) arrays (canary's, baseline's)."""
    lambdas = np.array(RIDIT_LAMBDAS)
    weights = np.full(lambdas.size, 1.0 / lambdas.size)
    pooled = canary + baseline
    n_pool, n_c = pooled.sum(axis=1), canary.sum(axis=1)
    keep = (n_c > 0) & (n_pool != n_c)  # an interval without canary requests, or only them, says nothing
    if not keep.any():
        return _log_mixture(np.zeros(lambdas.size), weights), 0.5
    canary, pooled, n_pool, n_c = canary[keep], pooled[keep], n_pool[keep], n_c[keep]
    ridits = (np.cumsum(pooled, axis=1) - pooled / 2.0) / n_pool[:, None]
    score = (canary * ridits).sum(axis=1)
    shares = (pooled / n_pool[:, None])[:, None, :]
    log_mgf = _logsumexp(lambdas[None, :, None] * ridits[:, None, :], b=shares, axis=2)
    log_lr = lambdas[None, :] * score[:, None] - n_c[:, None] * log_mgf
    return _log_mixture(log_lr.sum(axis=0), weights), float(score.sum() / n_c.sum())


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


def outside_bounds(
    p: float, x: np.ndarray, n: np.ndarray, alpha: float, prior: tuple[float, float] = CS_PRIOR
) -> tuple[np.ndarray, np.ndarray]:
    """Whether ``p`` lies below the lower bound / at or above the upper bound of :func:`bernoulli_bounds`, per pair.

    The same sets without root-finding: the confidence set ``{q : M_n(q) < 1/alpha}`` is an interval (log M_n is
    convex in q), so ``p`` is outside it when ``M_n(p) ≥ 1/alpha``, below it when ``p`` is under the estimate.
    Neither without trials, nor where :func:`bernoulli_bounds` reports its widest bounds (0 events: no lower bound;
    all events: no upper one; a degenerate set).

    Args:
        p: the rate (0 < p < 1).
        x: events, an array.
        n: trials, an array of the same shape.
        alpha: as for :func:`bernoulli_bounds`.
        prior: as for :func:`bernoulli_bounds`.

    Returns:
        (below, above): boolean arrays of that shape.
    """
    x, n = np.asarray(x, dtype=float), np.asarray(n, dtype=float)
    a, b = prior
    level = math.log(1.0 / alpha)
    tiny = 1e-12
    safe_n = np.maximum(n, 1.0)
    centre = np.clip(x / safe_n, tiny, 1.0 - tiny)

    def excess(q: np.ndarray | float) -> np.ndarray:
        return np.asarray(betaln(a + x, b + n - x) - betaln(a, b) - x * np.log(q) - (n - x) * np.log1p(-q) - level)

    usable = (n > 0) & (excess(centre) < 0.0)
    at_p = excess(p)
    below = usable & (x > 0) & (p < centre) & (at_p > 0.0)
    above = usable & (x < n) & (p > centre) & (at_p >= 0.0)
    return below, above
