"""load_spec / validate_spec on real files: valid 3.0 and 3.1, and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pilotage.errors import InputError
from pilotage.spec.load import dump_spec, json_path, load_spec, spec_digest, spec_key
from tests.fixtures import CHECKOUT_SPEC

PETSTORE = Path("/work/shared/specs/petstore3.yaml")
CHECKOUT = CHECKOUT_SPEC

MINIMAL_31 = {
    "openapi": "3.1.0",
    "info": {"title": "t", "version": "1"},
    "paths": {"/x": {"get": {"responses": {"200": {"description": "ok"}}}}},
}


def test_loads_petstore_30() -> None:
    doc = load_spec(PETSTORE)
    assert doc["openapi"] == "3.0.4"
    assert "/pet/{petId}" in doc["paths"]


def test_loads_checkout_example() -> None:
    doc = load_spec(CHECKOUT)
    assert doc["openapi"] == "3.0.3"
    assert len([m for item in doc["paths"].values() for m in item if m != "parameters"]) == 10


def test_loads_json_31(tmp_path: Path) -> None:
    file = tmp_path / "api.json"
    file.write_text(json.dumps(MINIMAL_31))
    assert load_spec(file)["openapi"] == "3.1.0"


def test_integer_response_codes_become_strings(tmp_path: Path) -> None:
    file = tmp_path / "api.yaml"
    file.write_text(
        "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /x:\n    get:\n      responses:\n"
        "        200: {description: ok}\n"
    )
    assert list(load_spec(file)["paths"]["/x"]["get"]["responses"]) == ["200"]


def test_missing_file_names_it_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_spec(tmp_path / "nope.yaml")
    line = info.value.one_line()
    assert "nope.yaml not found" in line and "--spec" in line


def test_invalid_yaml_gives_line_and_column(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text("openapi: 3.0.3\ninfo: [unclosed\n")
    with pytest.raises(InputError) as info:
        load_spec(file)
    assert "bad.yaml" in str(info.value) and "line 3" in str(info.value) and "column" in str(info.value)


def test_yaml_that_is_not_openapi(tmp_path: Path) -> None:
    file = tmp_path / "compose.yaml"
    file.write_text("services:\n  web:\n    image: nginx\n")
    with pytest.raises(InputError, match=r"compose.yaml is not an OpenAPI 3 document \(openapi: missing\)"):
        load_spec(file)


def test_swagger_2_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "old.yaml"
    file.write_text("swagger: '2.0'\ninfo: {title: t, version: '1'}\npaths: {}\n")
    with pytest.raises(InputError, match="is Swagger 2.0, not OpenAPI 3"):
        load_spec(file)


def test_validation_error_names_the_json_path(tmp_path: Path) -> None:
    broken = {**MINIMAL_31, "openapi": "3.0.3", "paths": {"/x": {"get": {"responses": {"200": {}}}}}}
    file = tmp_path / "broken.yaml"
    dump_spec(broken, file)
    with pytest.raises(InputError) as info:
        load_spec(file)
    assert "broken.yaml" in str(info.value)
    assert info.value.json_path.startswith("$.paths['/x'].get.responses")  # type: ignore[attr-defined]


def test_error_is_one_line(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text("openapi: 3.0.3\ninfo: [unclosed\n")
    with pytest.raises(InputError) as info:
        load_spec(file)
    assert "\n" not in info.value.one_line()


def test_dump_round_trips_and_digest_is_stable(tmp_path: Path) -> None:
    doc = load_spec(PETSTORE)
    again = load_spec(dump_spec(doc, tmp_path / "copy.yaml"))
    assert again == doc
    assert spec_digest(again) == spec_digest(doc)
    assert spec_key("petstore", doc) == "petstore@" + spec_digest(doc)[:12]


def test_json_path_quotes_non_identifiers() -> None:
    assert json_path(["paths", "/pets", "get", 0]) == "$.paths['/pets'].get[0]"


def test_folder_and_external_refs_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a folder"):
        load_spec(tmp_path)
    ext = tmp_path / "ext.yaml"
    ext.write_text(
        "openapi: 3.0.3\ninfo: {title: x, version: '1'}\npaths:\n  /w:\n    get:\n      responses:\n"
        "        '200':\n          description: ok\n          content:\n            application/json:\n"
        "              schema: {$ref: './schemas.yaml#/Widget'}\n"
    )
    with pytest.raises(InputError, match=r"schemas\.yaml not found.*\$ref '\./schemas\.yaml#/Widget' at .*schema"):
        load_spec(ext)  # relative files are read (spec.refs.bundle_refs); a missing one is named with its $ref


def test_a_json_document_is_parsed_as_json_and_flow_yaml_still_parses() -> None:
    # issue 18 (item 9): a JSON document went through PyYAML's pure-Python parser (minutes for 15 MB; the C JSON
    # parser takes about a second). JSON's "\\/" escape is not YAML 1.1's: it parses only on the JSON path.
    from pilotage.spec.load import parse_document

    assert parse_document('{"url": "http:\\/\\/example.com", "n": [1, 2.5]}') == {
        "url": "http://example.com",
        "n": [1, 2.5],
    }
    assert parse_document("{a: 1, b: [x, y]}") == {"a": 1, "b": ["x", "y"]}  # flow YAML is not JSON
    with pytest.raises(InputError, match="holds a number too long"):
        parse_document('{"n": ' + "9" * 200 + "}")


def test_a_dangling_ref_in_a_large_document_is_a_short_line(tmp_path: Path) -> None:
    # the validator's message quoted the whole document: 1.5 MB of error line for one missing schema
    schemas = {f"S{i}": {"type": "object", "description": "x" * 200} for i in range(2000)}
    responses = {
        "200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/A"}}}}
    }
    paths = {"/x": {"get": {"responses": responses}}}
    doc = {
        "openapi": "3.0.3",
        "info": {"title": "big", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    spec = tmp_path / "api.json"
    spec.write_text(json.dumps(doc))
    assert spec.stat().st_size > 400_000
    with pytest.raises(InputError) as info:
        load_spec(spec)
    line = info.value.one_line()
    assert "api.json" in line and len(line) < 1000 and "\n" not in line
