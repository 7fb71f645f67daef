"""Statistical canary judge: baseline vs canary, per metric, Pass / Fail / Inconclusive with sequential evidence.

The rollout judges every step again at every poll (0.5 s) for as long as the step lasts, so every test here is
**sequential and always valid** (:mod:`pilotage.observe.sequential`): its false-alarm rate stays below its share
of ``alpha`` however long the step is watched, and a Pass needs evidence, not a minimum number of intervals.

A verdict on a *rate* (:func:`judge_rate`: the 5xx share of requests, or the share slower than an SLO latency
threshold) asks two questions of the same counts:

* **Fail** — is the canary worse than its reference? With a baseline: the conditional e-process on the interval
  2×2 tables (:func:`~pilotage.observe.sequential.conditional_log_e`, exact whatever the baseline's own rate);
  without one (blue-green preview alone, the post-promotion watch): a one-sample e-process against the SLO's
  allowed rate. Fail when the e-value reaches ``1/alpha`` **and** the observed excess is more than the SLO allows
  (``materiality``: the objective's error budget, ``1 − target``) — a significant excess of 0.01 % is not a
  regression the SLO cares about.
* **Pass** — can every regression that matters be ruled out? The time-uniform upper bound of the excess (canary's
  upper bound at 0.8 ``beta`` − the baseline's lower bound at 0.2 ``beta``, :data:`BASELINE_BETA_SHARE`,
  :func:`~pilotage.observe.sequential.bernoulli_bounds`)
  must be below the **tolerance**, with at least ``min_requests`` canary requests. The bound covers the true excess
  at every poll at once, so whatever the tolerance is when the step passes, a regression at least that large
  passes with probability at most ``beta``, at any watch length. The tolerance is :func:`pass_tolerance`: the
  smallest excess a fixed-horizon test would detect from the canary's requests in ``pass_horizon_s`` (one-sided
  exact binomial, α 1 %, power 99 %) — a Pass rules out every regression this step's traffic would reveal within
  the horizon —, never below what the SLO allows (``materiality``) nor above ``error_tolerance``. The verdict
  records the **smallest detectable effect** so far (``mde``: the bound's margin over the estimate).
* otherwise **Inconclusive**: the rollout keeps observing (to its limit; then Inconclusive, never a pass).

Latency beyond one number is judged from the histogram buckets by :mod:`pilotage.observe.latency` (p50/p95/p99
with confidence intervals, a distribution test); those verdicts are *detectors* (``gate = False``): they fail on
evidence but their absence of evidence never holds a Pass — the SLO's own objectives gate the Pass.

:func:`combine`: any Fail → Fail; else any gating verdict Inconclusive (or none at all) → Inconclusive; else Pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from functools import lru_cache
from typing import Any

from scipy import stats

from pilotage.observe.sequential import Table, TableColumns, bernoulli_bounds, binomial_log_e, conditional_log_e

__all__ = [
    "DEFAULT_JUDGE",
    "JudgeConfig",
    "MetricVerdict",
    "Outcome",
    "RateCounts",
    "combine",
    "judge_rate",
    "pass_tolerance",
]


class Outcome(StrEnum):
    """Result of one comparison. Inconclusive never counts as a pass."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


#: Shares of a step's false-alarm budget: the error test; the SLO's latency thresholds (split among them); the
#: latency detectors (split among them). Errors are the commonest regression and the sparsest evidence (at a 25 %
#: weight against a clean baseline each canary error multiplies the e-value by at most 4); the SLO's thresholds
#: decide what the SLO allows; the detectors only add what the thresholds miss.
ALPHA_SHARES = {"errors": 0.6, "objective": 0.25, "detector": 0.15}


