"""Generated services answer from real state, never the document's example (issue #18, item 2).

A small events document: created objects come back as sent plus server-assigned fields (id, timestamps, uuid);
list/get/delete read what create wrote; tickets are a sub-resource stored per event (no item path); operations
whose behaviour cannot be inferred answer 501 from ``app/handlers.py``, which regeneration keeps.
"""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilotage.codegen.generator import GENERATED_HEADER, generate_service
from tests.unit.test_codegen import serve

EVENT = {"$ref": "#/components/schemas/Event"}
TICKET = {"$ref": "#/components/schemas/Ticket"}


def _json(schema: Any, description: str = "ok") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Museum events", "version": "1.0.0"},
    "paths": {
        "/events": {
            "get": {"operationId": "listEvents", "responses": {"200": _json({"type": "array", "items": EVENT})}},
            "post": {
                "operationId": "createEvent",
                "requestBody": {"required": True, "content": {"application/json": {"schema": EVENT}}},
                "responses": {"201": _json(EVENT, "created"), "422": {"description": "invalid"}},
            },
        },
        "/events/{eventId}": {
            "parameters": [{"name": "eventId", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "get": {"operationId": "getEvent", "responses": {"200": _json(EVENT), "404": {"description": "no"}}},
            "delete": {
                "operationId": "deleteEvent",
                "responses": {"204": {"description": "gone"}, "404": {"description": "no"}},
            },
        },
        "/events/{eventId}/tickets": {
            "parameters": [{"name": "eventId", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "get": {"operationId": "listTickets", "responses": {"200": _json({"type": "array", "items": TICKET})}},
            "post": {
                "operationId": "buyTicket",
                "requestBody": {"required": True, "content": {"application/json": {"schema": TICKET}}},
                "responses": {"201": _json(TICKET), "404": {"description": "no such event"}},
            },
        },
        "/events/{eventId}/publish": {
            "parameters": [{"name": "eventId", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "post": {"operationId": "publishEvent", "responses": {"200": _json(EVENT), "404": {"description": "no"}}},
        },
        "/stats": {
            "get": {
                "operationId": "getStats",
                "responses": {"200": _json({"type": "object", "properties": {"count": {"type": "integer"}}})},
            }
        },
    },
    "components": {
        "schemas": {
            "Event": {
                "type": "object",
                "required": ["name"],  # required read-only properties on requests: item 4
                "properties": {
                    "id": {"type": "integer", "readOnly": True},
                    "name": {"type": "string", "examples": ["Pirate Coding Workshop"]},
                    "createdAt": {"type": "string", "format": "date-time", "readOnly": True},
                    "uid": {"type": "string", "format": "uuid", "readOnly": True},
                },
                "example": {"id": 7, "name": "Pirate Coding Workshop", "createdAt": "2023-01-01T00:00:00Z"},
            },
            "Ticket": {
                "type": "object",
                "required": ["holder"],
                "properties": {"holder": {"type": "string"}, "seats": {"type": "integer", "minimum": 1}},
            },
        }
    },
}

STATS_HANDLER = """

def get_stats(request, op, params, body, principal):
    from app.main import STORE

    return op.respond(200, {"count": len(STORE.list("events"))})
"""


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("events")
    result = generate_service(DOCUMENT, folder)
    kinds = {o["operation"]: o["kind"] for o in result.operations}
    assert kinds["POST /events/{eventId}/tickets"] == "create" and kinds["GET /stats"] == "example", kinds
    return folder


def test_created_event_comes_back_as_sent_with_server_fields_and_is_read_by_get_and_list(service: Path) -> None:
    for url in serve(service):
        before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        created = httpx.post(url + "/events", json={"name": "Night"})
        assert created.status_code == 201, created.text
        event = created.json()
        assert event["name"] == "Night"  # not the example's "Pirate Coding Workshop"
        assert event["id"] == 1
        assert datetime.datetime.fromisoformat(event["createdAt"]) >= before
        assert uuid.UUID(event["uid"]).version == 4
        assert httpx.get(url + "/events/1").json() == event
        assert httpx.get(url + "/events").json() == [event]
        assert httpx.delete(url + "/events/1").status_code == 204
        assert httpx.get(url + "/events/1").status_code == 404
        assert httpx.get(url + "/events").json() == []


def test_tickets_are_stored_per_event(service: Path) -> None:
    for url in serve(service):
        first = httpx.post(url + "/events", json={"name": "Dawn"}).json()["id"]
        second = httpx.post(url + "/events", json={"name": "Dusk"}).json()["id"]
        assert httpx.post(url + f"/events/{first}/tickets", json={"holder": "Ada", "seats": 2}).status_code == 201
        assert httpx.post(url + f"/events/{second}/tickets", json={"holder": "Alan"}).status_code == 201
        assert httpx.get(url + f"/events/{first}/tickets").json() == [{"holder": "Ada", "seats": 2}]
        assert httpx.get(url + f"/events/{second}/tickets").json() == [{"holder": "Alan"}]
        assert httpx.post(url + "/events/999/tickets", json={"holder": "Eve"}).status_code == 404


def test_operations_not_inferred_answer_501_naming_the_handler_file(service: Path) -> None:
    for url in serve(service):
        stats = httpx.get(url + "/stats")
        assert stats.status_code == 501
        assert stats.json() == {"detail": "not implemented: getStats; edit app/handlers.py"}
        assert httpx.post(url + "/events/5/publish").status_code == 404  # the parent is still checked
        event = httpx.post(url + "/events", json={"name": "Noon"}).json()["id"]
        assert httpx.post(url + f"/events/{event}/publish").json()["detail"].startswith("not implemented: publish")


def test_regeneration_keeps_the_users_handlers(tmp_path: Path) -> None:
    generate_service(DOCUMENT, tmp_path)
    handlers = tmp_path / "app" / "handlers.py"
    assert handlers.read_text(encoding="utf-8").startswith("# Yours to edit")
    assert (tmp_path / "app" / "main.py").read_text(encoding="utf-8").startswith(GENERATED_HEADER)
    edited = handlers.read_text(encoding="utf-8").replace("def get_stats(", "def _old_get_stats(") + STATS_HANDLER
    handlers.write_text(edited.replace("def publish_event(", "def _old_publish_event("), encoding="utf-8")
    again = generate_service(DOCUMENT, tmp_path)
    assert handlers.read_text(encoding="utf-8") == edited.replace("def publish_event(", "def _old_publish_event(")
    assert any("publish_event" in w and "501" in w for w in again.warnings), again.warnings
    for url in serve(tmp_path):
        httpx.post(url + "/events", json={"name": "Night"})
        assert httpx.get(url + "/stats").json() == {"count": 1}
        event = httpx.post(url + "/events/1/publish")
        assert event.status_code == 501  # its handler is gone: 501, not a crash
