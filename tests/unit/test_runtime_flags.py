"""Feature flags over OFREP: the OpenFeature SDK + OFREP provider read our FlagServer; a generated service gates
the change's new operations on the flag, labels its metrics with it, scopes faults to it and sees a rollback at
the next request (real HTTP, a real uvicorn process)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from prometheus_client.parser import text_string_to_metric_families

from pilotage.codegen.generator import generate_service
from pilotage.errors import InputError
from pilotage.runtime.flags import MAX_BODY_BYTES, MAX_TARGETING_KEY_CHARS, FlagServer, bucket
from pilotage.spec.diff import diff_specs
from pilotage.spec.evolve import evolve
from pilotage.spec.grammar import parse_request
from pilotage.spec.load import load_spec
from tests.fixtures import CHECKOUT_SPEC
from tests.unit.test_codegen import free_port, serve

FLAG = "discount-codes"
KEYS = [f"user-{i}" for i in range(1000)]
NEW_OP = "/discount-codes"  # added by the change: behind the flag
OLD_OP = "/orders"  # in the base spec: always served


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


@contextlib.contextmanager
def service(folder: Path, env: dict[str, str]) -> Iterator[str]:
    yield from serve(folder, env)


@pytest.fixture(scope="module")
def flagged_service(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkout service after the discount-codes change, its five new operations behind the flag."""
    base = load_spec(CHECKOUT_SPEC)
    new = evolve(base, parse_request("Add discount code support with fields code:string, percent:integer"))
    root = tmp_path_factory.mktemp("flagged")
    result = generate_service(new, root, flagged=diff_specs(base, new).added)
    assert result.flagged == [
        "GET /discount-codes",
        "POST /discount-codes",
        "GET /discount-codes/{id}",
        "PUT /discount-codes/{id}",
        "DELETE /discount-codes/{id}",
    ]
    return root


def sdk_client(url: str) -> api.OpenFeatureClient:
    api.set_provider(OFREPProvider(url, timeout=2.0), domain="test-flags")
    return api.get_client("test-flags")


def key_with(flag_on: bool, percent: int) -> str:
    return next(k for k in KEYS if (bucket(FLAG, k) < percent) is flag_on)


# --- the OFREP server read by the OpenFeature SDK ---


def test_the_sdk_reads_values_by_bucket_and_the_share_of_keys_matches_the_percent() -> None:
    async def main() -> None:
        flags = FlagServer()
        url = await flags.start()
        try:
            flags.set_rollout(FLAG, 30)
            client = sdk_client(url)

            def read_all() -> list[bool]:
                return [client.get_boolean_value(FLAG, False, EvaluationContext(targeting_key=k)) for k in KEYS]

            at_30 = await asyncio.to_thread(read_all)
            assert at_30 == [bucket(FLAG, k) < 30 for k in KEYS]  # exactly the documented bucket rule
            assert abs(sum(at_30) - 300) <= 45  # 3 standard deviations of Binomial(1000, 0.3)
            flags.set_rollout(FLAG, 60)
            at_60 = await asyncio.to_thread(read_all)
            assert all(now for before, now in zip(at_30, at_60, strict=True) if before)  # growing never drops a key
            assert abs(sum(at_60) - 600) <= 47
            details = await asyncio.to_thread(
                client.get_boolean_details, FLAG, False, EvaluationContext(targeting_key=KEYS[0])
            )
            assert details.reason == Reason.SPLIT and details.variant in ("on", "off")
            assert details.flag_metadata == {"percent": 60, "bucket": bucket(FLAG, KEYS[0])}
            assert flags.evaluations()[FLAG, "on"] == sum(at_30) + sum(at_60) + details.value
        finally:
            await flags.stop()

    run(main())


def test_unknown_flag_missing_key_and_flag_off_through_the_sdk() -> None:
    async def main() -> None:
        flags = FlagServer()
        url = await flags.start()
        try:
            client = sdk_client(url)
            ctx = EvaluationContext(targeting_key="user-1")
            unknown = await asyncio.to_thread(client.get_boolean_details, "no-such-flag", True, ctx)
            assert unknown.value is True and unknown.error_code == ErrorCode.FLAG_NOT_FOUND
            flags.set_rollout(FLAG, 50)
            missing = await asyncio.to_thread(client.get_boolean_details, FLAG, False, None)
            assert missing.value is False and missing.error_code == ErrorCode.TARGETING_KEY_MISSING
            flags.set_rollout(FLAG, 100)
            static = await asyncio.to_thread(client.get_boolean_details, FLAG, False, None)
            assert static.value is True and static.reason == Reason.STATIC  # no split: no key needed
            flags.flag_off(FLAG)
            off = await asyncio.to_thread(client.get_boolean_details, FLAG, True, ctx)
            assert off.value is False and off.reason == Reason.DISABLED and off.variant == "off"
            assert flags.get(FLAG).enabled is False and flags.get(FLAG).percent == 100
        finally:
            await flags.stop()
        down = await asyncio.to_thread(sdk_client(url).get_boolean_details, FLAG, False, ctx)
        assert down.value is False and down.error_code == ErrorCode.GENERAL  # server gone: the default, off

    run(main())