@dataclass(frozen=True)
class JudgeConfig:
    """Thresholds of the judge.

    Attributes:
        alpha: false-alarm budget of one step (default 0.01): the chance that any test fails identical versions,
            however long the step is watched (Ville's inequality), split among its tests by :meth:`alpha_for`
            (:data:`ALPHA_SHARES`: 60 % the error test, 25 % the SLO's latency thresholds, 15 % the detectors).
        beta: chance that one gating test passes a regression of at least its tolerance (default 0.01: ≥ 99 %
            of such regressions are not passed).
        min_requests: canary requests a Pass needs at least (default 20, the rollout step minimum).
        error_tolerance: the largest tolerance of a Pass: the excess of the canary's error rate (or of its share of
            requests slower than an SLO latency threshold) over the reference that a Pass must always rule out
            (default 0.05: the rollout's ``slo_error_rate``, "a canary may fail at most 5 % of requests during a
            step"); with more traffic the tolerance is smaller (:func:`pass_tolerance`).
        pass_horizon_s: a Pass rules out every regression the canary's traffic would reveal in this many seconds
            (default 15 s, issue 21's time-to-decision target).
        latency_tolerance: allowed relative increase of a latency quantile or of the mean (default 0.5: +50 %,
            Kayenta's "allowed increase" style).
        latency_min_shift_s: smallest absolute increase of a quantile or of the mean that can fail (default 0.005 s:
            sub-millisecond shifts on a shared machine are noise, seen in the A/A benchmark).
        allowed_error_rate: reference error rate without a baseline when the SLO has no availability objective
            (default 0.001: a 99.9 % SLO).
    """

    alpha: float = 0.01
    beta: float = 0.01
    min_requests: int = 20
    error_tolerance: float = 0.05
    pass_horizon_s: float = 15.0
    latency_tolerance: float = 0.5
    latency_min_shift_s: float = 0.005
    allowed_error_rate: float = 0.001

    def alpha_for(self, test: str, objectives: int, detectors: int) -> float:
        """One test's share of :attr:`alpha` (Bonferroni over the tests of a step, :data:`ALPHA_SHARES`).

        Args:
            test: ``errors``, ``objective`` (an SLO latency threshold) or ``detector`` (p50/p95/p99, distribution).
            objectives: the step's latency-objective tests (a group without tests gives its share to errors).
            detectors: the step's detector tests.
        """
        counts = {"errors": 1, "objective": objectives, "detector": detectors}
        idle = sum(share for group, share in ALPHA_SHARES.items() if counts[group] == 0)
        share = ALPHA_SHARES[test] + (idle if test == "errors" else 0.0)
        return self.alpha * share / max(1, counts[test])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JudgeConfig:
        """Rebuild from recorded plain data; keys of older judges (``variance_tolerance``, …) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class MetricVerdict:
    """One test on one metric: outcome, test name, statistic, p-value, effect size, threshold, reason and evidence.

    ``statistic`` is the log e-value of a sequential test, ``p_value`` its always-valid p-value ``min(1, 1/E)``;
    ``evidence`` holds the sequential evidence (``e_value`` vs ``e_threshold``, ``upper_bound`` vs ``tolerance``,
    ``mde``, counts, quantiles with their intervals); ``gate`` is False for detectors, whose Inconclusive does
    not hold a Pass.
    """

    metric: str
    outcome: Outcome
    test: str
    statistic: float | None
    p_value: float | None
    effect_size: float | None
    threshold: dict[str, float]
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    gate: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Return plain data (floats rounded to 6 significant places; non-finite ones as strings)."""
        out = asdict(self)
        out["outcome"] = self.outcome.value
        for key in ("statistic", "p_value", "effect_size"):
            out[key] = _plain(out[key])
        out["evidence"] = {k: _plain(v) for k, v in self.evidence.items()}
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


#: The default thresholds (a module-level instance, used as the default argument).
DEFAULT_JUDGE = JudgeConfig()


#: Share of ``beta`` spent on the baseline's lower bound (the rest on the canary's upper bound): the baseline has
#: at least as many requests at every weight up to 50 % (users' by the weight, synthetic probes evenly), so a
#: smaller share costs it little, and none with no baseline error.
BASELINE_BETA_SHARE = 0.2
#: The fixed-horizon test a Pass's tolerance is sized by: one-sided exact binomial, this α and power.
HORIZON_ALPHA, HORIZON_POWER = 0.01, 0.99


@lru_cache(maxsize=4096)
def _horizon_mde(n: int, p0: float) -> float:
    critical = 1 if p0 <= 0 else int(stats.binom.isf(HORIZON_ALPHA, n, p0)) + 1  # P(X ≥ critical | p0) ≤ α
    if critical > n:
        return 1.0
    return float(stats.beta.ppf(HORIZON_POWER, critical, n - critical + 1)) - p0  # P(X ≥ critical | p1) = power


def pass_tolerance(requests_per_s: float, p0: float, *, floor: float, config: JudgeConfig = DEFAULT_JUDGE) -> float:
    """The excess a Pass must rule out: what ``pass_horizon_s`` of the canary's traffic would reveal.

    The smallest p1 − p0 that a one-sided exact binomial test at α 1 % detects with power 99 % from
    ``requests_per_s × pass_horizon_s`` requests (the critical count ``c`` with P(X ≥ c | p0) ≤ α, then p1 with
    P(X ≥ c | p1) = 0.99, the Beta(c, n − c + 1) quantile), clamped to [``floor``, ``error_tolerance``].
    """
    n = int(requests_per_s * config.pass_horizon_s)
    mde = _horizon_mde(n, round(min(max(p0, 0.0), 1.0), 6)) if n > 0 else 1.0
    return min(config.error_tolerance, max(floor, mde))


@dataclass(frozen=True)
class RateCounts:
    """Per-interval counts of one binary outcome (a 5xx; a request slower than a bound) of both populations.

    ``tables`` in time order (a tuple of :class:`~pilotage.observe.sequential.Table` or their
    :class:`~pilotage.observe.sequential.TableColumns`); ``baseline`` False when there is no baseline (the
    ``y``/``m`` of every table are 0); ``duration_s`` the time they cover.
    """

    tables: Sequence[Table]
    baseline: bool
    duration_s: float = 0.0

    @property
    def canary(self) -> tuple[int, int]:
        """(events, trials) of the canary over all intervals."""
        columns = TableColumns.of(self.tables)
        return int(columns.x.sum()), int(columns.n.sum())

    @property
    def control(self) -> tuple[int, int]:
        """(events, trials) of the baseline over all intervals."""
        columns = TableColumns.of(self.tables)
        return int(columns.y.sum()), int(columns.m.sum())


