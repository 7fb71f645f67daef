"""Sample series and their intervals as numpy columns: one poll's judging in a few vector operations.

The rollout judges a step again at every poll (0.5 s) on everything sampled so far, so the per-interval arithmetic
of :mod:`pilotage.observe.samples` (:func:`~pilotage.observe.samples.delta`, a dict per interval, summed
pairwise) grew with the square of the step's length and took ~0.1 s per poll at 300 polls. Here the same numbers
are columns: :class:`Windows` holds N consecutive windows — each what one
:class:`~pilotage.observe.samples.WindowDelta` holds — as arrays, and :func:`series_windows` computes the
intervals of a sample series with :func:`~pilotage.observe.samples.delta`'s rule (after a counter reset,
:func:`~pilotage.observe.samples.restarted`, every counter counts from zero), so that sums over any run of
intervals are Prometheus ``increase()`` over it. ``tests/unit/test_observe_columns.py`` checks the columns against
the dict arithmetic on series with resets, vanished statuses and changing bucket sets.

Histogram buckets are a matrix over one sorted set of bounds (seconds, ``inf`` included when exposed); a bound a
window's newer sample does not expose counts 0 there, as ``good_latency.get(le, 0.0)`` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from typing import Any

import numpy as np

from pilotage.observe.samples import Sample, WindowDelta

__all__ = ["Windows", "paired_windows", "series_windows"]


@dataclass(frozen=True, eq=False)
class Windows:
    """N consecutive windows as columns (oldest first).

    Attributes:
        bounds: (B,) sorted histogram bounds, s. duration_s, requests, errors, latency_count, latency_sum_s: (N,).
        good: (N, B) requests no slower than each bound. resets: (N,) counter resets inside each window.
    """

    bounds: np.ndarray
    duration_s: np.ndarray
    requests: np.ndarray
    errors: np.ndarray
    latency_count: np.ndarray
    latency_sum_s: np.ndarray
    good: np.ndarray
    resets: np.ndarray

    def __len__(self) -> int:
        return int(self.duration_s.size)

    @classmethod
    def of(cls, windows: Windows | Sequence[WindowDelta]) -> Windows:
        """``windows`` as columns (returned as is when they already are)."""
        if isinstance(windows, Windows):
            return windows
        bounds = sorted({le for w in windows for le in w.good_latency})
        return cls(
            np.array(bounds, dtype=float),
            np.array([w.duration_s for w in windows], dtype=float),
            np.array([w.requests for w in windows], dtype=float),
            np.array([w.errors for w in windows], dtype=float),
            np.array([w.latency_count for w in windows], dtype=float),
            np.array([w.latency_sum_s for w in windows], dtype=float),
            _matrix([w.good_latency for w in windows], bounds),
            np.array([w.resets for w in windows], dtype=int),
        )

    def on(self, bounds: np.ndarray) -> Windows:
        """The same windows over ``bounds`` (a superset of :attr:`bounds`; 0 at the bounds they lack)."""
        if np.array_equal(bounds, self.bounds):
            return self
        good = np.zeros((len(self), bounds.size))
        good[:, np.searchsorted(bounds, self.bounds)] = self.good
        return replace(self, bounds=bounds, good=good)

    def head(self, n: int) -> Windows:
        """The first ``n`` windows."""
        if n >= len(self):
            return self
        return Windows(
            self.bounds, self.duration_s[:n], self.requests[:n], self.errors[:n], self.latency_count[:n],
            self.latency_sum_s[:n], self.good[:n], self.resets[:n],
        )  # fmt: skip

    def cumulative(self) -> np.ndarray:
        """(N, B) requests at most each bound, the ``+Inf`` bound being the timed count (as PromQL reads it)."""
        out = self.good.copy()
        out[:, np.isinf(self.bounds)] = self.latency_count[:, None]
        return out

    def merged(self, starts: Sequence[int] | np.ndarray, stop: int) -> Windows:
        """Windows ``starts[k] … starts[k+1] − 1`` summed (the last ends before ``stop``); ``starts`` increasing."""
        if not len(starts):  # no window: no bound either
            return replace(self.head(0), bounds=np.zeros(0), good=np.zeros((0, 0)))
        index = np.asarray(starts, dtype=int)

        def cut(column: np.ndarray) -> np.ndarray:
            return np.add.reduceat(column[:stop], index, axis=0)

        return Windows(
            self.bounds, cut(self.duration_s), cut(self.requests), cut(self.errors), cut(self.latency_count),
            cut(self.latency_sum_s), cut(self.good), cut(self.resets),
        )  # fmt: skip

    def total(self, start: int = 0) -> WindowDelta:
        """Windows ``start`` … N − 1 as one :class:`~pilotage.observe.samples.WindowDelta`.

        Prometheus ``increase()`` over them: resets lose nothing; zero counts when there is none.
        """
        good = self.good[start:].sum(axis=0)
        return WindowDelta(
            duration_s=float(self.duration_s[start:].sum()),
            requests=float(self.requests[start:].sum()),
            errors=float(self.errors[start:].sum()),
            latency_count=float(self.latency_count[start:].sum()),
            latency_sum_s=float(self.latency_sum_s[start:].sum()),
            good_latency={float(le): float(v) for le, v in zip(self.bounds, good, strict=True)},
            resets=int(self.resets[start:].sum()),
        )

    def deltas(self) -> list[WindowDelta]:
        """One :class:`~pilotage.observe.samples.WindowDelta` per window."""
        return [
            WindowDelta(
                float(self.duration_s[i]),
                float(self.requests[i]),
                float(self.errors[i]),
                float(self.latency_count[i]),
                float(self.latency_sum_s[i]),
                {float(le): float(v) for le, v in zip(self.bounds, self.good[i], strict=True)},
                int(self.resets[i]),
            )  # fmt: skip
            for i in range(len(self))
        ]


def _is_error(status: str) -> bool:
    return len(status) == 3 and status.startswith("5")


def _matrix(rows: Sequence[Mapping[Any, float]], keys: Sequence[Any]) -> np.ndarray:
    """(len(rows), len(keys)) values of each row at each key (0 where a row lacks one)."""
    zeros = [0.0] * len(keys)
    return np.array([list(map(row.get, keys, zeros)) for row in rows], dtype=float).reshape(len(rows), len(keys))


def series_windows(series: Sequence[Sample]) -> Windows:
    """The intervals between consecutive samples of ``series`` as columns (:func:`~.prometheus.intervals`' numbers).

    Bounds: every bucket bound a sample after the first exposes.

    Raises:
        ValueError: samples out of order.
    """
    at = np.array([s.at for s in series], dtype=float)
    if np.any(np.diff(at) < 0):
        raise ValueError("samples out of order")
    statuses = list(dict.fromkeys(chain.from_iterable(s.statuses for s in series)))
    bounds = sorted(set().union(*(s.buckets.keys() for s in series[1:])))
    by_status = _matrix([s.statuses for s in series], statuses)
    buckets = _matrix([s.buckets for s in series], bounds)
    count = np.array([s.latency_count for s in series], dtype=float)
    total_s = np.array([s.latency_sum_s for s in series], dtype=float)
    reset = (count[1:] < count[:-1]) | (total_s[1:] < total_s[:-1]) | (by_status[1:] < by_status[:-1]).any(axis=1)
    kept = ~reset

    def increase(column: np.ndarray) -> np.ndarray:
        old = column[:-1] * (kept if column.ndim == 1 else kept[:, None])  # a reset counts from zero
        return np.asarray(np.maximum(0.0, column[1:] - old))

    per_status = increase(by_status)
    errors = np.array([_is_error(k) for k in statuses], dtype=bool)
    return Windows(
        np.array(bounds, dtype=float),
        np.diff(at),
        per_status.sum(axis=1),
        per_status[:, errors].sum(axis=1),
        increase(count),
        increase(total_s),
        increase(buckets),
        reset.astype(int),
    )


def _pairs(canary: Sequence[Sample], baseline: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the samples of both series taken at the same poll (see :func:`paired_windows`).

    Each canary sample meets its nearest baseline sample (the later one of a tie); they pair when their times
    differ by at most half the canary's smallest sampling gap, each baseline sample at most once (the first).
    """
    c_at = np.array([s.at for s in canary], dtype=float)
    b_at = np.array([s.at for s in baseline], dtype=float)
    gaps = np.diff(c_at)
    gaps = gaps[gaps > 0]
    tolerance_s = float(gaps.min()) / 2.0 if gaps.size else 0.0
    if not b_at.size or not c_at.size:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    after = np.minimum(np.searchsorted(b_at, c_at, side="right"), b_at.size - 1)
    after = np.searchsorted(b_at, b_at[after], side="right") - 1  # the last of equal times
    before = np.maximum(np.searchsorted(b_at, c_at, side="right") - 1, 0)
    nearest = np.where(np.abs(b_at[after] - c_at) <= np.abs(b_at[before] - c_at), after, before)
    close = np.flatnonzero(np.abs(b_at[nearest] - c_at) <= tolerance_s)
    j = nearest[close]
    first = np.r_[True, j[1:] != j[:-1]] if j.size else np.zeros(0, dtype=bool)
    return close[first], j[first]


def paired_windows(
    canary: Sequence[Sample],
    baseline: Sequence[Sample],
    own: tuple[Windows, Windows] | None = None,
) -> tuple[Windows, Windows]:
    """The same intervals of both series, between consecutive polls where both were sampled, on common bounds.

    A poll that missed one of them (a source error) merges its two intervals into one, so every pair of windows
    covers the same time. Samples pair when their times differ by at most half the canary's smallest sampling gap.
    ``own``: the series' own :func:`series_windows` when already computed.
    """
    c_all, b_all = own or (series_windows(canary), series_windows(baseline))
    c_index, b_index = _pairs(canary, baseline)
    c_out = c_all.merged(c_index[:-1], int(c_index[-1]) if c_index.size else 0)
    b_out = b_all.merged(b_index[:-1], int(b_index[-1]) if b_index.size else 0)
    bounds = np.union1d(c_out.bounds, b_out.bounds)
    return c_out.on(bounds), b_out.on(bounds)