def test_store_rejects_bad_keys_and_percents() -> None:
    flags = FlagServer()
    for key, percent in (("a/b", 10), ("", 10), ("x" * 129, 10), ("ok", 101), ("ok", -1), ("ok", True)):
        with pytest.raises(InputError):
            flags.set_rollout(key, percent)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="no feature flag 'nope'"):
        flags.get("nope")


@pytest.mark.parametrize(
    ("path", "content", "status", "code"),
    [
        (f"/ofrep/v1/evaluate/flags/{FLAG}", b"{", 400, "PARSE_ERROR"),
        (f"/ofrep/v1/evaluate/flags/{FLAG}", b"[1]", 400, "PARSE_ERROR"),
        (f"/ofrep/v1/evaluate/flags/{FLAG}", b"[" * 5000, 400, "PARSE_ERROR"),  # deeper than json can decode
        (f"/ofrep/v1/evaluate/flags/{FLAG}", b'{"context": 3}', 400, "INVALID_CONTEXT"),
        (f"/ofrep/v1/evaluate/flags/{FLAG}", b'{"context": {"targetingKey": 5}}', 400, "INVALID_CONTEXT"),
        (
            f"/ofrep/v1/evaluate/flags/{FLAG}",
            b'{"context": {"targetingKey": "%s"}}' % (b"k" * (MAX_TARGETING_KEY_CHARS + 1)),
            400,
            "INVALID_CONTEXT",
        ),
        (f"/ofrep/v1/evaluate/flags/{FLAG}", b'{"context": {}}', 400, "TARGETING_KEY_MISSING"),
        (f"/ofrep/v1/evaluate/flags/{FLAG}", b" " * (MAX_BODY_BYTES + 1), 413, "GENERAL"),
        ("/ofrep/v1/evaluate/flags/unknown", b"{}", 404, "FLAG_NOT_FOUND"),
        ("/ofrep/v1/evaluate/flags/" + "x" * 5000, b"{}", 404, "FLAG_NOT_FOUND"),
        ("/ofrep/v1/evaluate/flags", b'{"context": []}', 400, "INVALID_CONTEXT"),
        ("/elsewhere", b"{}", 404, "GENERAL"),
    ],
)
def test_bad_requests_get_the_spec_error_answers(path: str, content: bytes, status: int, code: str) -> None:
    async def main() -> None:
        flags = FlagServer()
        url = await flags.start()
        flags.set_rollout(FLAG, 50)
        try:
            async with httpx.AsyncClient() as http:
                response = await http.post(url + path, content=content, headers={"content-type": "application/json"})
                assert response.status_code == status, response.text
                body = response.json()
                assert body["errorCode"] == code and body["errorDetails"]
                if path.startswith("/ofrep/v1/evaluate/flags/"):
                    assert len(body["key"]) <= 128  # the spec's failure body names the key (bounded)
                assert (await http.get(url + "/ofrep/v1/evaluate/flags/" + FLAG)).status_code == 405
        finally:
            await flags.stop()

    run(main())


def test_bulk_evaluation_with_etag_and_the_configuration_endpoint() -> None:
    async def main() -> None:
        flags = FlagServer()
        url = await flags.start()
        try:
            flags.set_rollout(FLAG, 100)
            flags.set_rollout("split", 50)
            async with httpx.AsyncClient() as http:
                bulk = url + "/ofrep/v1/evaluate/flags"
                first = await http.post(bulk, json={"context": {}})
                assert first.status_code == 200
                assert first.json()["flags"] == [
                    {"key": FLAG, "value": True, "reason": "STATIC", "variant": "on", "metadata": {"percent": 100}},
                    {
                        "key": "split",
                        "errorCode": "TARGETING_KEY_MISSING",
                        "errorDetails": "flag 'split' is split by targetingKey",
                    },
                ]
                etag = first.headers["etag"]
                same = await http.post(bulk, json={"context": {}}, headers={"If-None-Match": etag})
                assert same.status_code == 304 and same.headers["etag"] == etag
                flags.flag_off(FLAG)
                changed = await http.post(bulk, json={"context": {}}, headers={"If-None-Match": etag})
                assert changed.status_code == 200 and changed.headers["etag"] != etag
                config = (await http.get(url + "/ofrep/v1/configuration")).json()
                assert config["capabilities"]["caching"] == {"enabled": False}
        finally:
            await flags.stop()

    run(main())


