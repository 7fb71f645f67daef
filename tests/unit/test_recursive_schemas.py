"""Recursive schemas and ``$ref``s inside extensions (issue #18, item 6).

Cycles through ``properties``, ``items``, ``additionalProperties`` and unions are trees: each step goes one level
into the value, so validation ends and an example can be bounded. Cycles through ``allOf``/``oneOf``/``anyOf``/
``$ref`` alone apply a schema to the same value for ever (openapi-spec-validator overflowed the stack on them), and
a required-property or ``minItems`` chain that comes back to its schema admits no finite value: both are refused
with an InputError naming the cycle. ``$ref`` values inside ``x-`` extensions are tool data: not bundled, followed or
validated. Each case is a small document written here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotage.codegen.examples import FORCED_DEPTH, example, schema_errors
from pilotage.codegen.generator import generate_service
from pilotage.errors import InputError
from pilotage.spec.load import load_spec, validate_spec
from pilotage.spec.refs import UNFOLLOWED_REF, references, schema_cycle, unfollowed_extension_refs
from pilotage.testing.schemathesis_runner import load_operations
from tests.fixtures.service_importer import ask

NODE = "#/components/schemas/Node"


def document(schemas: dict[str, Any], version: str = "3.1.0", body: str = "Node") -> dict[str, Any]:
    """One resource ``/nodes`` (create, list, get) whose body and answers are ``#/components/schemas/<body>``."""
    ref = {"$ref": f"#/components/schemas/{body}"}
    answer = {"description": "the node", "content": {"application/json": {"schema": ref}}}
    key = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
    return {
        "openapi": version,
        "info": {"title": "Trees", "version": "1.0.0"},
        "paths": {
            "/nodes": {
                "post": {
                    "operationId": "createNode",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": ref}}},
                    "responses": {"201": answer, "422": {"description": "invalid"}},
                },
                "get": {
                    "operationId": "listNodes",
                    "responses": {
                        "200": {
                            "description": "all",
                            "content": {"application/json": {"schema": {"type": "array", "items": ref}}},
                        }
                    },
                },
            },
            "/nodes/{id}": {
                "get": {
                    "operationId": "getNode",
                    "parameters": [key],
                    "responses": {"200": answer, "404": {"description": "unknown"}},
                }
            },
        },
        "components": {"schemas": schemas},
    }


#: Recursive schemas that have finite values (name → components.schemas).
TREES: dict[str, dict[str, Any]] = {
    "optional property": {
        "Node": {"type": "object", "properties": {"name": {"type": "string"}, "parent": {"$ref": NODE}}},
    },
    "required array of itself": {
        "Node": {
            "type": "object",
            "required": ["name", "children"],
            "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": NODE}}},
        },
    },
    "additionalProperties": {
        "Node": {"type": "object", "properties": {"id": {"type": "integer"}}, "additionalProperties": {"$ref": NODE}},
    },
    "oneOf whose first branch recurses": {
        "Node": {"oneOf": [{"$ref": "#/components/schemas/Sum"}, {"$ref": "#/components/schemas/Leaf"}]},
        "Sum": {
            "type": "object",
            "required": ["left", "right"],
            "properties": {"left": {"$ref": NODE}, "right": {"$ref": NODE}},
            "additionalProperties": False,
        },
        "Leaf": {
            "type": "object",
            "required": ["value"],
            "properties": {"value": {"type": "integer"}},
            "additionalProperties": False,
        },
    },
    "required nullable through anyOf (3.1)": {
        "Node": {
            "type": "object",
            "required": ["next"],
            "properties": {"next": {"anyOf": [{"$ref": NODE}, {"type": "null"}]}},
        },
    },
    "allOf over a base that recurses": {
        "Base": {"type": "object", "properties": {"parent": {"$ref": NODE}}},
        "Node": {
            "allOf": [
                {"$ref": "#/components/schemas/Base"},
                {"type": "object", "required": ["label"], "properties": {"label": {"type": "string"}}},
            ]
        },
    },
}