def _fail_evidence(counts: RateCounts, reference: float) -> tuple[float, str]:
    """(log e-value that the canary is worse than its reference, test name)."""
    if counts.baseline:
        return conditional_log_e(counts.tables), "sequential conditional odds-ratio test vs baseline"
    x, n = counts.canary
    return binomial_log_e(x, n, reference), f"sequential binomial test vs the allowed rate {reference:.3%}"


def _excess_bounds(counts: RateCounts, reference: float, beta: float) -> tuple[float, float]:
    """(estimate, time-uniform upper bound) of the canary's excess over its reference."""
    x, n = counts.canary
    c_rate = x / n if n else 0.0
    if not counts.baseline:
        _, upper = bernoulli_bounds(x, n, beta)
        return c_rate - reference, upper - reference
    y, m = counts.control
    _, c_upper = bernoulli_bounds(x, n, beta * (1.0 - BASELINE_BETA_SHARE))
    b_lower, _ = bernoulli_bounds(y, m, beta * BASELINE_BETA_SHARE)
    return c_rate - (y / m if m else 0.0), c_upper - b_lower


def judge_rate(
    metric: str,
    counts: RateCounts,
    *,
    reference: float,
    materiality: float,
    alpha: float,
    config: JudgeConfig = DEFAULT_JUDGE,
) -> MetricVerdict:
    """Sequential verdict on the canary's rate of one binary outcome (see the module docstring).

    Args:
        metric: name for the verdict (``error_rate``, ``latency>500ms``).
        counts: the per-interval counts.
        reference: the allowed rate when there is no baseline (the objective's budget).
        materiality: smallest observed excess that can fail (the objective's budget: more than the SLO allows).
        alpha: this test's share of the false-alarm budget (:meth:`JudgeConfig.alpha_for`).
        config: ``beta``, ``min_requests``, ``error_tolerance``.

    Returns:
        Fail when the e-value reaches 1/alpha and the excess estimate exceeds ``materiality``; Pass when the upper
        bound of the excess is below ``error_tolerance`` with at least ``min_requests`` canary requests;
        Inconclusive otherwise (the reason says what is missing).
    """
    x, n = counts.canary
    y, m = counts.control
    log_e, test = _fail_evidence(counts, reference)
    estimate, upper = _excess_bounds(counts, reference, config.beta)
    e_value, threshold_e = math.exp(min(log_e, 700.0)), 1.0 / alpha
    rate = n / counts.duration_s if counts.duration_s > 0 else 0.0
    tolerance = pass_tolerance(rate, (y / m if m else 0.0) if counts.baseline else reference, floor=materiality,
                               config=config)  # fmt: skip
    evidence = {
        "e_value": e_value,
        "e_threshold": threshold_e,
        "estimate": estimate,
        "upper_bound": upper,
        "tolerance": tolerance,
        "mde": max(0.0, upper - estimate),
        "materiality": materiality,
        "horizon_s": config.pass_horizon_s,
        "canary": [x, n],
        "baseline": [y, m] if counts.baseline else None,
    }
    threshold = {"alpha": alpha, "beta": config.beta, "tolerance": tolerance, "min_requests": config.min_requests}
    ref = f"baseline {y}/{m}" if counts.baseline else f"allowed {reference:.3%}"
    said = (
        f"canary {x}/{n} vs {ref}: excess {estimate:+.3%} (fails above {materiality:.3%} once significant); "
        f"e={e_value:.3g} of {threshold_e:.0f}; excess ≤ {upper:.3%} (passes below {tolerance:.2%})"
    )
    if log_e >= math.log(threshold_e) and estimate > materiality:
        outcome, reason = Outcome.FAIL, said
    elif upper < tolerance and n >= config.min_requests:
        outcome, reason = Outcome.PASS, said
    elif n < config.min_requests:
        outcome, reason = Outcome.INCONCLUSIVE, f"only {n} canary requests (< {config.min_requests}); {said}"
    else:
        outcome, reason = Outcome.INCONCLUSIVE, f"evidence not yet sufficient: {said}"
    p_value = min(1.0, 1.0 / e_value) if e_value > 0 else 1.0
    return MetricVerdict(metric, outcome, test, log_e, p_value, estimate, threshold, reason, evidence)


def combine(verdicts: Sequence[MetricVerdict]) -> Outcome:
    """Overall outcome: any Fail → Fail; else a gating Inconclusive (or no gating verdict) → Inconclusive; else Pass."""
    if any(v.outcome is Outcome.FAIL for v in verdicts):
        return Outcome.FAIL
    gates = [v for v in verdicts if v.gate]
    if not gates or any(v.outcome is Outcome.INCONCLUSIVE for v in gates):
        return Outcome.INCONCLUSIVE
    return Outcome.PASS
