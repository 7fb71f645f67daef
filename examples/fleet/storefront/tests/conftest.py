"""The catalog and orders are faked in memory (:class:`Fakes`, behind ``httpx2.MockTransport``), except in tests
marked ``provider("ORDERS_URL", ...)``: those call the real services at those addresses and are skipped while a
variable is unset (as when the storefront's tests run on their own).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx2
import pytest
from fastapi.testclient import TestClient

from app import providers
from app.main import app


@pytest.fixture(autouse=True)
def _skip_without_providers(request: pytest.FixtureRequest) -> None:
    for marker in request.node.iter_markers("provider"):
        for env in marker.args:
            if not os.environ.get(env):
                pytest.skip(f"{env} is not set: this test calls the real provider there")


class Fakes:
    """Catalog products 1 and 2, and orders kept in memory; ``fail`` makes a route answer a status instead.

    ``calls`` lists what the storefront sent, e.g. ``"POST /orders/1/pay"``; ``fail`` maps such a route to the
    status the fake answers instead (``{"POST /orders/1/pay": 409}``).
    """

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail: dict[str, int] = {}
        self.products = {1: {"id": 1, "name": "Espresso cup", "price_cents": 850}, 2: {"id": 2, "name": "Jug"}}
        self.orders: dict[int, dict] = {}

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        route = f"{request.method} {request.url.path}"
        self.calls.append(route)
        if route in self.fail:
            return httpx2.Response(self.fail[route], json={"detail": "fake failure"})
        parts = request.url.path.strip("/").split("/")
        if parts[0] == "products" and int(parts[1]) in self.products:
            return httpx2.Response(200, json=self.products[int(parts[1])])
        if route == "POST /orders":
            order = {**json.loads(request.content), "id": len(self.orders) + 1, "status": "placed"}
            self.orders[order["id"]] = order
            return httpx2.Response(201, json=order)
        order = self.orders.get(int(parts[1])) if parts[0] == "orders" else None
        if order is not None and parts[-1] == "pay":
            order["status"] = "paid"
            return httpx2.Response(200, json=order)
        if order is not None and parts[-1] == "status":
            return httpx2.Response(200, json={"id": order["id"], "status": order["status"]})
        return httpx2.Response(404, json={"detail": f"the fake has no {route}"})


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture
def client(fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    transport = httpx2.MockTransport(fakes.handle)
    app.dependency_overrides[providers.catalog] = lambda: providers.Provider("catalog", "FAKE_URL", transport)
    app.dependency_overrides[providers.orders] = lambda: providers.Provider("orders", "FAKE_URL", transport)
    monkeypatch.setenv("FAKE_URL", "http://fake.invalid")
    try:
        with TestClient(app) as test_client:
            yield test_client
    finally:
        app.dependency_overrides.clear()
