"""Tests run against a real PostgreSQL: a database of their own, created for the session and dropped after it.

The server is the one of ``$ORDERS_DATABASE_URL`` (default 127.0.0.1:5432, user postgres); the test database is
``orders_test_<pid>`` on it, so parallel runs and the service's own ``orders`` database are left alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from app import db


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    server = conninfo_to_dict(db.database_url())
    name = f"orders_test_{os.getpid()}"
    admin = make_conninfo(**{**server, "dbname": "postgres"})
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(**{**server, "dbname": name})
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def client(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("ORDERS_DATABASE_URL", database_url)
    from app.main import app

    with TestClient(app) as test_client:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("TRUNCATE orders RESTART IDENTITY")
        yield test_client
