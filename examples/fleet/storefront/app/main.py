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

INT64_MAX = 2**63 - 1
Catalog = Annotated[Provider, Depends(providers.catalog)]
Orders = Annotated[Provider, Depends(providers.orders)]


class CheckoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: int = Field(ge=1, le=INT64_MAX, examples=[1])
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
    responses={402: {"description": "payment declined"}, 409: {"description": "not enough stock"}},
)
def checkout(body: CheckoutIn, catalog: Catalog, orders: Orders) -> dict[str, Any]:
    product = providers.get_product(catalog, body.product_id)
    order = providers.create_order(orders, body.product_id, body.quantity, product["price_cents"])
    paid = providers.pay_order(orders, order["id"])
    total = paid["quantity"] * paid["unit_price_cents"]
    return {"order_id": paid["id"], "status": paid["status"], "product_name": product["name"], "total_cents": total}


@app.get("/checkout/{order_id}", response_model=CheckoutStatus, operation_id="getCheckout")
def get_checkout(order_id: Annotated[int, Path(ge=1, le=INT64_MAX)], orders: Orders) -> dict[str, Any]:
    return {"order_id": order_id, "status": providers.order_status(orders, order_id)}
