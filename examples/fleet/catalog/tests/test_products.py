from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient


def _create(client: TestClient, name: str = "Kettle", price_cents: int = 4500) -> dict:
    response = client.post("/products", json={"name": name, "price_cents": price_cents})
    assert response.status_code == 201, response.text
    return response.json()


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_create_then_get(client: TestClient) -> None:
    created = _create(client)
    assert created == {"id": created["id"], "name": "Kettle", "price_cents": 4500}
    assert client.get(f"/products/{created['id']}").json() == created


def test_list_in_id_order_with_paging(client: TestClient) -> None:
    ids = [_create(client, f"p{i}", i)["id"] for i in range(5)]
    assert [p["id"] for p in client.get("/products").json()] == ids
    assert [p["id"] for p in client.get("/products", params={"limit": 2, "offset": 1}).json()] == ids[1:3]


def test_patch_changes_only_given_fields(client: TestClient) -> None:
    product = _create(client, "Tray", 1200)
    response = client.patch(f"/products/{product['id']}", json={"price_cents": 999})
    assert response.json() == {"id": product["id"], "name": "Tray", "price_cents": 999}
    assert client.get(f"/products/{product['id']}").json()["price_cents"] == 999


def test_unknown_product_is_404(client: TestClient) -> None:
    assert client.get("/products/4242").status_code == 404
    assert client.patch("/products/4242", json={"name": "x"}).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "price_cents": 1},
        {"name": "Cup", "price_cents": -1},
        {"name": "Cup"},
        {"name": "Cup", "price_cents": 1, "colour": "red"},
    ],
)
def test_invalid_products_are_rejected(client: TestClient, body: dict) -> None:
    assert client.post("/products", json=body).status_code == 422


def test_null_patch_is_rejected(client: TestClient) -> None:
    product = _create(client)
    assert client.patch(f"/products/{product['id']}", json={"name": None}).status_code == 422


@pytest.mark.parametrize("product_id", ["0", "9223372036854775808", "abc"])
def test_out_of_range_ids_are_rejected(client: TestClient, product_id: str) -> None:
    assert client.get(f"/products/{product_id}").status_code == 422


def test_new_catalog_is_seeded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATALOG_DB_PATH", str(tmp_path / "seeded.db"))
    monkeypatch.delenv("CATALOG_SEED", raising=False)
    from app.main import app

    for _ in range(2):  # a restart does not seed again
        with TestClient(app) as client:
            names = [p["name"] for p in client.get("/products").json()]
    assert names == ["Espresso cup", "Milk jug", "Coffee grinder"]
