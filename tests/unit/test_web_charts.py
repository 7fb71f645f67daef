"""The dashboard's inline SVG charts (pilotage.web.charts): scaling, escaping, the four charts of a step."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from markupsafe import Markup

from pilotage.web.charts import HEIGHT, LEFT, METRICS, RIGHT, WIDTH, Line, line_chart, step_charts

SVG = "{http://www.w3.org/2000/svg}"


def _points(svg: str, series: str) -> list[tuple[float, float]]:
    found = re.search(rf'data-series="{series}" points="([^"]*)"', svg)
    assert found is not None, svg
    return [(float(x), float(y)) for x, y in (p.split(",") for p in found.group(1).split())]


def test_a_chart_scales_x_over_the_series_and_y_from_zero_to_the_largest_value() -> None:
    chart = line_chart("error rate", "%", [Line("canary", "canary", [(0.0, 0.0), (2.0, 50.0), (4.0, 25.0)]),
                                           Line("baseline", "baseline", [(0.0, 10.0), (4.0, 10.0)])])  # fmt: skip
    assert isinstance(chart, Markup)
    root = ET.fromstring(str(chart))  # well-formed XML
    assert root.tag == f"{SVG}svg" and root.get("width") == str(WIDTH)
    top, bottom = 18.0, HEIGHT - 34.0
    right = WIDTH - RIGHT
    assert _points(chart, "canary") == [(LEFT, bottom), ((LEFT + right) / 2, top), (right, (top + bottom) / 2)]
    assert _points(chart, "baseline") == [(LEFT, bottom - (bottom - top) / 5), (right, bottom - (bottom - top) / 5)]
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert labels[:5] == ["error rate (%)", "50", "0", "0 s", "4 s"] and labels[-2:] == ["canary", "baseline"]


def test_text_is_escaped_and_an_empty_chart_says_so() -> None:
    chart = str(line_chart("<script>x</script>", "a&b", [Line('"><svg onload=1>', "canary", [])]))
    assert "<script>" not in chart and "&lt;script&gt;x&lt;/script&gt; (a&amp;b)" in chart
    assert "onload=1>" not in chart and "no samples" in chart and "<polyline" not in chart
    ET.fromstring(chart)


def test_a_step_has_four_charts_canary_against_baseline_on_one_time_axis() -> None:
    verdict = {
        "canary_series": [{"at": 101.0, "requests": 40, "error_rate": 0.05, "p50_s": 0.05, "p95_s": 0.2},
                          {"at": 102.0, "requests": 60, "error_rate": 0.5, "p50_s": 0.1, "p95_s": None}],
        "baseline_series": [{"at": 100.5, "requests": 200, "error_rate": 0.0, "p50_s": 0.04, "p95_s": 0.09}],
    }  # fmt: skip
    charts = step_charts(verdict)
    assert [re.search(r'class="title"[^>]*>([^<]*)<', str(c)).group(1) for c in charts] == [  # type: ignore[union-attr]
        f"{m.title} ({m.unit})" for m in METRICS
    ]
    error, p50, p95, requests = (str(c) for c in charts)
    assert re.findall(r'text-anchor="end">([^<]*)<', error)[0] == "50"  # 0.5 → 50 %
    assert re.findall(r'text-anchor="end">([^<]*)<', p50)[0] == "100"  # 0.1 s → 100 ms
    assert len(_points(p95, "canary")) == 1  # the None p95 is left out
    assert _points(requests, "baseline")[0][0] == LEFT  # the baseline's point is the earliest: x = 0 s
    assert re.findall(r'text-anchor="end">([^<]*) s<', requests) == ["1.5"]
