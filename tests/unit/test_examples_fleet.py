"""The example fleet (examples/fleet) as Pilotage will meet it: descriptors, own tests, and the fixtures' commits.

Each service is prepared exactly as its ``pilotage.yaml`` says (:class:`tests.fixtures.fleet_run.Prepared`: the
``prepare`` command once per test session per content of the ``prepare.inputs`` files). The orders service needs
the real PostgreSQL on 127.0.0.1:5432 (``scripts/test`` starts it). Descriptors are read with ``consumes`` set
aside (:func:`~tests.fixtures.fleet_run.example_descriptor`) until the parser accepts it (branch ``fleet-deps``).
The services running together: ``tests/integration/test_fleet_chain.py``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from pilotage.fleet.descriptor import ServiceDescriptor, load_descriptor
from pilotage.observe.samples import parse_exposition
from pilotage.rollout.traffic_plan import build_traffic_plan
from pilotage.spec.load import load_spec, validate_spec
from tests.fixtures.fleet import (
    CHANGES,
    EXAMPLES,
    FLEET,
    apply_change,
    bad_change,
    commit_files,
    ensure_postgres_database,
    make_fleet,
    make_httpbin_repo,
    make_service_repo,
    postgres_url,
    trivial_change,
    upgrade_httpbin,
)
from tests.fixtures.fleet_run import Prepared, Processes, consumes, example_descriptor, run_tests

#: The orders service's database while these tests run it (its own tests make and drop their own).
ORDERS_DB = "pilotage_fleet_example_orders"
#: The services whose own tests need a real server (PostgreSQL).
NEEDS_SERVER = {"orders"}
SERVICES = [pytest.param(s, id=s, marks=[pytest.mark.integration] if s in NEEDS_SERVER else []) for s in FLEET]


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    """``prepared(repo) -> {prepared}``: each descriptor's prepare command, once per inputs' sha256."""
    return Prepared.shared(tmp_path_factory)


def _service_env(service: str, tmp_path: Path) -> dict[str, str]:
    """Environment overrides for running ``service`` here: a private SQLite file, or the test's database."""
    if service == "catalog":
        return {"CATALOG_DB_PATH": str(tmp_path / "catalog.db")}
    ensure_postgres_database(ORDERS_DB)
    return {"ORDERS_DATABASE_URL": postgres_url(ORDERS_DB)}


@pytest.mark.parametrize("service", FLEET)
def test_descriptor_is_valid(service: str) -> None:
    descriptor = example_descriptor(EXAMPLES / service)
    assert descriptor.name == service and descriptor.provides_apis == (service,)
    assert descriptor.prepare is not None and descriptor.prepare.inputs == ("requirements.txt",)
    assert descriptor.health == "/healthz" and descriptor.test == "{prepared}/venv/bin/python -m pytest -q"
    assert "{prepared}/venv/bin/python -m uvicorn app.main:app" in descriptor.start


@pytest.mark.parametrize("service", ["catalog", "inventory", "payments"])
def test_a_service_without_providers_parses_as_it_is(service: str) -> None:
    assert load_descriptor(EXAMPLES / service) == example_descriptor(EXAMPLES / service)


@pytest.mark.parametrize("service", ["orders", "storefront"])
def test_a_consumer_descriptor_parses_with_its_consumes(service: str) -> None:
    assert load_descriptor(EXAMPLES / service).name == service


#: Per consumer: (provider, its variable, the operations used), and dependsOn, as the descriptors must say.
CONSUMES = {
    "orders": (
        [
            ("payments", "PAYMENTS_URL", ["createPayment", "refundPayment"]),
            ("inventory", "INVENTORY_URL", ["reserveStock", "releaseReservation"]),
        ],
        ("payments", "inventory"),
    ),
    "storefront": (
        [
            ("catalog", "CATALOG_URL", ["getProduct"]),
            ("orders", "ORDERS_URL", ["createOrder", "payOrder", "GET /orders/{order_id}/status"]),
        ],
        ("catalog", "orders"),
    ),
}


