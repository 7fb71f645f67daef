"""Issue #5: the CRUD chains' extra oracles — searches, updates in every shape, 404 after delete, page sizes.

Each oracle is checked the way the mutation benchmark uses it: the chains written for the unmutated service pass,
and a planted defect (one the oracle is for) makes the chain fail with a message that names it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pilotage.codegen.generator import generate_service
from pilotage.testing.spec_tests import infer_crud_chains, write_spec_tests

ROOT = Path(__file__).resolve().parents[2]
PETSTORE = ROOT / "tests" / "fixtures" / "specs" / "petstore3.yaml"


def test_the_metrics_contract_without_credentials_skips_with_the_setting_to_fix(petstore: Path, tmp_path: Path) -> None:
    """The generated Petstore enforces its security schemes: without PILOTAGE_TEST_HEADERS, a 401 is not a verdict."""
    service = tmp_path / "svc"
    shutil.copytree(petstore, service)
    write_spec_tests(service / "app" / "openapi.json", service, crud_examples=5)
    argv = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_pilotage_api_crud.py",
            "-k", "metrics"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("PILOTAGE_TEST_HEADERS", "PILOTAGE_TEST_PRINCIPAL")}
    run = subprocess.run(argv, cwd=service, capture_output=True, text=True, timeout=120, check=False, env=env)
    assert run.returncode == 0 and "1 skipped" in run.stdout, run.stdout[-3000:]
    assert "GET /pet/findByStatus answered 401 without credentials" in run.stdout, run.stdout[-3000:]


INVENTORY = ROOT / "examples" / "inventory-service"


def test_petstore_chains_know_its_updates_searches_and_404s() -> None:
    chains = {c.name: c for c in infer_crud_chains(yaml.safe_load(PETSTORE.read_text()))}
    assert sorted(chains) == ["pet", "store_order", "user"]
    pet, user = chains["pet"], chains["user"]
    assert [(u["method"], u["path"], u["via"], u["not_found"]) for u in pet.updates] == [
        ("POST", "/pet/{petId}", "path", False),  # updatePetWithForm: ?name=&status= name Pet properties
        ("PUT", "/pet", "body", True),  # updatePet: the key travels in the body
    ]
    assert pet.searches == [{"path": "/pet/findByStatus", "params": ["status"],
                             "exact": {"status": ["available", "pending", "sold"]}, "limit": None}]  # fmt: skip
    assert pet.scalars["status"]["enum"] == ["available", "pending", "sold"] and "tags" not in pet.scalars
    assert (pet.delete, pet.delete_not_found) == (True, False)  # DELETE /pet/{petId} declares no 404
    assert [(b["method"], b["path"]) for b in pet.below] == [("POST", "/pet/{petId}/uploadImage")]
    assert [(u["method"], u["via"], u["not_found"]) for u in user.updates] == [("PUT", "path", True)]
    assert user.delete_not_found and user.searches == [] and user.page is None


#: The run's test principal, as Pilotage gives it to a generated service and its tests (issue 18): the secured
#: Petstore operations answer 401 without it.
PRINCIPAL = {"PILOTAGE_TEST_PRINCIPAL": "pilotage:oracle-tests-principal"}


def _run_crud(service: Path, spec: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    write_spec_tests(spec, service, crud_examples=5)  # the agent's default (settings.testing_crud_examples)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_pilotage_api_crud.py"]
    return subprocess.run(
        argv,
        cwd=service,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, **PRINCIPAL, **(env or {})},
    )


def _plant(path: Path, old: str, new: str) -> None:
    source = path.read_text()
    assert source.count(old) == 1, old
    path.write_text(source.replace(old, new))


@pytest.fixture(scope="module")
def petstore(tmp_path_factory: pytest.TempPathFactory) -> Path:
    service = tmp_path_factory.mktemp("petstore")
    generate_service(PETSTORE, service)
    return service


REPLACE_BODY_WRITE = '    store.put(res["name"], key, item, scope_of(res, params))\n'
PET_DEFECTS = [
    (None, None, None),
    # replace_body's write dropped: PUT /pet answers 200 and changes nothing (a lost write)
    (REPLACE_BODY_WRITE + "    return op.respond(op.success_status, item)\n\n\ndef merge",
     "    return op.respond(op.success_status, item)\n\n\ndef merge", "after PUT /pet does not return what"),
    # find keeps nothing: findByStatus answers [] for every status
    ("            found.append(item)\n", "            pass\n", "does not return the resource whose ['status']"),
    # find ignores the filter: findByStatus answers every pet
    ("            if name not in props or", "            if name in props or", "returned 1 item(s) whose status"),
    # replace without the not-found check: PUT /user/{username} of a deleted user answers 200
    ("    _existing(store, op, res, params)\n    item = _object", "    item = _object",
     "PUT /user/{username} of the deleted resource answered 200"),
    # (no parent check on uploadImage: not planted any more — the operation is unwritten, 501 from app/handlers.py)
    # merge drops the query values: POST /pet/{petId}?name=&status= changes nothing
    ("and name != res[\"item_param\"] and", "and name == res[\"item_param\"] and", "after POST /pet/{petId} does not"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "message"), PET_DEFECTS)
def test_chain_oracles_on_the_generated_petstore(
    petstore: Path, tmp_path: Path, old: str | None, new: str | None, message: str | None
) -> None:
    service = tmp_path / "svc"
    shutil.copytree(petstore, service)
    if old is not None and new is not None:
        _plant(service / "app" / "crud.py", old, new)
    run = _run_crud(service, service / "app" / "openapi.json")  # the test principal meets the security schemes
    if message is None:
        # pet: chain, updates, key reuse, unknown keys; user: chain, updates, key reuse; order: all but updates;
        # the metrics contract
        assert run.returncode == 0 and "11 passed" in run.stdout, run.stdout[-3000:]
    else:
        assert run.returncode == 1, run.stdout[-3000:]
        assert message in run.stdout, run.stdout[-3000:]


INVENTORY_DEFECTS = [
    # the page-size default moved from the declared 20 to 21
    ("Query(default=20, ge=1, le=100)", "Query(default=21, ge=1, le=100)", "more than its default limit (20)"),
    # the low filter inverted
    ("if i.low == low]", "if i.low != low]", "GET /items with {'low':"),
    # the body default moved from the declared 0 to 1
    ("minimum: Whole = Field(default=0,", "minimum: Whole = Field(default=1,", "without minimum gave minimum=1"),
    # the query default moved from the declared 10 to 11
    ("batch: int = Query(default=10,", "batch: int = Query(default=11,", "not what it answers with the declared"),
    # a delete without the not-found check: a second DELETE answers 204
    (
        '        _load(conn, itemId)\n        conn.execute("DELETE',
        '        conn.execute("DELETE',
        "a second DELETE /items/{itemId} answered 204",
    ),
    # the reorder batch's declared range moved: batch=1001 (above the declared maximum 1000) is answered
    (
        "batch: int = Query(default=10, ge=1, le=1000)",
        "batch: int = Query(default=10, ge=1, le=1001)",
        "GET /items/{itemId}/reorder?batch=1001 (outside its declared range) answered 200",
    ),
    # and the other way: batch=1 (the declared minimum) is rejected
    (
        "batch: int = Query(default=10, ge=1, le=1000)",
        "batch: int = Query(default=10, ge=2, le=1000)",
        "GET /items/{itemId}/reorder?batch=1 (within its declared range) answered 422",
    ),
    # the id bound moved past what SQLite stores: GET /items/9223372036854775808 reaches the driver and overflows
    ("INT64_MAX = 2**63 - 1", "INT64_MAX = 2**64 - 1", "/items/9223372036854775808"),
    # requests no longer counted on /metrics: the SLO watcher would judge a canary on zero requests
    (
        "    REQUESTS.labels(request.method, template, str(response.status_code)).inc()",
        "    pass",
        "[oracle metrics/run_metrics] GET /items answered 200 3 times, but http_requests_total with status='200' "
        "(or 2xx) rose by 0; the whole counter rose by 0",
    ),
    # counted, but under a label the SLO watcher does not read
    (
        '["method", "route", "status"], registry=REGISTRY)',
        '["method", "route", "code"], registry=REGISTRY)',
        "rose by 0; the whole counter rose by 3, labels ['code', 'method', 'route']",
    ),
]


@pytest.mark.parametrize(("old", "new", "message"), INVENTORY_DEFECTS)
def test_chain_oracles_on_the_inventory_example(tmp_path: Path, old: str, new: str, message: str) -> None:
    service = tmp_path / "inventory"
    shutil.copytree(INVENTORY, service, ignore=shutil.ignore_patterns("test_pilotage_*", "__pycache__"))
    _plant(service / "app" / "main.py", old, new)
    run = _run_crud(service, service / "openapi.yaml")
    assert run.returncode == 1, run.stdout[-3000:]
    assert message in run.stdout, run.stdout[-3000:]


def test_the_metrics_contract_accepts_what_the_slo_watcher_reads(tmp_path: Path) -> None:
    """Status classes (``2xx``, as prometheus-fastapi-instrumentator groups them) and a lowercase ``method`` label
    are what the watcher counts too: no failure."""
    service = tmp_path / "inventory"
    shutil.copytree(INVENTORY, service, ignore=shutil.ignore_patterns("test_pilotage_*", "__pycache__"))
    _plant(service / "app" / "main.py", "REQUESTS.labels(request.method, template, str(response.status_code))",
           'REQUESTS.labels(request.method.lower(), template, str(response.status_code)[0] + "xx")')  # fmt: skip
    run = _run_crud(service, service / "openapi.yaml")
    assert run.returncode == 0 and "6 passed" in run.stdout, run.stdout[-3000:]


def test_the_metrics_contract_names_an_unreachable_service(tmp_path: Path) -> None:
    service = tmp_path / "inventory"
    shutil.copytree(INVENTORY, service, ignore=shutil.ignore_patterns("test_pilotage_*", "__pycache__"))
    write_spec_tests(service / "openapi.yaml", service, crud_examples=5)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_pilotage_api_crud.py", "-k",
            "metrics"]  # fmt: skip
    env = {**os.environ, "PILOTAGE_BASE_URL": "http://127.0.0.1:9/svc"}  # port 9 (discard): nothing listens
    run = subprocess.run(argv, cwd=service, capture_output=True, text=True, timeout=120, check=False, env=env)
    assert run.returncode == 1, run.stdout[-3000:]
    assert "GET http://127.0.0.1:9/svc/metrics failed (ConnectError" in run.stdout, run.stdout[-3000:]
    assert "is PILOTAGE_BASE_URL the service's address?" in run.stdout


CHECKOUT = ROOT / "src" / "pilotage" / "examples" / "checkout-service" / "openapi.yaml"
CHECKOUT_DEFECTS = [
    (None, None, None),
    # the id counter is never stored: the id of a deleted cart is handed out again
    ("            db.execute(\"INSERT OR REPLACE INTO counters", "            (\"INSERT OR REPLACE INTO counters",
     "POST /carts after a DELETE reused the deleted resource's id"),
]  # fmt: skip
CHECKOUT_CRUD_DEFECTS = [
    # nested items stored without their cart: every cart lists every item
    ("for name in res[\"scope_params\"] if name in params)", "for name in res[\"scope_params\"] if name not in params)",
     "GET /carts/{cartId}/items of another cartId lists the resource created"),
    # no parent check: an item can be added to a deleted cart
    ("        raise ApiError(op.not_found_status, f\"{parent['name']} {key} not found\")\n", "        pass\n",
     "POST /carts/{cartId}/items under a deleted cartId answered 201"),
]  # fmt: skip


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    service = tmp_path_factory.mktemp("checkout")
    generate_service(CHECKOUT, service)
    return service


def test_checkout_chains_read_nested_items_from_the_list() -> None:
    chains = {c.name: c for c in infer_crud_chains(yaml.safe_load(CHECKOUT.read_text()))}
    items = chains["carts_items"]  # /carts/{cartId}/items/{itemId} has only DELETE: read through the list
    assert (items.parent, items.has_get, items.has_list, items.create_not_found) == ("carts", False, True, True)
    assert chains["carts"].has_get and not chains["carts"].create_not_found


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [("store.py", *d) for d in CHECKOUT_DEFECTS] + [("crud.py", *d) for d in CHECKOUT_CRUD_DEFECTS],
)
def test_chain_oracles_on_the_generated_checkout(
    checkout: Path, tmp_path: Path, file: str, old: str | None, new: str | None, message: str | None
) -> None:
    service = tmp_path / "svc"
    shutil.copytree(checkout, service)
    if old is not None and new is not None:
        _plant(service / "app" / file, old, new)
    run = _run_crud(service, service / "app" / "openapi.json")
    if message is None:  # carts: chain, key reuse, unknown keys; orders: chain, unknown keys; items: all three;
        # the metrics contract (GET /carts)
        assert run.returncode == 0 and "9 passed" in run.stdout, run.stdout[-3000:]
    else:
        assert run.returncode == 1, run.stdout[-3000:]
        assert message in run.stdout, run.stdout[-3000:]


def test_searches_and_paging_that_need_a_required_query_parameter_are_left_out() -> None:
    item = {"type": "object", "properties": {"id": {"type": "integer"}, "status": {"type": "string"}}}

    def answer(code: str, schema: dict[str, object]) -> dict[str, object]:
        return {code: {"description": "ok", "content": {"application/json": {"schema": schema}}}}

    listing, created = answer("200", {"type": "array", "items": item}), answer("201", item)

    def query(name: str, required: bool, **schema: object) -> dict[str, object]:
        return {"name": name, "in": "query", "required": required, "schema": {"type": "integer", **schema}}

    doc = {
        "paths": {
            "/things": {
                "get": {"parameters": [query("limit", False, maximum=50, default=10), query("tenant", True)],
                        "responses": listing},
                "post": {"responses": created},
            },
            "/things/search": {"get": {"parameters": [query("status", True), query("q", True)], "responses": listing}},
            "/things/{thingId}": {"get": {"responses": created}},
        }
    }  # fmt: skip
    (chain,) = infer_crud_chains(doc)
    assert chain.has_list and chain.page is None and chain.searches == []
    doc["paths"]["/things"]["get"]["parameters"].pop()  # no required tenant: the list pages
    (chain,) = infer_crud_chains(doc)
    assert chain.page == {"param": "limit", "maximum": 50, "default": 10}


CATALOG = ROOT / "examples" / "fleet" / "catalog"


def _catalog(tmp_path: Path) -> Path:
    """Copy the catalog example without its own tests (they need its venv: httpx2); return the folder."""
    service = tmp_path / "catalog"
    shutil.copytree(CATALOG, service, ignore=shutil.ignore_patterns("tests", "pytest.ini", "__pycache__", "*.db"))
    return service


def test_generated_tests_pass_on_the_hand_written_catalog(tmp_path: Path) -> None:
    """examples/fleet/catalog (hand-written, openapi.yaml by hand): life cycle, paging, key reuse, unknown keys and
    updates hold; it serves no /metrics, so the metrics contract test skips (Pilotage counts at its proxy)."""
    service = _catalog(tmp_path)
    run = _run_crud(service, service / "openapi.yaml", {"CATALOG_DB_PATH": str(tmp_path / "c.db"), "CATALOG_SEED": "0"})
    assert run.returncode == 0 and "4 passed, 1 skipped" in run.stdout, run.stdout[-3000:]


def test_a_moved_list_default_is_found_on_the_collection(tmp_path: Path) -> None:
    service = _catalog(tmp_path)
    _plant(service / "app" / "main.py", "Query(ge=0, le=INT64_MAX)] = 0", "Query(ge=0, le=INT64_MAX)] = 1")
    run = _run_crud(service, service / "openapi.yaml", {"CATALOG_DB_PATH": str(tmp_path / "c.db"), "CATALOG_SEED": "0"})
    assert "FAILED tests/test_pilotage_api_crud.py::test_crud_products" in run.stdout, run.stdout[-3000:]
    assert ("GET /products does not list the resource just created" in run.stdout
            or "GET /products without ['limit', 'offset'] answered" in run.stdout), run.stdout[-3000:]  # fmt: skip
