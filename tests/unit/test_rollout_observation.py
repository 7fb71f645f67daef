"""One rollout step's observation: fast Fail, Inconclusive with reasons, a dead canary, and exact replay."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pilotage.observe.judge import Outcome
from pilotage.observe.samples import NoData, Sample, parse_exposition
from pilotage.observe.slo import default_slo, parse_slo
from pilotage.rollout.observation import (
    AnalysisSettings,
    assess_recorded,
    observe,
    recorded_inputs,
    sample_from_dict,
    sample_to_dict,
)
from pilotage.runtime.base import Instance, Workload


class CountingSource:
    """Test double of a MetricSource: each version serves ``rps`` requests per poll, ``error_rate`` of them 500."""

    def __init__(self, error_rate: dict[str, float], rps: int = 40, fail: set[str] | None = None) -> None:
        self.error_rate, self.rps, self.fail = error_rate, rps, fail or set()
        self.counts: dict[str, tuple[float, float]] = {}
        self.clock = 1_000.0

    async def sample(self, version: str, instance_url: str) -> Sample:
        if version in self.fail:
            raise NoData(f"{instance_url}/metrics exposes no http_requests_total", hint="count requests")
        ok, bad = self.counts.get(version, (0.0, 0.0))
        errors = round(self.rps * self.error_rate[version])
        ok, bad = ok + self.rps - errors, bad + errors
        self.counts[version] = (ok, bad)
        self.clock += 0.5
        return Sample(self.clock, {"200": ok, "500": bad}, metrics=frozenset({"http_requests_total"}))

    async def aclose(self) -> None:
        return None


def instance(version: str) -> Instance:
    return Instance(Workload("svc", version, Path(".")), f"http://127.0.0.1/{version}", 0)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_a_failing_canary_ends_the_step_at_the_first_failing_poll_and_replays_exactly() -> None:
    source = CountingSource({"v1": 0.0, "v2": 0.2})
    slo = default_slo("svc")
    settings = AnalysisSettings()
    seen = run(observe(source, slo, instance("v2"), instance("v1"), duration_s=30, poll_s=0.01, settings=settings))
    assert seen.assessment.outcome is Outcome.FAIL
    assert seen.polls < 10  # 30 s of pause were not waited for: 8 errors per poll fail within a few polls
    # the comparative test fails it: its burn-rate alert waits until the baseline is known not to burn as fast
    assert any(r.startswith("error_rate fail") for r in seen.assessment.reasons)
    inputs = recorded_inputs(seen, slo, settings)
    assert len(inputs["canary_series"]) == seen.polls and inputs["with_baseline"] is True
    assert assess_recorded(inputs).to_dict() == seen.assessment.to_dict()


def test_a_healthy_canary_passes_after_the_pause_when_every_slo_metric_is_exposed() -> None:
    source = CountingSource({"v1": 0.0, "v2": 0.0})
    availability = parse_slo({"objectives": [{"name": "availability", "sli": "availability", "target": 0.999}]})
    # issue 21: the pass rules out every regression 15 s of this traffic would show (~0.9 % here): ~20 polls
    seen = run(observe(source, availability, instance("v2"), None, duration_s=0.1, poll_s=0.01, grace_s=2.0))
    assert seen.assessment.outcome is Outcome.PASS
    assert seen.canary[-1].statuses["200"] == 40 * seen.polls and seen.baseline == []


def test_an_slo_metric_the_version_does_not_expose_is_inconclusive() -> None:
    source = CountingSource({"v1": 0.0, "v2": 0.0})  # exposes no latency histogram; the default SLO has one
    seen = run(observe(source, default_slo("svc"), instance("v2"), None, duration_s=0.05, poll_s=0.01))
    assert seen.assessment.outcome is Outcome.INCONCLUSIVE
    assert any("http_request_duration_seconds" in r and "does not expose it" in r for r in seen.assessment.reasons)


def test_a_version_that_stops_exposing_metrics_is_inconclusive_never_pass() -> None:
    source = CountingSource({"v1": 0.0, "v2": 0.0}, fail={"v2"})
    seen = run(
        observe(source, default_slo("svc"), instance("v2"), instance("v1"), duration_s=0.05, poll_s=0.01, grace_s=0.05)
    )
    assert seen.assessment.outcome is Outcome.INCONCLUSIVE
    assert "canary: 0 sample(s), need 2" in seen.assessment.reasons
    assert any("exposes no http_requests_total" in r for r in seen.assessment.reasons)


def test_both_versions_degrading_extend_the_step_to_its_grace_before_the_hold() -> None:
    # both versions fail 20 % of requests (200x the 0.1 % budget): the canary is not the cause, and a passing
    # degradation may end — the step extends to its limit like any Inconclusive one, then holds (shared cause)
    source = CountingSource({"v1": 0.2, "v2": 0.2})
    availability = parse_slo({"objectives": [{"name": "availability", "sli": "availability", "target": 0.999}]})
    seen = run(observe(source, availability, instance("v2"), instance("v1"), duration_s=0.05, poll_s=0.01, grace_s=0.3))
    assert seen.assessment.outcome is Outcome.INCONCLUSIVE and seen.assessment.cause == "shared_degradation"
    assert seen.elapsed_s >= 0.3 and seen.polls >= 20  # not ended at the 0.05 s window


async def _alive_unless_v2(inst: Instance) -> bool:
    return inst.workload.version != "v2"


def test_a_dead_canary_fails_without_waiting_for_metrics() -> None:
    source = CountingSource({"v1": 0.0, "v2": 0.0})
    seen = run(
        observe(
            source,
            default_slo("svc"),
            instance("v2"),
            instance("v1"),
            duration_s=30,
            poll_s=0.01,
            alive=_alive_unless_v2,
        )
    )
    assert seen.assessment.outcome is Outcome.FAIL and seen.polls == 1 and seen.canary_exited
    assert seen.assessment.reasons == ("canary v2 process exited",)


def test_samples_round_trip_through_plain_data() -> None:
    sample = Sample(12.5, {"200": 3.0}, 0.25, 3.0, {0.1: 2.0, float("inf"): 3.0}, frozenset({"a", "b"}))
    assert sample_from_dict(sample_to_dict(sample)) == sample


def test_a_declared_counter_without_samples_is_zero_requests_not_missing_data() -> None:
    text = "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n"
    sample = parse_exposition(text, at=1.0)
    assert sample.statuses == {} and "http_requests_total" in sample.metrics
