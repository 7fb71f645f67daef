"""The services the storefront calls, each found through its environment variable, and the calls it makes to them.

A :class:`Provider` is a service's name and the variable that holds its base URL: ``CATALOG_URL`` and
``ORDERS_URL``, as ``consumes`` in ``pilotage.yaml`` names them (Pilotage sets each to the provider's stable
address). The variable is read on every call and has no default. A provider that cannot be reached (variable
unset, connection refused, timeout) raises :class:`ProviderError` with status 503 naming the variable; one that
answers 5xx raises it with 502, quoting the start of its answer. The app answers either as it is
(``{"detail": message}``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import httpx2
from fastapi import HTTPException


class ProviderError(Exception):
    """A provider could not be used; ``status_code`` is what the storefront answers (503 unreachable, 502 it failed)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass
class Provider:
    """A service the storefront calls: its name, the variable with its base URL, an optional transport (tests)."""

    name: str
    env: str
    transport: httpx2.BaseTransport | None = None
    timeout_s: float = 5.0
    _client: httpx2.Client | None = field(default=None, init=False, repr=False)

    def call(self, method: str, path: str, json: Any = None) -> httpx2.Response:
        """Send ``method path`` (JSON body ``json``) to the provider; return its answer unless it is 5xx."""
        base = os.environ.get(self.env, "").strip().rstrip("/")
        if not base:
            raise ProviderError(503, f"{self.name} is not configured: set {self.env} to its base URL")
        if self._client is None:
            self._client = httpx2.Client(transport=self.transport, timeout=self.timeout_s)
        try:
            response = self._client.request(method, base + path, json=json)
        except httpx2.HTTPError as exc:
            raise ProviderError(503, f"{self.name} is unreachable at {self.env}={base}: {exc!r}") from None
        if response.status_code >= 500:
            said = response.text[:300]
            raise ProviderError(502, f"{self.name} answered {response.status_code} to {method} {path}: {said}")
        return response

    def close(self) -> None:
        """Close the connections kept to the provider."""
        if self._client is not None:
            self._client.close()
            self._client = None


#: What the storefront reads of a paid order.
PAID = ("id", "status", "quantity", "unit_price_cents")
CATALOG = Provider("catalog", "CATALOG_URL")
ORDERS = Provider("orders", "ORDERS_URL")


def catalog() -> Provider:
    """The catalog service (a FastAPI dependency, so tests can override it)."""
    return CATALOG


def orders() -> Provider:
    """The orders service (a FastAPI dependency, so tests can override it)."""
    return ORDERS


def close_all() -> None:
    """Close the connections to every provider (at shutdown)."""
    CATALOG.close()
    ORDERS.close()


def _expect(response: httpx2.Response, provider: Provider, status: int, *fields: str) -> dict[str, Any]:
    """Return the JSON answer if it has ``status`` and ``fields``; else raise HTTPException.

    The exception has the provider's own status for 402, 404 and 409 (the caller's to handle), 502 for anything else.
    """
    if response.status_code == status:
        body = response.json()
        missing = [name for name in fields if not isinstance(body, dict) or name not in body]
        if missing:
            where = f"{response.request.method} {response.request.url.path}"
            raise HTTPException(
                status_code=502, detail=f"{provider.name}: no {', '.join(missing)} in its answer to {where}"
            )
        return body
    detail = response.json().get("detail") if "json" in response.headers.get("content-type", "") else response.text
    passed_on = response.status_code in (402, 404, 409)  # declined, no such thing, not enough stock: the client's
    raise HTTPException(status_code=response.status_code if passed_on else 502, detail=f"{provider.name}: {detail}")


def get_product(catalog: Provider, product_id: int) -> dict[str, Any]:
    """``getProduct``: the product's ``name`` and ``price_cents`` (404 when there is none)."""
    return _expect(catalog.call("GET", f"/products/{product_id}"), catalog, 200, "name", "price_cents")


def create_order(orders: Provider, product_id: int, quantity: int, unit_price_cents: int) -> dict[str, Any]:
    """``createOrder``: a placed order at the catalog's price."""
    body = {"product_id": product_id, "quantity": quantity, "unit_price_cents": unit_price_cents}
    return _expect(orders.call("POST", "/orders", body), orders, 201, "id")


def pay_order(orders: Provider, order_id: int) -> dict[str, Any]:
    """``payOrder``: the paid order (402 declined, 409 not enough stock)."""
    return _expect(orders.call("POST", f"/orders/{order_id}/pay"), orders, 200, *PAID)


def order_status(orders: Provider, order_id: int) -> str:
    """``GET /orders/{order_id}/status``: the order's status (404 when there is none)."""
    return _expect(orders.call("GET", f"/orders/{order_id}/status"), orders, 200, "status")["status"]
