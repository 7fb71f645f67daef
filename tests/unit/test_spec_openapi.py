"""spec/openapi.py: references (local, escaped, other files, cycles, limits, refusals), operations, servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotage.codegen.examples import example
from pilotage.errors import InputError
from pilotage.perf.locustfile import load_targets
from pilotage.spec.load import load_spec
from pilotage.spec.openapi import base_path, iter_operations, operation_ids, parameterless_get_paths
from pilotage.spec.refs import FILES_KEY, MAX_REF_HOPS, bundle_refs, ref_name, resolve, resolve_dict

SPECS = Path("/work/shared/specs")


def _doc(**parts: Any) -> dict[str, Any]:
    return {"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {}, **parts}


def _write(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_local_refs_follow_chains_and_unescape_pointers() -> None:
    doc = _doc(
        components={
            "schemas": {
                "Pet": {"type": "object", "properties": {"name": {"type": "string"}}},
                "Alias": {"$ref": "#/components/schemas/Pet"},
                "a/b~c": {"type": "integer"},
                "with space": {"type": "boolean"},
            }
        }
    )
    assert resolve(doc, {"$ref": "#/components/schemas/Alias"})["properties"] == {"name": {"type": "string"}}
    assert resolve(doc, {"$ref": "#/components/schemas/a~1b~0c"}) == {"type": "integer"}
    assert resolve(doc, {"$ref": "#/components/schemas/with%20space"}) == {"type": "boolean"}
    assert resolve(doc, {"type": "string"}) == {"type": "string"}  # not a reference: itself
    assert resolve(doc, {"$ref": "#/info/title"}) == "t"
    assert resolve_dict(doc, {"$ref": "#/info/title"}) == {}
    assert ref_name({"$ref": "#/components/schemas/a~1b~0c"}) == "a/b~c"
    assert ref_name({"$ref": "#/components/responses/NotFound"}) is None
    with pytest.raises(InputError, match=r"'#/components/schemas/Nope' at \$\.x does not resolve: no 'Nope'"):
        resolve(doc, {"$ref": "#/components/schemas/Nope"}, where="$.x")


def test_cycles_are_detected_and_recursive_schemas_walk_lazily() -> None:
    doc = _doc(
        components={
            "schemas": {
                "Node": {"type": "object", "properties": {"child": {"$ref": "#/components/schemas/Node"}}},
                "A": {"$ref": "#/components/schemas/B"},
                "B": {"$ref": "#/components/schemas/A"},
                "Self": {"$ref": "#/components/schemas/Self"},
            }
        }
    )
    node = resolve(doc, {"$ref": "#/components/schemas/Node"})
    for _ in range(5):  # a recursive schema is not a chain: each level resolves to Node again
        node = resolve(doc, node["properties"]["child"])
        assert node["type"] == "object"
    with pytest.raises(InputError, match=r"is a cycle of references \(#/components/schemas/A -> .*B -> .*A\)"):
        resolve(doc, {"$ref": "#/components/schemas/A"})
    with pytest.raises(InputError, match="cycle"):
        resolve(doc, {"$ref": "#/components/schemas/Self"})


def test_a_chain_longer_than_the_limit_is_refused() -> None:
    def chain(length: int) -> dict[str, Any]:
        schemas: dict[str, Any] = {f"S{i}": {"$ref": f"#/components/schemas/S{i + 1}"} for i in range(length)}
        schemas[f"S{length}"] = {"type": "string"}
        return _doc(components={"schemas": schemas})

    assert resolve(chain(MAX_REF_HOPS - 1), {"$ref": "#/components/schemas/S0"}) == {"type": "string"}
    with pytest.raises(InputError, match=f"chains more than {MAX_REF_HOPS} references"):
        resolve(chain(MAX_REF_HOPS + 1), {"$ref": "#/components/schemas/S0"})


def test_relative_files_are_embedded_and_resolve_both_ways(tmp_path: Path) -> None:
    root = _write(
        tmp_path / "api" / "openapi.yaml",
        _doc(
            paths={"/pets": {"$ref": "paths/pets.yaml"}},
            components={"schemas": {"Pet": {"type": "object", "properties": {"tag": {"$ref": "common.yaml#/Tag"}}}}},
        ),
    )
    _write(
        tmp_path / "api" / "paths" / "pets.yaml",
        {
            "get": {
                "parameters": [{"$ref": "../common.yaml#/Limit"}],
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {
                            "application/json": {"schema": {"$ref": "../openapi.yaml#/components/schemas/Pet"}}
                        },
                    }
                },
            }
        },
    )
    (tmp_path / "api" / "common.yaml").write_text(
        "Tag: {type: string, example: cat}\nLimit: {name: limit, in: query, schema: {type: integer}}\n"
    )
    doc = load_spec(root)  # validated after bundling
    assert sorted(doc[FILES_KEY]) == ["common.yaml", "paths/pets.yaml"]
    (op,) = list(iter_operations(doc))
    assert (op.method, op.path, [p["name"] for p in op.parameters]) == ("get", "/pets", ["limit"])
    pet = resolve(doc, op.responses["200"]["content"]["application/json"]["schema"])
    assert resolve(doc, pet["properties"]["tag"]) == {"type": "string", "example": "cat"}
    assert ref_name(op.responses["200"]["content"]["application/json"]["schema"]) == "Pet"
    assert example(doc, pet) == {"tag": "cat"}  # codegen's examples resolve through spec.openapi
    assert [t.operation for t in load_targets(doc)] == ["GET /pets"]  # so does the load test


def test_cycles_across_files_stay_references(tmp_path: Path) -> None:
    root = _write(
        tmp_path / "openapi.yaml",
        _doc(components={"schemas": {"A": {"type": "object", "properties": {"b": {"$ref": "b.yaml#/B"}}}}}),
    )
    _write(
        tmp_path / "b.yaml",
        {
            "B": {
                "type": "object",
                "properties": {"a": {"$ref": "openapi.yaml#/components/schemas/A"}, "me": {"$ref": "#/B"}},
            }
        },
    )
    doc = bundle_refs(yaml.safe_load(root.read_text()), root)
    a = resolve(doc, {"$ref": "#/components/schemas/A"})
    b = resolve(doc, a["properties"]["b"])
    assert resolve(doc, b["properties"]["a"]) is a  # A -> B -> A: the same node again, no copy, no loop
    assert resolve(doc, b["properties"]["me"]) is b
    assert list(doc[FILES_KEY]) == ["b.yaml"]


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        ("../../etc/passwd", "leaves the folder"),
        ("../outside.yaml#/X", "leaves the folder"),
        ("/etc/passwd", "is an absolute path"),
        ("https://example.com/schemas.yaml#/X", "is a URL"),
        ("//example.com/x.yaml", "is a URL"),
        ("file:///etc/passwd", "is a URL"),
        ("common.yaml#anchor", "names an anchor"),
    ],
)
def test_refs_outside_the_folder_are_refused(tmp_path: Path, ref: str, why: str) -> None:
    (tmp_path / "outside.yaml").write_text("X: {type: string}\n")
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "common.yaml").write_text("X: {type: string}\n")
    root = _write(tmp_path / "api" / "openapi.yaml", _doc(components={"schemas": {"S": {"$ref": ref}}}))
    with pytest.raises(InputError, match=rf"\$ref '{ref}' at .*\$\.components\.schemas\.S {why}") as info:
        load_spec(root)
    assert "passwd" not in str(info.value.__cause__ or "")


def test_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.yaml").write_text("X: {type: string}\n")
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "link.yaml").symlink_to(tmp_path / "secret.yaml")
    root = _write(tmp_path / "api" / "openapi.yaml", _doc(components={"schemas": {"S": {"$ref": "link.yaml#/X"}}}))
    with pytest.raises(InputError, match="leaves the folder"):
        load_spec(root)


def test_parameters_merge_with_the_operation_overriding_by_name_and_in() -> None:
    doc = _doc(
        paths={
            "/items": {
                "parameters": [
                    {"$ref": "#/components/parameters/Limit"},
                    {"name": "q", "in": "query", "schema": {"type": "string"}},
                ],
                "get": {
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "maximum": 9},
                        },
                        {"name": "limit", "in": "header", "schema": {"type": "string"}},
                    ],
                    "requestBody": {"$ref": "#/components/requestBodies/Body"},
                    "responses": {200: {"$ref": "#/components/responses/Ok"}},
                },
                "post": {"responses": {"201": {"description": "made"}}},
            }
        },
        components={
            "parameters": {"Limit": {"name": "limit", "in": "query", "required": True, "schema": {"type": "integer"}}},
            "requestBodies": {"Body": {"content": {"application/json": {"schema": {"type": "object"}}}}},
            "responses": {"Ok": {"description": "ok"}},
        },
    )
    get, post = iter_operations(doc)
    assert [(p["name"], p["in"], p.get("required")) for p in get.parameters] == [
        ("limit", "query", False),  # the operation's replaces the path item's in place
        ("q", "query", None),
        ("limit", "header", None),
    ]
    assert get.parameters[0]["schema"]["maximum"] == 9
    assert get.request_body == {"content": {"application/json": {"schema": {"type": "object"}}}}
    assert get.responses == {"200": {"description": "ok"}}
    assert (post.label, post.request_body, [p["name"] for p in post.parameters]) == (
        "POST /items",
        None,
        ["limit", "q"],
    )
    assert parameterless_get_paths(doc) == ["/items"]  # the override made limit optional


def test_parameterless_get_paths_on_a_real_shaped_document() -> None:
    doc = _doc(
        paths={
            "/zoo": {"get": {"responses": {}}},
            "/pets": {"get": {"parameters": [{"name": "tag", "in": "query"}], "responses": {}}},
            "/pets/{id}": {"get": {"responses": {}}},
            "/search": {"get": {"parameters": [{"name": "q", "in": "query", "required": True}], "responses": {}}},
            "/scoped": {"parameters": [{"name": "tenant", "in": "header", "required": True}], "get": {"responses": {}}},
            "/odd": {"get": {"parameters": {"not": "a list"}, "responses": {}}},
            "/write": {"post": {"responses": {}}},
            "/alias": {"$ref": "#/paths/~1zoo"},
        }
    )
    assert parameterless_get_paths(doc) == ["/alias", "/pets", "/zoo"]
    with pytest.raises(InputError, match="no paths object"):
        parameterless_get_paths({"openapi": "3.0.3"})
    assert operation_ids(_doc(paths={"/a": {"get": {"operationId": "b"}, "put": {"operationId": "a"}}})) == ["a", "b"]


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        (
            [{"url": "https://{host}/v{major}", "variables": {"host": {"default": "x.io"}, "major": {"default": "1"}}}],
            "/v1",
        ),
        ([{"url": "https://api.example.com/api/"}], "/api"),
        ([{"url": "/"}], ""),
        ([{"url": "https://api.example.com"}], ""),
        ([{"url": "{base}", "variables": {"base": {"default": "/root/v2"}}}], "/root/v2"),
        ([{"url": "v3"}], "/v3"),
        ([], ""),
        (None, ""),
    ],
)
def test_base_path_substitutes_server_variable_defaults(servers: Any, expected: str) -> None:
    doc = _doc() if servers is None else _doc(servers=servers)
    assert base_path(doc) == expected


def test_base_path_names_a_variable_without_default() -> None:
    with pytest.raises(InputError, match="uses the variable 'major', which has no default"):
        base_path(_doc(servers=[{"url": "https://x.io/v{major}", "variables": {}}]))


def test_third_party_documents_walk_without_errors() -> None:
    found = sorted(SPECS.glob("oai-v3.*.yaml")) if SPECS.is_dir() else []
    if not found:
        pytest.skip(f"no third-party specs in {SPECS}")
    for spec in found:
        doc = load_spec(spec)
        for op in iter_operations(doc):
            assert all(isinstance(p["name"], str) for p in op.parameters), spec
            assert all(isinstance(r, dict) for r in op.responses.values()), spec
    assert base_path(load_spec(SPECS / "oai-v3.0-uspto.yaml")) == "/ds-api"  # {scheme}://developer.uspto.gov/ds-api
