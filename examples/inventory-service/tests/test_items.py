"""The inventory service's own hand-written tests (a typical, modest suite: the happy path)."""

from __future__ import annotations

from app.main import app
from fastapi.testclient import TestClient

client = TestClient(app)


def test_healthz() -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_create_and_get() -> None:
    body = {"sku": "HAND-1", "name": "Hammer", "quantity": 3, "minimum": 5, "price_cents": 1250}
    created = client.post("/items", json=body)
    assert created.status_code == 201
    item = created.json()
    assert item["value_cents"] == 3750 and item["low"] is True
    assert client.get(f"/items/{item['id']}").json() == item


def test_unknown_item_is_404() -> None:
    assert client.get("/items/999999").status_code == 404