#: 3.0: a nullable object schema that requires a reference to itself: the example ends with null.
NULLABLE_30 = {
    "Node": {"type": "object", "nullable": True, "required": ["next"], "properties": {"next": {"$ref": NODE}}}
}


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize("case", list(TREES))
def test_examples_of_recursive_schemas_are_valid_and_bounded(case: str) -> None:
    doc = document(TREES[case])
    validate_spec(doc)
    value = example(doc, {"$ref": NODE})
    assert schema_errors(doc, {"$ref": NODE}, value) == []
    assert depth_of(value) <= 2 * (FORCED_DEPTH + 1) and len(json.dumps(value)) < 2_000, value


def test_nullable_30_recursion_ends_with_null() -> None:
    doc = document(NULLABLE_30, version="3.0.3")
    value = example(doc, {"$ref": NODE})
    assert value == {"next": None}
    assert schema_errors(doc, {"$ref": NODE}, value) == []


def test_a_recursive_branch_is_not_chosen_when_a_union_has_another() -> None:
    doc = document(TREES["oneOf whose first branch recurses"])
    # Sum first (it is not being expanded yet), then Leaf for both operands: the smallest tree
    assert example(doc, {"$ref": NODE}) == {"left": {"value": 1}, "right": {"value": 1}}


@pytest.mark.parametrize(
    ("schemas", "cycle"),
    [
        (
            {"Node": {"allOf": [{"$ref": "#/components/schemas/B"}]}, "B": {"allOf": [{"$ref": NODE}]}},
            "Node -> B -> Node",
        ),
        ({"Node": {"allOf": [{"$ref": NODE}, {"type": "object"}]}}, "Node -> Node"),
        (
            {
                "Node": {"oneOf": [{"$ref": "#/components/schemas/B"}, {"type": "integer"}]},
                "B": {"anyOf": [{"$ref": NODE}]},
            },
            "Node -> B -> Node",
        ),
        ({"Node": {"not": {"$ref": "#/components/schemas/B"}}, "B": {"$ref": NODE}}, "Node -> B -> Node"),
    ],
    ids=["allOf pair", "allOf self", "oneOf/anyOf", "not and a plain $ref"],
)
def test_a_schema_applied_to_itself_is_refused_naming_the_cycle(
    tmp_path: Path, schemas: dict[str, Any], cycle: str
) -> None:
    file = tmp_path / "openapi.yaml"
    file.write_text(yaml.safe_dump(document(schemas)))
    with pytest.raises(InputError) as info:
        load_spec(file)  # openapi-spec-validator overflowed the stack on each of these
    line = info.value.one_line()
    assert cycle in line and str(file) in line and "\n" not in line
    assert info.value.context["cycle"].startswith(cycle.split(" -> ")[0])
    with pytest.raises(InputError, match="apply to themselves"):
        generate_service(document(schemas), tmp_path / "service")


def test_trees_are_not_cycles() -> None:
    for schemas in TREES.values():
        assert schema_cycle(document(schemas)) is None


@pytest.mark.parametrize(
    ("schema", "cycle"),
    [
        ({"type": "object", "required": ["parent"], "properties": {"parent": {"$ref": NODE}}}, "Node -> Node"),
        ({"type": "array", "minItems": 1, "items": {"$ref": NODE}}, "Node -> Node"),
    ],
    ids=["required property", "minItems"],
)
def test_a_schema_without_a_finite_value_is_refused_naming_the_cycle(
    tmp_path: Path, schema: dict[str, Any], cycle: str
) -> None:
    doc = document({"Node": schema})
    validate_spec(doc)  # a valid document: only no value can ever satisfy Node
    with pytest.raises(InputError) as info:
        example(doc, {"$ref": NODE})
    assert f"schema 'Node' has no finite value: {cycle}" in info.value.one_line()
    with pytest.raises(InputError, match="has no finite value: Node -> Node"):
        generate_service(doc, tmp_path / "service")


def nested(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"name": "leaf", "children": []}
    for i in range(levels):
        node = {"name": f"level {i}", "children": [node]}
    return node


