from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


def _pay(client: TestClient, order_id: int = 1, amount_cents: int = 1200, **extra: object) -> dict:
    response = client.post("/payments", json={"order_id": order_id, "amount_cents": amount_cents, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_a_payment_is_captured_then_read(client: TestClient) -> None:
    payment = _pay(client, order_id=7, amount_cents=2550)
    assert payment == {"id": 1, "order_id": 7, "amount_cents": 2550, "currency": "EUR", "status": "captured"}
    assert client.get("/payments/1").json() == payment


def test_currency_is_kept(client: TestClient) -> None:
    assert _pay(client, currency="CHF")["currency"] == "CHF"


def test_list_filters_by_order(client: TestClient) -> None:
    ids = [_pay(client, order_id=o)["id"] for o in (1, 2, 1)]
    assert [p["id"] for p in client.get("/payments").json()] == ids
    assert [p["id"] for p in client.get("/payments", params={"order_id": 1}).json()] == [ids[0], ids[2]]
    assert [p["id"] for p in client.get("/payments", params={"limit": 1}).json()] == [ids[0]]


def test_refund_is_idempotent(client: TestClient) -> None:
    payment = _pay(client)
    for _ in range(2):
        response = client.post(f"/payments/{payment['id']}/refund")
        assert response.status_code == 200
        assert response.json() == {**payment, "status": "refunded"}


def test_over_the_limit_is_declined_and_not_recorded(client: TestClient) -> None:
    for amount in (1_000_001, 2**63 - 1):
        response = client.post("/payments", json={"order_id": 1, "amount_cents": amount})
        assert response.status_code == 402 and "limit of 1000000 cents" in response.json()["detail"]
    assert client.get("/payments").json() == []
    assert _pay(client, amount_cents=1_000_000)["status"] == "captured"


def test_unknown_payment_is_404(client: TestClient) -> None:
    assert client.get("/payments/5").status_code == 404
    assert client.post("/payments/5/refund").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"order_id": 0, "amount_cents": 100},
        {"order_id": 1, "amount_cents": 0},
        {"order_id": 1, "amount_cents": 100, "currency": "eur"},
        {"order_id": 1},
        {"order_id": 1, "amount_cents": 100, "status": "refunded"},
    ],
)
def test_invalid_payments_are_rejected(client: TestClient, body: dict) -> None:
    assert client.post("/payments", json=body).status_code == 422
    assert client.get("/payments").json() == []
