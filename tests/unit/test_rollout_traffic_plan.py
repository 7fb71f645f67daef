"""The traffic plan built from real OpenAPI documents: what synthetic traffic sends, what it skips and why."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from pilotage.rollout.traffic_plan import (
    NOTHING_TO_CALL,
    OTHER_WEIGHT,
    TOUCHED_WEIGHT,
    build_traffic_plan,
    descriptor_traffic,
    id_fields,
    smoke_paths,
    touched_operations,
)
from pilotage.spec.load import load_spec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SHARED = Path("/work/shared/specs")
PETSTORE3 = FIXTURES / "specs" / "petstore3.yaml"
CREDS = {"header": "api_key", "env": "PETSTORE_API_KEY"}


def _shared(name: str) -> dict[str, Any]:
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"{path} is not on this machine")
    return load_spec(path)


def _by_op(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["operation"]: r for r in plan["requests"]}


def _skips(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["operation"]: s for s in plan["skipped"]}


def test_petstore3_without_writes_or_credentials_calls_only_the_open_reads() -> None:
    plan = build_traffic_plan(load_spec(PETSTORE3))
    assert [(r["method"], r["path"], r["weight"]) for r in plan["requests"]] == [
        ("GET", "/api/v3/user/login", OTHER_WEIGHT),  # servers[0] is https://petstore3.swagger.io/api/v3
        ("GET", "/api/v3/user/logout", OTHER_WEIGHT),
    ]
    skips = _skips(plan)
    assert skips["GET /pet/{petId}"]["kind"] == "credentials"
    assert "needs credentials (api_key or petstore_auth)" in skips["GET /pet/{petId}"]["reason"]
    assert skips["POST /pet"]["kind"] == "writes" and "traffic.writes" in skips["POST /pet"]["reason"]
    # the order's id would come from POST /store/order, which writes are off for
    order = skips["GET /store/order/{orderId}"]
    assert order["kind"] == "writes"
    assert order["reason"].startswith("path parameter 'orderId' has no example, enum or default; POST /store/order")
    assert len(plan["skipped"]) == 17 and plan["credentials"] is None and plan["writes"] is False
    assert plan["summary"] == "2 requests; 17 operations skipped (credentials 4, writes 13)"
    assert smoke_paths(plan) == ["/api/v3/user/login", "/api/v3/user/logout"]
    # a generated service serves the paths as written, whatever servers[0] says
    assert smoke_paths(build_traffic_plan(load_spec(PETSTORE3), path_prefix="")) == ["/user/login", "/user/logout"]


def test_petstore3_with_writes_and_credentials_creates_then_uses_items() -> None:
    plan = build_traffic_plan(load_spec(PETSTORE3), writes=True, credentials=CREDS)
    by = _by_op(plan)
    assert len(plan["requests"]) == 19 and plan["skipped"] == [] and plan["summary"] == "19 requests"
    assert plan["credentials"] == CREDS  # names only: the value is read by the generator
    create = by["POST /pet"]
    assert create["creates"] is True and create["secured"] is True and create["path"] == "/api/v3/pet"
    assert create["body"]["name"] == "doggie" and create["body"]["photoUrls"] == ["string"]  # the schema's examples
    get = by["GET /pet/{petId}"]
    assert get["params"] == [
        {"name": "petId", "in": "path", "from": "created", "by": "POST /pet", "fields": ["petId", "id"]}
    ]
    assert by["DELETE /pet/{petId}"]["params"][0]["by"] == "POST /pet"
    # the user's answer has a username: it fills {username} first
    assert by["GET /user/{username}"]["params"][0]["fields"][:2] == ["username", "id"]
    assert by["POST /user"]["creates"] and not by["POST /user/createWithList"]["creates"]
    assert by["GET /store/order/{orderId}"]["params"][0]["by"] == "POST /store/order"
    json.dumps(plan)  # JSON-serialisable: it travels in deploy.requested


def test_credentials_whose_variable_is_unset_skip_the_secured_operations_saying_so() -> None:
    plan = build_traffic_plan(load_spec(PETSTORE3), credentials=CREDS, credentials_set=False)
    skips = _skips(plan)
    assert skips["GET /store/inventory"]["reason"] == (
        "needs credentials: environment variable PETSTORE_API_KEY (traffic.credentials.env) is not set"
    )
    assert plan["credentials"] is None and [r["operation"] for r in plan["requests"]] == [
        "GET /user/login",
        "GET /user/logout",
    ]


def test_petstore_expanded_items_come_from_the_collection_post() -> None:
    doc = _shared("oai-v3.0-petstore-expanded.yaml")
    plan = build_traffic_plan(doc, writes=True)
    assert [(r["method"], r["path"]) for r in plan["requests"]] == [
        ("GET", "/v2/pets"),
        ("POST", "/v2/pets"),
        ("GET", "/v2/pets/{id}"),
        ("DELETE", "/v2/pets/{id}"),
    ]
    by = _by_op(plan)
    assert by["POST /pets"]["body"] == {"name": "string", "tag": "string"}  # NewPet, built from its types
    assert by["GET /pets/{id}"]["params"] == [
        {"name": "id", "in": "path", "from": "created", "by": "POST /pets", "fields": ["id"]}
    ]
    assert by["GET /pets"]["params"] == []  # optional query parameters are not sent
    reads = build_traffic_plan(doc)
    assert [r["operation"] for r in reads["requests"]] == ["GET /pets"]
    reason = _skips(reads)["GET /pets/{id}"]["reason"]
    assert "POST /pets, which would create one, is skipped: writes are off: set traffic.writes: true" in reason


def test_uspto_path_parameters_take_the_documents_examples() -> None:
    plan = build_traffic_plan(_shared("oai-v3.0-uspto.yaml"))
    by = _by_op(plan)
    assert by["GET /"]["path"] == "/ds-api/"  # servers[0]: {scheme}://developer.uspto.gov/ds-api
    fields = by["GET /{dataset}/{version}/fields"]
    assert fields["path"] == "/ds-api/{dataset}/{version}/fields"
    assert fields["params"] == [
        {"name": "dataset", "in": "path", "from": "example", "value": "oa_citations"},
        {"name": "version", "in": "path", "from": "example", "value": "v1"},
    ]
    assert _skips(plan)["POST /{dataset}/{version}/records"]["kind"] == "writes"
    assert smoke_paths(plan) == ["/ds-api/"]


def test_the_operations_the_change_touches_come_first_with_more_weight() -> None:
    base = _shared("oai-v3.0-petstore-expanded.yaml")
    head = copy.deepcopy(base)
    head["components"]["schemas"]["NewPet"]["properties"]["age"] = {"type": "integer", "example": 3}
    head["paths"]["/pets/count"] = {"get": {"responses": {"200": {"description": "how many"}}}}
    # NewPet changed: Pet (allOf NewPet) too, so every operation reading either is touched; DELETE reads neither
    assert touched_operations(head, base) == ["GET /pets", "POST /pets", "GET /pets/{id}", "GET /pets/count"]
    assert touched_operations(base, base) == []
    plan = build_traffic_plan(head, base, writes=True, touched=["delete /pets/{id}"])
    order = [(r["operation"], r["weight"], r["touched"], r["in_base"]) for r in plan["requests"]]
    assert order == [
        ("GET /pets", TOUCHED_WEIGHT, True, True),
        ("POST /pets", TOUCHED_WEIGHT, True, True),
        ("GET /pets/{id}", TOUCHED_WEIGHT, True, True),
        ("DELETE /pets/{id}", TOUCHED_WEIGHT, True, True),  # named by the caller (a changed handler)
        ("GET /pets/count", TOUCHED_WEIGHT, True, False),  # new: the previous version answers 404
    ]
    assert _by_op(plan)["POST /pets"]["body"]["age"] == 3
    assert plan["summary"].startswith(
        "5 requests, 5 touched by the change (GET /pets, POST /pets, GET /pets/{id} and 2"
    )


def test_nothing_callable_says_exactly_so() -> None:
    doc = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/items/{id}": {
                "get": {
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                    "responses": {},
                }
            },
            "/search": {
                "get": {
                    "parameters": [{"name": "q", "in": "query", "required": True, "schema": {"type": "string"}}],
                    "responses": {},
                }
            },
        },
    }
    plan = build_traffic_plan(doc)
    assert plan["requests"] == [] and plan["summary"] == NOTHING_TO_CALL
    assert plan["summary"] == "no operation Pilotage can call: add `traffic` to pilotage.yaml or send real traffic"
    assert _skips(plan) == {
        "GET /items/{id}": {
            "operation": "GET /items/{id}",
            "kind": "parameters",
            "reason": "path parameter 'id' has no example, enum or default, and no POST /items creates one",
        },
        "GET /search": {
            "operation": "GET /search",
            "kind": "parameters",
            "reason": "required query parameter 'q' has no example, enum or default",
        },
    }
    explicit = build_traffic_plan(doc, requests=["GET /status/200", "POST /reset", "GET /search?q=x"])
    assert [(r["operation"], r["source"], r["weight"]) for r in explicit["requests"]] == [
        ("GET /status/200", "descriptor", TOUCHED_WEIGHT),
        ("GET /search?q=x", "descriptor", TOUCHED_WEIGHT),
    ]
    assert _skips(explicit)["POST /reset"]["kind"] == "writes"


def test_a_documented_answer_without_an_id_like_field_feeds_nothing() -> None:
    doc = {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/jobs": {
                "post": {
                    "responses": {
                        "202": {
                            "description": "queued",
                            "content": {
                                "application/json": {
                                    "schema": {"type": "object", "properties": {"status": {"type": "string"}}}
                                }
                            },
                        }
                    }
                }
            },
            "/jobs/{jobId}": {
                "get": {
                    "parameters": [{"name": "jobId", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {},
                }
            },
        },
    }
    plan = build_traffic_plan(doc, writes=True)
    assert [r["operation"] for r in plan["requests"]] == ["POST /jobs"] and not plan["requests"][0]["creates"]
    assert "the answer of POST /jobs has no id-like field" in _skips(plan)["GET /jobs/{jobId}"]["reason"]
    assert id_fields("jobId", ["status", "job_uid"]) == ["jobId", "id", "job_uid"]


def test_the_descriptor_gives_the_settings_and_a_service_without_one_the_defaults(tmp_path: Path) -> None:
    assert descriptor_traffic(tmp_path) == descriptor_traffic("")
    assert descriptor_traffic(tmp_path).writes is False and descriptor_traffic(tmp_path).credentials is None
    (tmp_path / "pilotage.yaml").write_text(
        "name: pets\nstart: python -m uvicorn app:app --port {port}\n"
        "traffic:\n  writes: true\n  requests: ['GET /status']\n  credentials: {header: X-Api-Key, env: PETS_KEY}\n",
        encoding="utf-8",
    )
    found = descriptor_traffic(tmp_path)
    assert found.writes is True and found.requests == ("GET /status",)
    assert found.credentials is not None and (found.credentials.header, found.credentials.env) == (
        "X-Api-Key",
        "PETS_KEY",
    )
