"""Issue 21: the five mechanisms by which the canary judge was wrong, each on seeded series of two versions.

1. spread at small weights, 2. burn-rate alerts on one error (and both versions degrading), 3. passing on thin
evidence (sequential tests), 4. counter resets, 5. latency beyond the median. Every test here failed on the judge
before issue 21 (Brown-Forsythe on per-interval means, unbounded burn rates, a fixed 8-interval pass, first/last
deltas, the median of interval means).
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from pathlib import Path

import numpy as np

import pilotage
from pilotage.agents.reliability import assessment_reasoning, evidence_lines
from pilotage.bus.sqlite import SQLiteBus
from pilotage.catalogue import checked_event
from pilotage.events import EventType
from pilotage.observe.burn_rate import ROLLOUT_TIME_SCALE, burn_alerts
from pilotage.observe.judge import Outcome
from pilotage.observe.samples import Sample
from pilotage.observe.slo import default_slo, parse_slo
from pilotage.rollout.analysis import Assessment, assess
from pilotage.rollout.observation import AnalysisSettings, Observation, recorded_inputs
from pilotage.rollout.state import RolloutState, StepVerdict, next_action
from tests.fixtures.judge_series import bimodal, lognormal, series, tail

SLO = default_slo("svc")  # 99.9 % availability, 99 % of requests ≤ 500 ms
AVAILABILITY = parse_slo({"objectives": [{"name": "availability", "sli": "availability", "target": 0.999}]})


def judged(canary: list[Sample], baseline: list[Sample], slo=SLO) -> Assessment:  # type: ignore[no-untyped-def]
    return assess(slo, canary, baseline, time_scale=ROLLOUT_TIME_SCALE, min_requests=20)


def pair(seed: int, seconds: float, rps: float, weight: float, **canary: object) -> tuple[list[Sample], list[Sample]]:
    """(canary, baseline) series of ``seconds`` at ``rps`` with ``weight`` (0..1) to the canary."""
    rng = np.random.default_rng(seed)
    latency = canary.pop("baseline_latency", lognormal(0.06, 0.6))
    base = series(rng, seconds=seconds, rps=rps * (1 - weight), latency=latency)  # type: ignore[arg-type]
    new = series(rng, seconds=seconds, rps=rps * weight, **{"latency": latency, **canary})  # type: ignore[arg-type]
    return new, base


# --- 1. spread test vs small weights ------------------------------------------------------------------------------


def test_identical_versions_at_a_ten_percent_weight_do_not_fail_on_spread() -> None:
    # 100 rps, canary 10 %: 5 canary vs 45 baseline requests per interval. Per-interval means of the canary vary
    # ~3x as much (variance ~9x) with identical versions: a variance test on them failed healthy canaries.
    fails = []
    for seed in range(12):
        canary, baseline = pair(seed, 30.0, 100.0, 0.10)
        found = judged(canary, baseline)
        if found.outcome is Outcome.FAIL:
            fails.append((seed, found.reasons))
    assert fails == []


# --- 2. burn-rate alerts on one error; both versions degrading ---------------------------------------------------


def _one_error_in_25() -> tuple[list[Sample], list[Sample]]:
    canary, baseline = pair(7, 5.0, 50.0, 0.10, error_rate=0.0)
    last = canary[-1]
    statuses = dict(last.statuses)
    statuses["200"] = statuses.get("200", 0.0) - 1
    statuses["500"] = 1.0  # one natural 5xx in the newest interval, the rest healthy
    canary[-1] = Sample(last.at, statuses, last.latency_sum_s, last.latency_count, last.buckets, last.metrics)
    return canary, baseline


def test_one_natural_error_among_25_requests_is_not_a_burn_rate_alert() -> None:
    canary, baseline = _one_error_in_25()
    assert 15 <= canary[-1].latency_count <= 40
    assert not any(a.firing for a in burn_alerts(AVAILABILITY, canary))
    assert judged(canary, baseline, AVAILABILITY).outcome is not Outcome.FAIL


def test_a_sustained_burn_still_fires_with_its_bound() -> None:
    canary, _ = pair(3, 8.0, 80.0, 0.5, error_rate=0.2)
    fast = burn_alerts(AVAILABILITY, canary)[0]
    assert fast.firing and fast.long_burn is not None and fast.long_burn > 100


def _both_degrading() -> tuple[list[Sample], list[Sample]]:
    rng = np.random.default_rng(11)
    baseline = series(rng, seconds=6.0, rps=75.0, error_rate=0.2)
    canary = series(rng, seconds=6.0, rps=25.0, error_rate=0.2)
    return canary, baseline


def test_both_versions_degrading_equally_holds_the_rollout_and_does_not_blame_the_canary() -> None:
    canary, baseline = _both_degrading()
    found = judged(canary, baseline, AVAILABILITY)
    assert found.outcome is not Outcome.FAIL
    seen = Observation(found, canary, baseline, [], False, True, 6.0, len(canary))
    inputs = {
        **recorded_inputs(seen, AVAILABILITY, AnalysisSettings()),
        "canary": {"requests": 150, "errors": 30, "error_rate": 0.2},
        "baseline": {"requests": 450, "errors": 90, "error_rate": 0.2},
        "slo_error_rate": 0.05,
        "min_requests": 20,
        "on_inconclusive": "rollback",
    }
    reasoning = assessment_reasoning(inputs)
    assert reasoning.action == "pause" and reasoning.score["cause"] == "shared_degradation"
    assert "not the cause" in reasoning.rationale
    state = RolloutState("d", "canary", (25, 100), phase="step", step=0, weight=25)
    assert next_action(state, StepVerdict(0, reasoning.action, reasoning.rationale)).kind == "pause"


def _slow_shares(seed: int, canary_slow: float, baseline_slow: float) -> tuple[list[Sample], list[Sample]]:
    """20 s at 150 rps each (a blue-green preview: green at its own address beside blue), ``*_slow`` of the
    requests 600 ms slower than a 100 ms lognormal: over the default SLO's 500 ms threshold (budget 1 %)."""
    rng = np.random.default_rng(seed)
    base = lognormal(0.1, 0.4)
    baseline = series(rng, seconds=20.0, rps=150.0, latency=bimodal(base, baseline_slow, 0.6))
    canary = series(rng, seconds=20.0, rps=150.0, latency=bimodal(base, canary_slow, 0.6))
    return canary, baseline


