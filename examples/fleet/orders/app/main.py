"""Orders service: customers' orders of catalog products (product id, quantity, status).

Run it with ``uvicorn app.main:app``. Orders are kept in PostgreSQL (:mod:`app.db`, ``ORDERS_DATABASE_URL``);
the API is served at ``/openapi.json``, Prometheus metrics at ``/metrics`` (:mod:`app.metrics`). ``product_id``
refers to a product of the catalog service; it is not checked against the catalog (yet).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from app import db
from app.metrics import MetricsMiddleware, metrics_response

INT64_MAX = 2**63 - 1
OrderId = Annotated[int, Path(ge=1, le=INT64_MAX)]
Status = Literal["placed", "cancelled"]


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: int = Field(ge=1, le=INT64_MAX)
    quantity: int = Field(ge=1, le=1000)


class Order(BaseModel):
    id: int
    product_id: int
    quantity: int
    status: Status


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    db.open_pool()
    try:
        yield
    finally:
        db.close_pool()


app = FastAPI(title="orders", version="1.0.0", lifespan=lifespan)
app.add_middleware(MetricsMiddleware)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    return metrics_response()


@app.get("/orders", response_model=list[Order])
def list_orders(
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
) -> list[dict[str, Any]]:
    return db.list_orders(status, limit, offset)


@app.post("/orders", response_model=Order, status_code=201)
def create_order(order: OrderIn) -> dict[str, Any]:
    return db.create_order(order.product_id, order.quantity)


@app.get("/orders/{order_id}", response_model=Order)
def get_order(order_id: OrderId) -> dict[str, Any]:
    order = db.get_order(order_id)
    if order is None:
        raise HTTPException(status_code=404, detail=f"no order {order_id}")
    return order


@app.post("/orders/{order_id}/cancel", response_model=Order)
def cancel_order(order_id: OrderId) -> dict[str, Any]:
    order = db.cancel_order(order_id)
    if order is None:
        raise HTTPException(status_code=404, detail=f"no order {order_id}")
    return order
