"""Line charts drawn on the server as inline SVG: canary vs baseline per rollout step (the dashboard's only charts).

No charting library: a chart is a few ``<polyline>`` elements over a frame, built here as text. Every piece of
text that reaches the markup (titles, labels, series names) goes through :func:`markupsafe.escape`, and every
number is formatted by this module, so the result is safe to embed: it is returned as :class:`markupsafe.Markup`
and the templates print it without ``|safe``.

Shapes: a series is ``[(x, y), ...]`` with x in seconds since the first point of the step and y in the metric's
unit (:data:`METRICS`: the error rate as a percentage, latencies in ms, requests per interval). A chart scales
x over the union of its series' x and y from 0 to the largest y (1 when every value is 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

__all__ = ["METRICS", "Line", "Metric", "line_chart", "step_charts"]

WIDTH, HEIGHT = 280, 140
#: Margins inside the SVG (px): left for the y labels, bottom for the x labels and legend.
LEFT, RIGHT, TOP, BOTTOM = 46, 8, 18, 34


@dataclass(frozen=True)
class Metric:
    """A charted field of a :class:`~pilotage.web.models.SamplePoint`: its ``key``, ``title``, ``unit``, ``scale``.

    A point's value is ``point[key] * scale`` in ``unit`` (None values are left out of the line).
    """

    key: str
    title: str
    unit: str
    scale: float


#: The four charts of a step, in display order.
METRICS = (
    Metric("error_rate", "error rate", "%", 100.0),
    Metric("p50_s", "p50 latency", "ms", 1000.0),
    Metric("p95_s", "p95 latency", "ms", 1000.0),
    Metric("requests", "requests per interval", "req", 1.0),
)


@dataclass(frozen=True)
class Line:
    """One series of a chart: its ``name`` (legend, ``data-series``), CSS ``kind`` (canary/baseline) and points."""

    name: str
    kind: str
    points: Sequence[tuple[float, float]]


def _fmt(value: float) -> str:
    """A number for an axis label: at most 3 significant digits, no exponent for the usual ranges."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _bounds(lines: Sequence[Line]) -> tuple[float, float, float]:
    """Return (x min, x span, y max) over every point (span and y max at least a tiny positive number)."""
    xs = [x for line in lines for x, _ in line.points]
    ys = [y for line in lines for _, y in line.points]
    x0 = min(xs, default=0.0)
    span = max(xs, default=0.0) - x0
    return x0, span if span > 0 else 1.0, max(ys, default=0.0) or 1.0


def _polyline(line: Line, place: Any) -> str:
    coords = " ".join(f"{px:.1f},{py:.1f}" for px, py in (place(x, y) for x, y in line.points))
    dots = "".join(f'<circle class="dot {escape(line.kind)}" cx="{px:.1f}" cy="{py:.1f}" r="2"/>'
                   for px, py in (place(x, y) for x, y in line.points))  # fmt: skip
    return (
        f'<polyline class="line {escape(line.kind)}" data-series="{escape(line.name)}" points="{coords}" '
        f'fill="none"/>{dots}'
    )


def _frame(title: str, unit: str, y_max: float, span: float) -> str:
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    return (
        f'<text class="title" x="{LEFT}" y="12">{escape(title)} ({escape(unit)})</text>'
        f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}" fill="none"/>'
        f'<text class="axis" x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">{escape(_fmt(y_max))}</text>'
        f'<text class="axis" x="{LEFT - 4}" y="{bottom}" text-anchor="end">0</text>'
        f'<text class="axis" x="{LEFT}" y="{bottom + 12}">0 s</text>'
        f'<text class="axis" x="{right}" y="{bottom + 12}" text-anchor="end">{escape(_fmt(span))} s</text>'
    )


def _legend(lines: Sequence[Line]) -> str:
    parts, x = [], LEFT
    for line in lines:
        y = HEIGHT - 6
        parts.append(f'<line class="line {escape(line.kind)}" x1="{x}" y1="{y - 4}" x2="{x + 14}" y2="{y - 4}"/>'
                     f'<text class="legend" x="{x + 18}" y="{y}">{escape(line.name)}</text>')  # fmt: skip
        x += 96
    return "".join(parts)


def line_chart(title: str, unit: str, lines: Sequence[Line]) -> Markup:
    """Return an SVG chart of ``lines`` (an empty frame saying "no samples" when no line has a point).

    Args:
        title: shown above the frame (escaped), with ``unit`` in parentheses.
        unit: the y unit (escaped).
        lines: the series; x in seconds, y in ``unit``.
    """
    drawn = [line for line in lines if line.points]
    x0, span, y_max = _bounds(drawn)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def place(x: float, y: float) -> tuple[float, float]:
        return LEFT + (x - x0) / span * inner_w, TOP + inner_h - y / y_max * inner_h

    body = "".join(_polyline(line, place) for line in drawn)
    if not drawn:
        body = f'<text class="empty" x="{LEFT + 8}" y="{TOP + inner_h / 2:.0f}">no samples</text>'
    label = escape(f"{title}: " + ", ".join(f"{line.name} {len(line.points)} points" for line in lines))
    return Markup(
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}">'
        f"{_frame(title, unit, y_max, span if drawn else 0.0)}{body}{_legend(drawn)}</svg>"
    )


def _series(points: Sequence[dict[str, Any]], metric: Metric, t0: float) -> list[tuple[float, float]]:
    return [
        (float(p["at"]) - t0, float(p[metric.key]) * metric.scale)
        for p in points
        if isinstance(p.get(metric.key), int | float) and isinstance(p.get("at"), int | float)
    ]


def step_charts(verdict: dict[str, Any]) -> list[Markup]:
    """Return the :data:`METRICS` charts of one step verdict (a StepVerdict dict of :mod:`pilotage.web.rollouts`).

    Canary and baseline share the time axis: x is seconds since the first point of either series.
    """
    canary, baseline = verdict.get("canary_series") or [], verdict.get("baseline_series") or []
    t0 = min((float(p["at"]) for p in [*canary, *baseline] if isinstance(p.get("at"), int | float)), default=0.0)
    lines = [(Line("canary", "canary", _series(canary, m, t0)), Line("baseline", "baseline", _series(baseline, m, t0)))
             for m in METRICS]  # fmt: skip
    return [line_chart(m.title, m.unit, pair) for m, pair in zip(METRICS, lines, strict=True)]