def test_a_baseline_burning_the_latency_budget_does_not_roll_back_a_canary_close_to_it() -> None:
    # the CI flake: the baseline sends 10 % of its requests over 500 ms (10x the 1 % budget), the canary ~12 %.
    # The conditional test is significant (e ≥ 1/alpha) and the excess (+3.7 points) is above the 1 % budget, so
    # the judge used to Fail — beside its own "the canary is not the cause". Against a baseline that burns more
    # than 6x, an excess below 6x the budget is not shown to be the canary's: Inconclusive, hold, then pause.
    canary, baseline = _slow_shares(9, 0.12, 0.10)
    found = judged(canary, baseline)
    verdict = next(v for v in found.verdicts if v.metric == "latency>500ms")
    assert verdict.evidence["e_value"] >= verdict.evidence["e_threshold"]  # the relative test is significant...
    assert 0.01 < (verdict.effect_size or 0.0) < 0.06  # ...above the budget, below 6x it
    assert verdict.outcome is Outcome.INCONCLUSIVE and math.isclose(verdict.threshold["degraded_materiality"], 0.06)
    assert found.outcome is Outcome.INCONCLUSIVE and found.cause == "shared_degradation"
    assert not any("fail" in r.split(":")[0] for r in found.reasons)
    seen = Observation(found, canary, baseline, [], False, True, 20.0, len(canary))
    inputs = {**recorded_inputs(seen, SLO, AnalysisSettings()), "canary": {"requests": 3071, "errors": 0},
              "baseline": {"requests": 2969, "errors": 0}, "slo_error_rate": 0.05,
              "on_inconclusive": "rollback"}  # fmt: skip
    reasoning = assessment_reasoning(inputs)
    assert reasoning.action == "pause" and "not the cause" in reasoning.rationale  # never rollback (the default)
    state = RolloutState("d", "blue-green", (0, 100), phase="preview", step=0, weight=0)
    assert next_action(state, StepVerdict(0, reasoning.action, reasoning.rationale)).kind == "pause"


def test_identical_versions_both_burning_the_latency_budget_never_fail() -> None:
    outcomes = [judged(*_slow_shares(seed, 0.10, 0.10)).outcome for seed in range(6)]
    assert outcomes == [Outcome.INCONCLUSIVE] * 6


def test_a_canary_clearly_worse_than_a_burning_baseline_still_fails_and_is_not_called_innocent() -> None:
    # baseline 10 % over 500 ms, canary 25 %: an excess of ~15 points, above 6x the 1 % budget
    canary, baseline = _slow_shares(9, 0.25, 0.10)
    found = judged(canary, baseline)
    verdict = next(v for v in found.verdicts if v.metric == "latency>500ms")
    assert verdict.outcome is Outcome.FAIL and (verdict.effect_size or 0.0) > 0.10
    assert found.outcome is Outcome.FAIL and found.cause == ""
    assert found.reasons[0].startswith("latency>500ms fail: canary ")
    assert (
        "the baseline burns the latency budget too (> 6×), but the canary fails on the evidence above" in found.reasons
    )
    assert not any("not the cause" in r for r in found.reasons)


