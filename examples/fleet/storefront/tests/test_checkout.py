from __future__ import annotations

import socket

import pytest
from fastapi.testclient import TestClient

from app import providers
from app.main import ID_MAX, app


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_a_checkout_places_the_order_at_the_catalog_price_and_pays_it(client: TestClient, fakes) -> None:
    response = client.post("/checkout", json={"product_id": 1, "quantity": 3})
    assert response.status_code == 201, response.text
    assert response.json() == {"order_id": 1, "status": "paid", "product_name": "Espresso cup", "total_cents": 2550}
    assert fakes.calls == ["GET /products/1", "POST /orders", "POST /orders/1/pay"]
    assert fakes.orders[1]["unit_price_cents"] == 850 and fakes.orders[1]["quantity"] == 3
    assert client.get("/checkout/1").json() == {"order_id": 1, "status": "paid"}
    assert fakes.calls[-1] == "GET /orders/1/status"


def test_an_unknown_product_is_404_and_orders_nothing(client: TestClient, fakes) -> None:
    response = client.post("/checkout", json={"product_id": 9, "quantity": 1})
    assert response.status_code == 404 and response.json()["detail"].startswith("catalog: ")
    assert fakes.calls == ["GET /products/9"]


@pytest.mark.parametrize(("status", "answered"), [(409, 409), (402, 402), (500, 502), (503, 502)])
def test_a_failed_payment_is_passed_on(client: TestClient, fakes, status: int, answered: int) -> None:
    fakes.fail["POST /orders/1/pay"] = status
    response = client.post("/checkout", json={"product_id": 1, "quantity": 1})
    assert response.status_code == answered
    assert "fake failure" in response.json()["detail"]


def test_a_product_without_a_price_is_a_502_not_a_crash(client: TestClient) -> None:
    response = client.post("/checkout", json={"product_id": 2, "quantity": 1})
    assert response.status_code == 502 and "catalog" in response.json()["detail"]


def test_an_unknown_order_is_404(client: TestClient) -> None:
    assert client.get("/checkout/5").status_code == 404


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unset_or_unreachable_provider_is_503_naming_its_variable(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.dependency_overrides.clear()  # the real providers, found through their variables
    monkeypatch.delenv("CATALOG_URL", raising=False)
    response = client.post("/checkout", json={"product_id": 1, "quantity": 1})
    assert response.status_code == 503
    assert response.json()["detail"] == "catalog is not configured: set CATALOG_URL to its base URL"
    monkeypatch.setenv("ORDERS_URL", f"http://127.0.0.1:{_closed_port()}")
    response = client.get("/checkout/1")
    assert response.status_code == 503
    assert response.json()["detail"].startswith("orders is unreachable at ORDERS_URL=http://127.0.0.1:")


@pytest.mark.parametrize("body", [{"product_id": 1, "quantity": 0}, {"product_id": 1}, {"quantity": 1}])
def test_invalid_checkouts_are_rejected(client: TestClient, fakes, body: dict) -> None:
    assert client.post("/checkout", json=body).status_code == 422
    assert fakes.calls == []


def test_openapi_names_each_operation(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    ids = {(method.upper(), path): op["operationId"] for path, item in paths.items() for method, op in item.items()}
    assert ids == {
        ("GET", "/healthz"): "healthz",
        ("POST", "/checkout"): "checkout",
        ("GET", "/checkout/{order_id}"): "getCheckout",
    }


def test_the_document_declares_every_status_the_checkout_answers(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/checkout"]["post"]["responses"]) == {"201", "400", "402", "404", "409", "422", "502", "503"}
    assert set(paths["/checkout/{order_id}"]["get"]["responses"]) == {"200", "404", "422", "502", "503"}


def test_ids_are_bounded_as_orders_bounds_them(client: TestClient, fakes) -> None:
    """The document's largest id is orders' (2**53 - 1): a valid id never gets orders' 422 (a 502 here)."""
    doc = client.get("/openapi.json").json()
    body_max = doc["components"]["schemas"]["CheckoutIn"]["properties"]["product_id"]["maximum"]
    (param,) = doc["paths"]["/checkout/{order_id}"]["get"]["parameters"]
    assert body_max == param["schema"]["maximum"] == ID_MAX == 2**53 - 1
    checkout = client.post("/checkout", json={"product_id": ID_MAX, "quantity": 1})
    assert checkout.status_code == 404 and fakes.calls == [f"GET /products/{ID_MAX}"]  # accepted, asked for
    assert client.get(f"/checkout/{ID_MAX}").status_code == 404
    assert fakes.calls[-1].startswith(f"GET /orders/{ID_MAX}")
    calls = len(fakes.calls)
    assert client.post("/checkout", json={"product_id": ID_MAX + 1, "quantity": 1}).status_code == 422
    assert client.get(f"/checkout/{ID_MAX + 1}").status_code == 422
    assert len(fakes.calls) == calls  # refused here, never sent


@pytest.mark.provider("CATALOG_URL")
def test_the_catalog_has_what_a_checkout_reads() -> None:
    """Contract with the real catalog at ``$CATALOG_URL`` (product 1 exists, as in a new catalog)."""
    catalog = providers.Provider("catalog", "CATALOG_URL")
    try:
        product = providers.get_product(catalog, 1)
        assert isinstance(product["name"], str) and isinstance(product["price_cents"], int)
    finally:
        catalog.close()


@pytest.mark.provider("ORDERS_URL")
def test_orders_places_pays_and_reports_as_the_storefront_expects() -> None:
    """Contract with the real orders at ``$ORDERS_URL`` (which pays through its own providers)."""
    orders = providers.Provider("orders", "ORDERS_URL")
    try:
        order = providers.create_order(orders, product_id=1, quantity=1, unit_price_cents=850)
        assert order["status"] == "placed" and isinstance(order["id"], int)
        paid = providers.pay_order(orders, order["id"])
        assert paid["status"] == "paid" and paid["quantity"] * paid["unit_price_cents"] == 850
        assert providers.order_status(orders, order["id"]) == "paid"
    finally:
        orders.close()