def test_the_generated_service_accepts_deep_trees_and_refuses_absurd_ones(tmp_path: Path) -> None:
    doc = document(TREES["required array of itself"])
    content = doc["paths"]["/nodes"]["post"]["requestBody"]["content"]
    content["application/xml"] = content["application/json"]
    generate_service(doc, tmp_path)
    json_type = {"content-type": "application/json"}
    too_deep = '{"name": "n", "children": [' * 3000 + '{"name": "leaf", "children": []}' + "]}" * 3000
    not_json_deep = "[" * 20_000 + "]" * 20_000
    deep_xml = "<Node><name>n</name><children>" * 3000 + "</children></Node>" * 3000
    answer = ask(
        tmp_path,
        [
            {"method": "POST", "path": "/nodes", "json": nested(3)},
            {"method": "POST", "path": "/nodes", "json": nested(40)},
            {"method": "POST", "path": "/nodes", "content": too_deep, "headers": json_type},
            {"method": "POST", "path": "/nodes", "json": {"name": "x", "children": [{"name": "y"}]}},
            {"method": "POST", "path": "/nodes", "content": not_json_deep, "headers": json_type},
            {"method": "GET", "path": "/nodes/2"},
            {"method": "POST", "path": "/nodes", "content": deep_xml, "headers": {"content-type": "application/xml"}},
        ],
    )
    assert answer["ok"], answer.get("error")
    statuses = [a["status"] for a in answer["answers"]]
    assert statuses == [201, 201, 422, 422, 422, 200, 422], answer["answers"]
    assert answer["answers"][1]["json"] == nested(40)  # as sent: the tree is stored, not an example
    assert answer["answers"][5]["json"] == nested(40)  # the second item created (Node has no key: ids 1, 2 ...)


def test_refs_inside_extensions_are_not_followed(tmp_path: Path) -> None:
    (tmp_path / "common.yaml").write_text(yaml.safe_dump({"Name": {"type": "string", "x-ref": {"$ref": "#/nope"}}}))
    doc = document({"Node": {"type": "object", "properties": {"name": {"$ref": "common.yaml#/Name"}}}})
    doc["x-tool"] = {"$ref": "https://example.com/tool.json"}  # a URL: refused if it were a reference
    doc["paths"]["/nodes"]["x-codegen"] = {"$ref": "../outside.yaml"}  # leaves the folder
    doc["paths"]["/nodes"]["post"]["x-sdk"] = {"$ref": "missing.yaml#/X"}  # no such file
    doc["components"]["schemas"]["Node"]["x-meta"] = {"$ref": "#/does/not/exist"}
    doc["components"]["schemas"]["x-Named"] = {"$ref": "common.yaml#/Name"}  # a schema *named* x-...: followed
    file = tmp_path / "openapi.yaml"
    file.write_text(yaml.safe_dump(doc))
    loaded = load_spec(file)
    found = sorted(item["$ref"] for item, _ in references(loaded))
    assert "#/x-pilotage-files/common.yaml/Name" in found
    assert loaded["components"]["schemas"]["x-Named"] == {"$ref": "#/x-pilotage-files/common.yaml/Name"}
    assert not any("nope" in ref or "example.com" in ref or "missing" in ref or "outside" in ref for ref in found)
    assert loaded["x-tool"] == {"$ref": "https://example.com/tool.json"}  # kept as the tool's data
    generate_service(loaded, tmp_path / "service")


def test_tools_get_the_document_with_extension_refs_unfollowed(tmp_path: Path) -> None:
    """schemathesis resolves every $ref it meets: the documents Pilotage hands to tools carry none in extensions."""
    doc = document(TREES["required array of itself"])
    doc["components"]["schemas"]["Node"]["x-codegen"] = {"$ref": "https://example.com/ignored.json"}
    doc["paths"]["/nodes"]["post"]["x-sdk"] = {"list": [{"$ref": "#/nowhere"}]}
    file = tmp_path / "openapi.json"
    file.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="example.com"):
        load_operations(file)  # the tool itself follows it
    tools = unfollowed_extension_refs(load_spec(file))
    assert tools["components"]["schemas"]["Node"]["x-codegen"] == {UNFOLLOWED_REF: "https://example.com/ignored.json"}
    assert tools["paths"]["/nodes"]["post"]["x-sdk"] == {"list": [{UNFOLLOWED_REF: "#/nowhere"}]}
    assert tools["components"]["schemas"]["Node"]["properties"]["children"]["items"] == {"$ref": NODE}
    file.write_text(json.dumps(tools))
    assert sorted(load_operations(file)) == ["GET /nodes", "GET /nodes/{id}", "POST /nodes"]
