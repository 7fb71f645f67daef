"""Payments service: payments of orders (amount in cents, currency), captured at once and refundable.

Run it with ``uvicorn app.main:app``. Storage is SQLite (:mod:`app.store`, ``PAYMENTS_DB_PATH``); the API is
described by ``openapi.yaml``. There is no card network in this example: a payment is captured when it is
created, unless it is over :data:`LIMIT_CENTS`, which is declined (402, nothing recorded).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from app import store

INT64_MAX = 2**63 - 1
#: The largest amount one payment may capture (10,000.00 in the currency's major unit).
LIMIT_CENTS = 1_000_000
PaymentId = Annotated[int, Path(ge=1, le=INT64_MAX)]


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: int = Field(ge=1, le=INT64_MAX)
    amount_cents: int = Field(ge=1, le=INT64_MAX)  # over LIMIT_CENTS: declined (402), not invalid
    currency: str = Field(default="EUR", pattern="^[A-Z]{3}$")


class Payment(BaseModel):
    id: int
    order_id: int
    amount_cents: int
    currency: str
    status: Literal["captured", "refunded"]


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    store.init()
    yield


app = FastAPI(title="payments", version="1.0.0", lifespan=lifespan)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/payments", response_model=list[Payment])
def list_payments(
    order_id: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    return store.list_payments(order_id, limit)


@app.post("/payments", response_model=Payment, status_code=201)
def create_payment(payment: PaymentIn) -> dict[str, Any]:
    if payment.amount_cents > LIMIT_CENTS:
        raise HTTPException(status_code=402, detail=f"declined: over the limit of {LIMIT_CENTS} cents")
    return store.create_payment(payment.order_id, payment.amount_cents, payment.currency)


@app.get("/payments/{payment_id}", response_model=Payment)
def get_payment(payment_id: PaymentId) -> dict[str, Any]:
    payment = store.get_payment(payment_id)
    if payment is None:
        raise HTTPException(status_code=404, detail=f"no payment {payment_id}")
    return payment


@app.post("/payments/{payment_id}/refund", response_model=Payment)
def refund_payment(payment_id: PaymentId) -> dict[str, Any]:
    payment = store.refund_payment(payment_id)
    if payment is None:
        raise HTTPException(status_code=404, detail=f"no payment {payment_id}")
    return payment
