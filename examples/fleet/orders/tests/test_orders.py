from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


def _place(client: TestClient, product_id: int = 1, quantity: int = 2) -> dict:
    response = client.post("/orders", json={"product_id": product_id, "quantity": quantity, "unit_price_cents": 850})
    assert response.status_code == 201, response.text
    return response.json()


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_place_then_get(client: TestClient) -> None:
    order = _place(client, product_id=3, quantity=5)
    assert order == {
        "id": 1,
        "product_id": 3,
        "quantity": 5,
        "unit_price_cents": 850,
        "status": "placed",
        "payment_id": None,
        "reservation_id": None,
    }
    assert client.get("/orders/1").json() == order


def test_list_filters_by_status_and_pages(client: TestClient) -> None:
    ids = [_place(client, quantity=q)["id"] for q in (1, 2, 3, 4)]
    client.post(f"/orders/{ids[1]}/cancel")
    assert [o["id"] for o in client.get("/orders").json()] == ids
    assert [o["id"] for o in client.get("/orders", params={"status": "cancelled"}).json()] == [ids[1]]
    assert [o["id"] for o in client.get("/orders", params={"status": "placed", "limit": 2}).json()] == [ids[0], ids[2]]
    assert [o["id"] for o in client.get("/orders", params={"offset": 3}).json()] == [ids[3]]


def test_cancel_is_idempotent(client: TestClient) -> None:
    order = _place(client)
    for _ in range(2):
        response = client.post(f"/orders/{order['id']}/cancel")
        assert response.status_code == 200
        assert response.json() == {**order, "status": "cancelled"}
    assert client.get(f"/orders/{order['id']}").json()["status"] == "cancelled"


def test_unknown_order_is_404(client: TestClient) -> None:
    assert client.get("/orders/77").status_code == 404
    assert client.post("/orders/77/cancel").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"product_id": 0, "quantity": 1, "unit_price_cents": 100},
        {"product_id": 1, "quantity": 0, "unit_price_cents": 100},
        {"product_id": 1, "quantity": 1001, "unit_price_cents": 100},
        {"product_id": 9223372036854775808, "quantity": 1, "unit_price_cents": 100},
        {"product_id": 1, "quantity": 1, "unit_price_cents": 0},
        {"product_id": 1, "quantity": 1},
        {"product_id": 1, "unit_price_cents": 100},
        {"product_id": 1, "quantity": 1, "unit_price_cents": 100, "status": "cancelled"},
    ],
)
def test_invalid_orders_are_rejected(client: TestClient, body: dict) -> None:
    assert client.post("/orders", json=body).status_code == 422
    assert client.get("/orders").json() == []


def test_unknown_status_filter_is_rejected(client: TestClient) -> None:
    assert client.get("/orders", params={"status": "shipped"}).status_code == 422


def test_the_deprecated_status_operation_answers_the_status(client: TestClient) -> None:
    order = _place(client)
    assert client.get(f"/orders/{order['id']}/status").json() == {"id": order["id"], "status": "placed"}
    assert client.get("/orders/77/status").status_code == 404


def test_openapi_names_each_operation(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    ids = {(method.upper(), path): op["operationId"] for path, item in paths.items() for method, op in item.items()}
    assert ids == {
        ("GET", "/healthz"): "healthz",
        ("GET", "/orders"): "listOrders",
        ("POST", "/orders"): "createOrder",
        ("GET", "/orders/{order_id}"): "getOrder",
        ("GET", "/orders/{order_id}/status"): "getOrderStatus",
        ("POST", "/orders/{order_id}/pay"): "payOrder",
        ("POST", "/orders/{order_id}/cancel"): "cancelOrder",
    }
    assert paths["/orders/{order_id}/status"]["get"]["deprecated"] is True