@pytest.mark.parametrize("service", FLEET)
def test_consumes_names_the_providers_their_variables_and_operations(service: str) -> None:
    declared = [(c["service"], c["env"], c["operations"]) for c in consumes(EXAMPLES / service)]
    expected, depends_on = CONSUMES.get(service, ([], ()))
    assert declared == expected
    assert example_descriptor(EXAMPLES / service).depends_on == depends_on
    code = "".join(p.read_text() for p in (EXAMPLES / service / "app").glob("*.py"))
    for provider, env, _ in declared:  # the service reads the provider's address from that variable
        assert f'Provider("{provider}", "{env}")' in code


def test_catalog_is_judged_by_its_proxy_from_its_openapi_file() -> None:
    descriptor = load_descriptor(EXAMPLES / "catalog")
    assert descriptor.proxy_metrics and descriptor.openapi == "openapi.yaml" and not descriptor.openapi_served
    doc = load_spec(EXAMPLES / "catalog" / "openapi.yaml")
    assert set(doc["paths"]) == {"/healthz", "/products", "/products/{product_id}"}
    assert "GET /products/1" in descriptor.traffic.requests and not descriptor.traffic.writes


def test_orders_serves_its_metrics_and_openapi_and_keeps_its_data_in_postgresql() -> None:
    descriptor = example_descriptor(EXAMPLES / "orders")
    assert descriptor.metrics == "/metrics" and descriptor.openapi == "/openapi.json" and descriptor.openapi_served
    assert descriptor.traffic.writes
    assert descriptor.env["ORDERS_DATABASE_URL"] == "postgresql://postgres@127.0.0.1:5432/orders"
    assert descriptor.scratch_env["ORDERS_DATABASE_URL"].endswith("/orders_scratch")
    migrations = sorted(p.name for p in (EXAMPLES / "orders" / "migrations").iterdir())
    assert migrations == ["001_create_orders.sql", "002_payment_and_stock.sql"]


@pytest.mark.parametrize(("service", "openapi"), [("payments", "openapi.yaml"), ("inventory", "/openapi.json")])
def test_the_new_providers_are_judged_by_their_proxy_and_take_writes(service: str, openapi: str) -> None:
    descriptor = example_descriptor(EXAMPLES / service)
    assert descriptor.proxy_metrics and descriptor.openapi == openapi and descriptor.traffic.writes
    assert descriptor.env == {f"{service.upper()}_DB_PATH": f"{{data}}/{service}.db"}


def test_the_payments_document_names_each_operation_with_an_example_amount_over_the_sca_limit() -> None:
    doc = load_spec(EXAMPLES / "payments" / "openapi.yaml")
    ids = {op["operationId"] for item in doc["paths"].values() for op in item.values() if "operationId" in op}
    assert ids == {"healthz", "listPayments", "createPayment", "getPayment", "refundPayment"}
    assert doc["components"]["schemas"]["PaymentIn"]["properties"]["amount_cents"]["example"] == 12900


def test_service_repo_commits(tmp_path: Path) -> None:
    repo = make_service_repo("catalog", tmp_path)
    assert repo == tmp_path / "catalog" and (repo / "pilotage.yaml").is_file()
    assert _log(repo) == ["initial"]
    first, second = trivial_change(repo), trivial_change(repo)
    assert first != second and len(second) == 40
    assert "# trivial change 2: no behaviour changes" in (repo / "app" / "main.py").read_text()
    sha = commit_files(repo, {"NOTES.md": "notes\n", "README.md": None}, "Notes instead of README")
    assert (repo / "NOTES.md").is_file() and not (repo / "README.md").exists()
    assert _log(repo)[0] == "Notes instead of README" and sha == _head(repo)
    with pytest.raises(FileExistsError):
        make_service_repo("catalog", tmp_path)
    with pytest.raises(FileNotFoundError, match="known: catalog, inventory, orders, payments, storefront"):
        make_service_repo("billing", tmp_path)


