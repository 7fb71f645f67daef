"""PostgreSQL storage of orders: a connection pool, the table, and the queries.

The database is ``$ORDERS_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/orders``); it must exist,
the ``orders`` table is created at startup when missing. Every instance of the service shares the database.
"""

from __future__ import annotations

import os
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/orders"
COLUMNS = "id, product_id, quantity, status"
#: Key of the advisory lock that serialises CREATE TABLE when two instances start together.
SCHEMA_LOCK = 1_702_017

_pool: ConnectionPool | None = None


def database_url() -> str:
    """Return ``$ORDERS_DATABASE_URL``, else :data:`DEFAULT_URL`."""
    return os.environ.get("ORDERS_DATABASE_URL") or DEFAULT_URL


def open_pool() -> None:
    """Connect (up to 8 connections) and create the ``orders`` table when missing."""
    global _pool
    _pool = ConnectionPool(database_url(), min_size=1, max_size=8, kwargs={"row_factory": dict_row}, open=False)
    _pool.open(wait=True, timeout=10.0)
    with _pool.connection() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS orders ("
            "id BIGSERIAL PRIMARY KEY, product_id BIGINT NOT NULL, quantity INTEGER NOT NULL, "
            "status TEXT NOT NULL DEFAULT 'placed', created_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )


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


def create_order(product_id: int, quantity: int) -> dict[str, Any]:
    """Insert a placed order and return it."""
    with _connection() as conn:
        row = conn.execute(
            f"INSERT INTO orders (product_id, quantity) VALUES (%s, %s) RETURNING {COLUMNS}", (product_id, quantity)
        ).fetchone()
        return dict(row)


def get_order(order_id: int) -> dict[str, Any] | None:
    """Return the order ``order_id``, or None when there is none."""
    with _connection() as conn:
        row = conn.execute(f"SELECT {COLUMNS} FROM orders WHERE id = %s", (order_id,)).fetchone()
        return dict(row) if row else None


def cancel_order(order_id: int) -> dict[str, Any] | None:
    """Mark the order cancelled (again is fine) and return it, or None when there is none."""
    with _connection() as conn:
        row = conn.execute(
            f"UPDATE orders SET status = 'cancelled' WHERE id = %s RETURNING {COLUMNS}", (order_id,)
        ).fetchone()
        return dict(row) if row else None
