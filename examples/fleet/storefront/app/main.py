"""Storefront service: what the shop's web pages call to buy a product and to follow the order.

Run it with ``uvicorn app.main:app``. It keeps no data of its own: a checkout reads the product's price from the
catalog, places the order with orders, then has orders pay it (orders reserves the stock in inventory and charges
payments). The providers' addresses come from ``CATALOG_URL`` and ``ORDERS_URL`` (:mod:`app.providers`). The API is
served at ``/openapi.json``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app import providers
from app.providers import Provider, ProviderError

#: Ids (of a product, of an order) go up to orders' bound, the largest integer every JSON parser keeps exactly: an id
#: the document accepts is one orders accepts too (a larger one is refused here with 422, not answered 502 by orders'
#: 422). It is also a float exactly, so the body schema's ``maximum`` (written as a float) is this very number.
ID_MAX = 2**53 - 1
Catalog = Annotated[Provider, Depends(providers.catalog)]
Orders = Annotated[Provider, Depends(providers.orders)]
#: What either operation answers when a provider fails (:mod:`app.providers`).
PROVIDER_FAILURES: dict[int | str, dict[str, Any]] = {
    502: {"description": "a provider failed (its answer quoted)"},
    503: {"description": "a provider is not configured or unreachable (its variable named)"},
}


class CheckoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: int = Field(ge=1, le=ID_MAX, examples=[1])
    quantity: int = Field(ge=1, le=1000, examples=[1])


class Checkout(BaseModel):
    order_id: int
    status: str
    product_name: str
    total_cents: int


class CheckoutStatus(BaseModel):
    order_id: int
    status: str


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    try:
        yield
    finally:
        providers.close_all()


app = FastAPI(title="storefront", version="1.0.0", lifespan=lifespan)


@app.exception_handler(ProviderError)
async def provider_error(_: Request, exc: ProviderError) -> JSONResponse:
    return JSONResponse(status_code=exc.status_code, content={"detail": str(exc)})


@app.get("/healthz", operation_id="healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post(
    "/checkout",
    response_model=Checkout,
    status_code=201,
    operation_id="checkout",
    responses={
        400: {"description": "the body is not JSON"},
        402: {"description": "payment declined"},
        404: {"description": "no such product in the catalog"},
        409: {"description": "not enough stock"},
        **PROVIDER_FAILURES,
    },
)
def checkout(body: CheckoutIn, catalog: Catalog, orders: Orders) -> dict[str, Any]:
    product = providers.get_product(catalog, body.product_id)
    order = providers.create_order(orders, body.product_id, body.quantity, product["price_cents"])
    paid = providers.pay_order(orders, order["id"])
    total = paid["quantity"] * paid["unit_price_cents"]
    return {"order_id": paid["id"], "status": paid["status"], "product_name": product["name"], "total_cents": total}


@app.get(
    "/checkout/{order_id}",
    response_model=CheckoutStatus,
    operation_id="getCheckout",
    responses={404: {"description": "no such order"}, **PROVIDER_FAILURES},
)
def get_checkout(order_id: Annotated[int, Path(ge=1, le=ID_MAX)], orders: Orders) -> dict[str, Any]:
    return {"order_id": order_id, "status": providers.order_status(orders, order_id)}