def test_httpbin_repo(tmp_path: Path) -> None:
    repo = make_httpbin_repo(tmp_path, "0.10.3")
    descriptor: ServiceDescriptor = load_descriptor(repo)
    assert descriptor.name == "httpbin" and descriptor.proxy_metrics and descriptor.openapi is None
    assert descriptor.health == "/status/200" and "GET /uuid" in descriptor.traffic.requests
    assert (repo / "requirements.txt").read_text().splitlines() == ["httpbin==0.10.3", "gunicorn==23.0.0"]
    sha = upgrade_httpbin(repo, "0.10.4")
    assert sha == _head(repo) and _log(repo) == ["Upgrade httpbin to 0.10.4", "initial"]
    assert (repo / "requirements.txt").read_text().splitlines()[0] == "httpbin==0.10.4"
    assert trivial_change(repo) != sha and "Revision 1." in (repo / "README.md").read_text()


def _own_tests(repo: Path, prepared: Prepared) -> str:
    """Run the descriptor's test command in ``repo`` (no provider variables set); return its output."""
    done = run_tests(repo, prepared)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
    return done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("service", SERVICES)
def test_example_passes_its_own_tests(service: str, tmp_path: Path, prepared: Prepared) -> None:
    out = _own_tests(make_service_repo(service, tmp_path), prepared)
    if service in CONSUMES:  # the tests that call the real providers wait for their variables
        assert " skipped" in out


@pytest.mark.slow
@pytest.mark.parametrize(
    "change",
    [pytest.param(c, marks=[pytest.mark.integration] if s in NEEDS_SERVER else []) for c, (s, _) in CHANGES.items()],
)
def test_each_later_commit_passes_its_services_own_tests(change: str, tmp_path: Path, prepared: Prepared) -> None:
    repo = make_service_repo(CHANGES[change][0], tmp_path)
    apply_change(repo, change)
    _own_tests(repo, prepared)


def test_later_commits_apply_as_the_scenarios_need(tmp_path: Path) -> None:
    repos = make_fleet(tmp_path / "a")
    assert list(repos) == list(FLEET) and all(_log(r) == ["initial"] for r in repos.values())
    gift = apply_change(repos["orders"], "orders-gift-note")
    assert (
        (repos["orders"] / "migrations" / "003_add_gift_note.sql")
        .read_text()
        .rstrip()
        .endswith("ALTER TABLE orders ADD COLUMN gift_note TEXT;")
    )
    breaking = apply_change(repos["orders"], "orders-remove-order-status")
    assert _head(repos["orders"]) == breaking != gift and "/status" not in (repos["orders"] / "app/main.py").read_text()
    apply_change(repos["storefront"], "storefront-gift-note")
    apply_change(repos["storefront"], "storefront-use-get-order")
    assert consumes(repos["storefront"])[1]["operations"] == ["createOrder", "payOrder", "getOrder"]
    assert "gift_note" in (repos["storefront"] / "app/providers.py").read_text()
    assert _log(repos["storefront"])[0].startswith("Read the order's status with getOrder")
    apply_change(repos["payments"], "payments-sca-check")
    assert 'payment["sca"]' in (repos["payments"] / "app/main.py").read_text()
    other = make_service_repo("orders", tmp_path / "b")  # the two orders changes apply in either order
    apply_change(other, "orders-remove-order-status")
    apply_change(other, "orders-gift-note")
    assert (other / "app/db.py").read_text() == (repos["orders"] / "app/db.py").read_text()


def test_a_change_for_another_service_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    repo = make_service_repo("catalog", tmp_path)
    with pytest.raises(ValueError, match=r"orders-gift-note \(orders\) does not apply to"):
        apply_change(repo, "orders-gift-note")
    assert _log(repo) == ["initial"] and not (repo / "migrations").exists()
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout == ""  # noqa: S607
    with pytest.raises(KeyError):
        apply_change(repo, "catalog-nothing")


