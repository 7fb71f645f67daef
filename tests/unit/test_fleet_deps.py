"""Dependencies between managed services (issue #19): the descriptor's ``consumes``, cycles, the order of adding,
the providers' addresses in every instance, and `service add`'s checks against real repositories and documents."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from pilotage.bus.memory import MemoryBus
from pilotage.errors import ConfigError
from pilotage.fleet.deps import (
    consumers_of,
    find_cycle,
    providers_first,
    resolve_operations,
    serving_order,
    start_waves,
)
from pilotage.fleet.descriptor import Consumes, parse_descriptor_text
from pilotage.fleet.onboard import add_services
from pilotage.fleet.registry import ManagedService, load_fleet
from pilotage.fleet.workload import instance_env, provider_addresses, workload_role
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.settings import Settings
from pilotage.spec.load import load_spec
from tests.fixtures.consumer_repo import make_consumer_repo
from tests.fixtures.fleet import commit_files
from tests.fixtures.notes_repo import make_notes_repo

BASE = 'name: shop\nstart: "{python} -m app --port {port}"\n'
CONSUMES = (
    "consumes:\n  - service: payments\n    env: PAYMENTS_URL\n    operations: [createPayment, 'GET /payments/{id}']\n"
)


def desc(name: str, consumes: str = "", extra: str = "") -> Any:
    text = f'name: {name}\nstart: "x {{port}}"\n' + (f"consumes:\n{consumes}" if consumes else "") + extra
    return parse_descriptor_text(text, path=f"{name}/pilotage.yaml")


def test_consumes_is_parsed_round_trips_and_implies_depends_on() -> None:
    descriptor = parse_descriptor_text(BASE + CONSUMES + "dependsOn: ['component:ledger', 'resource:shop-db']\n")
    assert descriptor.consumes == (Consumes("payments", "PAYMENTS_URL", ("createPayment", "GET /payments/{id}")),)
    assert descriptor.dependencies == ("payments", "ledger")  # consumes first; resource refs are no services
    again = parse_descriptor_text(__import__("json").dumps(descriptor.to_dict()))
    assert again.consumes == descriptor.consumes


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        ("  - {service: payments, env: PILOTAGE_X, operations: [a]}\n", "consumes[0].env", "reserved"),
        ("  - {service: payments, env: 9X, operations: [a]}\n", "consumes[0].env", "not an environment variable"),
        ("  - {service: ../x, env: X, operations: [a]}\n", "consumes[0].service", "not a service name"),
        ("  - {service: payments, env: X, operations: []}\n", "consumes[0].operations", "non-empty"),
        ("  - {service: payments, env: X}\n", "consumes[0]", "'operations' is a required property"),
        ("  - {service: shop, env: X, operations: [a]}\n", "consumes[0].service", "this service itself"),
        ("  - {service: p, env: X, operations: [a]}\n  - {service: p, env: Y, operations: [b]}\n",
         "consumes[1].service", "listed twice"),
        ("  - {service: p, env: X, operations: [a]}\n  - {service: q, env: X, operations: [b]}\n",
         "consumes[1].env", "also the variable of consumes[0]"),
        ("  - {service: p, env: MODE, operations: [a]}\nenv: {MODE: x}\n", "consumes[0].env", "also set in env"),
        ("  - {service: p, env: X, operations: [" + ", ".join(["a"] * 201) + "]}\n", "consumes[0].operations",
         "has 201 items, more than 200"),
    ],
)  # fmt: skip
def test_a_bad_consumes_entry_is_one_line_naming_the_field(entry: str, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_descriptor_text(BASE + "consumes:\n" + entry)
    line = info.value.one_line()
    assert "\n" not in line and line.startswith(f"pilotage.yaml: {field}: ") and words in line, line
    assert info.value.field == field


def test_find_cycle_names_the_cycle_and_providers_come_first() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    shop = desc("shop", "  - {service: orders, env: ORDERS_URL, operations: [x]}\n")
    orders = desc("orders", "  - {service: payments, env: PAYMENTS_URL, operations: [y]}\n")
    payments = desc("payments")
    order = providers_first([shop, orders, payments], {})
    assert [[shop, orders, payments][i].name for i in order] == ["payments", "orders", "shop"]
    loop = desc("payments", "  - {service: shop, env: SHOP_URL, operations: [z]}\n")
    with pytest.raises(ConfigError, match=r"dependency cycle orders → payments → shop → orders"):
        providers_first([shop, orders, loop], {})


def test_start_waves_put_providers_before_their_consumers_and_independent_services_together() -> None:
    # the example fleet: storefront → orders → payments, inventory; catalog alone
    fleet = {"storefront": ["orders"], "orders": ["payments", "inventory"], "payments": [], "inventory": [],
             "catalog": []}  # fmt: skip
    assert start_waves(fleet) == [["catalog", "inventory", "payments"], ["orders"], ["storefront"]]
    assert start_waves({"a": ["b", "outside"], "b": []}) == [["b"], ["a"]]  # an unmanaged name is no dependency
    assert start_waves({}) == []
    waves = start_waves({"a": ["b"], "b": ["a"], "c": ["a"]})  # a cycle (refused at add) still starts everything
    assert sorted(n for wave in waves for n in wave) == ["a", "b", "c"]
    assert waves[-1] == ["c"]


def _managed(name: str, port: int) -> ManagedService:
    return ManagedService(name, f"/srv/{name}", port, "c" * 40, {"name": name, "start": "x {port}"})


def test_every_instance_gets_each_providers_stable_address(tmp_path: Path) -> None:
    text = BASE + CONSUMES + "env: {DB: '{data}/shop.db'}\nscratch_env: {DB: /tmp/scratch.db}\n"
    (tmp_path / "pilotage.yaml").write_text(text, encoding="utf-8")
    addresses = provider_addresses({"payments": _managed("payments", 18201), "shop": _managed("shop", 18200)})
    assert addresses["payments"] == "http://127.0.0.1:18201"
    production = workload_role("v1", str(tmp_path), "", {"FAULT": "0"}, addresses=addresses, data_dir="/srv/d")
    scratch = workload_role("t1", str(tmp_path), "", {}, addresses=addresses, data_dir="/tmp/t", scratch=True)
    assert production["env"] == {"DB": "{data}/shop.db", "PAYMENTS_URL": "http://127.0.0.1:18201", "FAULT": "0"}
    assert scratch["env"] == {"DB": "/tmp/scratch.db", "PAYMENTS_URL": "http://127.0.0.1:18201"}
    descriptor = parse_descriptor_text(text)
    assert instance_env(descriptor, {"payments": "http://127.0.0.1:9"})["PAYMENTS_URL"] == "http://127.0.0.1:9"
    with pytest.raises(ConfigError, match=r"consumes\[0\]\.service: 'payments' is not a managed service"):
        instance_env(descriptor, {"shop": "http://127.0.0.1:18200"})


def test_operations_resolve_by_operation_id_or_method_and_path(tmp_path: Path) -> None:
    doc = load_spec(make_notes_repo(tmp_path / "notes") / "openapi.yaml")
    found, unknown = resolve_operations(doc, ["get /notes", "create_note_notes_post", "GET /nope", "listNotes"])
    assert [(f.label, f.declared_as) for f in found] == [
        ("GET /notes", "get /notes"),
        ("POST /notes", "create_note_notes_post"),
    ]
    assert found[1].operation_id == "create_note_notes_post"
    assert unknown == ["GET /nope", "listNotes"]
    digest = desc("digest", "  - {service: notes, env: NOTES_URL, operations: ['GET /notes', 'GET /gone']}\n")
    [consumer] = consumers_of("notes", {"digest": digest, "notes": desc("notes")}, doc)
    assert (consumer.service, consumer.env, consumer.labels(), consumer.unresolved) == (
        "digest",
        "NOTES_URL",
        {"GET /notes"},
        ("GET /gone",),
    )


# --- `service add` with real repositories (providers first, checked against real documents) ---------------------


def _add(tmp_path: Path, *paths: Path, graph: SQLiteGraph | None = None, bus: MemoryBus | None = None) -> Any:
    settings = Settings(home=tmp_path / "state", fleet_port_base=18960)

    async def go() -> Any:
        the_bus = bus or MemoryBus()
        the_graph = graph or SQLiteGraph(f"sqlite:///{tmp_path}/graph.db")
        added = await add_services(the_bus, the_graph, settings, None, list(paths))
        return added, await load_fleet(the_bus)

    return asyncio.run(go())


def test_services_are_added_providers_first_and_written_to_the_graph(tmp_path: Path) -> None:
    notes = make_notes_repo(tmp_path / "notes")
    digest = make_consumer_repo(tmp_path / "digest")
    graph = SQLiteGraph(f"sqlite:///{tmp_path}/graph.db")
    added, fleet = _add(tmp_path, digest, notes, graph=graph)  # the consumer named first
    assert [a["service"] for a in added] == ["notes", "digest"]
    assert set(fleet) == {"notes", "digest"}
    rows = graph.query(
        "SELECT src, type, dst FROM edges WHERE type IN ('PROVIDES','CONSUMES','DEPENDS_ON') ORDER BY 1,2,3"
    )
    assert [tuple(r.values()) for r in rows] == [
        ("Service:digest", "CONSUMES", "Operation:notes GET /notes"),
        ("Service:digest", "CONSUMES", "Operation:notes GET /notes/{note_id}"),
        ("Service:digest", "DEPENDS_ON", "Service:notes"),
        ("Service:notes", "PROVIDES", "API:notes"),
    ]
    api = graph.get_node("API:notes")
    assert api is not None and api.props["operations"] == 4  # healthz, list, create, read


def test_a_consumer_of_an_unknown_operation_or_service_is_refused_naming_the_field(tmp_path: Path) -> None:
    notes = make_notes_repo(tmp_path / "notes")
    wrong_op = make_consumer_repo(tmp_path / "digest", operations='["GET /notes", "DELETE /notes"]')
    with pytest.raises(ConfigError) as info:
        _add(tmp_path, notes, wrong_op)
    line = info.value.one_line()
    assert "digest/pilotage.yaml@" in line and "consumes[0].operations[1]: 'DELETE /notes' is not an operation" in line
    assert "get_note_notes__note_id__get" in line  # the hint lists what notes does have
    unknown = make_consumer_repo(tmp_path / "other", name="other")
    commit_files(
        unknown,
        {"pilotage.yaml": (unknown / "pilotage.yaml").read_text().replace("service: notes", "service: ledger")},
        "x",
    )
    with pytest.raises(ConfigError, match=r"consumes\[0\]\.service: 'ledger' is not a managed service \(managed: "):
        _add(tmp_path / "again", unknown)


def test_a_dependency_cycle_is_refused_at_add_naming_the_cycle(tmp_path: Path) -> None:
    notes = make_notes_repo(tmp_path / "notes")
    text = (notes / "pilotage.yaml").read_text() + "dependsOn: [digest]\n"  # digest is not managed yet
    commit_files(notes, {"pilotage.yaml": text}, "notes depends on digest")
    digest = make_consumer_repo(tmp_path / "digest")
    bus = MemoryBus()
    _add(tmp_path, notes, bus=bus)
    with pytest.raises(ConfigError) as info:
        _add(tmp_path, digest, bus=bus)
    assert "dependency cycle digest → notes → digest" in info.value.one_line()
    assert set(_add(tmp_path, bus=bus)[1]) == {"notes"}  # nothing added


def test_a_provider_document_that_cannot_be_loaded_refuses_its_consumer(tmp_path: Path) -> None:
    notes = make_notes_repo(tmp_path / "notes")
    commit_files(notes, {"openapi.yaml": "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths: 5\n"}, "broken")
    added, _ = _add(tmp_path / "a", notes)
    assert "cannot be loaded" in added[0]["note"]  # the provider itself is added; its operations are unknown
    with pytest.raises(ConfigError) as info:
        _add(tmp_path / "b", notes, make_consumer_repo(tmp_path / "digest"))
    line = info.value.one_line()
    assert "the OpenAPI document openapi.yaml of notes at " in line and "cannot be loaded" in line, line
    assert "not a valid OpenAPI 3 document" in line


def test_a_served_document_with_nothing_serving_it_is_named(tmp_path: Path) -> None:
    notes = make_notes_repo(tmp_path / "notes")
    text = (notes / "pilotage.yaml").read_text().replace("openapi: openapi.yaml", "openapi: /openapi.json")
    commit_files(notes, {"pilotage.yaml": text}, "served document")
    with pytest.raises(ConfigError) as info:
        _add(tmp_path, notes, make_consumer_repo(tmp_path / "digest"))
    line = info.value.one_line()
    assert "/openapi.json of notes at" in line and "is not running" in line and "pilotage up" in line, line


def test_a_delivery_serves_its_providers_first_production_and_new_dependencies_alike() -> None:
    payments = desc("payments", extra="dependsOn: [ledger]\n")
    ledger, audit = desc("ledger"), desc("audit")
    shop = desc("shop", "  - {service: payments, env: PAYMENTS_URL, operations: [x]}\n")
    live = {"payments": payments, "ledger": ledger, "audit": audit, "shop": shop}
    head = desc("shop", "  - {service: audit, env: AUDIT_URL, operations: [y]}\n")  # the new commit drops payments
    assert serving_order(live, "shop", head) == ["audit", "ledger", "payments", "shop"]
    assert serving_order(live, "ledger", ledger) == ["ledger"]  # payments only dependsOn it: nothing verifies
    # a delivery of payments verifies shop, whose tests call its other provider, catalog, at its stable address
    shop2 = desc("shop", "  - {service: payments, env: P_URL, operations: [x]}\n  - {service: catalog, env: C_URL, "
                 "operations: [z]}\n")  # fmt: skip
    fleet = {**live, "shop": shop2, "catalog": desc("catalog", extra="dependsOn: [audit]\n")}
    assert serving_order(fleet, "payments", payments) == ["ledger", "payments", "audit", "catalog"]


@pytest.mark.parametrize("ref", ["shop", "component:shop", "component:default/shop"])
def test_depends_on_the_service_itself_is_refused_as_consumes_is(ref: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_descriptor_text(BASE + f"dependsOn: [resource:shop-db, {json.dumps(ref)}]\n")
    assert info.value.one_line() == (
        f"pilotage.yaml: dependsOn[1]: {ref!r} is this service itself (fix: a service does not depend on itself: "
        "remove it)"
    )
    assert info.value.field == "dependsOn[1]"
    with pytest.raises(ConfigError, match=r"consumes\[0\].service: 'shop' is this service itself"):
        parse_descriptor_text(BASE + "consumes:\n  - {service: shop, env: X, operations: [a]}\n")
    kept = parse_descriptor_text(BASE + "dependsOn: ['resource:shop', 'component:shop-db']\n")
    assert kept.dependencies == ("shop-db",)  # a resource named like the service is no self-dependency
