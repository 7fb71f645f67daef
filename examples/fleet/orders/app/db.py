"""PostgreSQL storage of orders: a connection pool and the queries.

The database is ``$ORDERS_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/orders``); it must exist.
Its schema is the migrations' (:mod:`app.migrate`), applied when the pool opens. Every instance of the service
shares the database.
"""

from __future__ import annotations

import os
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from app.migrate import migrate

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/orders"
COLUMNS = "id, product_id, quantity, unit_price_cents, status, payment_id, reservation_id"

_pool: ConnectionPool | None = None


def database_url() -> str:
    """Return ``$ORDERS_DATABASE_URL``, else :data:`DEFAULT_URL`."""
    return os.environ.get("ORDERS_DATABASE_URL") or DEFAULT_URL


def open_pool() -> None:
    """Apply the missing migrations, then connect (up to 8 connections)."""
    global _pool
    migrate(database_url())
    _pool = ConnectionPool(database_url(), min_size=1, max_size=8, kwargs={"row_factory": dict_row}, open=False)
    _pool.open(wait=True, timeout=10.0)


def close_pool() -> None:
    """Close every connection."""
    global _pool
    if _pool is not None:
        _pool.close()
        _pool = None


def _connection() -> Any:
    if _pool is None:
        raise RuntimeError("the database pool is not open (start the app with its lifespan)")
    return _pool.connection()


def _one(query: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
    with _connection() as conn:
        row = conn.execute(query, params).fetchone()
        return dict(row) if row else None


def list_orders(status: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
    """Return up to ``limit`` orders after the first ``offset``, by id, only those in ``status`` if given."""
    with _connection() as conn:
        return list(
            conn.execute(
                f"SELECT {COLUMNS} FROM orders WHERE %(status)s::text IS NULL OR status = %(status)s "
                "ORDER BY id LIMIT %(limit)s OFFSET %(offset)s",
                {"status": status, "limit": limit, "offset": offset},
            ).fetchall()
        )


def create_order(product_id: int, quantity: int, unit_price_cents: int) -> dict[str, Any]:
    """Insert a placed order and return it."""
    query = f"INSERT INTO orders (product_id, quantity, unit_price_cents) VALUES (%s, %s, %s) RETURNING {COLUMNS}"
    order = _one(query, (product_id, quantity, unit_price_cents))
    assert order is not None
    return order


def get_order(order_id: int) -> dict[str, Any] | None:
    """Return the order ``order_id``, or None when there is none."""
    return _one(f"SELECT {COLUMNS} FROM orders WHERE id = %s", (order_id,))


def mark_paid(order_id: int, payment_id: int, reservation_id: int) -> dict[str, Any] | None:
    """Record the payment and reservation of a placed order and return it; None unless it was still placed."""
    return _one(
        f"UPDATE orders SET status = 'paid', payment_id = %s, reservation_id = %s "
        f"WHERE id = %s AND status = 'placed' RETURNING {COLUMNS}",
        (payment_id, reservation_id, order_id),
    )


def cancel_order(order_id: int) -> dict[str, Any] | None:
    """Mark the order cancelled (again is fine) and return it, or None when there is none."""
    return _one(f"UPDATE orders SET status = 'cancelled' WHERE id = %s RETURNING {COLUMNS}", (order_id,))