# --- 3. passing on thin evidence ------------------------------------------------------------------------------------


def test_a_one_percent_error_rate_at_a_twelve_percent_weight_does_not_pass_at_four_seconds() -> None:
    passed = []
    for seed in range(6):
        canary, baseline = pair(100 + seed, 4.0, 50.0, 0.12, error_rate=0.01)
        if judged(canary, baseline, AVAILABILITY).outcome is Outcome.PASS:
            passed.append(seed)
    assert passed == []


def test_doubled_latency_at_an_eight_percent_weight_does_not_pass_at_six_seconds() -> None:
    passed = []  # 4 canary requests a second: ~24 in 6 s
    for seed in range(8):
        canary, baseline = pair(200 + seed, 6.0, 50.0, 0.08, latency=lognormal(0.12, 0.6))
        if judged(canary, baseline).outcome is Outcome.PASS:
            passed.append(seed)
    assert passed == []


def test_identical_versions_pass_once_the_evidence_suffices_and_record_the_detectable_effect() -> None:
    canary, baseline = pair(5, 30.0, 100.0, 0.25)
    found = judged(canary, baseline)
    assert found.outcome is Outcome.PASS, found.reasons
    errors = next(v for v in found.verdicts if v.metric == "error_rate")
    evidence = errors.to_dict()["evidence"]
    assert evidence["e_value"] < evidence["e_threshold"]
    assert 0 < evidence["upper_bound"] < evidence["tolerance"]
    assert 0 < evidence["mde"] <= evidence["upper_bound"]


def test_explain_lines_show_the_evidence_against_its_threshold_and_the_detectable_effect() -> None:
    canary, baseline = pair(5, 30.0, 100.0, 0.25)
    lines = evidence_lines(judged(canary, baseline).to_dict())
    errors = next(line for line in lines if line.startswith("error_rate"))
    assert errors.startswith("error_rate pass (gate): e = ") and " of 167" in errors
    assert " vs tolerance " in errors and "smallest detectable effect" in errors
    p99 = next(line for line in lines if line.startswith("latency_p99_s"))
    assert "(detector)" in p99 and " of 2.67e+03" in p99 and "canary " in p99 and " ms vs baseline " in p99


def test_identical_versions_watched_long_raise_no_alarm_at_any_poll() -> None:
    # the same series judged at every poll (as the rollout does) for 60 s: the false-alarm rate of a test repeated
    # at every poll grows with the watch; a sequential test's does not.
    alarms = []
    for seed in range(4):
        canary, baseline = pair(300 + seed, 60.0, 60.0, 0.25, error_rate=0.01)
        rng = np.random.default_rng(seed)
        baseline = series(rng, seconds=60.0, rps=45.0, error_rate=0.01, latency=lognormal(0.06, 0.6))
        for n in range(4, len(canary) + 1, 2):
            found = judged(canary[:n], baseline[:n])
            if found.outcome is Outcome.FAIL:
                alarms.append((seed, n, found.reasons[:1]))
                break
    assert alarms == []


# --- 4. counter resets ------------------------------------------------------------------------------------------------


def test_errors_before_a_canary_restart_are_counted_and_the_restart_fails_the_step() -> None:
    rng = np.random.default_rng(21)
    baseline = series(rng, seconds=6.0, rps=60.0)
    canary = series(rng, seconds=6.0, rps=20.0, error_rate=lambda t: 0.3 if t <= 4.0 else 0.0, restarts_at=[4.5])
    found = judged(canary, baseline, AVAILABILITY)
    before = sum(canary[8].statuses.get("500", 0.0) for _ in [0])  # 30 % errors up to 4 s, then a restart
    assert before > 10
    assert found.counts["canary"]["errors"] >= before
    assert found.outcome is Outcome.FAIL
    assert any("restart" in r for r in found.reasons)


def test_a_crash_looping_canary_never_passes_and_its_errors_do_not_vanish() -> None:
    rng = np.random.default_rng(22)
    baseline = series(rng, seconds=12.0, rps=60.0)
    canary = series(rng, seconds=12.0, rps=20.0, error_rate=0.2, restarts_at=[2.0, 4.0, 6.0, 8.0, 10.0, 12.0])
    found = judged(canary, baseline, AVAILABILITY)
    assert found.outcome is Outcome.FAIL
    assert found.counts["canary"]["errors"] > 20