# --- a generated service behind the flag ---


def metric(text: str, route: str, status: str, flag: str, name: str = "http_requests_total") -> float:
    """The value of one ``GET`` series of ``name`` (``status`` "" for the latency histogram's series)."""
    wanted = {"method": "GET", "route": route, "flag": flag, **({"status": status} if status else {})}
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and s.labels == wanted
    )


def test_new_operations_follow_the_flag_and_metrics_carry_it(flagged_service: Path) -> None:
    async def main() -> None:
        flags = FlagServer()
        url = await flags.start()
        flags.set_rollout(FLAG, 50)
        on, off = key_with(True, 50), key_with(False, 50)
        env = {"PILOTAGE_OFREP_URL": url, "PILOTAGE_FLAG_KEY": FLAG}
        try:
            with service(flagged_service, env) as base:
                async with httpx.AsyncClient(base_url=base) as http:
                    assert (await http.get(NEW_OP, headers={"x-targeting-key": on})).status_code == 200
                    assert (await http.get(NEW_OP, headers={"x-targeting-key": off})).status_code == 404
                    assert (await http.get(OLD_OP, headers={"x-targeting-key": off})).status_code == 200
                    created = await http.post(
                        NEW_OP, json={"code": "X", "percent": 5}, headers={"x-targeting-key": off}
                    )
                    assert created.status_code == 404  # the write is refused too, nothing stored
                    text = (await http.get("/metrics")).text
                    assert metric(text, NEW_OP, "200", "on") == 1 and metric(text, NEW_OP, "404", "off") == 1
                    assert metric(text, OLD_OP, "200", "off") == 1
                    assert metric(text, NEW_OP, "", "on", "http_request_duration_seconds_count") == 1
                    flags.set_rollout(FLAG, 100)
                    assert (await http.get(NEW_OP, headers={"x-targeting-key": off})).status_code == 200
                    assert (await http.get(NEW_OP)).status_code == 200  # no header: the client address is the key
            await flags.stop()  # the flag server is down: every request reads the default, off
            with service(flagged_service, env) as base:
                async with httpx.AsyncClient(base_url=base) as http:
                    assert (await http.get(NEW_OP, headers={"x-targeting-key": on})).status_code == 404
                    assert (await http.get(OLD_OP, headers={"x-targeting-key": on})).status_code == 200
                    assert metric((await http.get("/metrics")).text, OLD_OP, "200", "off") == 1
        finally:
            await flags.stop()

    run(main())


def test_without_an_ofrep_url_there_is_no_gate(flagged_service: Path) -> None:
    with service(flagged_service, {}) as base:
        assert httpx.get(base + NEW_OP).status_code == 200
        assert metric(httpx.get(base + "/metrics").text, NEW_OP, "200", "none") == 1


def test_error_fault_scoped_to_flag_on_requests(flagged_service: Path) -> None:
    async def main() -> None:
        flags = FlagServer()
        url = await flags.start()
        flags.set_rollout(FLAG, 50)
        env = {
            "PILOTAGE_OFREP_URL": url,
            "PILOTAGE_FLAG_KEY": FLAG,
            "PILOTAGE_FAULT_ERROR_RATE": "1.0",
            "PILOTAGE_FAULT_SCOPE": "flag",
        }
        try:
            with service(flagged_service, env) as base:
                async with httpx.AsyncClient(base_url=base) as http:
                    statuses = {}
                    for key in KEYS[:40]:
                        response = await http.get(OLD_OP, headers={"x-targeting-key": key})
                        statuses[key] = response.status_code
                    assert statuses == {k: 500 if bucket(FLAG, k) < 50 else 200 for k in KEYS[:40]}
                    text = (await http.get("/metrics")).text
                    on = sum(1 for k in KEYS[:40] if bucket(FLAG, k) < 50)
                    assert metric(text, OLD_OP, "500", "on") == on and metric(text, OLD_OP, "200", "off") == 40 - on
                    assert metric(text, OLD_OP, "500", "off") == 0
        finally:
            await flags.stop()

    run(main())


