from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from pilotage.errors import BackendCorrupt, ConfigError, InputError
from pilotage.observe.judge import Outcome
from pilotage.observe.prometheus import PromQLSource, ScrapeSource, open_source
from pilotage.observe.samples import NoData, Sample, delta, parse_exposition
from pilotage.observe.slo import evaluate, load_slo, parse_slo
from pilotage.rollout.analysis import assess

TEXT = """# TYPE http_requests_total counter
http_requests_total{method="GET",route="/notes",status="200"} 90.0
http_requests_total{method="GET",route="/notes",status="500"} 10.0
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.5",method="GET",route="/notes"} 95.0
http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/notes"} 100.0
http_request_duration_seconds_sum{method="GET",route="/notes"} 2.0
http_request_duration_seconds_count{method="GET",route="/notes"} 100.0
"""
NAMES = frozenset({"http_requests_total", "http_request_duration_seconds"})


def test_parse_exposition_and_delta_with_reset() -> None:
    after = parse_exposition(TEXT, at=10.0)
    assert after.statuses == {"200": 90.0, "500": 10.0}
    assert after.buckets[0.5] == 95.0 and after.latency_count == 100.0
    before = Sample(at=5.0, statuses={"200": 40.0, "500": 0.0}, latency_count=40.0, latency_sum_s=1.0, metrics=NAMES)
    d = delta(before, after)
    assert (d.requests, d.errors, d.duration_s) == (60.0, 10.0, 5.0)
    assert d.mean_latency_s == pytest.approx(1.0 / 60.0)
    reset = delta(Sample(at=1.0, statuses={"200": 500.0}), after)  # counter went down: restarted
    assert reset.requests == 100.0


def test_parse_exposition_without_request_counter_is_no_data() -> None:
    with pytest.raises(NoData):
        parse_exposition("# TYPE other counter\nother_total 1.0\n")
    with pytest.raises(BackendCorrupt):
        parse_exposition("this is { not metrics")


def test_slo_file_format(tmp_path: Path) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text(
        "service: tiny\nwindow_days: 28\nobjectives:\n"
        "  - {name: availability, sli: availability, target: 0.999}\n"
        "  - {name: fast, sli: latency, threshold_ms: 500, target: 0.99}\n",
        encoding="utf-8",
    )
    slo = load_slo(path)
    assert slo.window_days == 28 and [o.name for o in slo.objectives] == ["availability", "fast"]
    assert slo.objectives[0].error_budget == pytest.approx(0.001)
    before = Sample(at=0.0, metrics=NAMES)
    after = parse_exposition(TEXT, at=1.0)
    assert evaluate(slo.objectives[1], before, after).bad == 5.0
    twice = tmp_path / "twice.yaml"  # the second window would win silently in YAML
    twice.write_text(path.read_text(encoding="utf-8") + "window_days: 7\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"writes the key window_days twice at lines 2 and 6"):
        load_slo(twice)


@pytest.mark.parametrize(
    "doc", [{}, {"objectives": []}, {"objectives": [{"sli": "availability", "target": 1.5}]}, "text"]
)
def test_malformed_slo_is_an_input_error(doc: object) -> None:
    with pytest.raises(InputError):
        parse_slo(doc)


def test_bad_input_unknown_metric_is_inconclusive_with_reason_never_pass() -> None:
    slo = parse_slo({"objectives": [{"name": "q", "sli": "availability", "metric": "queue_depth", "target": 0.99}]})
    series = [Sample(at=float(t), statuses={"200": 100.0 * t}, metrics=NAMES) for t in range(12)]
    found = assess(slo, series, series, time_scale=1 / 720, min_requests=20, judge_latency=False)
    assert found.outcome is Outcome.INCONCLUSIVE
    assert any("unknown metric 'queue_depth'" in r for r in found.reasons)


def fake_prometheus(answer: dict[str, object]) -> PromQLSource:
    source = PromQLSource("prometheus://prom.test:9090")
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=answer))
    source._client = httpx.AsyncClient(transport=transport)
    return source


def test_bad_input_promql_error_and_empty_result_are_inconclusive() -> None:
    slo = parse_slo({"objectives": [{"name": "a", "sli": "availability", "target": 0.999}]})

    async def scenario() -> None:
        failing = fake_prometheus({"status": "error", "errorType": "bad_data", "error": "parse error at char 5"})
        with pytest.raises(BackendCorrupt, match="bad_data: parse error"):
            await failing.sample("v2", "")
        empty = fake_prometheus({"status": "success", "data": {"resultType": "vector", "result": []}})
        with pytest.raises(NoData, match="empty result"):
            await empty.sample("v2", "")
        await failing.aclose()
        await empty.aclose()

    asyncio.run(scenario())
    errors = ["v2: PromQL query failed: bad_data: parse error at char 5", "v2: no series (empty result)"]
    found = assess(slo, [], [], time_scale=1 / 720, min_requests=20, errors=errors)
    assert found.outcome is Outcome.INCONCLUSIVE
    assert found.reasons[0] == "metrics: " + errors[0]