# --- 5. latency beyond the median ------------------------------------------------------------------------------------


def test_a_tail_only_regression_fails() -> None:
    # the slowest 2 % of requests three times slower: median and mean nearly unchanged
    base = lognormal(0.06, 0.5)
    canary, baseline = pair(31, 30.0, 120.0, 0.5, baseline_latency=base, latency=tail(base, 0.02, 3.0))
    found = judged(canary, baseline, AVAILABILITY)
    assert found.outcome is Outcome.FAIL, found.reasons
    assert any("p99" in r or "p95" in r for r in found.reasons)


def test_a_bimodal_regression_fails() -> None:
    # 10 % of requests 300 ms slower (a slow code path): the median does not move
    base = lognormal(0.1, 0.4)
    missed = []
    for seed in range(6):
        canary, baseline = pair(32 + seed, 20.0, 100.0, 0.5, baseline_latency=base, latency=bimodal(base, 0.1, 0.3))
        found = judged(canary, baseline, AVAILABILITY)
        if found.outcome is not Outcome.FAIL:
            missed.append((seed, found.outcome))
    assert missed == []


def test_the_slo_latency_threshold_is_judged_with_its_own_threshold() -> None:
    # SLO: 99 % of requests ≤ 250 ms. The canary sends 8 % of its requests over 250 ms; the baseline ~0.
    slo = parse_slo(
        {
            "objectives": [
                {"name": "availability", "sli": "availability", "target": 0.999},
                {"name": "fast", "sli": "latency", "threshold_ms": 250, "target": 0.99},
            ]
        }
    )
    base = lognormal(0.05, 0.4)
    canary, baseline = pair(33, 20.0, 80.0, 0.25, baseline_latency=base, latency=bimodal(base, 0.08, 0.4))
    found = judged(canary, baseline, slo)
    assert found.outcome is Outcome.FAIL, found.reasons
    verdict = next(v for v in found.verdicts if v.metric == "latency>250ms")
    assert verdict.outcome is Outcome.FAIL


def test_pilotage_explain_of_a_step_prints_each_metrics_sequential_evidence(tmp_path: Path) -> None:
    canary, baseline = pair(5, 30.0, 100.0, 0.25)
    seen = Observation(judged(canary, baseline), canary, baseline, [], False, True, 30.0, len(canary))
    inputs = {
        **recorded_inputs(seen, SLO, AnalysisSettings()),
        "canary": {"requests": 700, "errors": 0, "error_rate": 0.0},
        "baseline": {"requests": 2250, "errors": 0, "error_rate": 0.0},
        "slo_error_rate": 0.05,
        "on_inconclusive": "rollback",
        "warmup": {
            "version": "v2",
            "requests": 20,
            "sent": 20,
            "statuses": {"200": 19, "503": 1},
            "failures": 0,
            "unfilled": 0,
            "duration_s": 0.412,
        },  # fmt: skip
    }
    reasoning = assessment_reasoning(inputs)
    data = {"id": "d-1", "agent": "reliability", "kind": "slo.assessment", "inputs": inputs, "action": reasoning.action,
            "rule": reasoning.rule, "score": reasoning.score, "rationale": reasoning.rationale}  # fmt: skip

    async def record() -> None:
        async with SQLiteBus(f"sqlite:///{tmp_path / '.pilotage' / 'events.db'}") as bus:
            await bus.publish(checked_event(EventType.DECISION, data, source="/test", runid="r-1", id="d-1"))

    (tmp_path / ".pilotage").mkdir()
    asyncio.run(record())
    source = str(Path(pilotage.__file__).resolve().parents[1])  # this checkout's package, not another installed one
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "250", "PYTHONPATH": source}
    shown = subprocess.run(
        [sys.executable, "-m", "pilotage", "explain", "d-1"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    assert (
        "warm-up   20 of 20 warm-up requests to v2 in 0.412 s before the analysis (answers 200×19, 503×1; "
        "0 unanswered) — not judged" in shown.stdout
    )
    lines = [line for line in shown.stdout.splitlines() if line.startswith("evidence")]
    assert any("error_rate pass (gate): e = " in line and "smallest detectable effect" in line for line in lines)
    assert any(line.startswith("evidence  latency>500ms pass (gate)") for line in lines)
    p99 = next(line for line in lines if "latency_p99_s pass (detector)" in line)
    assert "] ms vs baseline " in p99 and p99.endswith("] ms")  # both quantiles with their interval
