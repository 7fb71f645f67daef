"""Validation the OpenAPI document asks for, done by the generated service (issue #18, item 4).

Each class writes a small document, generates the service, imports it in a child process
(:func:`tests.fixtures.service_importer.ask`) and sends it real HTTP requests: discriminators (with and without
``mapping``, ``allOf`` inheritance), ``readOnly``/``writeOnly`` properties, a ``servers`` base path with variables
(served, and used by Pilotage's own spec tests), 204/304 without a body, 404 for unknown and deleted items, and a
``PUT`` that creates what nothing else can, resources whose schema is an ``allOf`` (their key and server fields),
and form bodies whose array fields are given once.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pilotage.codegen.examples import schema_errors
from pilotage.codegen.generator import generate_service
from pilotage.spec.openapi import object_properties
from pilotage.testing.spec_tests import CRUD_FILE, write_spec_tests
from tests.fixtures.service_importer import ask


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Any) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _post(schema: str, *, invalid: str = "422", created: str = "201") -> dict[str, Any]:
    return {
        "post": {
            "operationId": f"post{schema}",
            "requestBody": {"required": True, "content": _json(_ref(schema))},
            "responses": {
                created: {"description": "stored", "content": _json(_ref(schema))},
                invalid: {"description": "invalid"},
            },
        }
    }


def _list(schema: str) -> dict[str, Any]:
    items = {"type": "array", "items": _ref(schema)}
    return {"get": {"responses": {"200": {"description": "all", "content": _json(items)}}}}


def _path_param(name: str, kind: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}


def _answers(tmp_path: Path, document: dict[str, Any], requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    generate_service(document, tmp_path)
    answer = ask(tmp_path, requests)
    assert answer["ok"], answer.get("error")
    return list(answer["answers"])


def _pet(kind: str) -> dict[str, Any]:
    return {
        "allOf": [
            _ref("Pet"),
            {"type": "object", "required": [kind], "properties": {kind: {"type": "integer", "minimum": 0}}},
        ]
    }


def _discriminated(openapi: str) -> dict[str, Any]:
    """Pets three ways: oneOf with a mapping, oneOf without one (schema names), allOf inheritance from ``Pet``."""
    pet = {
        "type": "object",
        "required": ["petType", "name"],
        "properties": {"petType": {"type": "string"}, "name": {"type": "string"}},
        "discriminator": {"propertyName": "petType"},
    }
    mapped = {
        "oneOf": [_ref("Cat"), _ref("Dog")],
        "discriminator": {"propertyName": "petType", "mapping": {"cat": "#/components/schemas/Cat", "dog": "Dog"}},
    }
    unmapped = {"oneOf": [_ref("Cat"), _ref("Dog")], "discriminator": {"propertyName": "petType"}}
    return {
        "openapi": openapi,
        "info": {"title": "Discriminated pets", "version": "1.0.0"},
        "paths": {"/mapped": _post("Mapped"), "/unmapped": _post("Unmapped", invalid="400"), "/pets": _post("Pet")},
        "components": {
            "schemas": {"Pet": pet, "Cat": _pet("lives"), "Dog": _pet("barks"), "Mapped": mapped, "Unmapped": unmapped}
        },
    }


#: (path, body, expected status): a Cat and a Dog fit each other's schema except for their own required property.
DISCRIMINATED = [
    ("/mapped", {"petType": "cat", "name": "Tom", "lives": 9}, 201),
    ("/mapped", {"petType": "dog", "name": "Rex", "barks": 3}, 201),
    ("/mapped", {"petType": "cat", "name": "Rex", "barks": 3}, 422),  # a dog's body under the cat's tag
    ("/mapped", {"petType": "Cat", "name": "Tom", "lives": 9}, 201),  # a schema name still names its schema
    ("/mapped", {"petType": "Pet", "name": "Tom"}, 422),  # ... when it is one of the oneOf
    ("/mapped", {"name": "Tom", "lives": 9}, 422),  # no discriminator
    ("/mapped", {"petType": "cow", "name": "Daisy", "lives": 1}, 422),
    ("/unmapped", {"petType": "Cat", "name": "Tom", "lives": 9, "barks": 1}, 201),  # fits both: the tag decides
    ("/unmapped", {"petType": "Dog", "name": "Tom", "lives": 9}, 400),  # the declared status: 400
    ("/unmapped", {"petType": "Pet", "name": "Tom"}, 400),  # Pet is not one of the oneOf
    ("/pets", {"petType": "Cat", "name": "Tom", "lives": 9}, 201),
    ("/pets", {"petType": "Cat", "name": "Tom", "lives": -1}, 422),  # the subtype's own constraint
    ("/pets", {"petType": "Dog", "name": "Rex"}, 422),  # the subtype's required property
    ("/pets", {"petType": "Mapped", "name": "Rex"}, 422),  # a schema that does not inherit Pet
    ("/pets", {"name": "Rex", "barks": 1}, 422),
]


class TestDiscriminators:
    @pytest.mark.parametrize("openapi", ["3.0.3", "3.1.0"])
    def test_the_discriminator_picks_the_variant_that_validates_the_body(self, tmp_path: Path, openapi: str) -> None:
        requests = [{"method": "POST", "path": path, "json": body} for path, body, _ in DISCRIMINATED]
        answers = _answers(tmp_path, _discriminated(openapi), requests)
        got = [(path, body, answer["status"]) for (path, body, _), answer in zip(DISCRIMINATED, answers, strict=True)]
        assert got == DISCRIMINATED


USERS: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Users", "version": "1.0.0"},
    "paths": {
        "/users": _post("User"),
        "/users/{id}": {
            "parameters": [_path_param("id", "integer")],
            "get": {"responses": {"200": {"description": "the user", "content": _json(_ref("User"))}}},
        },
    },
    "components": {
        "schemas": {
            "User": {
                "type": "object",
                "required": ["id", "name", "password", "created"],
                "properties": {
                    "id": {"type": "integer", "readOnly": True},
                    "created": {"type": "string", "readOnly": True},
                    "name": {"type": "string"},
                    "password": {"type": "string", "writeOnly": True, "minLength": 8},
                },
            }
        }
    },
}


class TestReadOnlyAndWriteOnly:
    def test_requests_need_the_write_view_and_responses_never_carry_write_only_properties(self, tmp_path: Path) -> None:
        requests = [
            {"method": "POST", "path": "/users", "json": {"name": "ada", "password": "correct horse"}},
            {"method": "POST", "path": "/users", "json": {"id": 99, "name": "bob", "password": "battery staple"}},
            {"method": "POST", "path": "/users", "json": {"name": "eve"}},
            {"method": "POST", "path": "/users", "json": {"name": "eve", "password": "short"}},
            {"method": "GET", "path": "/users/1"},
            {"method": "GET", "path": "/users/99"},
        ]
        created, ignored, no_password, short, read, unknown = _answers(tmp_path, USERS, requests)
        assert created["status"] == 201, created
        assert created["json"]["id"] == 1 and created["json"]["name"] == "ada"
        assert "password" not in created["json"]
        assert ignored["status"] == 201 and ignored["json"]["id"] == 2  # the readOnly id sent was ignored
        assert (no_password["status"], short["status"]) == (422, 422)
        assert "password" in no_password["json"]["detail"]
        assert read["status"] == 200 and read["json"]["name"] == "ada" and "password" not in read["json"]
        assert unknown["status"] == 404


def _things(servers: list[dict[str, Any]]) -> dict[str, Any]:
    thing = {
        "type": "object",
        "required": ["name"],
        "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Things", "version": "1.0.0"},
        "servers": servers,
        "paths": {
            "/things": {**_post("Thing"), **_list("Thing")},
            "/things/{id}": {
                "parameters": [_path_param("id", "integer")],
                "get": {"responses": {"200": {"description": "one", "content": _json(_ref("Thing"))}}},
                "delete": {"responses": {"204": {"description": "gone"}, "404": {"description": "no such thing"}}},
            },
        },
        "components": {"schemas": {"Thing": thing}},
    }


BASE_SERVERS = [
    {
        "url": "https://{host}/api/{version}/",
        "variables": {"host": {"default": "example.com"}, "version": {"default": "v2", "enum": ["v1", "v2"]}},
    },
    {"url": "http://localhost:9000"},
]


class TestServersBasePath:
    def test_the_service_serves_under_the_first_servers_path_with_variable_defaults(self, tmp_path: Path) -> None:
        requests = [
            {"method": "POST", "path": "/api/v2/things", "json": {"name": "lamp"}},
            {"method": "GET", "path": "/api/v2/things/1"},
            {"method": "GET", "path": "/things/1"},
            {"method": "GET", "path": "/healthz"},
        ]
        created, read, unprefixed, health = _answers(tmp_path, _things(BASE_SERVERS), requests)
        assert (created["status"], read["status"], read["json"]) == (201, 200, {"name": "lamp", "id": 1})
        assert unprefixed["status"] == 404
        assert health["status"] == 200

    def test_the_document_s_root_path_answers_with_and_without_the_trailing_slash(self, tmp_path: Path) -> None:
        """``/`` under ``/api/v2`` is ``/api/v2/`` (server URL + path: what schemathesis requests, bench_specs uspto)
        and ``/api/v2``; the generated service redirects no trailing slash, so both are routed."""
        document = _things(BASE_SERVERS)
        document["paths"]["/"] = {"get": {"operationId": "root", "responses": {"304": {"description": "cached"}}}}
        requests = [{"method": "GET", "path": "/api/v2/"}, {"method": "GET", "path": "/api/v2"}]
        slash, bare = _answers(tmp_path, document, requests)
        assert slash["status"] == bare["status"] == 501  # the operation's own answer (not inferred), not a 404
        assert slash["json"] == bare["json"] == {"detail": "not implemented: root; edit app/handlers.py"}

    def test_the_generated_tests_and_pilotage_s_crud_tests_call_the_base_path(self, tmp_path: Path) -> None:
        """The service's own tests and Pilotage's CRUD chains (``API_URL``) pass against it, in-process."""
        generate_service(_things(BASE_SERVERS), tmp_path)
        text = (tmp_path / "tests" / "test_service.py").read_text(encoding="utf-8")
        assert "'/api/v2/things'" in text and "'/api/v2/things/{id}'" in text
        written = write_spec_tests(tmp_path / "app" / "openapi.json", tmp_path, crud_examples=2)
        assert [c["name"] for c in written["chains"]] == ["things"]
        assert "API_URL = BASE_URL.rstrip(\"/\") + '/api/v2'" in Path(written["crud_file"]).read_text()
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_service.py"]
        argv.append("tests/" + CRUD_FILE)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PILOTAGE_")}
        run = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False, env=env)
        assert run.returncode == 0, run.stdout[-3000:]
        assert " passed" in run.stdout and "test_crud_things" not in run.stdout  # no failure named


class TestEmptyResponses:
    def test_204_and_304_have_no_body_and_no_content_type(self, tmp_path: Path) -> None:
        document = _things([{"url": "/"}])
        document["paths"]["/cache"] = {"get": {"responses": {"304": {"description": "not modified"}}}}
        requests = [
            {"method": "POST", "path": "/things", "json": {"name": "lamp"}},
            {"method": "DELETE", "path": "/things/1"},
            {"method": "GET", "path": "/cache"},
        ]
        _, deleted, cached = _answers(tmp_path, document, requests)
        assert deleted["status"] == 204 and deleted["size"] == 0
        assert "content-type" not in deleted["headers"], deleted["headers"]
        # when to answer 304 cannot be inferred (conditional requests): app/handlers.py answers 501 until written
        assert cached["status"] == 501 and cached["json"] == {
            "detail": "not implemented: get_cache; edit app/handlers.py"
        }


class TestNotFound:
    def test_a_repeated_delete_answers_the_declared_404(self, tmp_path: Path) -> None:
        requests = [
            {"method": "POST", "path": "/things", "json": {"name": "lamp"}},
            {"method": "DELETE", "path": "/things/1"},
            {"method": "DELETE", "path": "/things/1"},
            {"method": "GET", "path": "/things/1"},
        ]
        statuses = [a["status"] for a in _answers(tmp_path, _things([]), requests)]
        assert statuses == [201, 204, 404, 404]

    def test_an_undeclared_404_is_not_turned_into_400(self, tmp_path: Path) -> None:
        document = _things([])
        item = document["paths"]["/things/{id}"]
        item["get"]["responses"]["400"] = {"description": "invalid id"}
        item["delete"]["responses"] = {"204": {"description": "gone"}, "400": {"description": "invalid id"}}
        requests = [
            {"method": "GET", "path": "/things/41"},
            {"method": "DELETE", "path": "/things/41"},
            {"method": "GET", "path": "/things/not-a-number"},
        ]
        statuses = [a["status"] for a in _answers(tmp_path, document, requests)]
        assert statuses == [404, 404, 400]


SETTINGS: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Settings", "version": "1.0.0"},
    "paths": {
        "/settings": _list("Setting"),
        "/settings/{name}": {
            "parameters": [_path_param("name", "string")],
            "get": {"responses": {"200": {"description": "one", "content": _json(_ref("Setting"))}}},
            "put": {
                "requestBody": {"required": True, "content": _json(_ref("Setting"))},
                "responses": {
                    "200": {"description": "replaced", "content": _json(_ref("Setting"))},
                    "201": {"description": "created", "content": _json(_ref("Setting"))},
                    "422": {"description": "invalid"},
                },
            },
        },
    },
    "components": {
        "schemas": {
            "Setting": {
                "type": "object",
                "required": ["value"],
                "properties": {"name": {"type": "string", "readOnly": True}, "value": {"type": "integer"}},
            }
        }
    },
}


class TestCreateOrReplace:
    def test_a_put_creates_what_nothing_else_can_then_replaces_it(self, tmp_path: Path) -> None:
        requests = [
            {"method": "GET", "path": "/settings/volume"},
            {"method": "PUT", "path": "/settings/volume", "json": {"value": 3}},
            {"method": "PUT", "path": "/settings/volume", "json": {"value": 7}},
            {"method": "PUT", "path": "/settings/volume", "json": {"value": "loud"}},
            {"method": "GET", "path": "/settings/volume"},
            {"method": "GET", "path": "/settings"},
        ]
        missing, created, replaced, invalid, read, listed = _answers(tmp_path, SETTINGS, requests)
        assert missing["status"] == 404
        assert (created["status"], created["json"]) == (201, {"value": 3, "name": "volume"})
        assert (replaced["status"], replaced["json"]) == (200, {"value": 7, "name": "volume"})
        assert invalid["status"] == 422
        assert (read["status"], read["json"]) == (200, {"value": 7, "name": "volume"})
        assert listed["json"] == [{"value": 7, "name": "volume"}]

    def test_a_put_on_an_unknown_item_of_a_resource_with_a_post_is_404(self, tmp_path: Path) -> None:
        document = _things([])
        document["paths"]["/things/{id}"]["put"] = {
            "requestBody": {"required": True, "content": _json(_ref("Thing"))},
            "responses": {"200": {"description": "replaced", "content": _json(_ref("Thing"))}},
        }
        requests = [{"method": "PUT", "path": "/things/5", "json": {"name": "lamp"}}]
        assert [a["status"] for a in _answers(tmp_path, document, requests)] == [404]


def _pets_expanded() -> dict[str, Any]:
    """The shape of ``oai-v3.0-petstore-expanded.yaml``: ``POST /pets`` takes a ``NewPet`` (no ``id``) and answers
    a ``Pet``, which is ``allOf: [NewPet, {required: [id, born]}]`` (``born``: read-only, the server's)."""
    pet_part = {
        "type": "object",
        "required": ["id", "born"],
        "properties": {"id": {"type": "integer"}, "born": {"type": "string", "format": "date", "readOnly": True}},
    }
    new_pet = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Pets expanded", "version": "1.0.0"},
        "paths": {
            "/pets": {
                **_list("Pet"),
                "post": {
                    "requestBody": {"required": True, "content": _json(_ref("NewPet"))},
                    "responses": {"200": {"description": "pet", "content": _json(_ref("Pet"))}},
                },
            },
            "/pets/{id}": {
                "parameters": [_path_param("id", "integer")],
                "get": {"responses": {"200": {"description": "pet", "content": _json(_ref("Pet"))}}},
                "delete": {"responses": {"204": {"description": "deleted"}}},
            },
        },
        "components": {"schemas": {"NewPet": new_pet, "Pet": {"allOf": [_ref("NewPet"), pet_part]}}},
    }


