"""Tests run against a real PostgreSQL: a database of their own, created for the session and dropped after it.

The server is the one of ``$ORDERS_DATABASE_URL`` (default 127.0.0.1:5432, user postgres); the test database is
``orders_test_<pid>`` on it, so parallel runs and the service's own ``orders`` database are left alone.

Payments and inventory are faked in memory (:class:`Fakes`, behind ``httpx2.MockTransport``) except in tests marked
``provider("PAYMENTS_URL", ...)``, which call the real services at those addresses and are skipped while a
variable is unset (as when the service's tests run on their own).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import httpx2
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from app import db, providers


@pytest.fixture(autouse=True)
def _skip_without_providers(request: pytest.FixtureRequest) -> None:
    for marker in request.node.iter_markers("provider"):
        for env in marker.args:
            if not os.environ.get(env):
                pytest.skip(f"{env} is not set: this test calls the real provider there")


def _create_database(name: str) -> str:
    server = conninfo_to_dict(db.database_url())
    admin = make_conninfo(**{**server, "dbname": "postgres"})
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(**{**server, "dbname": name})


def _drop_database(url: str) -> None:
    info = conninfo_to_dict(url)
    admin = make_conninfo(**{**info, "dbname": "postgres"})
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(info["dbname"]))))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = _create_database(f"orders_test_{os.getpid()}")
    try:
        yield url
    finally:
        _drop_database(url)


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A database with no tables (for the migration tests), dropped after the test."""
    url = _create_database(f"orders_test_{os.getpid()}_empty")
    try:
        yield url
    finally:
        _drop_database(url)


class Fakes:
    """Payments and inventory in memory: products 1-3 with 10 units each; ``fail`` makes a route answer a status.

    ``calls`` lists what orders sent, e.g. ``"POST /reservations"``; ``fail`` maps such a route to the status the
    fake answers instead (``{"POST /payments": 500}``), ``answer`` to a whole response. A payment or reservation the
    fake does not hold is 404, as the real services answer.
    """

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail: dict[str, int] = {}
        self.answer: dict[str, httpx2.Response] = {}
        self.stock = {1: 10, 2: 10, 3: 10}
        self.reservations: dict[int, dict] = {}
        self.payments: dict[int, dict] = {}

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        route = f"{request.method} {request.url.path}"
        self.calls.append(route)
        if route in self.answer:
            return self.answer[route]
        if route in self.fail:
            return httpx2.Response(self.fail[route], json={"detail": "fake failure"})
        body = json.loads(request.content) if request.content else {}
        parts = request.url.path.strip("/").split("/")
        if route == "POST /reservations":
            if self.stock.get(body["product_id"], 0) < body["quantity"]:
                return httpx2.Response(409, json={"detail": f"not enough stock of product {body['product_id']}"})
            self.stock[body["product_id"]] -= body["quantity"]
            found = self.reservations[len(self.reservations) + 1] = {**body, "id": len(self.reservations) + 1}
            return httpx2.Response(201, json={**found, "status": "held"})
        if request.method == "DELETE" and parts[0] == "reservations":
            if int(parts[1]) not in self.reservations:
                return httpx2.Response(404, json={"detail": f"no reservation {parts[1]}"})
            found = self.reservations[int(parts[1])]
            self.stock[found["product_id"]] += found["quantity"]
            return httpx2.Response(200, json={**found, "status": "released"})
        if route == "POST /payments":
            found = self.payments[len(self.payments) + 1] = {**body, "id": len(self.payments) + 1, "status": "captured"}
            return httpx2.Response(201, json=found)
        if parts[0] == "payments" and parts[-1] == "refund":
            if int(parts[1]) not in self.payments:
                return httpx2.Response(404, json={"detail": f"no payment {parts[1]}"})
            self.payments[int(parts[1])]["status"] = "refunded"
            return httpx2.Response(200, json=self.payments[int(parts[1])])
        return httpx2.Response(404, json={"detail": f"the fake has no {route}"})


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture
def client(database_url: str, fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("ORDERS_DATABASE_URL", database_url)
    from app.main import app

    transport = httpx2.MockTransport(fakes.handle)
    app.dependency_overrides[providers.payments] = lambda: providers.Provider("payments", "FAKE_URL", transport)
    app.dependency_overrides[providers.inventory] = lambda: providers.Provider("inventory", "FAKE_URL", transport)
    monkeypatch.setenv("FAKE_URL", "http://fake.invalid")
    try:
        with TestClient(app) as test_client:
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute("TRUNCATE orders RESTART IDENTITY")
            yield test_client
    finally:
        app.dependency_overrides.clear()
