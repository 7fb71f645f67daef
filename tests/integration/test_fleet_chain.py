"""The example fleet running together (issue #19): storefront -> catalog, orders; orders -> payments, inventory.

The services start as real processes from their own git repositories (:class:`tests.fixtures.fleet_run.Processes`),
each provider's address wired by hand into the variable its consumer's descriptor names in ``consumes`` — what
Pilotage will do. orders keeps its data in a fresh PostgreSQL database per test (127.0.0.1:5432, started by
``scripts/test``). The migration test is the seed's example: storefront's new version needs a field that orders'
new version adds with a schema migration, released expand/contract.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilotage.spec.load import load_spec
from pilotage.spec.openapi import iter_operations
from tests.fixtures.fleet import (
    apply_change,
    drop_postgres_database,
    ensure_postgres_database,
    git,
    make_fleet,
    postgres_url,
    psql,
)
from tests.fixtures.fleet_run import Prepared, Processes, consumes, example_descriptor, run_tests

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: The services that call no other, started first.
PROVIDERS = ("catalog", "inventory", "payments")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    return Prepared.shared(tmp_path_factory)


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh PostgreSQL database for orders, dropped after the test."""
    name = f"fleet_chain_{os.getpid()}_{secrets.token_hex(3)}"
    ensure_postgres_database(name)
    try:
        yield name
    finally:
        drop_postgres_database(name)


def _orders_env(urls: dict[str, str], database: str) -> dict[str, str]:
    return {
        "ORDERS_DATABASE_URL": postgres_url(database),
        "PAYMENTS_URL": urls["payments"],
        "INVENTORY_URL": urls["inventory"],
    }


def _storefront_env(urls: dict[str, str], orders: str) -> dict[str, str]:
    return {"CATALOG_URL": urls["catalog"], "ORDERS_URL": orders}


def _checkout(storefront: str, product_id: int, quantity: int, **extra: Any) -> httpx.Response:
    body = {"product_id": product_id, "quantity": quantity, **extra}
    return httpx.post(storefront + "/checkout", json=body, timeout=30.0)


def _operations(repo: Path, url: str) -> set[str]:
    """Each operation of the service's OpenAPI document (its file, or as served) as operationId and METHOD /path."""
    descriptor = example_descriptor(repo)
    assert descriptor.openapi is not None
    doc = httpx.get(url + descriptor.openapi).json() if descriptor.openapi_served else load_spec(repo / "openapi.yaml")
    found = {f"{op.method.upper()} {op.path}" for op in iter_operations(doc)}
    return found | {op.operation["operationId"] for op in iter_operations(doc) if "operationId" in op.operation}


def _worktree(repo: Path, rev: str, dest: Path) -> Path:
    git(repo, "worktree", "add", "--detach", str(dest), rev)
    return dest


def _start_fleet(processes: Processes, repos: dict[str, Path], database: str) -> dict[str, str]:
    urls = {name: processes.start(name, repos[name]) for name in PROVIDERS}
    urls["orders"] = processes.start("orders", repos["orders"], _orders_env(urls, database))
    urls["storefront"] = processes.start("storefront", repos["storefront"], _storefront_env(urls, urls["orders"]))
    return urls


def _migrations(database: str) -> str:
    return psql("SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations", database)


def _columns(database: str) -> list[str]:
    query = "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders' ORDER BY ordinal_position"
    return psql(query, database).splitlines()


@dataclass
class Fleet:
    """The example fleet at commit 1, running: repositories and base URLs by service, the processes."""

    repos: dict[str, Path]
    urls: dict[str, str]
    processes: Processes


@pytest.fixture
def fleet(tmp_path: Path, prepared: Prepared, database: str) -> Iterator[Fleet]:
    repos = make_fleet(tmp_path / "repos")
    with Processes(tmp_path / "run", prepared) as processes:
        yield Fleet(repos, _start_fleet(processes, repos, database), processes)


def test_a_checkout_runs_through_orders_to_payments_and_inventory_and_lands_in_postgresql(
    fleet: Fleet, database: str
) -> None:
    repos, urls, processes = fleet.repos, fleet.urls, fleet.processes
    for consumer in ("orders", "storefront"):  # what consumes declares exists in each provider's document
        for entry in consumes(repos[consumer]):
            provider = entry["service"]
            assert set(entry["operations"]) <= _operations(repos[provider], urls[provider])

    done = _checkout(urls["storefront"], product_id=3, quantity=2)
    assert done.status_code == 201, done.text
    assert done.json() == {"order_id": 1, "status": "paid", "product_name": "Coffee grinder", "total_cents": 25800}
    query = "SELECT product_id, quantity, unit_price_cents, status, payment_id, reservation_id FROM orders"
    assert psql(query, database) == "3|2|12900|paid|1|1"
    assert _migrations(database) == "001,002"
    payment = httpx.get(urls["payments"] + "/payments/1").json()
    assert payment == {"id": 1, "order_id": 1, "amount_cents": 25800, "currency": "EUR", "status": "captured"}
    assert httpx.get(urls["inventory"] + "/reservations/1").json()["status"] == "held"
    assert httpx.get(urls["inventory"] + "/stock/3").json() == {"product_id": 3, "available": 998}
    assert httpx.get(urls["storefront"] + "/checkout/1").json() == {"order_id": 1, "status": "paid"}

    httpx.put(urls["inventory"] + "/stock/2", json={"available": 1})
    short = _checkout(urls["storefront"], product_id=2, quantity=2)
    assert short.status_code == 409
    assert short.json()["detail"] == "orders: inventory: not enough stock of product 2: 1 available, 2 asked"
    assert httpx.get(urls["payments"] + "/payments", params={"order_id": 2}).json() == []

    processes.stop("payments")
    down = _checkout(urls["storefront"], product_id=1, quantity=1)
    assert down.status_code == 502
    assert f"payments is unreachable at PAYMENTS_URL={urls['payments']}" in down.json()["detail"]
    assert httpx.get(urls["inventory"] + "/stock/1").json()["available"] == 1000  # its reservation released
    assert psql("SELECT id, status FROM orders WHERE id > 1 ORDER BY id", database) == "2|placed\n3|placed"

    processes.stop("orders")
    gone = httpx.get(urls["storefront"] + "/checkout/1")
    assert gone.status_code == 503
    assert gone.json()["detail"].startswith(f"orders is unreachable at ORDERS_URL={urls['orders']}")


