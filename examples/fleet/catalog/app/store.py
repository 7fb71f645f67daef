"""SQLite storage of the catalog: one table of products, a connection per call.

The file is ``$CATALOG_DB_PATH`` (read on every call, so tests can point it elsewhere), by default
``catalog.db`` in the system's temporary folder. Every instance of the service that shares the path shares the
data; SQLite's write-ahead log lets readers and one writer work at once.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Products a fresh catalog starts with (fixed ids, so every instance seeds the same rows once).
SEED = [
    (1, "Espresso cup", 850),
    (2, "Milk jug", 1990),
    (3, "Coffee grinder", 12900),
]
COLUMNS = "id, name, price_cents"


def db_path() -> Path:
    """Return the database file: ``$CATALOG_DB_PATH``, else ``<tmp>/catalog.db``."""
    return Path(os.environ.get("CATALOG_DB_PATH") or Path(tempfile.gettempdir()) / "catalog.db")


@contextmanager
def connect() -> Iterator[sqlite3.Connection]:
    """Open the database, commit on success, roll back on error, always close."""
    conn = sqlite3.connect(db_path(), timeout=10.0)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()


def init(seed: bool = True) -> None:
    """Create the products table when missing; add the :data:`SEED` products to an empty catalog if ``seed``."""
    db_path().parent.mkdir(parents=True, exist_ok=True)
    with connect() as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS products ("
            "id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, price_cents INTEGER NOT NULL)"
        )
        if seed and conn.execute("SELECT COUNT(*) FROM products").fetchone()[0] == 0:
            conn.executemany("INSERT OR IGNORE INTO products (id, name, price_cents) VALUES (?, ?, ?)", SEED)


def list_products(limit: int, offset: int) -> list[dict[str, Any]]:
    """Return up to ``limit`` products after the first ``offset``, by id."""
    with connect() as conn:
        rows = conn.execute(f"SELECT {COLUMNS} FROM products ORDER BY id LIMIT ? OFFSET ?", (limit, offset))
        return [dict(row) for row in rows]


def get_product(product_id: int) -> dict[str, Any] | None:
    """Return the product ``product_id``, or None when there is none."""
    with connect() as conn:
        row = conn.execute(f"SELECT {COLUMNS} FROM products WHERE id = ?", (product_id,)).fetchone()
        return dict(row) if row else None


def create_product(name: str, price_cents: int) -> dict[str, Any]:
    """Insert a product and return it with its new id."""
    with connect() as conn:
        cur = conn.execute("INSERT INTO products (name, price_cents) VALUES (?, ?)", (name, price_cents))
        return {"id": cur.lastrowid, "name": name, "price_cents": price_cents}


def update_product(product_id: int, changes: dict[str, Any]) -> dict[str, Any] | None:
    """Apply ``changes`` (a subset of ``name``, ``price_cents``) and return the product, or None when missing."""
    with connect() as conn:
        for column in ("name", "price_cents"):
            if column in changes:
                conn.execute(f"UPDATE products SET {column} = ? WHERE id = ?", (changes[column], product_id))
        row = conn.execute(f"SELECT {COLUMNS} FROM products WHERE id = ?", (product_id,)).fetchone()
        return dict(row) if row else None
