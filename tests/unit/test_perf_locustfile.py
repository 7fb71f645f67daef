"""Locustfile generation: which operations become load-test targets, and the generated file's text."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from pilotage.errors import InputError
from pilotage.perf.locustfile import LoadTarget, load_targets, render_locustfile, write_locustfile

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

DOC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "t", "version": "1"},
    "paths": {
        "/items": {
            "get": {"parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer"}}], "responses": {}},
            "post": {
                "requestBody": {
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ItemCreate"}}}
                },
                "responses": {},
            },
        },
        "/items/{id}": {"get": {"responses": {}}},
        "/admin": {"get": {"responses": {}, "security": [{"key": []}]}},  # needs credentials: left out
        "/search": {
            "get": {"parameters": [{"$ref": "#/components/parameters/Q"}], "responses": {}},
        },
        "/orders": {
            "get": {"responses": {}, "security": [{}, {"key": []}]},  # anonymous allowed
            "post": {"requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}, "responses": {}},
        },
        "/notes": {
            "post": {
                "requestBody": {"content": {"application/json": {"examples": {"first": {"value": {"text": "hi"}}}}}},
                "responses": {},
            }
        },
    },
    "components": {
        "parameters": {"Q": {"name": "q", "in": "query", "required": True, "schema": {"type": "string"}}},
        "schemas": {
            "ItemCreate": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "id": {"type": "integer", "readOnly": True, "example": 7},
                    "name": {"type": "string", "example": "widget"},
                    "price": {"type": "number", "example": 2.5},
                },
            }
        },
    },
}


def test_targets_are_parameterless_gets_and_posts_with_example_bodies() -> None:
    targets = load_targets(DOC)
    assert targets == [
        LoadTarget("GET", "/items", 3),
        LoadTarget("POST", "/items", 1, {"name": "widget", "price": 2.5}),  # readOnly id left out
        LoadTarget("GET", "/orders", 3),  # its POST has no example: not called
        LoadTarget("POST", "/notes", 1, {"text": "hi"}),
    ]
    assert [t.operation for t in load_targets(DOC, include_post=False)] == ["GET /items", "GET /orders"]


def test_document_wide_security_applies_unless_the_operation_opts_out() -> None:
    doc = json.loads(json.dumps(DOC))
    doc["security"] = [{"key": []}]
    assert [t.operation for t in load_targets(doc)] == ["GET /orders"]  # the only one allowing anonymous calls


def test_required_property_without_example_means_no_post() -> None:
    doc = json.loads(json.dumps(DOC))
    doc["components"]["schemas"]["ItemCreate"]["required"] = ["name", "sku"]
    doc["components"]["schemas"]["ItemCreate"]["properties"]["sku"] = {"type": "string"}
    assert "POST /items" not in [t.operation for t in load_targets(doc)]


def test_rendered_locustfile_is_valid_python_carrying_the_targets() -> None:
    text = render_locustfile(load_targets(DOC), source="spec.yaml")
    tree = ast.parse(text)  # never imported here: importing locust monkey-patches this process
    assigned = {
        node.targets[0].id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and node.targets
        if isinstance(node.targets[0], ast.Name)
    }
    assert "TARGETS" in assigned
    payload = json.loads(ast.literal_eval(assigned["TARGETS"].args[0]))  # type: ignore[attr-defined]
    assert [(t["method"], t["path"], t["weight"]) for t in payload] == [
        ("GET", "/items", 3),
        ("POST", "/items", 1),
        ("GET", "/orders", 3),
        ("POST", "/notes", 1),
    ]
    assert "FastHttpUser" in text and "locust.stats.CSV_STATS_INTERVAL_SEC = 0.1" in text


def test_no_target_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no operation a load test can call"):
        render_locustfile([], source="empty.yaml")


def test_write_locustfile_for_the_ok_fixture(tmp_path: Path) -> None:
    out = tmp_path / "lf" / "locustfile.py"
    targets = write_locustfile(FIXTURES / "ok_service" / "openapi.yaml", out)
    assert [t.operation for t in targets] == ["GET /pets", "POST /pets"]
    assert targets[1].body == {"name": "Rex", "tag": "dog"}
    assert out.is_file() and "ServiceUser" in out.read_text()


def test_write_locustfile_of_a_broken_spec_names_the_file(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("openapi: 3.0.3\npaths: [\n")
    with pytest.raises(InputError, match="bad.yaml"):
        write_locustfile(spec, tmp_path / "locustfile.py")


def test_credentials_make_secured_operations_targets_and_the_file_names_only_the_variable() -> None:
    doc = json.loads(json.dumps(DOC))
    doc["security"] = [{"key": []}]
    assert [t.operation for t in load_targets(doc, credentials=True)] == [
        "GET /items",
        "POST /items",
        "GET /admin",
        "GET /orders",
        "POST /notes",
    ]
    text = render_locustfile(load_targets(doc, credentials=True), credentials={"header": "X-Key", "env": "SVC_KEY"})
    tree = ast.parse(text)
    assigned = {
        n.targets[0].id: n.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
    }
    assert json.loads(ast.literal_eval(assigned["CREDENTIALS"].args[0])) == {"env": "SVC_KEY", "header": "X-Key"}  # type: ignore[attr-defined]
    plain = render_locustfile(load_targets(DOC))
    assert "CREDENTIALS = json.loads('null')" in plain
