"""Generated services authenticate (issue #18, item 5).

A small notes document with bearer (the default, top-level ``security``), API-key (query and cookie) and HTTP
basic schemes, a user resource and a login: credentials are checked against the test principal (env
``PILOTAGE_TEST_PRINCIPAL``), the users created through the service and the tokens its login issued; 401 with
``WWW-Authenticate`` otherwise; ``security: []`` honoured; the principal reaches the user's handler.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilotage.codegen.generator import generate_service
from pilotage.spec.evolve import evolve
from pilotage.spec.grammar import parse_request
from pilotage.spec.openapi import iter_operations
from pilotage.testing.credentials import credentials_for
from tests.unit.test_codegen import serve

NOTE = {"$ref": "#/components/schemas/Note"}
USER = {"$ref": "#/components/schemas/User"}
ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}]


def _json(schema: Any) -> dict[str, Any]:
    return {"description": "ok", "content": {"application/json": {"schema": schema}}}


def _body(schema: Any) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _list(op_id: str, security: list[Any]) -> dict[str, Any]:
    return {"operationId": op_id, "security": security, "responses": {"200": _json({"type": "array", "items": NOTE})}}


DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Notes", "version": "1.0.0"},
    "security": [{"bearer": []}],
    "paths": {
        "/notes": {
            "get": {"operationId": "listNotes", "responses": {"200": _json({"type": "array", "items": NOTE})}},
            "post": {"operationId": "addNote", "requestBody": _body(NOTE), "responses": {"201": _json(NOTE)}},
        },
        "/notes/{id}": {"parameters": ID, "get": {"operationId": "getNote", "responses": {"200": _json(NOTE)}}},
        "/users": {
            "post": {"operationId": "signUp", "security": [], "requestBody": _body(USER), "responses": {"201": {}}}
        },
        "/users/{username}": {
            "parameters": [{"name": "username", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"operationId": "getUser", "responses": {"200": _json(USER), "404": {"description": "no"}}},
        },
        "/login": {
            "post": {
                "operationId": "login",
                "security": [],
                "requestBody": _body({"type": "object", "properties": {"user": USER}}),
                "responses": {"200": _json({"type": "object", "properties": {"token": {"type": "string"}}})},
            }
        },
        "/reports": {"get": _list("listReports", [{"key": []}])},
        "/reports/{id}": {"parameters": ID, "get": {"operationId": "getReport", "responses": {"200": _json(NOTE)}}},
        "/badges": {"get": _list("listBadges", [{"sid": []}])},
        "/badges/{id}": {"parameters": ID, "get": {"operationId": "getBadge", "responses": {"200": _json(NOTE)}}},
        "/whoami": {"get": {"operationId": "whoAmI", "security": [{"basic": []}], "responses": {"200": _json({})}}},
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "key": {"type": "apiKey", "in": "query", "name": "key"},
            "sid": {"type": "apiKey", "in": "cookie", "name": "sid"},
            "basic": {"type": "http", "scheme": "basic"},
        },
        "schemas": {
            "Note": {"type": "object", "properties": {"id": {"type": "integer"}, "text": {"type": "string"}}},
            "User": {
                "type": "object",
                "required": ["username", "password"],
                "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
            },
        },
    },
}
for _path in ("/users", "/users/{username}"):  # the created user answers 201 with the user
    for _op in DOCUMENT["paths"][_path].values():
        if isinstance(_op, dict) and "responses" in _op:
            _op["responses"] = {**_op["responses"], **({"201": _json(USER)} if "201" in _op["responses"] else {})}

WHOAMI = """

def who_am_i(request, op, params, body, principal):
    return op.respond(200, principal)
