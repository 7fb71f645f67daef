"""The canary-step trace generator (tests/fixtures/judge_traces.py) and what the judge does on its traces (#21).

The first part checks the generator's properties. The second is a small statistical suite on Pilotage's judge,
replayed poll by poll as a rollout step (tests/fixtures/judge_replay.py): each test asserts the *desired*
behaviour for one mechanism of issue #21 and is marked ``xfail(strict=True)`` while the judge has that defect.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from prometheus_client import generate_latest

from pilotage.observe.judge import Outcome
from pilotage.observe.samples import Sample, delta, parse_exposition
from pilotage.runtime.proxy_metrics import ProxyMetrics
from tests.fixtures.judge_replay import pilotage_judge, replay, step_settings
from tests.fixtures.judge_traces import (
    BUCKETS_S,
    CLASSES,
    T0_S,
    LatencyModel,
    Regression,
    Trace,
    TraceSpec,
    generate,
    make_trace,
)

SHAPE = LatencyModel(0.05, 0.45).scaled_to_p99(0.25)  # p99 at half the SLO's 500 ms


def spec(**changes: Any) -> TraceSpec:
    base = TraceSpec(cls="custom", seed=7, truth="healthy", rps=100.0, weight=0.25, latency=SHAPE)
    return replace(base, **changes)


def canary_samples(trace: Trace) -> list[Sample]:
    return [p.canary for p in trace.polls if p.canary is not None]


def total(sample: Sample) -> float:
    return sum(sample.statuses.values())


# --- the generator -----------------------------------------------------------------------------------------------


def test_same_seed_same_trace_and_another_seed_another() -> None:
    first, again, other = make_trace("errors", 3), make_trace("errors", 3), make_trace("errors", 4)
    assert first.polls == again.polls and first.spec == again.spec
    assert first.polls != other.polls


def test_every_class_builds_polls_every_half_second_over_window_and_grace() -> None:
    for cls in CLASSES:
        trace = make_trace(cls, 0)
        assert [p.at_s for p in trace.polls] == [0.5 * k for k in range(len(trace.polls))]
        assert trace.polls[-1].at_s == trace.spec.window_s + trace.spec.grace_s
        assert 5 <= trace.spec.rps <= 200 and 0.05 <= trace.spec.weight <= 0.5


def test_rates_weights_and_error_rates_are_realised_within_binomial_tolerance() -> None:
    trace = generate(spec(rps=150.0, weight=0.3, baseline_error_rate=0.01, canary_error_rate=0.05))
    first, last = trace.polls[0], trace.polls[-1]
    assert first.canary is not None and last.canary is not None
    assert first.baseline is not None and last.baseline is not None
    can, base = delta(first.canary, last.canary), delta(first.baseline, last.baseline)
    n = can.requests + base.requests
    assert n == pytest.approx(150 * 33, rel=4 / np.sqrt(150 * 33))
    assert abs(can.requests / n - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)
    assert abs(can.errors / can.requests - 0.05) < 4 * np.sqrt(0.05 * 0.95 / can.requests)
    assert abs(base.errors / base.requests - 0.01) < 4 * np.sqrt(0.01 * 0.99 / base.requests)
    assert trace.meta["canary"]["requests"] == pytest.approx(can.requests, abs=15)  # completions vs arrivals


def test_latency_regression_realises_its_true_share_over_the_threshold() -> None:
    tail = generate(spec(rps=200.0, weight=0.5, regression=Regression("tail", 2.0)))
    true = tail.meta["true"]
    assert true["canary_over_threshold"] == pytest.approx(0.02, rel=0.01)  # the top 2 % pushed beyond 500 ms
    assert true["baseline_over_threshold"] < 1e-3
    last = tail.polls[-1].canary
    assert last is not None
    share = 1 - last.buckets[0.5] / last.latency_count
    assert abs(share - 0.02) < 4 * np.sqrt(0.02 * 0.98 / last.latency_count)
    assert last.buckets[0.25] / last.latency_count == pytest.approx(0.98, abs=0.01)  # median and body unchanged


def test_buckets_are_the_proxys_bounds_cumulative_and_consistent_with_sum_and_count() -> None:
    metrics = ProxyMetrics("checkout")
    metrics.observe("v2", "GET", 200, 0.12)
    proxy = parse_exposition(generate_latest(metrics.registry).decode(), labels={"version": "v2"})
    trace = make_trace("aa", 5)
    for poll in trace.polls[1:]:
        for sample in (poll.canary, poll.baseline):
            assert sample is not None
            if not sample.buckets:
                continue
            assert set(sample.buckets) == set(proxy.buckets) == set(BUCKETS_S)
            counts = [sample.buckets[le] for le in sorted(sample.buckets)]
            assert counts == sorted(counts)
            assert counts[-1] == sample.latency_count == total(sample)


def test_counters_are_monotone_except_at_a_restart() -> None:
    trace = generate(spec(rps=60.0, canary_history_s=20.0, restarts_s=(2.2,), down_s=0.3))
    baseline = [p.baseline for p in trace.polls if p.baseline is not None]
    assert all(total(a) >= total(b) for b, a in zip(baseline, baseline[1:], strict=False))
    canary = canary_samples(trace)
    drops = [a.at for b, a in zip(canary, canary[1:], strict=False) if total(a) < total(b)]
    assert len(drops) == 1 and drops[0] - canary[0].at == 2.5  # first sample of the new process
    for b, a in zip(canary, canary[1:], strict=False):
        if a.at not in drops:
            assert all(a.buckets[le] >= b.buckets.get(le, 0.0) for le in a.buckets)
            assert a.latency_sum_s >= b.latency_sum_s
    down = [p for p in trace.polls if 1.9 <= p.at_s < 2.2]
    assert [p.canary for p in down] == [None] and "ConnectError" in down[0].errors[0]


def test_crash_loop_resets_only_at_restarts_and_errors_while_down() -> None:
    trace = make_trace("crash-loop", 2)
    restarts = trace.spec.restarts_s
    canary = canary_samples(trace)
    drops = 0
    for b, a in zip(canary, canary[1:], strict=False):
        restarted = any(b.at - T0_S < r <= a.at - T0_S for r in restarts)
        drops += total(a) < total(b)
        assert restarted or total(a) >= total(b)
    assert len(restarts) >= 8 and drops >= len(restarts) // 2  # a life without requests cannot show its reset
    assert sum("ConnectError" in e for p in trace.polls for e in p.errors) >= len(restarts) // 2


def test_missing_data_no_data_and_empty_results() -> None:
    missing = generate(spec(missing_share=0.3))
    gaps = sum(p.canary is None for p in missing.polls) + sum(p.baseline is None for p in missing.polls)
    assert abs(gaps / (2 * len(missing.polls)) - 0.3) < 4 * np.sqrt(0.3 * 0.7 / (2 * len(missing.polls)))
    assert gaps == sum(len(p.errors) for p in missing.polls)
    no_data = make_trace("no-data", 1)
    assert all(p.canary is None and "empty result" in p.errors[0] for p in no_data.polls)
    empty = make_trace("empty-results", 1)
    assert all(p.canary is not None and total(p.canary) == 0 and not p.errors for p in empty.polls)


def test_forced_error_lands_on_the_next_canary_request() -> None:
    trace = generate(spec(rps=40.0, error_times_s=(2.2,)))
    errors = [p.canary.statuses.get("500", 0.0) for p in trace.polls if p.canary is not None]
    assert errors[-1] == 1.0 and errors[4] == 0.0  # none by 2.0 s, exactly one in the end


def test_bad_specs_and_unknown_classes_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="weight in"):
        generate(spec(weight=1.5))
    with pytest.raises(ValueError, match="error rate"):
        generate(spec(canary_error_rate=2.0))
    with pytest.raises(KeyError, match="known: aa"):
        make_trace("nope", 0)


def test_replay_follows_the_rollout_step_control_flow() -> None:
    healthy = replay(generate(spec(rps=100.0)))
    assert healthy.outcome is Outcome.PASS and healthy.decided_at_s >= step_settings().window_s
    failing = replay(generate(spec(rps=100.0, canary_error_rate=0.5)))
    assert failing.outcome is Outcome.FAIL and failing.decided_at_s < step_settings().window_s
    nothing = replay(make_trace("no-data", 0))
    assert nothing.outcome is Outcome.INCONCLUSIVE and nothing.decided_at_s == 33.0 and nothing.polls == 67


# --- issue #21 mechanisms on the current judge -------------------------------------------------------------------


def outcomes(specs: list[TraceSpec]) -> list[Outcome]:
    return [replay(generate(s), pilotage_judge).outcome for s in specs]


def test_aa_at_ten_percent_weight_has_no_spread_false_alarm() -> None:
    # identical versions, no errors at all: only a latency test can fail; a 30 s window at 100 rps, 10 %
    found = outcomes([spec(seed=s, weight=0.10, window_s=30.0) for s in range(12)])
    assert found.count(Outcome.FAIL) <= 1  # 1 % false alarms: P(>= 2 of 12) < 1 %


def test_one_natural_error_does_not_roll_back() -> None:
    found = outcomes([spec(seed=s, rps=40.0, error_times_s=(2.2,)) for s in range(5)])
    assert Outcome.FAIL not in found


@pytest.mark.xfail(
    strict=True,
    reason="#21 mechanism 3, out of statistical reach at this traffic (measured 2026-12-07): at 4.8 canary rps the "
    "Pass tolerance is its 5 % cap (slo_error_rate), so 10 of 12 pass at 20.5-25 s after 104-107 requests with 0-2 "
    "errors (2 Inconclusive). Never passing a 1 % regression needs a tolerance <= 1 %, and then any test with beta "
    "1 % needs >= 390 clean requests for half its Passes (Neyman-Pearson floor with p0 = 0 known; 459 fixed-sample; "
    "benchmarks/bench_judge_ceiling.py): 81 s at this traffic against a 33 s step, so no healthy canary here could "
    "pass either (the judge's bound needs 565, 118 s)",
)
def test_one_percent_errors_at_twelve_percent_never_pass() -> None:
    # 1 % errors is 10x the 99.9 % SLO's budget; the canary sees ~5 rps, too few to clear it in 33 s
    found = outcomes([spec(seed=s, rps=40.0, weight=0.12, canary_error_rate=0.01) for s in range(12)])
    assert found.count(Outcome.PASS) <= 1


def test_errors_before_a_restart_are_not_erased() -> None:
    # 3 of the canary's first ~8 requests fail, then it restarts at 2.2 s and serves cleanly
    base = spec(rps=16.0, error_times_s=(0.4, 0.9, 1.4), restarts_s=(2.2,), down_s=0.1)
    found = outcomes([replace(base, seed=s) for s in range(5)])
    assert Outcome.PASS not in found


def test_tail_only_regression_is_detected() -> None:
    # canary's slowest 2 % take 4x longer: 2 % of its requests over the SLO's 500 ms (twice the latency budget)
    found = outcomes([spec(seed=s, regression=Regression("tail", 2.0)) for s in range(12)])
    assert found.count(Outcome.FAIL) >= 11
