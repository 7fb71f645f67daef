from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient


def _stock(client: TestClient, product_id: int, available: int) -> None:
    response = client.put(f"/stock/{product_id}", json={"available": available})
    assert response.status_code == 200 and response.json() == {"product_id": product_id, "available": available}


def _reserve(client: TestClient, product_id: int = 1, quantity: int = 2, order_id: int = 1) -> dict:
    response = client.post("/reservations", json={"order_id": order_id, "product_id": product_id, "quantity": quantity})
    assert response.status_code == 201, response.text
    return response.json()


def _available(client: TestClient, product_id: int) -> int:
    return client.get(f"/stock/{product_id}").json()["available"]


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_a_reservation_takes_units_and_its_release_gives_them_back_once(client: TestClient) -> None:
    _stock(client, 4, 10)
    reservation = _reserve(client, product_id=4, quantity=3, order_id=9)
    assert reservation == {"id": 1, "order_id": 9, "product_id": 4, "quantity": 3, "status": "held"}
    assert _available(client, 4) == 7
    assert client.get("/reservations/1").json() == reservation
    for _ in range(2):
        assert client.delete("/reservations/1").json() == {**reservation, "status": "released"}
        assert _available(client, 4) == 10


def test_not_enough_stock_is_409_and_reserves_nothing(client: TestClient) -> None:
    _stock(client, 1, 2)
    response = client.post("/reservations", json={"order_id": 1, "product_id": 1, "quantity": 3})
    assert response.status_code == 409
    assert response.json()["detail"] == "not enough stock of product 1: 2 available, 3 asked"
    assert _available(client, 1) == 2
    assert client.post("/reservations", json={"order_id": 1, "product_id": 5, "quantity": 1}).status_code == 409


def test_concurrent_reservations_never_oversell(client: TestClient) -> None:
    _stock(client, 1, 5)
    body = {"order_id": 1, "product_id": 1, "quantity": 1}
    with ThreadPoolExecutor(max_workers=4) as pool:
        codes = list(pool.map(lambda _: client.post("/reservations", json=body).status_code, range(8)))
    assert sorted(codes) == [201] * 5 + [409] * 3
    assert _available(client, 1) == 0


def test_unknown_product_and_reservation_are_404(client: TestClient) -> None:
    assert client.get("/stock/3").status_code == 404
    assert client.get("/reservations/3").status_code == 404
    assert client.delete("/reservations/3").status_code == 404


def test_a_new_inventory_stocks_the_demo_products(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVENTORY_DB_PATH", str(tmp_path / "seeded.db"))
    monkeypatch.setenv("INVENTORY_SEED", "1")
    from app.main import app

    with TestClient(app) as seeded:
        assert [_available(seeded, p) for p in (1, 2, 3)] == [1000, 1000, 1000]


@pytest.mark.parametrize(
    "body",
    [
        {"order_id": 1, "product_id": 1, "quantity": 0},
        {"order_id": 1, "product_id": 0, "quantity": 1},
        {"order_id": 1, "product_id": 1},
        {"order_id": 1, "product_id": 1, "quantity": 1, "status": "released"},
    ],
)
def test_invalid_reservations_are_rejected(client: TestClient, body: dict) -> None:
    _stock(client, 1, 5)
    assert client.post("/reservations", json=body).status_code == 422
    assert _available(client, 1) == 5


def test_openapi_names_each_operation(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    ids = {op["operationId"] for item in paths.values() for op in item.values()}
    assert ids == {"healthz", "getStock", "setStock", "reserveStock", "getReservation", "releaseReservation"}