def test_flag_off_reaches_the_service_within_one_second(flagged_service: Path) -> None:
    """The rollback path: no process restarts, the next request after flag_off() already reads off."""

    async def main() -> None:
        flags = FlagServer()
        url = await flags.start()
        flags.set_rollout(FLAG, 100)
        try:
            with service(flagged_service, {"PILOTAGE_OFREP_URL": url, "PILOTAGE_FLAG_KEY": FLAG}) as base:
                async with httpx.AsyncClient(base_url=base) as http:
                    headers = {"x-targeting-key": "user-7"}
                    for _ in range(5):
                        assert (await http.get(NEW_OP, headers=headers)).status_code == 200
                    decided = time.monotonic()
                    flags.flag_off(FLAG)
                    first = await http.get(NEW_OP, headers=headers)
                    seen_s = time.monotonic() - decided
                    assert first.status_code == 404  # the very first request after the decision: no cache
                    assert seen_s < 1.0, f"flag off seen after {seen_s:.3f} s"
                    print(f"flag off seen by the service after {seen_s * 1000:.1f} ms")
        finally:
            await flags.stop()

    run(main())


def test_a_flag_server_port_in_use_is_a_config_error() -> None:
    from pilotage.errors import ConfigError

    async def main() -> None:
        first = FlagServer()
        await first.start(free_port())
        try:
            with pytest.raises(ConfigError, match="already in use"):
                await FlagServer().start(first.port)
        finally:
            await first.stop()

    run(main())


def test_answers_are_not_held_back_by_nagle() -> None:
    """bind_local's socket is IPPROTO_TCP, so asyncio sets TCP_NODELAY on accepted connections: no 40 ms stall."""
    import socket
    import statistics

    from pilotage.runtime.proxy import bind_local

    sock = bind_local(0)
    assert sock.proto == socket.IPPROTO_TCP
    sock.close()

    async def main() -> None:
        flags = FlagServer()
        url = await flags.start()
        flags.set_rollout(FLAG, 50)
        client = sdk_client(url)

        def timed() -> list[float]:
            out = []
            for key in KEYS[:30]:
                started = time.perf_counter()
                client.get_boolean_value(FLAG, False, EvaluationContext(targeting_key=key))
                out.append(time.perf_counter() - started)
            return out

        try:
            assert statistics.median(await asyncio.to_thread(timed)) < 0.030  # a delayed ACK alone is 40 ms
        finally:
            await flags.stop()

    run(main())


def test_a_flag_release_is_judged_on_flag_on_versus_flag_off_requests_of_one_instance(
    flagged_service: Path, tmp_path: Path
) -> None:
    """The whole path: synthetic users (targeting keys) → one instance → populations by flag → a Fail verdict."""
    from pilotage.observe.judge import Outcome
    from pilotage.observe.prometheus import ScrapeSource
    from pilotage.observe.slo import default_slo
    from pilotage.rollout.observation import Population, observe
    from pilotage.runtime.base import Workload
    from pilotage.runtime.local import LocalRuntime
    from pilotage.runtime.traffic import TrafficGenerator

    async def main() -> None:
        flags = FlagServer()
        url = await flags.start()
        flags.set_rollout(FLAG, 50)
        env = {
            "PILOTAGE_OFREP_URL": url,
            "PILOTAGE_FLAG_KEY": FLAG,
            "PILOTAGE_FAULT_ERROR_RATE": "0.5",
            "PILOTAGE_FAULT_SCOPE": "flag",
        }
        source = ScrapeSource()
        try:
            async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
                inst = await runtime.start(Workload("checkout", "v2", flagged_service, env=env))
                traffic = TrafficGenerator(inst.url, [OLD_OP, NEW_OP], 60.0, seed=1).start()
                try:
                    on, off = Population(inst, {"flag": "on"}), Population(inst, {"flag": "off"})
                    seen = await observe(source, default_slo("checkout"), on, off, duration_s=30, poll_s=0.5)
                finally:
                    await traffic.stop()
                assert seen.assessment.outcome is Outcome.FAIL, seen.assessment.summary()
                assert seen.canary[-1].statuses.get("500", 0) > 0 and "500" not in seen.baseline[-1].statuses
                assert seen.baseline[-1].statuses.get("404", 0) > 0  # flag-off users do not see the new operations
        finally:
            await source.aclose()
            await flags.stop()

    run(main())
