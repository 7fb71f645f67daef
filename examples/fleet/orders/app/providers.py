"""The services orders calls, each found through its environment variable, and the calls it makes to them.

A :class:`Provider` is a service's name and the variable that holds its base URL: ``PAYMENTS_URL`` and
``INVENTORY_URL``, as ``consumes`` in ``pilotage.yaml`` names them (Pilotage sets each to the provider's stable
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
    """A provider could not be used; ``status_code`` is what orders answers (503 unreachable, 502 it failed)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass
class Provider:
    """A service orders calls: its name, the variable with its base URL, an optional transport (tests)."""

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


PAYMENTS = Provider("payments", "PAYMENTS_URL")
INVENTORY = Provider("inventory", "INVENTORY_URL")


def payments() -> Provider:
    """The payments service (a FastAPI dependency, so tests can override it)."""
    return PAYMENTS


def inventory() -> Provider:
    """The inventory service (a FastAPI dependency, so tests can override it)."""
    return INVENTORY


def close_all() -> None:
    """Close the connections to every provider (at shutdown)."""
    PAYMENTS.close()
    INVENTORY.close()


def _expect(response: httpx2.Response, provider: Provider, status: int, *fields: str) -> dict[str, Any]:
    """Return the JSON object answered if it has ``status`` and ``fields``; else raise HTTPException.

    The exception has the provider's own status for 402 and 409 (the caller's to handle), 502 for anything else: an
    other status (404 for a payment or reservation the provider does not know), or a body that is not a JSON object
    with ``fields``. Its detail quotes the provider's ``detail`` (else the start of its answer).
    """
    where = f"{response.request.method} {response.request.url.path}"
    body = _json_object(response)
    if response.status_code == status:
        missing = [name for name in fields if name not in (body or {})]
        if body is None or missing:
            what = f"no {', '.join(missing)} in" if missing else "no JSON object in"
            raise HTTPException(status_code=502, detail=f"{provider.name}: {what} its answer to {where}")
        return body
    said = body.get("detail") if body is not None and "detail" in body else response.text[:300]
    conflict = response.status_code in (402, 409)  # declined, not enough stock: the caller's to handle
    raise HTTPException(status_code=response.status_code if conflict else 502, detail=f"{provider.name}: {said}")


def _json_object(response: httpx2.Response) -> dict[str, Any] | None:
    """The answer's body if it is a JSON object, else None (another JSON value, or not JSON at all)."""
    try:
        body = response.json()
    except ValueError:  # json.JSONDecodeError, UnicodeDecodeError: what a provider answers is not trusted
        return None
    return body if isinstance(body, dict) else None


def reserve_stock(inventory: Provider, order: dict[str, Any]) -> dict[str, Any]:
    """``reserveStock``: hold the order's units; return the reservation (409 when there are not enough)."""
    body = {"order_id": order["id"], "product_id": order["product_id"], "quantity": order["quantity"]}
    return _expect(inventory.call("POST", "/reservations", body), inventory, 201, "id")


def release_stock(inventory: Provider, reservation_id: int) -> dict[str, Any]:
    """``releaseReservation``: give the held units back (releasing again changes nothing)."""
    return _expect(inventory.call("DELETE", f"/reservations/{reservation_id}"), inventory, 200)


def charge(payments: Provider, order: dict[str, Any]) -> dict[str, Any]:
    """``createPayment`` for the order's total; return the payment (402 when it is declined)."""
    body = {"order_id": order["id"], "amount_cents": order["quantity"] * order["unit_price_cents"]}
    return _expect(payments.call("POST", "/payments", body), payments, 201, "id")


def refund(payments: Provider, payment_id: int) -> dict[str, Any]:
    """``refundPayment`` in full (refunding again changes nothing)."""
    return _expect(payments.call("POST", f"/payments/{payment_id}/refund"), payments, 200)
