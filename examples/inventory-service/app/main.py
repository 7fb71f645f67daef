"""Inventory service: a hand-written FastAPI service following the generated-service conventions.

Conventions (docs/events-contract.md): ``app.main:app``, ``GET /healthz``, ``GET /metrics`` (Prometheus counter
``http_requests_total{method, route, status}``), SQLite at ``PILOTAGE_DB_PATH``, ``PILOTAGE_FAULT_ERROR_RATE``.
Used by ``benchmarks/bench_mutation.py`` as the hand-written service under mutation.
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.routing import Match

from app.logic import is_low, reorder_quantity, value_cents

INT64_MAX = 2**63 - 1
REGISTRY = CollectorRegistry()
REQUESTS = Counter("http_requests", "HTTP requests", ["method", "route", "status"], registry=REGISTRY)
UNCOUNTED = {"/metrics", "/healthz"}

app = FastAPI(title="inventory")


def _whole(value: Any) -> Any:
    """JSON Schema counts 3.0 as an integer: accept whole floats, keep rejecting strings (strict mode)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Whole = Annotated[int, BeforeValidator(_whole)]


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    sku: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=80)
    quantity: Whole = Field(ge=0, le=1_000_000)
    minimum: Whole = Field(default=0, ge=0, le=1_000_000)
    price_cents: Whole = Field(ge=0, le=10_000_000)


class Item(BaseModel):
    id: int
    sku: str
    name: str
    quantity: int
    minimum: int
    price_cents: int
    value_cents: int
    low: bool


class Reorder(BaseModel):
    id: int
    order: int


COLUMNS = "id, sku, name, quantity, minimum, price_cents"


@contextmanager
def _db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(os.environ.get("PILOTAGE_DB_PATH", "data.db"), timeout=10.0)
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY AUTOINCREMENT, sku TEXT UNIQUE, name TEXT, "
            "quantity INTEGER, minimum INTEGER, price_cents INTEGER)"
        )
        yield conn
        conn.commit()
    finally:
        conn.close()


def _item(row: tuple[int, str, str, int, int, int]) -> Item:
    item_id, sku, name, quantity, minimum, price = row
    return Item(
        id=item_id, sku=sku, name=name, quantity=quantity, minimum=minimum, price_cents=price,
        value_cents=value_cents(quantity, price), low=is_low(quantity, minimum),
    )  # fmt: skip


def _load(conn: sqlite3.Connection, item_id: int) -> Item:
    if not 0 < item_id <= INT64_MAX:
        raise HTTPException(status_code=404, detail=f"no item {item_id}")
    row = conn.execute(f"SELECT {COLUMNS} FROM items WHERE id = ?", (item_id,)).fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail=f"no item {item_id}")
    return _item(row)


def _methods(scope: Any) -> set[str]:
    """Every method the app answers at the request's path (``Allow`` of a 405, RFC 9110 §15.5.6)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**scope, "method": "GET"})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return methods - {"HEAD"} if methods else methods


@app.middleware("http")
async def count_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    if request.url.path in UNCOUNTED:
        return await call_next(request)
    rate = float(os.environ.get("PILOTAGE_FAULT_ERROR_RATE", "0") or 0)
    if rate > 0 and random.random() < rate:
        response: Response = JSONResponse({"detail": "injected fault"}, status_code=500)
    else:
        response = await call_next(request)
    if response.status_code == 405:  # starlette names only the first matching route's methods: list them all
        response.headers["Allow"] = ", ".join(sorted(_methods(request.scope)))
    route = request.scope.get("route")
    template = getattr(route, "path", None) or request.url.path
    REQUESTS.labels(request.method, template, str(response.status_code)).inc()
    return response


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@app.get("/items", response_model=list[Item])
def list_items(limit: int = Query(default=20, ge=1, le=100), low: bool | None = None) -> list[Item]:
    with _db() as conn:
        rows = conn.execute(f"SELECT {COLUMNS} FROM items ORDER BY id").fetchall()
    items = [_item(r) for r in rows]
    if low is not None:
        items = [i for i in items if i.low == low]
    return items[:limit]


@app.post("/items", response_model=Item, status_code=201, responses={409: {"description": "SKU taken."}})
def create_item(body: ItemIn) -> Item:
    with _db() as conn:
        try:
            cur = conn.execute(
                "INSERT INTO items (sku, name, quantity, minimum, price_cents) VALUES (?, ?, ?, ?, ?)",
                (body.sku, body.name, body.quantity, body.minimum, body.price_cents),
            )
        except sqlite3.IntegrityError:
            raise HTTPException(status_code=409, detail=f"sku {body.sku} exists") from None
        return _load(conn, int(cur.lastrowid or 0))


@app.get("/items/{itemId}", response_model=Item)
def get_item(itemId: int) -> Item:  # noqa: N803 - the spec's parameter name
    with _db() as conn:
        return _load(conn, itemId)


@app.put("/items/{itemId}", response_model=Item)
def replace_item(itemId: int, body: ItemIn) -> Item:  # noqa: N803
    with _db() as conn:
        _load(conn, itemId)
        try:
            conn.execute(
                "UPDATE items SET sku = ?, name = ?, quantity = ?, minimum = ?, price_cents = ? WHERE id = ?",
                (body.sku, body.name, body.quantity, body.minimum, body.price_cents, itemId),
            )
        except sqlite3.IntegrityError:
            raise HTTPException(status_code=409, detail=f"sku {body.sku} exists") from None
        return _load(conn, itemId)


@app.delete("/items/{itemId}", status_code=204)
def delete_item(itemId: int) -> Response:  # noqa: N803
    with _db() as conn:
        _load(conn, itemId)
        conn.execute("DELETE FROM items WHERE id = ?", (itemId,))
    return Response(status_code=204)


@app.get("/items/{itemId}/reorder", response_model=Reorder)
def reorder(itemId: int, batch: int = Query(default=10, ge=1, le=1000)) -> Reorder:  # noqa: N803
    with _db() as conn:
        item = _load(conn, itemId)
    return Reorder(id=item.id, order=reorder_quantity(item.quantity, item.minimum, batch))