class TestAllOfResources:
    def test_created_objects_carry_the_key_and_server_fields_an_all_of_schema_requires(self, tmp_path: Path) -> None:
        document = _pets_expanded()
        requests = [
            {"method": "POST", "path": "/pets", "json": {"name": ""}},
            {"method": "POST", "path": "/pets", "json": {"name": "tom", "id": "not-the-clients"}},
            {"method": "GET", "path": "/pets/1"},
            {"method": "GET", "path": "/pets"},
            {"method": "DELETE", "path": "/pets/1"},
            {"method": "GET", "path": "/pets/1"},
        ]
        created, second, read, listed, deleted, gone = _answers(tmp_path, document, requests)
        today = datetime.datetime.now(datetime.UTC).date().isoformat()
        assert (created["status"], created["json"]) == (200, {"name": "", "id": 1, "born": today})
        # NewPet declares no id: the server assigns it whatever the body carries
        assert (second["status"], second["json"]) == (200, {"name": "tom", "id": 2, "born": today})
        assert (read["status"], read["json"]) == (200, created["json"])
        assert listed["json"] == [created["json"], second["json"]]
        for answer in (created, second, read):
            assert schema_errors(document, _ref("Pet"), answer["json"]) == []
        assert (deleted["status"], gone["status"]) == (204, 404)

    def test_object_properties_follow_all_of_members_depth_first(self) -> None:
        document = _pets_expanded()
        document["components"]["schemas"]["Dog"] = {
            "allOf": [_ref("Pet"), {"properties": {"name": {"type": "integer"}, "bark": {"type": "string"}}}]
        }
        found = object_properties(document, _ref("Dog"))
        assert list(found) == ["name", "id", "born", "bark"]
        assert found["name"] == {"type": "string"}  # the first schema seen keeps the name

    def test_object_properties_walk_a_schema_met_again_once(self) -> None:
        """A hostile ``allOf`` cycle of breadth 3 was 3**32 walks (a hung run); each schema is walked once."""
        document = {"components": {"schemas": {"A": {"allOf": [_ref("A"), _ref("A"), _ref("A")],
                                                     "properties": {"x": {"type": "string"}}}}}}  # fmt: skip
        assert object_properties(document, _ref("A")) == {"x": {"type": "string"}}


