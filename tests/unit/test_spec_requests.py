"""Requests resolved against a document: new resources, fields and operations, or a refusal (issue #18, item 1).

"Add discount code support to the checkout service" (the seed's own words) was promoted as a resource named
``discount-code-support-to-the-checkout-services`` with an invented field ``name``; "Add a tags field to orders"
became a new resource instead of a field on ``orders``. Here a small document written for the purpose (orders
with a path-level parameter and a security requirement, a composed schema, a reserved path) is changed by each
form of the grammar, and every refusal is checked for its rule and its closest reading.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotage.codegen.generator import generate_service
from pilotage.errors import InputError
from pilotage.spec.diff import diff_specs
from pilotage.spec.evolve import apply_change, evolve, operations, plan_change
from pilotage.spec.grammar import GRAMMAR, parse_request
from pilotage.spec.load import load_spec, validate_spec
from tests.fixtures import CHECKOUT_SPEC
from tests.fixtures.service_importer import ask

ORDER = {"$ref": "#/components/schemas/Order"}
SHOP: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Shop", "version": "1.0.0"},
    "paths": {
        "/orders": {
            "get": {
                "tags": ["orders"],
                "operationId": "listOrders",
                "security": [{"key": []}],
                "responses": {
                    "200": {
                        "description": "all",
                        "content": {"application/json": {"schema": {"type": "array", "items": ORDER}}},
                    }
                },
            },
            "post": {
                "tags": ["orders"],
                "operationId": "placeOrder",
                "security": [{"key": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": ORDER}}},
                "responses": {"201": {"description": "placed", "content": {"application/json": {"schema": ORDER}}}},
            },
        },
        "/orders/{orderId}": {
            "parameters": [{"name": "orderId", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "get": {
                "tags": ["orders"],
                "operationId": "getOrder",
                "security": [{"key": []}],
                "responses": {"200": {"description": "one", "content": {"application/json": {"schema": ORDER}}}},
            },
        },
        "/gift-cards/{code}": {
            "get": {
                "operationId": "getGiftCard",
                "parameters": [{"name": "code", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {
                        "description": "one",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GiftCard"}}},
                    }
                },
            }
        },
        "/gift-cards": {
            "get": {
                "operationId": "listGiftCards",
                "responses": {"200": {"description": "all"}},
            }
        },
    },
    "components": {
        "securitySchemes": {"key": {"type": "apiKey", "in": "header", "name": "X-Key"}},
        "schemas": {
            "Order": {
                "type": "object",
                "required": ["item"],
                "properties": {"id": {"type": "integer", "readOnly": True}, "item": {"type": "string"}},
            },
            "Card": {"type": "object", "properties": {"code": {"type": "string"}}},
            "GiftCard": {"allOf": [{"$ref": "#/components/schemas/Card"}, {"type": "object"}]},
        },
    },
}


def change(request: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    return evolve(doc or SHOP, parse_request(request), path="shop.yaml")


@pytest.mark.parametrize(
    "request_text",
    [
        "Add a tags field to orders",
        "add field tags to the Order schema",
        "Add tags field on /orders",
        "add a tags:string field to order",
    ],
)
def test_a_field_goes_to_the_existing_schema(request_text: str) -> None:
    before = copy.deepcopy(SHOP)
    new = change(request_text)
    assert SHOP == before, "the input document must not change"
    order = new["components"]["schemas"]["Order"]
    assert order["properties"]["tags"] == {"type": "string"}
    assert order["required"] == ["item"]  # optional: existing clients stay valid
    assert operations(new) == operations(SHOP) and set(new["components"]["schemas"]) == set(
        SHOP["components"]["schemas"]
    )
    diff = diff_specs(SHOP, new)
    assert diff.classification == "non-breaking" and "schema Order: property 'tags' added" in diff.non_breaking


def test_several_typed_fields() -> None:
    new = change("Add priority:integer, due:date and note fields to orders")
    props = new["components"]["schemas"]["Order"]["properties"]
    assert props["priority"] == {"type": "integer", "format": "int64"}
    assert props["due"] == {"type": "string", "format": "date"} and props["note"] == {"type": "string"}


def test_an_operation_goes_to_the_existing_resource() -> None:
    req = parse_request("Add a delete operation to orders")
    planned = plan_change(SHOP, req, path="shop.yaml")
    assert planned.to_dict() == {
        "kind": "add-operation",
        "schema": "Order",
        "fields": {},
        "required": [],
        "operations": ["DELETE /orders/{orderId}"],
        "collection_path": "/orders",
        "item_path": "/orders/{orderId}",
    }
    new = apply_change(SHOP, req, planned, path="shop.yaml")
    delete = new["paths"]["/orders/{orderId}"]["delete"]
    assert delete["operationId"] == "deleteOrder" and "parameters" not in delete  # the path item declares orderId
    assert delete["security"] == [{"key": []}] and delete["tags"] == ["orders"]  # as its siblings
    assert set(delete["responses"]) == {"204", "401", "404", "422"}  # secured like its siblings: 401 declared
    assert diff_specs(SHOP, new).added == ["DELETE /orders/{orderId}"]


def test_an_operation_copies_a_path_parameter_its_path_item_does_not_declare() -> None:
    new = change("Add an update operation to gift cards")
    put = new["paths"]["/gift-cards/{code}"]["put"]
    assert put["parameters"] == [{"name": "code", "in": "path", "required": True, "schema": {"type": "string"}}]
    assert put["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/GiftCard"}
    validate_spec(new)


def refusal(request: str, doc: dict[str, Any] | None = None) -> InputError:
    with pytest.raises(InputError) as info:
        change(request, doc)
    line = info.value.one_line()
    assert "\n" not in line and "shop.yaml" in line and repr(request) in line
    return info.value


@pytest.mark.parametrize(
    ("request_text", "rule", "why", "closest"),
    [
        (
            "Add order support with fields note:string",
            "no-overwrite",
            "already has the schema Order",
            "Add a note field to orders",
        ),
        ("Add a item field to orders", "no-overwrite", "already has the property 'item'", None),
        (
            "Add item, note fields to orders",
            "no-overwrite",
            "already has the property 'item'",
            "Add a note field to orders",
        ),
        (
            "Add a get operation to orders",
            "no-overwrite",
            "already has GET /orders/{orderId}",
            "Add an update operation to orders",
        ),
        (
            "Add a tags field to oders",
            "unresolved-name",
            "names no schema or collection 'oders'",
            "Add a tags field to orders",
        ),
        ("Add a delete operation to ordres", "unresolved-name", "names no schema", "Add a delete operation to orders"),
        (
            "Add a note field to gift cards",
            "not-an-object",
            "GiftCard is not a plain object schema",
            "Add a note field to Card",
        ),
        ("Add metric support with fields value:number", "reserved-path", "/metrics", None),
        ("Add healthz support with fields ok:boolean", "reserved-path", "/healthz", None),
        ("Add a tags field to the checkout service", "unresolved-name", "applies to the --spec document", None),
    ],
)
def test_refusals_name_the_rule_and_the_closest_reading(
    request_text: str, rule: str, why: str, closest: str | None
) -> None:
    error = refusal(request_text)
    assert error.context["rule"] == rule
    assert why in error.one_line()
    assert error.context["closest"] == closest
    if closest is not None:
        assert f"did you mean {closest!r}" in error.one_line()
        evolve(SHOP, parse_request(closest))  # the closest reading is a request that applies


def test_a_new_resource_still_gets_five_operations() -> None:
    new = change("Add coupon support with fields code:string, percent:integer?")
    assert [op for op in operations(new) if op not in operations(SHOP)] == [
        "GET /coupons",
        "POST /coupons",
        "GET /coupons/{id}",
        "PUT /coupons/{id}",
        "DELETE /coupons/{id}",
    ]
    assert new["components"]["schemas"]["Coupon"]["required"] == ["code"]


@pytest.mark.parametrize(
    ("request_text", "closest"),
    [
        ("Add discount code support to the checkout service", "Add discount code support with fields NAME:TYPE, ..."),
        (
            "Add discount code support for the checkout service with fields code:string",
            "Add discount code support with fields code:string",
        ),
        ("add tags to orders", "Add a tags field to orders"),
        ("Add a remove operation to orders", "Add a delete operation to orders"),
        ("add search to pets", "Add a list operation to pets"),
        ("Create a coupon resource with fields code:string", "Add a coupon resource with fields code:string"),
        ("add coupon with fields code:money", "add coupon with fields code:number"),
        ("add coupon with fields code:strng", "add coupon with fields code:string"),
        ("add coupon with fields code", "add coupon with fields code:string"),
        ("add a tags field", "Add a tags field to SCHEMA"),
        ("add an update operation", "Add an update operation to RESOURCE"),
    ],
)
def test_requests_outside_the_grammar_are_refused_with_the_closest_reading(request_text: str, closest: str) -> None:
    with pytest.raises(InputError) as info:
        parse_request(request_text)
    line = info.value.one_line()
    assert f"did you mean {closest!r}" in line and GRAMMAR in line and "\n" not in line
    assert info.value.context["closest"] == closest


def test_the_seeds_words_are_refused_and_nothing_is_invented() -> None:
    with pytest.raises(InputError) as info:
        parse_request("Add discount code support to the checkout service")
    line = info.value.one_line()
    assert "not understood" in line and "names its fields" in line and "no 'to ... service' needed" in line


def test_the_demo_request_is_unchanged() -> None:
    request = (Path(CHECKOUT_SPEC).parent / "requests.txt").read_text().strip()
    new = evolve(load_spec(CHECKOUT_SPEC), parse_request(request))
    assert new["components"]["schemas"]["DiscountCode"]["required"] == ["code", "percent"]
    assert "/discount-codes/{id}" in new["paths"]


def test_the_checkout_service_serves_a_new_field_and_a_new_operation(tmp_path: Path) -> None:
    doc = load_spec(CHECKOUT_SPEC)
    for request in ("Add a tags field to orders", "Add a delete operation to orders"):
        doc = evolve(doc, parse_request(request))
    generate_service(doc, tmp_path)
    order = {"cartId": 1, "paymentMethod": "card", "tags": "gift, urgent"}
    answer = ask(
        tmp_path,
        [
            {"method": "POST", "path": "/orders", "json": order},
            {"method": "POST", "path": "/orders", "json": {**order, "tags": 5}},
            {"method": "GET", "path": "/orders/1"},
            {"method": "DELETE", "path": "/orders/1"},
            {"method": "GET", "path": "/orders/1"},
            {"method": "DELETE", "path": "/orders/1"},
        ],
    )
    assert answer["ok"], answer.get("error")
    statuses = [a["status"] for a in answer["answers"]]
    assert statuses == [201, 422, 200, 204, 404, 404], answer["answers"]
    assert answer["answers"][2]["json"]["tags"] == "gift, urgent"


def test_a_field_goes_to_a_schema_kept_in_another_file(tmp_path: Path) -> None:
    doc = copy.deepcopy(SHOP)
    (tmp_path / "common.yaml").write_text(yaml.safe_dump({"Order": doc["components"]["schemas"]["Order"]}))
    doc["components"]["schemas"]["Order"] = {"$ref": "common.yaml#/Order"}
    (tmp_path / "shop.yaml").write_text(yaml.safe_dump(doc))
    new = evolve(load_spec(tmp_path / "shop.yaml"), parse_request("Add a tags field to orders"))
    assert new["components"]["schemas"]["Order"] == {"$ref": "#/x-pilotage-files/common.yaml/Order"}
    assert new["x-pilotage-files"]["common.yaml"]["Order"]["properties"]["tags"] == {"type": "string"}


def test_the_closest_reading_fixes_the_field_not_the_name() -> None:
    with pytest.raises(InputError) as info:
        parse_request("add code with fields label:string, code")
    assert info.value.context["closest"] == "add code with fields label:string, code:string"