def test_each_consumer_verifies_its_providers_with_its_own_tests(
    fleet: Fleet, prepared: Prepared, database: str
) -> None:
    """The consumers' tests marked ``provider(...)`` run against the live providers (none skipped) and pass."""
    for consumer in ("orders", "storefront"):
        wired = {c["env"]: fleet.urls[c["service"]] for c in consumes(fleet.repos[consumer])}
        done = run_tests(fleet.repos[consumer], prepared, wired)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-500:]
    assert int(psql("SELECT count(*) FROM orders WHERE status = 'paid'", database)) == 1  # storefront's contract


def test_the_gift_note_release_migrates_orders_first_and_the_old_orders_still_works(
    tmp_path: Path, prepared: Prepared, database: str
) -> None:
    repos = make_fleet(tmp_path / "repos")
    old = {name: git(repos[name], "rev-parse", "HEAD") for name in ("orders", "storefront")}
    new = {name: apply_change(repos[name], f"{name}-gift-note") for name in ("orders", "storefront")}
    trees = tmp_path / "checkouts"
    with Processes(tmp_path / "run", prepared) as processes:
        urls = {name: processes.start(name, repos[name]) for name in PROVIDERS}
        env = _orders_env(urls, database)
        orders_v1 = processes.start("orders-v1", _worktree(repos["orders"], old["orders"], trees / "orders-v1"), env)
        storefront_v1_tree = _worktree(repos["storefront"], old["storefront"], trees / "storefront-v1")
        storefront_v1 = processes.start("storefront-v1", storefront_v1_tree, _storefront_env(urls, orders_v1))
        assert _checkout(storefront_v1, product_id=1, quantity=1).status_code == 201
        assert "gift_note" not in _columns(database)

        # The release: orders first, beside the running version; its migration only adds a nullable column.
        orders_v2 = processes.start("orders-v2", _worktree(repos["orders"], new["orders"], trees / "orders-v2"), env)
        assert _migrations(database) == "001,002,003"
        assert _columns(database)[-1] == "gift_note"
        assert _checkout(storefront_v1, product_id=1, quantity=1).status_code == 201  # old orders, migrated schema
        assert httpx.get(orders_v1 + "/orders/2").json()["status"] == "paid"

        # Then the storefront that needs the field: against the old orders it cannot work, against the new it does.
        storefront_v2_tree = _worktree(repos["storefront"], new["storefront"], trees / "storefront-v2")
        too_early = processes.start("storefront-v2-early", storefront_v2_tree, _storefront_env(urls, orders_v1))
        refused = _checkout(too_early, product_id=1, quantity=1, gift_note="For Ana")
        assert refused.status_code == 502 and refused.json()["detail"].startswith("orders: ")
        assert "gift_note" in refused.json()["detail"]
        storefront_v2 = processes.start("storefront-v2", storefront_v2_tree, _storefront_env(urls, orders_v2))
        done = _checkout(storefront_v2, product_id=2, quantity=1, gift_note="For Ana")
        assert done.status_code == 201, done.text
        assert done.json()["gift_note"] == "For Ana" and done.json()["order_id"] == 3
        assert psql("SELECT id, coalesce(gift_note, '-') FROM orders ORDER BY id", database) == "1|-\n2|-\n3|For Ana"

        # Rolling back in reverse order leaves the schema migrated: the old orders starts on it and serves.
        for name in ("storefront-v2", "storefront-v2-early", "orders-v2", "orders-v1"):
            processes.stop(name)
        again = processes.start("orders-v1-again", trees / "orders-v1", env)
        assert httpx.get(again + "/orders/3").json()["status"] == "paid"
        placed = httpx.post(again + "/orders", json={"product_id": 1, "quantity": 1, "unit_price_cents": 850})
        assert placed.status_code == 201 and httpx.post(again + "/orders/4/pay").json()["status"] == "paid"
        assert psql("SELECT count(*) FROM schema_migrations", database) == "3"
    subprocess.run(["git", "worktree", "prune"], cwd=repos["orders"], check=False)  # noqa: S607
