"""The migration runner on a real, empty PostgreSQL database (conftest's ``empty_database``)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from app.migrate import MIGRATIONS, MigrationError, migrate, migration_files, status


def _columns(url: str, table: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
            (table,),
        ).fetchall()
    return [row[0] for row in rows]


def test_the_service_migrations_apply_in_order_once(empty_database: str) -> None:
    names = [path.name for _, path in migration_files()]
    assert names == ["001_create_orders.sql", "002_payment_and_stock.sql"]
    assert status(empty_database) == ([], ["001", "002"])
    assert migrate(empty_database) == names
    assert migrate(empty_database) == []
    assert status(empty_database) == (["001", "002"], [])
    assert _columns(empty_database, "orders") == [
        "id", "product_id", "quantity", "status", "created_at", "unit_price_cents", "payment_id", "reservation_id",
    ]  # fmt: skip


def test_a_table_made_before_migrations_is_adopted(empty_database: str) -> None:
    with psycopg.connect(empty_database, autocommit=True) as conn:  # what the service created before it migrated
        conn.execute(
            "CREATE TABLE orders (id BIGSERIAL PRIMARY KEY, product_id BIGINT NOT NULL, quantity INTEGER NOT NULL, "
            "status TEXT NOT NULL DEFAULT 'placed', created_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        conn.execute("INSERT INTO orders (product_id, quantity) VALUES (1, 2)")
    migrate(empty_database)
    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT quantity, unit_price_cents, payment_id FROM orders").fetchall() == [(2, 0, None)]


def test_a_database_migrated_further_than_the_code_is_fine(empty_database: str, tmp_path: Path) -> None:
    newer = tmp_path / "newer"
    newer.mkdir()
    for _, path in migration_files():
        (newer / path.name).write_text(path.read_text())
    (newer / "999_add_note.sql").write_text("ALTER TABLE orders ADD COLUMN note TEXT;\n")
    assert migrate(empty_database, newer)[-1] == "999_add_note.sql"
    assert migrate(empty_database, MIGRATIONS) == []  # the older code starts on the newer schema
    applied, pending = status(empty_database, MIGRATIONS)
    assert applied[-1] == "999" and pending == []


def test_an_applied_file_that_changed_stops_the_migration(empty_database: str, tmp_path: Path) -> None:
    (tmp_path / "001_t.sql").write_text("CREATE TABLE t (x INT);\n")
    migrate(empty_database, tmp_path)
    (tmp_path / "001_t.sql").write_text("CREATE TABLE t (x BIGINT);\n")
    with pytest.raises(MigrationError, match="001_t.sql changed after it was applied"):
        migrate(empty_database, tmp_path)


def test_a_failing_migration_is_rolled_back_and_not_recorded(empty_database: str, tmp_path: Path) -> None:
    (tmp_path / "001_ok.sql").write_text("CREATE TABLE t (x INT);\n")
    (tmp_path / "002_bad.sql").write_text("ALTER TABLE t ADD COLUMN y INT;\nALTER TABLE missing ADD COLUMN z INT;\n")
    with pytest.raises(psycopg.errors.UndefinedTable):
        migrate(empty_database, tmp_path)
    assert status(empty_database, tmp_path) == (["001"], ["002"])
    assert _columns(empty_database, "t") == ["x"]


def test_a_misnamed_file_or_a_number_used_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "add-note.sql").write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match="add-note.sql: a migration is named NNN_what_it_does.sql"):
        migration_files(tmp_path)
    (tmp_path / "add-note.sql").unlink()
    (tmp_path / "003_a.sql").write_text("SELECT 1;\n")
    (tmp_path / "003_b.sql").write_text("SELECT 2;\n")
    with pytest.raises(MigrationError, match="003_b.sql: 003_a.sql has the same number"):
        migration_files(tmp_path)