#: Per service: requests (and their status) that must keep working after the bad change, and the one it breaks.
ROUTES = {
    "catalog": (
        {"GET /healthz": 200, "GET /products": 200, "PATCH /products/1": 200, "POST /products": 201},
        "GET /products/1",
    ),
    "orders": (
        {"GET /healthz": 200, "GET /orders": 200, "POST /orders/1/cancel": 200, "POST /orders": 201},
        "GET /orders/1",
    ),
}
BODIES = {
    "/products": {"name": "Filter papers", "price_cents": 399},
    "/products/1": {"price_cents": 900},
    "/orders": {"product_id": 1, "quantity": 2, "unit_price_cents": 850},
}
BREAKABLE_SERVICES = [p for p in SERVICES if p.values[0] in ROUTES]


def _status(url: str, request: str) -> int:
    method, path = request.split(" ", 1)
    return httpx.request(method, url + path, json=BODIES.get(path) if method != "GET" else None).status_code


@pytest.mark.slow
@pytest.mark.parametrize("service", BREAKABLE_SERVICES)
def test_bad_change_breaks_exactly_one_operation(service: str, tmp_path: Path, prepared: Prepared) -> None:
    repo = make_service_repo(service, tmp_path)
    env = _service_env(service, tmp_path)
    kept, broken = ROUTES[service]
    with Processes(tmp_path / "good", prepared) as processes:
        url = processes.start(service, repo, env)
        if service == "orders":
            assert _status(url, "POST /orders") == 201  # so that order 1 exists
            validate_spec(httpx.get(url + "/openapi.json").json(), path="/openapi.json")
        assert {r: _status(url, r) for r in kept} == kept
        assert _status(url, broken) == 200
    bad_change(repo, service)
    with Processes(tmp_path / "bad", prepared) as processes:
        url = processes.start(service, repo, env)
        assert _status(url, broken) == 500
        assert {r: _status(url, r) for r in kept} == kept
        if service == "orders":  # the judge reads the 500 from the service's own /metrics
            sample = parse_exposition(httpx.get(url + "/metrics").text)
            assert sample.statuses == {"500": 1, "200": 2, "201": 1} and sample.latency_count == 4


def _log(repo: Path) -> list[str]:
    out = subprocess.run(["git", "log", "--format=%s"], cwd=repo, capture_output=True, text=True, check=True)  # noqa: S607
    return out.stdout.splitlines()


def _head(repo: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)  # noqa: S607
    return out.stdout.strip()


def test_pilotages_traffic_for_the_payments_change_sends_its_changed_operation_the_failing_amount(
    tmp_path: Path,
) -> None:
    repo = make_service_repo("payments", tmp_path)
    base = load_spec(repo / "openapi.yaml")
    apply_change(repo, "payments-sca-check")
    plan = build_traffic_plan(load_spec(repo / "openapi.yaml"), base, writes=True)
    assert plan["touched"] == ["GET /payments/{payment_id}"] and plan["requests"][0]["touched"]
    assert plan["requests"][0]["params"][0]["by"] == "POST /payments"
    creates = next(r for r in plan["requests"] if r["operation"] == "POST /payments")
    assert creates["body"]["amount_cents"] >= 10_000  # the amounts the change breaks


@pytest.mark.slow
def test_the_payments_change_answers_500_on_get_payment_only(tmp_path: Path, prepared: Prepared) -> None:
    repo = make_service_repo("payments", tmp_path)
    apply_change(repo, "payments-sca-check")
    with Processes(tmp_path / "run", prepared) as processes:
        url = processes.start("payments", repo)
        large = httpx.post(url + "/payments", json={"order_id": 1, "amount_cents": 12900})
        small = httpx.post(url + "/payments", json={"order_id": 2, "amount_cents": 850})
        assert (large.status_code, small.status_code) == (201, 201)
        assert httpx.get(url + "/payments/1").status_code == 500
        assert httpx.get(url + "/payments/2").json()["authenticated"] is True
        assert httpx.get(url + "/payments").status_code == 200 and httpx.get(url + "/healthz").status_code == 200
        assert httpx.post(url + "/payments/1/refund").json()["status"] == "refunded"
