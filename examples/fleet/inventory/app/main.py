"""Inventory service: units in stock per product, and reservations that hold units for an order.

Run it with ``uvicorn app.main:app``. Storage is SQLite (:mod:`app.store`, ``INVENTORY_DB_PATH``); a new inventory
stocks the catalog's three demo products unless ``INVENTORY_SEED=0``. The API is served at ``/openapi.json``
(each operation with its ``operationId``, the names consumers list in their ``pilotage.yaml``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from app import store

INT64_MAX = 2**63 - 1
ProductId = Annotated[int, Path(ge=1, le=INT64_MAX, examples=[1])]
ReservationId = Annotated[int, Path(ge=1, le=INT64_MAX)]


class StockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    available: int = Field(ge=0, le=1_000_000_000)


class Stock(BaseModel):
    product_id: int
    available: int


class ReservationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: int = Field(ge=1, le=INT64_MAX, examples=[1])
    product_id: int = Field(ge=1, le=INT64_MAX, examples=[1])
    quantity: int = Field(ge=1, le=1000, examples=[1])


class Reservation(BaseModel):
    id: int
    order_id: int
    product_id: int
    quantity: int
    status: Literal["held", "released"]


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    store.init(seed=os.environ.get("INVENTORY_SEED", "1") != "0")
    yield


app = FastAPI(title="inventory", version="1.0.0", lifespan=lifespan)


@app.get("/healthz", operation_id="healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/stock/{product_id}", response_model=Stock, operation_id="getStock")
def get_stock(product_id: ProductId) -> dict[str, Any]:
    stock = store.get_stock(product_id)
    if stock is None:
        raise HTTPException(status_code=404, detail=f"product {product_id} is not stocked")
    return stock


@app.put("/stock/{product_id}", response_model=Stock, operation_id="setStock")
def set_stock(product_id: ProductId, stock: StockIn) -> dict[str, Any]:
    return store.set_stock(product_id, stock.available)


@app.post(
    "/reservations",
    response_model=Reservation,
    status_code=201,
    operation_id="reserveStock",
    responses={409: {"description": "not enough units available; nothing is reserved"}},
)
def reserve_stock(reservation: ReservationIn) -> dict[str, Any]:
    try:
        return store.reserve(reservation.order_id, reservation.product_id, reservation.quantity)
    except store.NotEnoughStock as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None


@app.get("/reservations/{reservation_id}", response_model=Reservation, operation_id="getReservation")
def get_reservation(reservation_id: ReservationId) -> dict[str, Any]:
    reservation = store.get_reservation(reservation_id)
    if reservation is None:
        raise HTTPException(status_code=404, detail=f"no reservation {reservation_id}")
    return reservation


@app.delete("/reservations/{reservation_id}", response_model=Reservation, operation_id="releaseReservation")
def release_reservation(reservation_id: ReservationId) -> dict[str, Any]:
    reservation = store.release(reservation_id)
    if reservation is None:
        raise HTTPException(status_code=404, detail=f"no reservation {reservation_id}")
    return reservation
