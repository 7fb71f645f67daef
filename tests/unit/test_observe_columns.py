"""The judge's numpy columns give the numbers of the per-interval dict arithmetic they replace (issue 21, speed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pilotage.observe.columns import Windows, paired_windows, series_windows
from pilotage.observe.samples import Sample, WindowDelta, increase, intervals
from pilotage.observe.sequential import Table, TableColumns, bernoulli_bounds, conditional_log_e, outside_bounds

BOUNDS = (0.05, 0.1, 0.5, math.inf)


def sample(at: float, ok: float, failed: float, slow: float, *, gone: bool = False, bucket: bool = True) -> Sample:
    """Cumulative counters: ``ok`` 200s, ``failed`` 500s (the 500 series vanished when ``gone``), ``slow`` > 0.1 s."""
    statuses = {"200": ok} | ({} if gone else {"500": failed})
    total = ok + (0.0 if gone else failed)
    buckets = {0.05: (total - slow) / 2, 0.1: total - slow, 0.5: total, math.inf: total}
    if not bucket:
        del buckets[0.05]  # a bound this sample does not expose
    return Sample(at, statuses, 0.03 * total, total, buckets)


#: A series with a restart at 2.0 s (counters from zero), a vanished 500 series at 3.0 s (also a reset), and a
#: sample without the 0.05 s bucket.
SERIES = [
    sample(0.0, 100, 2, 10),
    sample(0.5, 120, 3, 12),
    sample(1.0, 150, 5, 15, bucket=False),
    sample(1.5, 170, 5, 18),
    sample(2.0, 10, 1, 1),
    sample(2.5, 30, 2, 4),
    sample(3.0, 40, 0, 5, gone=True),
    sample(3.5, 55, 1, 6),
]


def same(column: Windows, deltas: list[WindowDelta]) -> None:
    assert len(column) == len(deltas)
    for got, want in zip(column.deltas(), deltas, strict=True):
        assert (got.duration_s, got.requests, got.errors, got.resets) == pytest.approx(
            (want.duration_s, want.requests, want.errors, want.resets)
        )
        assert (got.latency_count, got.latency_sum_s) == pytest.approx((want.latency_count, want.latency_sum_s))
        assert {le: got.good_latency[le] for le in want.good_latency} == pytest.approx(want.good_latency)
        assert all(got.good_latency[le] == 0 for le in got.good_latency.keys() - want.good_latency.keys())


def test_series_windows_are_the_intervals_with_resets_and_vanished_series() -> None:
    columns = series_windows(SERIES)
    same(columns, intervals(SERIES))
    assert list(columns.resets) == [0, 0, 0, 1, 0, 1, 0]
    whole, expected = columns.total(), increase(SERIES)
    assert (whole.requests, whole.errors, whole.resets) == (expected.requests, expected.errors, 2)
    assert whole.good_latency == pytest.approx(expected.good_latency)
    assert columns.total(4).requests == increase(SERIES[4:]).requests


def test_series_out_of_order_is_refused() -> None:
    with pytest.raises(ValueError, match="out of order"):
        series_windows([SERIES[1], SERIES[0]])


def test_paired_windows_merge_the_intervals_around_a_missed_poll() -> None:
    canary = SERIES[:4]
    baseline = [SERIES[0], SERIES[1], SERIES[3]]  # the baseline's poll at 1.0 s was a source error
    c_windows, b_windows = paired_windows(canary, baseline)
    assert list(c_windows.duration_s) == [0.5, 1.0] and list(b_windows.duration_s) == [0.5, 1.0]
    assert list(c_windows.requests) == [21.0, 52.0]  # 0.5→1.5 s: both canary intervals summed
    assert c_windows.deltas()[1].requests == increase(canary[1:]).requests
    assert list(b_windows.bounds) == list(c_windows.bounds) == list(BOUNDS)
    assert len(paired_windows(canary, SERIES[7:])[0]) == 0  # no common poll: no window, no bound


def test_windows_of_window_deltas_round_trip() -> None:
    deltas = intervals(SERIES)
    same(Windows.of(deltas), deltas)
    assert Windows.of(series_windows(SERIES)) is not None


def test_table_columns_are_a_sequence_of_tables_with_the_same_evidence() -> None:
    tables = [Table(1, 20, 0, 60), Table(0, 18, 1, 61), Table(3, 25, 0, 70), Table(0, 0, 0, 0), Table(4, 4, 2, 2)]
    columns = TableColumns.of(tables)
    assert columns == tables and tables == list(columns) and columns[2] == Table(3, 25, 0, 70)
    assert conditional_log_e(columns) == pytest.approx(conditional_log_e(tuple(tables)))
    # the padded vector form against one table at a time (a sum of per-table log likelihood ratios)
    assert conditional_log_e(columns, grid=((3.0, 1.0),)) == pytest.approx(
        sum(conditional_log_e([t], grid=((3.0, 1.0),)) for t in tables)
    )


@pytest.mark.parametrize("prior", [(0.25, 20.0), (0.5, 0.5)])
def test_outside_bounds_agrees_with_the_confidence_bounds(prior: tuple[float, float]) -> None:
    rng = np.random.default_rng(3)
    n = rng.integers(0, 400, size=300)
    x = np.minimum(n, rng.binomial(n, rng.uniform(0, 1, size=300)))
    for p in (0.01, 0.05, 0.5):
        below, above = outside_bounds(p, x, n, 0.01, prior)
        for i in range(x.size):
            low, high = bernoulli_bounds(int(x[i]), int(n[i]), 0.01, prior)
            assert bool(below[i]) == (low > p) and bool(above[i]) == (high <= p), (x[i], n[i], p, low, high)