class TestFormArrays:
    def test_a_form_field_given_once_is_an_array_of_one_but_a_json_string_is_no_array(self, tmp_path: Path) -> None:
        """Schemathesis' ``negative_data_rejection`` on petstore3's ``POST /pet``: its negative case ``photoUrls:
        "AAA"`` goes on the wire as the form ``photoUrls=AAA``, which is the valid ``["AAA"]`` (OpenAPI 3.0.3
        §4.7.15, form-urlencoded properties default to ``style: form, explode: true``); as JSON it is rejected."""
        photos = {
            "type": "object",
            "required": ["name", "photoUrls"],
            "properties": {
                "id": {"type": "integer"},
                "name": {"type": "string"},
                "photoUrls": {"type": "array", "items": {"type": "string"}},
            },
        }
        body = {
            "required": True,
            "content": {**_json(_ref("Pet")), "application/x-www-form-urlencoded": {"schema": _ref("Pet")}},
        }
        document = {
            "openapi": "3.0.3",
            "info": {"title": "Form pets", "version": "1.0.0"},
            "paths": {
                "/pet": {
                    "post": {
                        "requestBody": body,
                        "responses": {
                            "200": {"description": "stored", "content": _json(_ref("Pet"))},
                            "422": {"description": "invalid"},
                        },
                    }
                },
                "/pet/{id}": {
                    "parameters": [_path_param("id", "integer")],
                    "get": {"responses": {"200": {"description": "pet", "content": _json(_ref("Pet"))}}},
                },
            },
            "components": {"schemas": {"Pet": photos}},
        }
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        requests = [
            {"method": "POST", "path": "/pet", "content": "id=10&name=doggie&photoUrls=AAA", "headers": form},
            {"method": "POST", "path": "/pet", "json": {"id": 11, "name": "doggie", "photoUrls": "AAA"}},
        ]
        as_form, as_json = _answers(tmp_path, document, requests)
        assert (as_form["status"], as_form["json"]) == (200, {"id": 10, "name": "doggie", "photoUrls": ["AAA"]})
        assert as_json["status"] == 422 and "photoUrls" in as_json["json"]["detail"]
