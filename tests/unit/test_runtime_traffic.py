"""The synthetic traffic generator against a real proxy and service."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilotage.errors import InputError
from pilotage.runtime.base import Workload
from pilotage.runtime.local import LocalRuntime
from pilotage.runtime.traffic import TARGETING_KEY_HEADER, TrafficGenerator, TrafficStats, has_requests
from pilotage.runtime.traffic_registry import get_traffic, hold_traffic, start_traffic, stop_traffic
from tests.fixtures.tiny_service.harness import copy_service


def test_generator_sends_at_the_requested_rate_through_the_proxy(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            v1 = await runtime.start(Workload("tiny", "v1", copy_service(tmp_path / "v1")))
            route = await runtime.create_route("t", {"v1": v1}, {"v1": 100})
            generator = await start_traffic("t", route.url, ["/notes", "/version", "/missing"], 60.0)
            assert get_traffic("t") is generator and generator.running
            with pytest.raises(InputError, match="already running"):
                await start_traffic("t", route.url, ["/notes"], 1.0)
            await asyncio.sleep(1.0)
            stats = await stop_traffic("t")
            assert stats is not None and not generator.running and get_traffic("t") is None
            assert 45 <= stats.sent <= 75, stats
            assert stats.failures == 0 and stats.skipped == 0
            # paths are drawn at random, 1 in 3 a missing one: the 404 share within 4.5 binomial sd of 1/3
            assert abs(stats.statuses[404] - stats.sent / 3) <= 4.5 * (stats.sent * 2 / 9) ** 0.5, stats
            assert sum(stats.statuses.values()) == stats.sent
            assert (await runtime.route_stats("t")).requests == stats.sent
            await asyncio.sleep(0.2)
            assert (await runtime.route_stats("t")).requests == stats.sent  # really stopped
            assert await stop_traffic("t") is None

    asyncio.run(scenario())


def test_generator_with_duration_stops_by_itself_and_counts_failures() -> None:
    async def scenario() -> None:
        generator = TrafficGenerator("http://127.0.0.1:9", ["/x"], 20.0, duration_s=0.5, timeout_s=0.5).start()
        await asyncio.sleep(1.2)
        assert not generator.running
        assert generator.stats.sent == generator.stats.failures and 8 <= generator.stats.sent <= 12

    asyncio.run(scenario())


def test_a_burst_sends_exactly_its_count_one_after_another_and_counts_failures() -> None:
    async def scenario() -> TrafficStats:
        return await TrafficGenerator("http://127.0.0.1:9", ["/x", "/y"], 1.0, timeout_s=0.5).burst(7)

    stats = asyncio.run(scenario())
    assert stats.sent == stats.failures == 7 and stats.statuses == {} and stats.skipped == 0


@pytest.mark.parametrize(("paths", "rps"), [([], 1.0), (["notes"], 1.0), (["/notes"], 0.0)])
def test_invalid_generator_arguments(paths: list[str], rps: float) -> None:
    with pytest.raises(InputError):
        TrafficGenerator("http://127.0.0.1:1", paths, rps)


def test_each_request_names_a_synthetic_user_from_the_pool() -> None:
    from pilotage.runtime.proxy import EmbeddedServer, bind_local
    from pilotage.runtime.traffic import TARGETING_KEY_HEADER

    seen: list[str] = []

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            seen.append(dict(scope["headers"]).get(TARGETING_KEY_HEADER.encode(), b"").decode())
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def scenario() -> None:
        sock = bind_local(0)
        server = EmbeddedServer(app, "header recorder")
        await server.launch(sock)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        generator = TrafficGenerator(url, ["/x"], 200.0, duration_s=1.0, targeting_keys=5, seed=7).start()
        while generator.running:
            await asyncio.sleep(0.05)
        await server.halt()
        assert generator.stats.statuses == {200: generator.stats.sent} and len(seen) == generator.stats.sent
        assert set(seen) == {f"user-{i}" for i in range(5)}  # ~200 draws from 5 users reach every one

    asyncio.run(scenario())
    with pytest.raises(InputError, match="targeting_keys"):
        TrafficGenerator("http://127.0.0.1:1", ["/x"], 1.0, targeting_keys=0)


# --- issue 17: traffic plans ------------------------------------------------------------------------------------


def test_a_plan_creates_a_note_with_post_then_gets_it_by_its_id(tmp_path: Path) -> None:
    from pilotage.rollout.traffic_plan import build_traffic_plan
    from pilotage.spec.load import load_spec
    from tests.fixtures.tiny_service.harness import TINY

    plan = build_traffic_plan(load_spec(TINY / "openapi.yaml"), writes=True, touched=["GET /notes/{note_id}"])
    assert plan["requests"][0]["operation"] == "GET /notes/{note_id}"  # touched: first, weight 3

    async def scenario() -> None:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            env = {"PILOTAGE_DB_PATH": str(tmp_path / "notes.db")}
            tiny = await runtime.start(Workload("tiny", "v1", copy_service(tmp_path / "v1"), env=env))
            generator = TrafficGenerator(tiny.url, plan, 100.0, duration_s=1.5, seed=3).start()
            while generator.running:
                await asyncio.sleep(0.05)
            stats = generator.stats
            by = stats.by_operation
            # the first GET /notes/{note_id} had no note to read: the generator created one instead
            assert by["POST /notes"][201] >= 10 and set(by["POST /notes"]) == {201}
            assert by["GET /notes/{note_id}"][200] >= 60 and set(by["GET /notes/{note_id}"]) == {200}  # real ids
            assert set(by["GET /notes"]) == {200} and set(by["GET /version"]) == {200}
            assert stats.failures == 0 and stats.unfilled == 0 and sum(stats.statuses.values()) == stats.sent
            async with httpx.AsyncClient(base_url=tiny.url) as client:
                notes = (await client.get("/notes")).json()
            assert notes[0] == {"id": 1, "text": "string"}  # the body built from the schema
            assert len(notes) == min(50, by["POST /notes"][201])

    asyncio.run(scenario())


def _items_app(seen: list[dict[str, str]]) -> Any:
    """A tiny ASGI items service recording request headers: POST /items, GET and DELETE /items/{id}."""
    items: set[int] = set()

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        seen.append({k.decode(): v.decode() for k, v in scope["headers"]})
        method, parts = scope["method"], scope["path"].strip("/").split("/")
        status, body = 404, b""
        if method == "POST" and parts == ["items"]:
            new = len(items) + 1000 + len(seen)
            items.add(new)
            status, body = 201, json.dumps({"id": new, "name": "x"}).encode()
        elif len(parts) == 2 and parts[1].isdigit() and int(parts[1]) in items:
            status = 200 if method == "GET" else 204
            if method == "DELETE":
                items.discard(int(parts[1]))
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": body})

    return app


ITEMS_DOC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "items", "version": "1"},
    "security": [{"key": []}],
    "paths": {
        "/items": {
            "post": {
                "requestBody": {
                    "content": {
                        "application/json": {"schema": {"type": "object", "properties": {"name": {"type": "string"}}}}
                    }
                },
                "responses": {"201": {"description": "created"}},
            }
        },
        "/items/{id}": {
            "get": {
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {},
            },
            "delete": {
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {},
            },
        },
    },
    "components": {"securitySchemes": {"key": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}}},
}


async def _send_to_items(plan: dict[str, Any], env: dict[str, str], seen: list[dict[str, str]]) -> TrafficStats:
    """Send ``plan`` for 1 s (150 rps, credentials read from ``env``) to the items app, which records the headers."""
    from pilotage.runtime.proxy import EmbeddedServer, bind_local

    sock = bind_local(0)
    server = EmbeddedServer(_items_app(seen), "items")
    await server.launch(sock)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    generator = TrafficGenerator(url, plan, 150.0, duration_s=1.0, seed=5, environ=env).start()
    while generator.running:
        await asyncio.sleep(0.05)
    await server.halt()
    return generator.stats


def test_credentials_reach_the_service_from_the_environment_and_are_masked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from pilotage.rollout.traffic_plan import build_traffic_plan
    from pilotage.secrets import MASK, MaskingFormatter, masker

    secret = "tr4ffic-s3cret-" + tmp_path.name[-6:]
    creds = {"header": "X-Api-Key", "env": "PILOTAGE_TEST_TRAFFIC_KEY"}
    plan = build_traffic_plan(ITEMS_DOC, writes=True, credentials=creds)
    assert [r["operation"] for r in plan["requests"]] == ["POST /items", "GET /items/{id}", "DELETE /items/{id}"]
    assert secret not in json.dumps(plan)
    seen: list[dict[str, str]] = []
    stats = asyncio.run(_send_to_items(plan, {creds["env"]: secret}, seen))
    assert seen and all(h.get("x-api-key") == secret for h in seen)  # every request carried the credential
    assert all(h.get(TARGETING_KEY_HEADER, "").startswith("user-") for h in seen)  # the targeting key is kept
    by = stats.by_operation
    assert set(by["DELETE /items/{id}"]) == {204}  # each DELETE used a created item up: never the same twice
    assert by["GET /items/{id}"].get(200, 0) > 0 and by["POST /items"][201] > 0
    assert secret not in json.dumps(stats.to_dict())
    # the value was registered with the secret masker: a log line holding it is masked
    handler = logging.StreamHandler(io := __import__("io").StringIO())
    handler.setFormatter(MaskingFormatter("%(message)s"))
    logger = logging.getLogger("pilotage.test.traffic")
    logger.addHandler(handler)
    try:
        logger.warning("sent header X-Api-Key: %s", secret)
    finally:
        logger.removeHandler(handler)
    assert io.getvalue().strip() == f"sent header X-Api-Key: {MASK}" and masker().contains_secret(secret)
    # a variable that is not set: the requests go without it, and the log says which variable
    with caplog.at_level(logging.WARNING, logger="pilotage.runtime.traffic"):
        TrafficGenerator("http://127.0.0.1:1", plan, 1.0, environ={})
    assert "PILOTAGE_TEST_TRAFFIC_KEY is not set" in caplog.text


def test_invalid_plans_are_input_errors() -> None:
    with pytest.raises(InputError, match="no request"):
        TrafficGenerator("http://127.0.0.1:1", {"requests": [], "summary": "nothing"}, 1.0)
    with pytest.raises(InputError, match="is not a request"):
        TrafficGenerator("http://127.0.0.1:1", {"requests": [{"method": "GET", "path": "x"}]}, 1.0)
    with pytest.raises(InputError, match="is not a request"):
        TrafficGenerator("http://127.0.0.1:1", {"requests": [{"method": "GET", "path": "/x", "weight": 0}]}, 1.0)
    assert not has_requests({"requests": []}) and not has_requests([]) and has_requests(["/x"])


def test_the_run_s_test_principal_authenticates_secured_operations_without_traffic_credentials(
    tmp_path: Path,
) -> None:
    """Issue 18: a document with top-level security is sent, every request carrying the principal as its key."""
    from pilotage.rollout.traffic_plan import build_traffic_plan

    principal = "pilotage:" + "p" * 12 + tmp_path.name[-6:]
    assert build_traffic_plan(ITEMS_DOC, writes=True)["requests"] == []  # no principal: every operation skipped
    plan = build_traffic_plan(ITEMS_DOC, writes=True, principal=True)
    assert [r["operation"] for r in plan["requests"]] == ["POST /items", "GET /items/{id}", "DELETE /items/{id}"]
    assert all(r["security"] == [{"key": []}] for r in plan["requests"]) and principal not in json.dumps(plan)
    seen: list[dict[str, str]] = []
    stats = asyncio.run(_send_to_items(plan, {"PILOTAGE_TEST_PRINCIPAL": principal}, seen))
    assert seen and all(h.get("x-api-key") == principal for h in seen)
    assert stats.by_operation["GET /items/{id}"].get(200, 0) > 0


def test_a_held_generator_sends_nothing_and_released_runs_at_its_rate_without_a_catch_up_burst(
    tmp_path: Path,
) -> None:
    async def scenario() -> tuple[int, int, int]:
        async with LocalRuntime(log_dir=tmp_path / "logs") as runtime:
            v1 = await runtime.start(Workload("tiny", "v1", copy_service(tmp_path / "v1")))
            route = await runtime.create_route("held", {"v1": v1}, {"v1": 100})
            generator = await start_traffic("held", route.url, ["/notes"], 40.0)
            try:
                assert await hold_traffic(["held", "not-registered"], True) == ["held"]
                await asyncio.sleep(0.3)  # requests launched before the hold took effect finish
                at_hold = (await runtime.route_stats("held")).requests
                await asyncio.sleep(1.0)
                while_held = (await runtime.route_stats("held")).requests - at_hold
                assert generator.running  # held, not stopped
                await hold_traffic(["held"], False)
                await asyncio.sleep(0.5)
                after_release = (await runtime.route_stats("held")).requests - at_hold - while_held
            finally:
                await stop_traffic("held")
            return at_hold, while_held, after_release

    at_hold, while_held, after_release = asyncio.run(scenario())
    assert at_hold <= 15  # 40 rps for the short time before the hold
    assert while_held == 0
    assert 10 <= after_release <= 26  # 0.5 s at 40 rps, not the 1.5 s missed while held (60)


def test_operations_another_generator_found_unwritten_are_not_sent_but_one_operation_always_is() -> None:
    """Blue-green's switch: the route's new generator skips what green answered 501 to the preview's generator."""
    generator = TrafficGenerator("http://127.0.0.1:9", ["/a", "/b", "/c"], 1.0)
    generator.skip_unwritten(["GET /a", "GET /nowhere"])
    assert generator.unwritten == {"GET /a"}
    assert [r.operation for r, w in zip(generator.requests, generator._weights, strict=True) if w] == [
        "GET /b",
        "GET /c",
    ]
    generator.skip_unwritten(["GET /b", "GET /c"])  # never nothing to send: the last operation with weight stays
    assert generator.unwritten == {"GET /a", "GET /b", "GET /c"} and sum(map(bool, generator._weights)) == 1
