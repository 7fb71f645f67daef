"""SQLite storage of payments: one table, a connection per call.

The file is ``$PAYMENTS_DB_PATH`` (read on every call, so tests can point it elsewhere), by default ``payments.db``
in the system's temporary folder. Every instance of the service that shares the path shares the data.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

COLUMNS = "id, order_id, amount_cents, currency, status"


def db_path() -> Path:
    """Return the database file: ``$PAYMENTS_DB_PATH``, else ``<tmp>/payments.db``."""
    return Path(os.environ.get("PAYMENTS_DB_PATH") or Path(tempfile.gettempdir()) / "payments.db")


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


def init() -> None:
    """Create the payments table when missing."""
    db_path().parent.mkdir(parents=True, exist_ok=True)
    with connect() as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS payments (id INTEGER PRIMARY KEY AUTOINCREMENT, order_id INTEGER NOT NULL, "
            "amount_cents INTEGER NOT NULL, currency TEXT NOT NULL, status TEXT NOT NULL)"
        )


def list_payments(order_id: int | None, limit: int) -> list[dict[str, Any]]:
    """Return up to ``limit`` payments by id, only those of ``order_id`` if given."""
    with connect() as conn:
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM payments WHERE ? IS NULL OR order_id = ? ORDER BY id LIMIT ?",
            (order_id, order_id, limit),
        )
        return [dict(row) for row in rows]


def create_payment(order_id: int, amount_cents: int, currency: str) -> dict[str, Any]:
    """Record a captured payment and return it with its new id."""
    with connect() as conn:
        cur = conn.execute(
            "INSERT INTO payments (order_id, amount_cents, currency, status) VALUES (?, ?, ?, 'captured')",
            (order_id, amount_cents, currency),
        )
        row = conn.execute(f"SELECT {COLUMNS} FROM payments WHERE id = ?", (cur.lastrowid,)).fetchone()
        return dict(row)


def get_payment(payment_id: int) -> dict[str, Any] | None:
    """Return the payment ``payment_id``, or None when there is none."""
    with connect() as conn:
        row = conn.execute(f"SELECT {COLUMNS} FROM payments WHERE id = ?", (payment_id,)).fetchone()
        return dict(row) if row else None


def refund_payment(payment_id: int) -> dict[str, Any] | None:
    """Mark the payment refunded (again is fine) and return it, or None when there is none."""
    with connect() as conn:
        conn.execute("UPDATE payments SET status = 'refunded' WHERE id = ?", (payment_id,))
        row = conn.execute(f"SELECT {COLUMNS} FROM payments WHERE id = ?", (payment_id,)).fetchone()
        return dict(row) if row else None