"""
PRINCIPAL = "pilotage-test:" + secrets.token_urlsafe(18)


def _basic(pair: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("notes")
    result = generate_service(DOCUMENT, folder)
    kinds = {o["operation"]: o["kind"] for o in result.operations}
    assert kinds["POST /login"] == "login", kinds
    handlers = folder / "app" / "handlers.py"
    handlers.write_text(handlers.read_text(encoding="utf-8").replace("def who_am_i(", "def _stub(") + WHOAMI)
    yield from serve(folder, {"PILOTAGE_TEST_PRINCIPAL": PRINCIPAL})


def test_bearer_missing_or_invalid_is_401_with_a_challenge(url: str) -> None:
    missing = httpx.get(url + "/notes")
    assert (missing.status_code, missing.headers["www-authenticate"]) == (401, 'Bearer realm="api"')
    assert missing.json() == {"detail": "missing credentials"}
    invalid = httpx.get(url + "/notes", headers={"Authorization": "Bearer string"})
    assert (invalid.status_code, invalid.json()) == (401, {"detail": "invalid credentials"})
    assert httpx.get(url + "/notes", headers={"Authorization": "Basic " + PRINCIPAL}).status_code == 401
    assert httpx.get(url + "/notes", headers={"Authorization": f"Bearer {PRINCIPAL}"}).status_code == 200


def test_login_checks_the_password_of_a_user_created_through_the_service(url: str) -> None:
    assert httpx.post(url + "/users", json={"username": "ada", "password": "lovelace-1815"}).status_code == 201
    wrong = httpx.post(url + "/login", json={"user": {"username": "ada", "password": "babbage"}})
    assert wrong.status_code == 401 and "token" not in wrong.text
    assert httpx.post(url + "/login", json={"user": {"username": "eve", "password": "x"}}).status_code == 401
    login = httpx.post(url + "/login", json={"user": {"username": "ada", "password": "lovelace-1815"}})
    assert login.status_code == 200, login.text
    token = login.json()["token"]
    assert len(token) >= 32 and token != "string"
    notes = httpx.get(url + "/notes", headers={"Authorization": f"Bearer {token}"})
    assert notes.status_code == 200 and notes.json() == []
    assert httpx.get(url + "/users/ada", headers={"Authorization": f"Bearer {token}"}).json()["username"] == "ada"


def test_basic_credentials_of_a_user_or_the_principal_reach_the_handler(url: str) -> None:
    httpx.post(url + "/users", json={"username": "alan", "password": "turing-1912"})
    assert httpx.get(url + "/whoami", headers=_basic("alan:turing-1912")).json() == {"name": "alan", "scheme": "basic"}
    assert httpx.get(url + "/whoami", headers=_basic(PRINCIPAL)).json()["name"] == "pilotage-test"
    wrong = httpx.get(url + "/whoami", headers=_basic("alan:enigma"))
    assert (wrong.status_code, wrong.headers["www-authenticate"]) == (401, 'Basic realm="api"')
    assert httpx.get(url + "/whoami", headers={"Authorization": f"Bearer {PRINCIPAL}"}).status_code == 401


def test_api_keys_in_query_and_cookie(url: str) -> None:
    assert httpx.get(url + "/reports", params={"key": PRINCIPAL}).status_code == 200
    refused = httpx.get(url + "/reports", params={"key": "guess"})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'ApiKey realm="api", in="query", name="key"'
    assert httpx.get(url + "/reports", headers={"key": PRINCIPAL}).status_code == 401  # a header is not the query
    assert httpx.get(url + "/badges", cookies={"sid": PRINCIPAL}).status_code == 200
    assert httpx.get(url + "/badges", cookies={"sid": "guess"}).status_code == 401


def test_how_pilotage_sends_the_principal_for_each_scheme_is_accepted(url: str) -> None:
    ops = {(op.method.upper(), op.path): op for op in iter_operations(DOCUMENT)}
    for method, path in (("GET", "/notes"), ("GET", "/reports"), ("GET", "/badges"), ("GET", "/whoami")):
        op = ops[(method, path)]
        security = op.operation.get("security", DOCUMENT.get("security"))
        sent = credentials_for(security, DOCUMENT["components"]["securitySchemes"], PRINCIPAL)
        assert sent is not None, path
        answer = httpx.request(
            method, url + path, headers=sent["headers"], params=sent["query"], cookies=sent["cookies"]
        )
        assert answer.status_code == 200, (path, answer.text)


def test_without_a_principal_in_the_environment_nothing_is_accepted(tmp_path: Path) -> None:
    generate_service(DOCUMENT, tmp_path)
    for served in serve(tmp_path, {"PILOTAGE_TEST_PRINCIPAL": "short-secret"}):  # < 16 characters: ignored
        assert httpx.get(served + "/notes", headers={"Authorization": "Bearer short-secret"}).status_code == 401


def test_operations_added_to_a_secured_api_declare_401() -> None:
    new = evolve(DOCUMENT, parse_request("add coupon with fields code:string"))
    added = [op for op in iter_operations(new) if op.path.startswith("/coupons")]
    assert added and all("401" in op.operation["responses"] for op in added)
    assert "401" not in new["paths"]["/users"]["post"]["responses"]  # existing operations are left alone