def test_bad_input_version_that_stops_exposing_metrics() -> None:
    async def scenario() -> None:
        source = ScrapeSource()
        source._client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(404, text="gone")))
        with pytest.raises(NoData, match="stopped exposing metrics"):
            await source.sample("v2", "http://v2.test")
        await source.aclose()

    asyncio.run(scenario())
    slo = parse_slo({"objectives": [{"name": "a", "sli": "availability", "target": 0.999}]})
    one = [Sample(at=0.0, statuses={"200": 10.0}, metrics=NAMES)]  # then nothing more: only one sample
    found = assess(slo, one, one, time_scale=1 / 720, min_requests=20, errors=["v2: stopped exposing metrics"])
    assert found.outcome is Outcome.INCONCLUSIVE
    assert "stopped exposing metrics" in found.summary()


def test_open_source_schemes() -> None:
    assert isinstance(open_source("scrape:"), ScrapeSource)
    assert open_source("prometheus://127.0.0.1:9091").base_url == "http://127.0.0.1:9091"  # type: ignore[union-attr]
    with pytest.raises(ConfigError):
        open_source("graphite://x")
    assert json.dumps(parse_slo({"objectives": [{"sli": "availability", "target": 0.9}]}).to_dict())


FLAGGED = """# TYPE http_requests_total counter
http_requests_total{flag="on",method="GET",route="/notes",status="200"} 30.0
http_requests_total{flag="on",method="GET",route="/notes",status="500"} 10.0
http_requests_total{flag="off",method="GET",route="/notes",status="200"} 60.0
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{flag="on",le="+Inf",method="GET",route="/notes"} 40.0
http_request_duration_seconds_sum{flag="on",method="GET",route="/notes"} 4.0
http_request_duration_seconds_count{flag="on",method="GET",route="/notes"} 40.0
http_request_duration_seconds_bucket{flag="off",le="+Inf",method="GET",route="/notes"} 60.0
http_request_duration_seconds_sum{flag="off",method="GET",route="/notes"} 1.0
http_request_duration_seconds_count{flag="off",method="GET",route="/notes"} 60.0
"""


def test_populations_keep_only_the_series_with_their_labels() -> None:
    on = parse_exposition(FLAGGED, at=1.0, labels={"flag": "on"})
    off = parse_exposition(FLAGGED, at=1.0, labels={"flag": "off", "route": "/notes"})
    assert (on.statuses, on.latency_count, on.latency_sum_s, on.buckets) == (
        {"200": 30.0, "500": 10.0},
        40,
        4,
        {float("inf"): 40.0},
    )
    assert (off.statuses, off.latency_count, off.buckets) == ({"200": 60.0}, 60.0, {float("inf"): 60.0})
    assert parse_exposition(FLAGGED, at=1.0).statuses == {"200": 90.0, "500": 10.0}  # no labels: everything
    none_yet = parse_exposition(FLAGGED, at=1.0, labels={"flag": "none"})  # declared, nothing served: zeros
    assert none_yet.statuses == {} and "http_requests_total" in none_yet.metrics
    for bad in ({"fl-ag": "on"}, {"flag": 1}):
        with pytest.raises(InputError, match="label"):
            parse_exposition(FLAGGED, labels=bad)  # type: ignore[arg-type]


def test_promql_population_matchers_are_escaped_string_literals() -> None:
    from pilotage.observe.prometheus import promql_string

    assert promql_string('o"n\\\n\x01é') == '"o\\"n\\\\\\n\\x01é"'
    queries: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        queries.append(request.url.params["query"])
        vector = [{"metric": {"status": "200", "le": "+Inf"}, "value": [1.0, "5"]}]
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": vector}})

    async def scenario() -> None:
        source = PromQLSource("prometheus://prom.test:9090")
        source._client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        sample = await source.sample("v2", "", {"flag": 'o"n'})
        assert sample.statuses == {"200": 5.0}
        await source.aclose()

    asyncio.run(scenario())
    assert queries[0] == 'sum by (status) (http_requests_total{version="v2",flag="o\\"n"})'
    assert all('{version="v2",flag="o\\"n"' in q for q in queries) and len(queries) == 4
    # the latency series leave out the requests refused as invalid (4xx), the request counts keep them
    assert [q.count('status!~"4.."') for q in queries] == [0, 1, 1, 1]
