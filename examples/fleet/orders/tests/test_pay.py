"""Paying and cancelling orders, with payments and inventory faked (conftest's ``Fakes``) or unreachable."""

from __future__ import annotations

import socket

import httpx2
import pytest
from fastapi.testclient import TestClient

from app import providers
from app.main import app


def _place(client: TestClient, product_id: int = 1, quantity: int = 2, unit_price_cents: int = 850) -> dict:
    body = {"product_id": product_id, "quantity": quantity, "unit_price_cents": unit_price_cents}
    response = client.post("/orders", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_paying_reserves_stock_then_charges_the_total(client: TestClient, fakes) -> None:
    order = _place(client, product_id=2, quantity=3, unit_price_cents=1990)
    response = client.post(f"/orders/{order['id']}/pay")
    assert response.status_code == 200, response.text
    assert response.json() == {**order, "status": "paid", "payment_id": 1, "reservation_id": 1}
    assert fakes.calls == ["POST /reservations", "POST /payments"]
    assert fakes.payments[1] == {"id": 1, "order_id": order["id"], "amount_cents": 5970, "status": "captured"}
    assert fakes.stock[2] == 7
    assert client.post(f"/orders/{order['id']}/pay").json()["status"] == "paid"  # again: nothing more is charged
    assert len(fakes.calls) == 2


def test_not_enough_stock_is_409_and_charges_nothing(client: TestClient, fakes) -> None:
    order = _place(client, quantity=11)
    response = client.post(f"/orders/{order['id']}/pay")
    assert response.status_code == 409 and "not enough stock of product 1" in response.json()["detail"]
    assert fakes.calls == ["POST /reservations"]
    assert client.get(f"/orders/{order['id']}").json()["status"] == "placed"


@pytest.mark.parametrize(("status", "answered"), [(402, 402), (500, 502)])
def test_a_failed_charge_releases_the_stock(client: TestClient, fakes, status: int, answered: int) -> None:
    fakes.fail["POST /payments"] = status
    order = _place(client)
    response = client.post(f"/orders/{order['id']}/pay")
    assert response.status_code == answered
    assert fakes.calls == ["POST /reservations", "POST /payments", "DELETE /reservations/1"]
    assert fakes.stock[1] == 10
    assert client.get(f"/orders/{order['id']}").json()["status"] == "placed"


def test_cancelling_a_paid_order_refunds_it_and_releases_its_stock(client: TestClient, fakes) -> None:
    order = _place(client)
    client.post(f"/orders/{order['id']}/pay")
    response = client.post(f"/orders/{order['id']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert fakes.calls[2:] == ["POST /payments/1/refund", "DELETE /reservations/1"]
    assert fakes.payments[1]["status"] == "refunded" and fakes.stock[1] == 10
    assert client.post(f"/orders/{order['id']}/pay").status_code == 409


def test_cancelling_a_paid_order_payments_does_not_know_is_502_and_leaves_it_paid(client: TestClient, fakes) -> None:
    """Orders' database kept from an earlier run, payments' data new: refunding the order's payment is 404 there."""
    order = _place(client)
    client.post(f"/orders/{order['id']}/pay")
    fakes.payments.clear()
    response = client.post(f"/orders/{order['id']}/cancel")
    assert response.status_code == 502 and response.json() == {"detail": "payments: no payment 1"}
    assert fakes.calls[2:] == ["POST /payments/1/refund"]  # the stock stays held: the money was not refunded
    assert client.get(f"/orders/{order['id']}").json()["status"] == "paid"


REFUND, RELEASE = "POST /payments/1/refund", "DELETE /reservations/1"
NOT_JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("route", "answer", "detail"),
    [
        (REFUND, httpx2.Response(200, text="refunded"), f"payments: no JSON object in its answer to {REFUND}"),
        (REFUND, httpx2.Response(200, json=["refunded"]), f"payments: no JSON object in its answer to {REFUND}"),
        (RELEASE, httpx2.Response(404, text="gone", headers=NOT_JSON), "inventory: gone"),
        (RELEASE, httpx2.Response(404, json=["gone"]), 'inventory: ["gone"]'),
    ],
    ids=["refund-not-json", "refund-a-list", "release-invalid-json", "release-a-list"],
)
def test_a_provider_answer_orders_cannot_read_is_502(
    client: TestClient, fakes, route: str, answer: httpx2.Response, detail: str
) -> None:
    order = _place(client)
    client.post(f"/orders/{order['id']}/pay")
    fakes.answer[route] = answer
    response = client.post(f"/orders/{order['id']}/cancel")
    assert response.status_code == 502 and response.json() == {"detail": detail}
    assert client.get(f"/orders/{order['id']}").json()["status"] == "paid"


def test_cancelling_a_placed_order_calls_no_provider(client: TestClient, fakes) -> None:
    order = _place(client)
    assert client.post(f"/orders/{order['id']}/cancel").json()["status"] == "cancelled"
    assert fakes.calls == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unset_or_unreachable_provider_is_503_naming_its_variable(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.dependency_overrides.clear()  # the real providers, found through their variables
    order = _place(client)
    monkeypatch.delenv("INVENTORY_URL", raising=False)
    response = client.post(f"/orders/{order['id']}/pay")
    assert response.status_code == 503
    assert response.json()["detail"] == "inventory is not configured: set INVENTORY_URL to its base URL"
    monkeypatch.setenv("INVENTORY_URL", f"http://127.0.0.1:{_closed_port()}")
    response = client.post(f"/orders/{order['id']}/pay")
    assert response.status_code == 503
    assert "inventory is unreachable at INVENTORY_URL=http://127.0.0.1:" in response.json()["detail"]
    assert client.get(f"/orders/{order['id']}").json()["status"] == "placed"


@pytest.mark.provider("PAYMENTS_URL")
def test_payments_charges_and_refunds_as_orders_expects() -> None:
    """Contract with the real payments service at ``$PAYMENTS_URL``: the calls and fields orders relies on."""
    payments = providers.Provider("payments", "PAYMENTS_URL")
    try:
        payment = providers.charge(payments, {"id": 41, "quantity": 2, "unit_price_cents": 850})
        assert payment["order_id"] == 41 and payment["amount_cents"] == 1700 and payment["status"] == "captured"
        assert isinstance(payment["id"], int)
        assert providers.refund(payments, payment["id"])["status"] == "refunded"
    finally:
        payments.close()


@pytest.mark.provider("INVENTORY_URL")
def test_inventory_reserves_and_releases_as_orders_expects() -> None:
    """Contract with the real inventory at ``$INVENTORY_URL`` (product 1 stocked, as a new inventory is)."""
    inventory = providers.Provider("inventory", "INVENTORY_URL")
    try:
        reservation = providers.reserve_stock(inventory, {"id": 41, "product_id": 1, "quantity": 1})
        assert reservation["order_id"] == 41 and reservation["status"] == "held"
        assert providers.release_stock(inventory, reservation["id"])["status"] == "released"
    finally:
        inventory.close()
