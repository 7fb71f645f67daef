"""The statistical ceiling of the canary judge's time to decision (issue #21): how fast could *any* test decide?

    python benchmarks/bench_judge_ceiling.py [--seeds 20] [--class NAME ...]

For each trace of :data:`tests.fixtures.judge_traces.CLASSES` (the same seeds as ``bench_judge.py``; ``--seeds 20``
is its ``--quick``), the canary's traffic is ``λ = rps × weight`` requests per second and the decision is a test
between two Bernoulli rates of one SLI (a 5xx; a request slower than the SLO's 500 ms threshold):

* **healthy** traces must **Pass**: rule out, with error ``β`` (``JudgeConfig.beta``, 1 %), an excess of the judge's
  own tolerance ``δ = pass_tolerance(λ, p₀)`` over the baseline's true rate ``p₀``, while failing identical versions
  with at most the test's share ``α`` of the judge's false-alarm budget (:meth:`JudgeConfig.alpha_for`: errors
  0.6 %, the latency objective 0.25 %). A Pass needs *both* gates (errors and latency), so the trace's ceiling is
  the larger of the two.
* **regression** traces must **Fail**: detect the true ``p₁ > p₀`` of either SLI with power ``1 − β`` at that
  test's ``α`` share; the faster of the two SLIs is the trace's ceiling.

Four numbers per test, in canary requests, then seconds at ``λ`` (``n / λ``):

1. ``fixed``: the fixed-sample size of the one-sided exact binomial test (critical count ``c`` with
   ``P(X ≥ c | p₀) ≤ α``, the smallest ``n`` with ``P(X ≥ c | p₁) ≥ 1 − β``; the oracle of ``bench_judge.py``,
   there at α = 1 %).
2. ``wald``: Wald's lower bound on the *expected* sample size of every sequential test with these error rates
   (Wald 1945, "Sequential tests of statistical hypotheses", Ann. Math. Statist. 16(2); in the general form
   ``E[N] · KL ≥ d(P(decide) ‖ P'(decide))`` it is lemma 1 of Kaufmann, Cappé & Garivier 2016, "On the complexity
   of best-arm identification in multi-armed bandit models", JMLR 17), under the state that must be decided (p₀
   for a Pass, p₁ for a Fail):
   ``E₀[N] ≥ ((1−α) ln((1−α)/β) + α ln(α/(1−β))) / KL(p₀‖p₁)`` and
   ``E₁[N] ≥ ((1−β) ln((1−β)/α) + β ln(β/(1−α))) / KL(p₁‖p₀)``; SPRT attains it up to overshoot
   (Wald & Wolfowitz 1948). A sequential test is faster *on average* than the fixed-sample test, not slower.
3. ``median``: the floor of the *median* time (what ``bench_judge.py`` reports), exact for these rates. A test has
   decided by ``n`` requests in at least half of the traces of the state to be decided (``P_true(A) ≥ ½``, A the
   event "decided by n", fixed by the first n requests) and decides so with probability at most ``e`` in the other
   state (``β`` for a Pass, ``α`` for a Fail). By the Neyman-Pearson lemma (1933) the largest ``P_true(A)`` with
   ``P_other(A) ≤ e`` is that of the randomised likelihood-ratio test on the count, so the floor is the smallest
   ``n`` where that test's power reaches ½. It assumes the test knows ``p₀`` exactly (the judge must estimate
   the baseline's rate too), so no real test reaches it.
4. ``two-sample`` (a Fail only): the same median floor when the baseline's rate is unknown, as it is to the
   judge: the baseline serves ``n (1 − w) / w`` requests beside the canary's ``n`` (w the weight), and the test is
   the one-sided conditional test on the 2×2 counts (:func:`conditional_power`), the most powerful unbiased one.

The class's ceiling is the median over its traces, each capped at the step's limit (3 s window + 30 s grace,
where the judge ends Inconclusive), to compare with the judge's median time. Binary SLIs only: the latency
detectors read the whole histogram, which can hold more evidence than the share over 500 ms (the judge decides
latency-median and latency-spread faster than their binary two-sample floors).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the trace fixtures live in tests/fixtures

from tests.fixtures.judge_traces import CLASSES, ERROR_BUDGET, LATENCY_BUDGET, Trace, TraceSpec, make_trace  # noqa: E402

from pilotage.observe.judge import DEFAULT_JUDGE, pass_tolerance  # noqa: E402

#: The step's limit (s): the analysis window and the Inconclusive grace (``Settings`` defaults).
STEP_LIMIT_S = 33.0
#: The default SLO's tests: one latency objective, p50/p95/p99 + the distribution test as detectors.
TESTS = (1, 4)
#: Classes whose decision has a time target and a decidable state (healthy → Pass, regression → Fail).
TIMED = ("healthy", "regression")


def kl(p: float, q: float) -> float:
    """Binary KL divergence d(p‖q) in nats (``inf`` when q is 0 or 1 and p is not)."""

    def term(a: float, b: float) -> float:
        if a == 0.0:
            return 0.0
        return math.inf if b == 0.0 else a * math.log(a / b)

    return term(p, q) + term(1.0 - p, 1.0 - q)


def smallest(enough: Callable[[int], bool], limit: int, start: int = 1) -> float:
    """Smallest n ≥ ``start`` with ``enough(n)``, as a float (``inf`` when none up to ``limit``).

    Doubles from ``start`` to a sufficient n, then bisects below it: exact when ``enough`` is monotone in n (the
    randomised tests); for the non-randomised exact test, whose power is not monotone, a sufficient n at most the
    smallest sufficient one above its last insufficient probe.
    """
    high = start
    while not enough(high):
        high *= 2
        if high > limit:
            return math.inf
    low = high // 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return float(high)


def fixed_n(p0: float, p1: float, alpha: float, beta: float, limit: int = 10**7) -> float:
    """Smallest n at which the one-sided exact binomial test at ``alpha`` has power ``1 − beta`` at ``p1`` (> p0).

    ``inf`` when it needs more than ``limit`` requests (:func:`smallest`).
    """

    def enough(n: int) -> bool:
        critical = 1 if p0 <= 0 else int(stats.binom.isf(alpha, n, p0)) + 1
        return critical <= n and float(stats.binom.sf(critical - 1, n, p1)) >= 1.0 - beta

    return smallest(enough, limit, start=1)


def wald_n(p_true: float, p_other: float, wrong: float, fooled: float) -> float:
    """Wald's floor of E[N] (requests) under ``p_true``: ``d(1 − wrong ‖ fooled) / KL(p_true‖p_other)``.

    0 when KL is infinite (p_other is 0: one event rules it out); the median floor covers that case.

    ``wrong``: P(the other decision | p_true); ``fooled``: P(the decision for p_true | p_other). For a Pass
    ``p_true = p₀, wrong = α, fooled = β``; for a Fail ``p_true = p₁, wrong = β, fooled = α``.
    """
    return kl(1.0 - wrong, fooled) / kl(p_true, p_other)


def np_power(n: int, p_true: float, p_other: float, size: float) -> float:
    """Largest P(A | p_true) of an event A of n requests with P(A | p_other) ≤ ``size`` (Neyman-Pearson).

    The likelihood ratio is monotone in the count, so A is "count beyond c" plus a randomised share of the count
    c (towards p_true's side); counting non-events instead mirrors the low side onto the high one.
    """
    if p_true < p_other:
        p_true, p_other = 1.0 - p_true, 1.0 - p_other
    ks = np.arange(n + 1)
    tail_other = stats.binom.sf(ks - 1, n, p_other)  # P(K ≥ k | p_other), k = 0..n
    c = int(np.argmax(tail_other <= size)) if (tail_other <= size).any() else n + 1
    beyond_other = float(tail_other[c]) if c <= n else 0.0
    beyond_true = float(stats.binom.sf(c - 1, n, p_true)) if c <= n else 0.0
    if c == 0:
        return beyond_true
    edge_other = float(stats.binom.pmf(c - 1, n, p_other))
    share = (size - beyond_other) / edge_other if edge_other > 0 else 0.0
    return beyond_true + min(1.0, share) * float(stats.binom.pmf(c - 1, n, p_true))


def median_n(p_true: float, p_other: float, fooled: float, limit: int = 10**5) -> float:
    """Smallest n (requests) where :func:`np_power` reaches ½ (``inf`` above ``limit``; power grows with n)."""
    return smallest(lambda n: np_power(n, p_true, p_other, fooled) >= 0.5, limit)


def _randomised_power(
    null_tail: np.ndarray, null_pmf: np.ndarray, alt_tail: np.ndarray, alt_pmf: np.ndarray, size: float
) -> float:
    """Power of the randomised test "reject above c, with a share of c − 1" of size ``size``.

    Arrays over the counts 0..k: ``*_tail[j] = P(X ≥ j)``, ``*_pmf[j] = P(X = j)`` under the null and the
    alternative.
    """
    ok = np.nonzero(null_tail <= size)[0]
    c = int(ok[0]) if ok.size else null_tail.size
    beyond_null = float(null_tail[c]) if c < null_tail.size else 0.0
    beyond_alt = float(alt_tail[c]) if c < alt_tail.size else 0.0
    if c == 0:
        return beyond_alt
    share = (size - beyond_null) / null_pmf[c - 1] if null_pmf[c - 1] > 0 else 0.0
    return beyond_alt + min(1.0, share) * float(alt_pmf[c - 1])


def conditional_power(n: int, m: int, p0: float, p1: float, size: float) -> float:
    """Power of the one-sided conditional (UMPU) test of "canary rate ≤ baseline rate" at ``size``.

    ``n`` canary and ``m`` baseline requests with true rates ``p1`` and ``p0``. Given the total count k, the
    canary's count is hypergeometric under equal rates and Fisher's noncentral hypergeometric with the odds ratio
    ψ = p1(1−p0) / (p0(1−p1)) under the alternative (all k in the canary when p0 = 0); the test rejects the
    upper tail at ``size`` (randomised), and its power is averaged over k (Lehmann & Romano, *Testing Statistical
    Hypotheses*, 3rd ed., §4.5–4.6: with the shared rate unknown, a test of level α at every shared rate that is
    unbiased is most powerful when it is this conditional one, by Neyman structure).
    """
    canary, base = stats.binom.pmf(np.arange(n + 1), n, p1), stats.binom.pmf(np.arange(m + 1), m, p0)
    top = int(stats.binom.ppf(1 - 1e-9, n, p1) + stats.binom.ppf(1 - 1e-9, m, p0)) + 1
    total = np.convolve(canary[: top + 1], base[: top + 1])[: top + 1]
    power = 0.0
    for k in range(1, top + 1):
        if total[k] < 1e-12 or k > n:
            continue
        ks = np.arange(k + 1)
        null = stats.hypergeom(n + m, n, k)
        null_pmf, null_tail = null.pmf(ks), null.sf(ks - 1)
        if p0 <= 0:
            alt_pmf = (ks == k).astype(float)
        else:
            psi = p1 * (1 - p0) / (p0 * (1 - p1))
            alt_pmf = stats.nchypergeom_fisher(n + m, n, k, psi).pmf(ks)
        alt_tail = np.cumsum(alt_pmf[::-1])[::-1]
        power += float(total[k]) * _randomised_power(null_tail, null_pmf, alt_tail, alt_pmf, size)
    return power


def conditional_median_n(p0: float, p1: float, weight: float, size: float, limit: int = 20_000) -> float:
    """Smallest canary requests n (baseline n(1−w)/w) where :func:`conditional_power` reaches ½ (``inf`` above
    ``limit``)."""

    def enough(n: int) -> bool:
        return conditional_power(n, round(n * (1 - weight) / weight), p0, p1, size) >= 0.5

    return smallest(enough, limit, start=8)


@dataclass(frozen=True)
class Ceiling:
    """One trace's floors (s) at its canary rate: fixed-sample, Wald's expected, median, the two-sample median
    (regressions only, else ``nan``); and the canary's rate (req/s)."""

    fixed_s: float
    wald_s: float
    median_s: float
    canary_rps: float
    two_sample_s: float = math.nan


def _test(p0: float, p1: float, alpha: float, spec: TraceSpec, *, passing: bool) -> tuple[float, ...]:
    beta, rate = DEFAULT_JUDGE.beta, spec.rps * spec.weight
    fixed = fixed_n(p0, p1, alpha, beta)
    if passing:
        wald, median, paired = wald_n(p0, p1, alpha, beta), median_n(p0, p1, beta), math.nan
    else:
        wald, median = wald_n(p1, p0, beta, alpha), median_n(p1, p0, alpha)
        paired = conditional_median_n(p0, p1, spec.weight, alpha)
    return fixed / rate, wald / rate, median / rate, paired / rate


def ceiling(trace: Trace) -> Ceiling | None:
    """The floors of ``trace`` (None for a class without a decidable state, or without canary traffic)."""
    spec, true = trace.spec, trace.meta["true"]
    rate = spec.rps * spec.weight
    if trace.truth not in TIMED or rate <= 0:
        return None
    gates = (
        (true["baseline_error_rate"], true["canary_error_rate"], ERROR_BUDGET, "errors"),
        (true["baseline_over_threshold"], true["canary_over_threshold"], LATENCY_BUDGET, "objective"),
    )
    found = []
    for p0, p1, budget, test in gates:
        alpha = DEFAULT_JUDGE.alpha_for(test, *TESTS)
        if trace.truth == "healthy":
            found.append(_test(p0, p0 + pass_tolerance(rate, p0, floor=budget), alpha, spec, passing=True))
        elif p1 > p0:
            found.append(_test(p0, p1, alpha, spec, passing=False))
    if not found:
        return Ceiling(math.inf, math.inf, math.inf, rate, math.inf)
    pick = max if trace.truth == "healthy" else min  # a Pass needs both gates; a Fail either
    fixed, wald, median, paired = (pick(column) for column in zip(*found, strict=True))
    return Ceiling(fixed, wald, median, rate, paired)


def summarise(cls: str, seeds: int) -> dict[str, float] | None:
    """Median over the class's traces of each floor (s, capped at :data:`STEP_LIMIT_S`) and of the canary rate."""
    found = [c for c in (ceiling(make_trace(cls, s)) for s in range(seeds)) if c is not None]
    if not found:
        return None

    def med(values: Sequence[float]) -> float:
        return float(statistics.median(min(v, STEP_LIMIT_S) for v in values))

    return {
        "canary_rps": float(statistics.median(c.canary_rps for c in found)),
        "fixed_s": med([c.fixed_s for c in found]),
        "wald_s": med([c.wald_s for c in found]),
        "median_s": med([c.median_s for c in found]),
        "two_sample_s": med([c.two_sample_s for c in found]),
        "over_15s": sum(c.median_s > 15.0 for c in found) / len(found),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20, help="traces per class (default 20: bench_judge --quick)")
    parser.add_argument("--class", dest="classes", action="append", metavar="NAME", help="only this class (repeat)")
    args = parser.parse_args(argv)
    classes = args.classes or list(CLASSES)
    print(
        "| class | median canary rps | fixed-sample s | Wald E[N] s | median floor s (p0 known) | "
        "traces with that floor > 15 s | two-sample median floor s |"
    )
    print("|---|---|---|---|---|---|---|")
    for cls in classes:
        s = summarise(cls, args.seeds)
        if s is None:
            continue
        paired = "—" if math.isnan(s["two_sample_s"]) else f"{s['two_sample_s']:.1f}"
        print(
            f"| {cls} | {s['canary_rps']:.1f} | {s['fixed_s']:.1f} | {s['wald_s']:.1f} | {s['median_s']:.1f} | "
            f"{s['over_15s']:.0%} | {paired} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
