from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy import stats

from pilotage.observe.burn_rate import PAGE_RULES, ROLLOUT_TIME_SCALE, burn_alerts
from pilotage.observe.samples import Sample
from pilotage.observe.slo import DEFAULT_SLO, parse_slo

SERIES = json.loads((Path(__file__).parents[1] / "fixtures" / "metric_series" / "rollout_40rps.json").read_text())
NAMES = frozenset({"http_requests_total", "http_request_duration_seconds"})


def samples(rows: list[list[float]]) -> list[Sample]:
    return [
        Sample(
            at=r[0],
            statuses={"200": r[1], "500": r[2]},
            latency_sum_s=r[3],
            latency_count=r[4],
            buckets={0.5: r[5], float("inf"): r[4]},
            metrics=NAMES,
        )
        for r in rows
    ]


AVAILABILITY = parse_slo({"objectives": [{"name": "availability", "sli": "availability", "target": 0.999}]})


def test_rules_and_scale_are_the_workbook_values() -> None:
    assert [(r.factor, r.long_s, r.short_s) for r in PAGE_RULES] == [(14.4, 3600.0, 300.0), (6.0, 21600.0, 1800.0)]
    assert 3600 * ROLLOUT_TIME_SCALE == pytest.approx(5.0)
    assert 300 * ROLLOUT_TIME_SCALE == pytest.approx(5 / 12)


def test_the_recorded_burn_rate_fires_only_once_its_confidence_bound_clears_the_factor() -> None:
    rows = SERIES["canary_5pct_from_6s"]
    alerts = burn_alerts(AVAILABILITY, samples(rows))
    fast = alerts[0]
    # long window 5 s: from the row at t-5 s (10 rows back) to the newest row
    old, new = rows[-11], rows[-1]
    bad, total = new[2] - old[2], (new[1] + new[2]) - (old[1] + old[2])
    assert fast.rule == "page-fast"
    assert fast.long_burn == pytest.approx(bad / total / 0.001)
    assert fast.long_burn is not None and fast.long_burn > 14.4  # 4 errors in 200 requests: a 20x burn, measured
    # Clopper-Pearson lower end at 99.9 %: the 0.001 quantile of Beta(bad, total - bad + 1), over the budget
    assert fast.long_bound == pytest.approx(stats.beta.ppf(0.001, bad, total - bad + 1) / 0.001)
    assert fast.long_bound is not None and fast.long_bound < 14.4 and not fast.firing  # but not with confidence
    heavy = [[r[0], r[1] - 3 * r[2], 4 * r[2], *r[3:]] for r in rows]  # four times the errors: 16 in 200
    assert burn_alerts(AVAILABILITY, samples(heavy))[0].firing


def test_no_errors_no_alert_and_before_the_fault_no_alert() -> None:
    assert not any(a.firing for a in burn_alerts(AVAILABILITY, samples(SERIES["baseline"])))
    before_fault = samples(SERIES["canary_5pct_from_6s"][:12])  # t < 1006 s: the fault starts at 6 s
    assert not any(a.firing for a in burn_alerts(AVAILABILITY, before_fault))


def test_minimum_request_guard_holds_a_low_traffic_version() -> None:
    rows = [[0.0, 0, 0, 0, 0, 0], [0.5, 5, 2, 0.01, 7, 7], [1.0, 9, 3, 0.02, 12, 12]]  # 25 % errors, 12 requests
    alerts = burn_alerts(AVAILABILITY, samples(rows), min_requests=20)
    assert all(a.guarded and not a.firing for a in alerts)
    assert "only 12 events" in alerts[0].reason
    assert burn_alerts(AVAILABILITY, samples(rows), min_requests=10)[0].firing  # 3 bad events: the minimum


def test_fewer_bad_events_than_the_minimum_never_fire() -> None:
    rows = [[0.0, 0, 0, 0, 0, 0], [0.5, 10, 1, 0.01, 11, 11], [1.0, 20, 2, 0.02, 22, 22]]  # 2 errors in 22: 91x
    fast = burn_alerts(AVAILABILITY, samples(rows), min_requests=10)[0]
    assert fast.long_burn is not None and fast.long_burn > 14.4 and fast.long_bad == 2
    assert not fast.firing and not fast.guarded


def test_latency_objective_counts_slow_requests() -> None:
    slo = parse_slo(DEFAULT_SLO)
    rows = [
        Sample(
            at=t,
            statuses={"200": 100.0 * t},
            latency_count=100.0 * t,
            latency_sum_s=60.0 * t,
            buckets={0.5: 50.0 * t, float("inf"): 100.0 * t},
            metrics=NAMES,
        )
        for t in range(12)
    ]
    latency = [a for a in burn_alerts(slo, rows) if a.objective == "latency"]
    assert latency[0].long_burn == pytest.approx(0.5 / 0.01)  # half the requests slower than 500 ms, budget 1 %
    assert latency[0].firing


def test_needs_two_samples() -> None:
    with pytest.raises(ValueError):
        burn_alerts(AVAILABILITY, samples(SERIES["baseline"][:1]))


def test_with_a_baseline_an_alert_fires_only_when_the_baseline_is_known_not_to_burn_as_fast() -> None:
    rows = SERIES["canary_5pct_from_6s"]
    canary = samples([[r[0], r[1] - 3 * r[2], 4 * r[2], *r[3:]] for r in rows])  # 16 errors in the 5 s window
    clean = samples([[r[0], 100 * r[1], 0, r[3], 100 * r[4], 100 * r[5]] for r in rows])  # busy, no error
    degraded = samples([[r[0], r[1] - 3 * r[2], 4 * r[2], *r[3:]] for r in rows])  # burns exactly as fast
    fires = burn_alerts(AVAILABILITY, canary, control=clean)[0]
    assert fires.firing and fires.control_bound is not None and fires.control_bound < 14.4
    held = burn_alerts(AVAILABILITY, canary, control=degraded)[0]
    assert not held.firing and held.control_bound is not None and held.control_bound > 14.4
