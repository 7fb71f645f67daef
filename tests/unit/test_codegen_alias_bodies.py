"""Request bodies whose schema is generated as a type alias, not a model class (issue #18, item 3).

A component schema that is a union (``oneOf``/``anyOf``/``allOf``), a scalar, an enum or an array becomes an alias in
``app/models.py`` (``Shape = Any``, ``Name = str``). The handlers validated such bodies with ``Alias.model_validate``
and answered 500 (``'Any' has no attribute 'model_validate'``) on every valid request. Here a small document
references one alias of each kind as a request body; the generated service, imported in a child process, must
answer 2xx to valid bodies and the documented 4xx to invalid ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pilotage.codegen.generator import generate_service
from tests.fixtures.service_importer import ask


def _post(path: str, schema: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {
        "post": {
            "operationId": f"send{schema}",
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref}}},
            "responses": {
                "200": {"description": "accepted", "content": {"application/json": {"schema": ref}}},
                "422": {"description": "invalid"},
            },
        }
    }


ALIASES: dict[str, Any] = {
    "Circle": {
        "type": "object",
        "required": ["kind", "radius"],
        "properties": {"kind": {"const": "circle"}, "radius": {"type": "number"}},
    },
    "Square": {
        "type": "object",
        "required": ["kind", "side"],
        "properties": {"kind": {"const": "square"}, "side": {"type": "number"}},
    },
    "Shape": {"oneOf": [{"$ref": "#/components/schemas/Circle"}, {"$ref": "#/components/schemas/Square"}]},
    "IdOrName": {"anyOf": [{"type": "integer"}, {"type": "string", "minLength": 1}]},
    "Named": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
    "Dated": {"type": "object", "properties": {"on": {"type": "string", "format": "date"}}},
    "NamedAndDated": {"allOf": [{"$ref": "#/components/schemas/Named"}, {"$ref": "#/components/schemas/Dated"}]},
    "Word": {"type": "string", "minLength": 2},
    "Count": {"type": "integer", "minimum": 0},
    "Colour": {"type": "string", "enum": ["red", "green", "blue"]},
    "Tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Alias bodies", "version": "1.0.0"},
    "paths": {
        "/shapes": _post("/shapes", "Shape"),
        "/ids": _post("/ids", "IdOrName"),
        "/people": _post("/people", "NamedAndDated"),
        "/words": _post("/words", "Word"),
        "/counts": _post("/counts", "Count"),
        "/colours": _post("/colours", "Colour"),
        "/tags": _post("/tags", "Tags"),
        "/named": _post("/named", "Named"),
    },
    "components": {"schemas": ALIASES},
}

#: (path, valid body, invalid body): every alias kind, and one model class (``Named``) as the control.
CASES = [
    ("/shapes", {"kind": "circle", "radius": 2.5}, {"kind": "circle", "side": 1}),
    ("/shapes", {"kind": "square", "side": 3}, {"kind": "triangle"}),
    ("/ids", 7, 1.5),
    ("/ids", "seven", ""),
    ("/people", {"name": "Ada", "on": "1815-12-10"}, {"on": "1815-12-10"}),
    ("/words", "hello", "h"),
    ("/counts", 3, -1),
    ("/colours", "green", "purple"),
    ("/tags", ["a", "b"], ["a", "b", "c", "d"]),
    ("/named", {"name": "Ada"}, {"name": 5}),
]


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("alias-bodies")
    service = generate_service(DOCUMENT, folder)
    assert set(service.models) == {"Circle", "Dated", "Named", "Square"}, service.models
    requests = [{"method": "POST", "path": path, "json": body} for path, *bodies in CASES for body in bodies]
    answer = ask(Path(folder), requests)
    assert answer["ok"], answer.get("error")
    return list(answer["answers"])


@pytest.mark.parametrize(("index", "case"), list(enumerate(CASES)), ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_valid_alias_bodies_are_accepted_and_invalid_ones_refused(
    answers: list[dict[str, Any]], index: int, case: tuple[str, Any, Any]
) -> None:
    path, valid, _ = case
    accepted, refused = answers[2 * index], answers[2 * index + 1]
    assert accepted["status"] == 200, (path, valid, accepted)
    assert refused["status"] == 422, (path, refused)
