"""Catalog service: the products the shop sells (id, name, price in cents).

Run it with ``uvicorn app.main:app``. Storage is SQLite (:mod:`app.store`, ``CATALOG_DB_PATH``); a new catalog
starts with three demo products unless ``CATALOG_SEED=0``. The API is described by ``openapi.yaml``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from app import store

INT64_MAX = 2**63 - 1
ProductId = Annotated[int, Path(ge=1, le=INT64_MAX)]


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    price_cents: int = Field(ge=0, le=100_000_000)


class ProductPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    price_cents: int | None = Field(default=None, ge=0, le=100_000_000)


class Product(BaseModel):
    id: int
    name: str
    price_cents: int


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    store.init(seed=os.environ.get("CATALOG_SEED", "1") != "0")
    yield


app = FastAPI(title="catalog", version="1.0.0", lifespan=lifespan)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/products", response_model=list[Product])
def list_products(
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0
) -> list[dict[str, object]]:
    return store.list_products(limit, offset)


@app.post("/products", response_model=Product, status_code=201)
def create_product(product: ProductIn) -> dict[str, object]:
    return store.create_product(product.name, product.price_cents)


@app.get("/products/{product_id}", response_model=Product)
def get_product(product_id: ProductId) -> dict[str, object]:
    product = store.get_product(product_id)
    if product is None:
        raise HTTPException(status_code=404, detail=f"no product {product_id}")
    return product


@app.patch("/products/{product_id}", response_model=Product)
def update_product(product_id: ProductId, patch: ProductPatch) -> dict[str, object]:
    changes = patch.model_dump(exclude_unset=True)
    if any(value is None for value in changes.values()):
        raise HTTPException(status_code=422, detail="name and price_cents cannot be null")
    product = store.update_product(product_id, changes)
    if product is None:
        raise HTTPException(status_code=404, detail=f"no product {product_id}")
    return product
