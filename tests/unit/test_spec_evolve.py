"""evolve + diff_specs on real specs: the CRUD resource, refusals, and breaking-change classification."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from pilotage.errors import InputError
from pilotage.spec.diff import diff_specs
from pilotage.spec.evolve import evolve, operations
from pilotage.spec.grammar import parse_request
from pilotage.spec.load import load_spec, validate_spec

PETSTORE = Path("/work/shared/specs/petstore3.yaml")
REQUEST = "Add discount code support with fields code:string, percent:integer"


@pytest.fixture(scope="module")
def petstore() -> dict:
    return load_spec(PETSTORE)


def test_adds_schema_and_five_operations(petstore: dict) -> None:
    before = copy.deepcopy(petstore)
    new = evolve(petstore, parse_request(REQUEST))
    assert petstore == before, "the input document must not change"
    schema = new["components"]["schemas"]["DiscountCode"]
    assert schema["properties"]["id"] == {"type": "integer", "format": "int64", "readOnly": True, "example": 1}
    assert schema["properties"]["percent"]["type"] == "integer"
    assert schema["required"] == ["code", "percent"]
    added = [op for op in operations(new) if op not in operations(petstore)]
    assert added == [
        "GET /discount-codes",
        "POST /discount-codes",
        "GET /discount-codes/{id}",
        "PUT /discount-codes/{id}",
        "DELETE /discount-codes/{id}",
    ]
    item = new["paths"]["/discount-codes/{id}"]
    assert item["get"]["operationId"] == "getDiscountCode"
    assert set(item["delete"]["responses"]) == {"204", "404", "422"}
    assert set(new["paths"]["/discount-codes"]["post"]["responses"]) == {"201", "422"}
    validate_spec(new)


def test_works_on_31(tmp_path: Path) -> None:
    doc = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}}
    new = evolve(doc, parse_request("add note with fields text:string"))
    assert "/notes/{id}" in new["paths"] and new["openapi"] == "3.1.0"


def test_refuses_existing_resource(petstore: dict) -> None:
    new = evolve(petstore, parse_request(REQUEST))
    with pytest.raises(InputError, match="already has the schema DiscountCode"):
        evolve(new, parse_request(REQUEST))


def test_refuses_existing_path(petstore: dict) -> None:
    doc = copy.deepcopy(petstore)
    doc["paths"]["/labels"] = {"get": {"responses": {"200": {"description": "ok"}}}}
    with pytest.raises(InputError, match="already has the path /labels"):
        evolve(doc, parse_request("add label support with fields text:string"))


def test_diff_of_an_addition_is_non_breaking(petstore: dict) -> None:
    new = evolve(petstore, parse_request(REQUEST))
    diff = diff_specs(petstore, new).to_dict()
    assert diff["classification"] == "non-breaking"
    assert diff["added"][0] == "GET /discount-codes" and len(diff["added"]) == 5
    assert diff["removed"] == [] and diff["breaking"] == []
    assert "schema DiscountCode added" in diff["non_breaking"]


def test_diff_detects_breaking_changes(petstore: dict) -> None:
    new = copy.deepcopy(petstore)
    del new["paths"]["/user/logout"]
    pet = new["components"]["schemas"]["Pet"]
    pet["properties"]["status"] = {"type": "integer"}
    del pet["properties"]["tags"]
    pet["required"].append("category")
    new["paths"]["/pet/findByStatus"]["get"]["parameters"][0]["required"] = True
    diff = diff_specs(petstore, new)
    assert diff.classification == "breaking"
    assert diff.removed == ["GET /user/logout"]
    text = "\n".join(diff.breaking)
    assert "operation GET /user/logout removed" in text
    assert "schema Pet: property 'tags' removed" in text
    assert "schema Pet: property 'status' type changed from string to integer" in text
    assert "schema Pet: property 'category' became required" in text
    assert "new required query parameter 'status'" in text
