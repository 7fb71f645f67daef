"""Evolve an OpenAPI document with a parsed change request: one new resource with CRUD operations.

:func:`evolve` adds, for a :class:`~pilotage.spec.grammar.ParsedRequest` such as ``DiscountCode``:

* ``components.schemas.DiscountCode``: an object with ``id`` (integer, int64, readOnly: the server assigns
  it) and the requested fields; the fields not marked optional are ``required``;
* ``GET /discount-codes`` (``listDiscountCodes``, 200 array) and ``POST /discount-codes``
  (``createDiscountCode``, 201, 422);
* ``GET``/``PUT``/``DELETE /discount-codes/{id}`` (``getDiscountCode`` 200, ``updateDiscountCode`` 200,
  ``deleteDiscountCode`` 204; each 404 for an unknown id and 422 for invalid input).

The input document is not modified; the result is validated with ``openapi-spec-validator``.
"""

from __future__ import annotations

import copy
from typing import Any

from pilotage.errors import InputError
from pilotage.spec.grammar import FIELD_TYPES, ParsedRequest, pluralize
from pilotage.spec.load import validate_spec
from pilotage.spec.openapi import iter_operations, operation_ids

__all__ = ["evolve", "operations"]


def operations(doc: dict[str, Any]) -> list[str]:
    """Return the operations of ``doc`` as ``"METHOD /path"`` strings.

    In :func:`~pilotage.spec.openapi.iter_operations` order: paths as the document lists them, methods in the
    specification's order.
    """
    return [op.label for op in iter_operations(doc)]


def _resource_schema(req: ParsedRequest) -> dict[str, Any]:
    properties: dict[str, Any] = {"id": {"type": "integer", "format": "int64", "readOnly": True, "example": 1}}
    for name, type_ in req.fields.items():
        properties[name] = dict(FIELD_TYPES[type_])
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if req.required:
        schema["required"] = list(req.required)
    return schema


def _crud_paths(req: ParsedRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    ref = {"$ref": f"#/components/schemas/{req.resource}"}
    plural_name = "".join(w[:1].upper() + w[1:] for w in [*req.words[:-1], pluralize(req.words[-1])])
    label = " ".join(req.words)
    body = {"required": True, "content": {"application/json": {"schema": ref}}}
    invalid = {"description": "Validation error: the input does not match the schema"}
    missing = {"description": f"No {label} with this id"}
    ok = {"content": {"application/json": {"schema": ref}}}
    id_param = {
        "name": "id",
        "in": "path",
        "required": True,
        "description": f"Id of the {label}",
        "schema": {"type": "integer", "format": "int64"},
    }
    tags = [req.slug]
    collection = {
        "get": {
            "tags": tags,
            "summary": f"List {pluralize(req.words[-1])}",
            "operationId": f"list{plural_name}",
            "responses": {
                "200": {
                    "description": f"Every {label}",
                    "content": {"application/json": {"schema": {"type": "array", "items": ref}}},
                }
            },
        },
        "post": {
            "tags": tags,
            "summary": f"Create a {label}",
            "operationId": f"create{req.resource}",
            "requestBody": body,
            "responses": {"201": {"description": f"The created {label}", **ok}, "422": invalid},
        },
    }
    item = {
        "get": {
            "tags": tags,
            "summary": f"Get a {label}",
            "operationId": f"get{req.resource}",
            "parameters": [id_param],
            "responses": {"200": {"description": f"The {label}", **ok}, "404": missing, "422": invalid},
        },
        "put": {
            "tags": tags,
            "summary": f"Replace a {label}",
            "operationId": f"update{req.resource}",
            "parameters": [id_param],
            "requestBody": body,
            "responses": {"200": {"description": f"The updated {label}", **ok}, "404": missing, "422": invalid},
        },
        "delete": {
            "tags": tags,
            "summary": f"Delete a {label}",
            "operationId": f"delete{req.resource}",
            "parameters": [id_param],
            "responses": {"204": {"description": "Deleted"}, "404": missing, "422": invalid},
        },
    }
    return collection, item


def evolve(doc: dict[str, Any], req: ParsedRequest, *, path: str = "<spec>") -> dict[str, Any]:
    """Return a copy of ``doc`` with the resource of ``req`` and its five CRUD operations added.

    Args:
        doc: a valid OpenAPI 3.0/3.1 document (not modified).
        req: the parsed change request.
        path: the spec file name, for error messages.

    Returns:
        The new, validated document.

    Raises:
        InputError: the schema name, a path or an operationId already exists in ``doc``, or the result does not
            validate.
    """
    new = copy.deepcopy(doc)
    schemas = new.setdefault("components", {}).setdefault("schemas", {})
    paths = new.setdefault("paths", {})
    if req.resource in schemas:
        raise InputError(
            f"spec file {path} already has a schema {req.resource!r}",
            hint="ask for a resource the spec does not define yet",
            path=path,
        )
    for candidate in (req.collection_path, req.item_path):
        if candidate in paths:
            raise InputError(
                f"spec file {path} already has the path {candidate}",
                hint="ask for a resource the spec does not define yet",
                path=path,
            )
    collection, item = _crud_paths(req)
    taken = set(operation_ids(doc)) & {op["operationId"] for op in [*collection.values(), *item.values()]}
    if taken:
        raise InputError(
            f"spec file {path} already uses the operationId {sorted(taken)[0]!r}",
            hint="ask for a resource with another name",
            path=path,
        )
    schemas[req.resource] = _resource_schema(req)
    paths[req.collection_path] = collection
    paths[req.item_path] = item
    tags = new.get("tags")
    if isinstance(tags, list) and not any(isinstance(t, dict) and t.get("name") == req.slug for t in tags):
        tags.append({"name": req.slug, "description": f"Operations on {' '.join(req.words)} resources"})
    validate_spec(new, path=f"{path} (evolved)")
    return new
