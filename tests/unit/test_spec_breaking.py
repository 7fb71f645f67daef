"""Breaking changes per operation (spec/diff.py, issue #19): each class with oasdiff's id, and what is compatible."""

from __future__ import annotations

import copy
from typing import Any

from pilotage.spec.diff import diff_specs
from pilotage.spec.load import validate_spec

PAYMENT = {
    "type": "object",
    "required": ["id", "amount", "currency"],
    "properties": {
        "id": {"type": "integer"},
        "amount": {"type": "integer"},
        "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "lines": {"type": "array", "items": {"$ref": "#/components/schemas/Line"}},
    },
}
DOC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "payments", "version": "1"},
    "paths": {
        "/payments": {
            "post": {
                "operationId": "createPayment",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PaymentIn"}}},
                },
                "responses": {"201": {"description": "created", "content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/Payment"}}}}},
            },
        },
        "/payments/{payment_id}": {
            "parameters": [{"name": "payment_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "get": {
                "operationId": "getPayment",
                "parameters": [
                    {"name": "view", "in": "query", "schema": {"type": "string", "enum": ["short", "full"]}}
                ],
                "responses": {
                    "200": {"description": "ok", "content": {"application/json": {"schema": {
                        "$ref": "#/components/schemas/Payment"}}}},
                    "404": {"description": "none"},
                },
            },
            "delete": {"operationId": "cancelPayment", "responses": {"204": {"description": "cancelled"}}},
        },
    },
    "components": {
        "schemas": {
            "Payment": PAYMENT,
            "Line": {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"},
                                                                            "qty": {"type": "integer"}}},
            "PaymentIn": {
                "type": "object",
                "required": ["amount"],
                "properties": {"amount": {"type": "integer"}, "currency": {"type": "string",
                                                                           "enum": ["EUR", "USD"]},
                               "reference": {"type": "string"}},
            },
        }
    },
}  # fmt: skip


def changes(new: dict[str, Any]) -> list[tuple[str, str, str]]:
    validate_spec(new)
    return [(c.rule, c.operation, c.detail) for c in diff_specs(DOC, new).changes]


def edited() -> dict[str, Any]:
    return copy.deepcopy(DOC)


def test_the_same_document_and_compatible_changes_break_nothing() -> None:
    assert changes(edited()) == []
    new = edited()
    schemas = new["components"]["schemas"]
    schemas["Payment"]["properties"]["fee"] = {"type": "integer"}  # a new response property
    schemas["PaymentIn"]["properties"]["memo"] = {"type": "string"}  # a new optional request property
    schemas["PaymentIn"]["properties"]["currency"]["enum"].append("GBP")  # a request enum widened
    schemas["PaymentIn"]["properties"]["amount"] = {"type": "number"}  # a request type widened (integer ⊂ number)
    schemas["Payment"]["properties"]["note"] = {"type": "string"}  # a response type narrowed (no more null)
    new["paths"]["/refunds"] = {"post": {"operationId": "refund", "responses": {"201": {"description": "ok"}}}}
    assert changes(new) == []  # (the document lines still flag component type changes: they know no direction)


def test_a_removed_operation_is_named_with_its_operation_id() -> None:
    new = edited()
    del new["paths"]["/payments/{payment_id}"]["delete"]
    [change] = diff_specs(DOC, new).changes
    assert (change.rule, change.operation, change.operation_id, change.detail) == (
        "api-removed-without-deprecation",
        "DELETE /payments/{payment_id}",
        "cancelPayment",
        "operation removed",
    )


def test_response_properties_removed_or_optional_and_types_changed_break_every_operation_returning_them() -> None:
    new = edited()
    props = new["components"]["schemas"]["Payment"]["properties"]
    del props["amount"]
    new["components"]["schemas"]["Payment"]["required"] = ["id"]  # currency becomes optional
    props["id"] = {"type": "string"}
    del new["components"]["schemas"]["Line"]["properties"]["qty"]  # nested in an array, through a $ref
    found = changes(new)
    for op, status in (("POST /payments", "201"), ("GET /payments/{payment_id}", "200")):
        assert ("response-required-property-removed", op, f"response {status} property 'amount' removed") in found
        assert (
            "response-property-became-optional",
            op,
            f"response {status} property 'currency' became optional",
        ) in found
        assert (
            "response-property-type-changed",
            op,
            f"response {status} property 'id' type changed from integer to string",
        ) in found
        assert (
            "response-optional-property-removed",
            op,
            f"response {status} property 'lines/items/qty' removed",
        ) in found
    assert len(found) == 8


def test_new_required_request_properties_and_parameters_narrowed_enums_and_changed_types() -> None:
    new = edited()
    body = new["components"]["schemas"]["PaymentIn"]
    body["required"] = ["amount", "reference", "customer"]
    body["properties"]["customer"] = {"type": "string"}
    body["properties"]["currency"]["enum"] = ["EUR"]
    body["properties"]["amount"] = {"type": "string"}
    get = new["paths"]["/payments/{payment_id}"]["get"]
    get["parameters"] = [
        {"name": "view", "in": "query", "required": True, "schema": {"type": "string", "enum": ["full"]}},
        {"name": "X-Tenant", "in": "header", "required": True, "schema": {"type": "string"}},
    ]
    found = sorted(changes(new), key=lambda c: (c[1], c[2]))
    get, post, gone = "GET /payments/{payment_id}", "POST /payments", "no longer accepts enum value(s)"
    assert found == [
        ("new-required-request-parameter", get, "new required header parameter 'X-Tenant'"),
        ("request-parameter-became-required", get, "new required query parameter 'view'"),
        ("request-parameter-enum-value-removed", get, f"query parameter 'view' {gone} \"short\""),
        ("new-required-request-property", post, "new required request property 'customer'"),
        ("request-property-type-changed", post, "request property 'amount' type changed from integer to string"),
        ("request-property-enum-value-removed", post, f"request property 'currency' {gone} \"USD\""),
        ("request-property-became-required", post, "request property 'reference' became required"),
    ]  # fmt: skip
    diff = diff_specs(DOC, new)
    assert diff.classification == "breaking"
    assert (
        "operation POST /payments: new required request property 'customer' (new-required-request-property)"
        in diff.breaking
    )


def test_a_removed_success_status_breaks_but_a_removed_error_status_does_not() -> None:
    new = edited()
    responses = new["paths"]["/payments/{payment_id}"]["get"]["responses"]
    del responses["404"]
    assert changes(new) == []
    responses["202"] = responses.pop("200")
    assert changes(new) == [
        ("response-success-status-removed", "GET /payments/{payment_id}", "success response 200 removed")
    ]


def test_a_recursive_schema_is_compared_without_looping() -> None:
    doc = edited()
    line = doc["components"]["schemas"]["Line"]
    line["properties"]["children"] = {"type": "array", "items": {"$ref": "#/components/schemas/Line"}}
    new = copy.deepcopy(doc)
    del new["components"]["schemas"]["Line"]["properties"]["qty"]
    validate_spec(new)
    found = [(c.operation, c.detail) for c in diff_specs(doc, new).changes]
    assert ("GET /payments/{payment_id}", "response 200 property 'lines/items/qty' removed") in found
    assert len(found) == 2  # once per operation returning a Payment, not once per level
