"""Orders service: customers' orders of catalog products, paid through payments, holding stock in inventory.

Run it with ``uvicorn app.main:app``. Orders are kept in PostgreSQL (:mod:`app.db`, ``ORDERS_DATABASE_URL``,
schema by :mod:`app.migrate`); the API is served at ``/openapi.json``, Prometheus metrics at ``/metrics``
(:mod:`app.metrics`). An order is placed, then paid (``payOrder``: stock reserved in inventory, then the total
charged in payments; a failed charge releases the stock), and may be cancelled (a paid one is refunded and its
stock released). The providers' addresses come from ``PAYMENTS_URL`` and ``INVENTORY_URL`` (:mod:`app.providers`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app import db, providers
from app.metrics import MetricsMiddleware, metrics_response
from app.providers import Provider, ProviderError, charge, refund, release_stock, reserve_stock

ID_MAX = 2**53 - 1  # the largest integer every JSON parser keeps exactly (RFC 8259 §6: numbers are doubles)
OrderId = Annotated[int, Path(ge=1, le=ID_MAX)]
Status = Literal["placed", "paid", "cancelled"]
Payments = Annotated[Provider, Depends(providers.payments)]
Inventory = Annotated[Provider, Depends(providers.inventory)]
#: What the document declares besides success, so clients (and contract tests) know every status orders answers.
UNKNOWN = {404: {"description": "no such order"}}
PROVIDERS = {
    502: {"description": "payments or inventory answered what orders cannot use"},
    503: {"description": "payments or inventory is unset (PAYMENTS_URL, INVENTORY_URL) or unreachable"},
}


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: int = Field(ge=1, le=ID_MAX)
    quantity: int = Field(ge=1, le=1000)
    unit_price_cents: int = Field(ge=1, le=100_000_000)


class Order(BaseModel):
    id: int
    product_id: int
    quantity: int
    unit_price_cents: int
    status: Status
    payment_id: int | None
    reservation_id: int | None


class OrderStatus(BaseModel):
    id: int
    status: Status


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    db.open_pool()
    try:
        yield
    finally:
        db.close_pool()
        providers.close_all()


app = FastAPI(title="orders", version="1.0.0", lifespan=lifespan)
app.add_middleware(MetricsMiddleware)


@app.exception_handler(ProviderError)
async def provider_error(_: Request, exc: ProviderError) -> JSONResponse:
    return JSONResponse(status_code=exc.status_code, content={"detail": str(exc)})


@app.get("/healthz", operation_id="healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    return metrics_response()


@app.get("/orders", response_model=list[Order], operation_id="listOrders")
def list_orders(
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=ID_MAX)] = 0,
) -> list[dict[str, Any]]:
    return db.list_orders(status, limit, offset)


@app.post("/orders", response_model=Order, status_code=201, operation_id="createOrder")
def create_order(order: OrderIn) -> dict[str, Any]:
    return db.create_order(order.product_id, order.quantity, order.unit_price_cents)


def _existing(order_id: int) -> dict[str, Any]:
    order = db.get_order(order_id)
    if order is None:
        raise HTTPException(status_code=404, detail=f"no order {order_id}")
    return order


@app.get("/orders/{order_id}", response_model=Order, operation_id="getOrder", responses=UNKNOWN)
def get_order(order_id: OrderId) -> dict[str, Any]:
    return _existing(order_id)


@app.get(
    "/orders/{order_id}/status", response_model=OrderStatus, operation_id="getOrderStatus", deprecated=True,
    responses=UNKNOWN,
)  # fmt: skip
def get_order_status(order_id: OrderId) -> dict[str, Any]:
    """Deprecated: ``getOrder`` has the status too."""
    return _existing(order_id)


@app.post(
    "/orders/{order_id}/pay", response_model=Order, operation_id="payOrder",
    responses={
        **UNKNOWN, **PROVIDERS,
        402: {"description": "payments declined the charge"},
        409: {"description": "the order is cancelled, or inventory has not enough units"},
    },
)  # fmt: skip
def pay_order(order_id: OrderId, payments: Payments, inventory: Inventory) -> dict[str, Any]:
    order = _existing(order_id)
    if order["status"] != "placed":
        if order["status"] == "paid":
            return order
        raise HTTPException(status_code=409, detail=f"order {order_id} is {order['status']}")
    reservation = reserve_stock(inventory, order)
    try:
        payment = charge(payments, order)
    except (ProviderError, HTTPException):
        release_stock(inventory, reservation["id"])
        raise
    paid = db.mark_paid(order_id, payment["id"], reservation["id"])
    if paid is None:  # paid or cancelled meanwhile by another request: undo this one
        refund(payments, payment["id"])
        release_stock(inventory, reservation["id"])
        return _existing(order_id)
    return paid


@app.post(
    "/orders/{order_id}/cancel", response_model=Order, operation_id="cancelOrder", responses={**UNKNOWN, **PROVIDERS}
)
def cancel_order(order_id: OrderId, payments: Payments, inventory: Inventory) -> dict[str, Any]:
    order = _existing(order_id)
    if order["status"] == "paid":
        refund(payments, order["payment_id"])
        release_stock(inventory, order["reservation_id"])
    cancelled = db.cancel_order(order_id)
    if cancelled is None:
        raise HTTPException(status_code=404, detail=f"no order {order_id}")
    return cancelled
