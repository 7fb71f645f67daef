"""SQLite storage of the inventory: units in stock per product, and the reservations held against them.

The file is ``$INVENTORY_DB_PATH`` (read on every call, so tests can point it elsewhere), by default
``inventory.db`` in the system's temporary folder. A reservation takes units out of ``available`` at once and gives
them back when it is released, each in one transaction, so two instances sharing the file never oversell.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Units each of the catalog's three demo products starts with (product ids 1-3, as the catalog seeds them).
SEED = [(1, 1000), (2, 1000), (3, 1000)]
RESERVATION = "id, order_id, product_id, quantity, status"


class NotEnoughStock(Exception):
    """Fewer units of the product are available than asked for; ``available`` is what there is."""

    def __init__(self, product_id: int, available: int, asked: int) -> None:
        super().__init__(f"not enough stock of product {product_id}: {available} available, {asked} asked")
        self.available = available


def db_path() -> Path:
    """Return the database file: ``$INVENTORY_DB_PATH``, else ``<tmp>/inventory.db``."""
    return Path(os.environ.get("INVENTORY_DB_PATH") or Path(tempfile.gettempdir()) / "inventory.db")


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
    """Create the tables when missing; stock the :data:`SEED` products of an empty inventory if ``seed``."""
    db_path().parent.mkdir(parents=True, exist_ok=True)
    with connect() as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS stock (product_id INTEGER PRIMARY KEY, available INTEGER NOT NULL)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS reservations (id INTEGER PRIMARY KEY AUTOINCREMENT, order_id INTEGER NOT NULL,"
            " product_id INTEGER NOT NULL, quantity INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'held')"
        )
        if seed and conn.execute("SELECT COUNT(*) FROM stock").fetchone()[0] == 0:
            conn.executemany("INSERT OR IGNORE INTO stock (product_id, available) VALUES (?, ?)", SEED)


def get_stock(product_id: int) -> dict[str, Any] | None:
    """Return ``{"product_id", "available"}``, or None for a product never stocked."""
    with connect() as conn:
        row = conn.execute("SELECT product_id, available FROM stock WHERE product_id = ?", (product_id,)).fetchone()
        return dict(row) if row else None


def set_stock(product_id: int, available: int) -> dict[str, Any]:
    """Set the units available of a product (stocking it if new) and return its stock."""
    with connect() as conn:
        conn.execute(
            "INSERT INTO stock (product_id, available) VALUES (?, ?) "
            "ON CONFLICT (product_id) DO UPDATE SET available = excluded.available",
            (product_id, available),
        )
    return {"product_id": product_id, "available": available}


def reserve(order_id: int, product_id: int, quantity: int) -> dict[str, Any]:
    """Take ``quantity`` units out of stock for ``order_id`` and return the held reservation.

    Raises:
        NotEnoughStock: fewer than ``quantity`` units are available (nothing changes).
    """
    with connect() as conn:
        taken = conn.execute(
            "UPDATE stock SET available = available - ? WHERE product_id = ? AND available >= ?",
            (quantity, product_id, quantity),
        ).rowcount
        if not taken:
            row = conn.execute("SELECT available FROM stock WHERE product_id = ?", (product_id,)).fetchone()
            raise NotEnoughStock(product_id, row[0] if row else 0, quantity)
        cur = conn.execute(
            "INSERT INTO reservations (order_id, product_id, quantity) VALUES (?, ?, ?)",
            (order_id, product_id, quantity),
        )
        return dict(conn.execute(f"SELECT {RESERVATION} FROM reservations WHERE id = ?", (cur.lastrowid,)).fetchone())


def get_reservation(reservation_id: int) -> dict[str, Any] | None:
    """Return the reservation, or None when there is none."""
    with connect() as conn:
        row = conn.execute(f"SELECT {RESERVATION} FROM reservations WHERE id = ?", (reservation_id,)).fetchone()
        return dict(row) if row else None


def release(reservation_id: int) -> dict[str, Any] | None:
    """Give a held reservation's units back (once: releasing again changes nothing); None when there is none."""
    with connect() as conn:
        row = conn.execute(
            "UPDATE reservations SET status = 'released' WHERE id = ? AND status = 'held' "
            "RETURNING product_id, quantity",
            (reservation_id,),
        ).fetchone()
        if row is not None:
            conn.execute(
                "UPDATE stock SET available = available + ? WHERE product_id = ?", (row["quantity"], row["product_id"])
            )
        found = conn.execute(f"SELECT {RESERVATION} FROM reservations WHERE id = ?", (reservation_id,)).fetchone()
        return dict(found) if found else None
