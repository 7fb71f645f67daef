"""Releases of several services (issue #19): members, the order along the graph, the rollback order.

The descriptors are the example fleet's real commits (``tests/fixtures/fleet_changes``): orders-gift-note (additive)
with storefront-gift-note (needs it); orders-remove-order-status (removes getOrderStatus) with
storefront-use-get-order (stops calling it). The provider's impact is written in
:func:`pilotage.fleet.impact.cross_service_impact`'s shape, as ``impact_of_rev`` gives it for the removal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pilotage.errors import InputError
from pilotage.fleet.checkout import descriptor_at
from pilotage.fleet.descriptor import ServiceDescriptor
from pilotage.fleet.release import (
    Member,
    load_release_file,
    parse_members,
    plan_release,
    refuse_duplicates,
    rollback_order,
)
from tests.fixtures.fleet import apply_change, git, make_service_repo


@pytest.fixture
def repos(tmp_path: Path) -> dict[str, Path]:
    return {name: make_service_repo(name, tmp_path / "repos") for name in ("orders", "storefront")}


def _head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def _member(repo: Path, name: str, sha: str, production: str) -> Member:
    return Member(name, sha[:8], sha, production, descriptor_at(repo, sha))


def _live(repos: dict[str, Path], production: dict[str, str]) -> dict[str, ServiceDescriptor]:
    return {name: descriptor_at(repos[name], production[name]) for name in repos}


#: orders-remove-order-status's impact on its live consumer (impact_of_rev's shape).
REMOVAL: dict[str, Any] = {
    "provider": "orders",
    "breaking": [
        {
            "rule": "operation-removed",
            "operation": "GET /orders/{order_id}/status",
            "operation_id": "getOrderStatus",
            "detail": "removed",
        }
    ],  # fmt: skip
    "consumers": [
        {
            "service": "storefront",
            "env": "ORDERS_URL",
            "operations": [
                {
                    "operation": "GET /orders/{order_id}/status",
                    "operation_id": "getOrderStatus",
                    "declared_as": "GET /orders/{order_id}/status",
                    "changes": [{"rule": "operation-removed", "detail": "removed"}],
                }
            ],
        }
    ],
    "unaffected": [],
    "summary": "1 breaking change(s) of orders; used by storefront (GET /orders/{order_id}/status)",
}


def test_members_are_read_from_service_at_rev() -> None:
    members = parse_members(["orders@HEAD", "storefront@main"])
    assert [(m.service, m.rev) for m in members] == [("orders", "HEAD"), ("storefront", "main")]


@pytest.mark.parametrize("arg", ["orders", "orders@", "@HEAD"])
def test_a_member_without_service_or_rev_is_refused(arg: str) -> None:
    with pytest.raises(InputError, match=r"release member .* is not SERVICE@REV"):
        parse_members([arg])


def test_a_release_naming_a_service_twice_is_refused() -> None:
    with pytest.raises(InputError) as caught:
        parse_members(["orders@HEAD", "storefront@HEAD", "orders@main"])
    assert caught.value.message == "release names orders twice (orders@HEAD, orders@main)"
    with pytest.raises(InputError, match=r"release names orders 3 times"):
        refuse_duplicates([Member("orders", "a"), Member("orders", "b"), Member("orders", "c")])


def test_a_release_file_lists_members_and_is_checked(tmp_path: Path) -> None:
    good = tmp_path / "release.yaml"
    good.write_text("services: [orders@HEAD, storefront@HEAD]\n", encoding="utf-8")
    assert [m.service for m in load_release_file(good)] == ["orders", "storefront"]
    twice = tmp_path / "twice.yaml"
    twice.write_text("services:\n  - orders@HEAD\n  - orders@v2\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"twice.yaml: release names orders twice \(orders@HEAD, orders@v2\)"):
        load_release_file(twice)
    keys = tmp_path / "keys.yaml"  # YAML keeps the last `services` silently: which release was meant?
    keys.write_text("services: [orders@HEAD]\nservices: [storefront@HEAD]\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"keys.yaml writes the key services twice at lines 1 and 2"):
        load_release_file(keys)
    empty = tmp_path / "empty.yaml"
    empty.write_text("services: []\n", encoding="utf-8")
    with pytest.raises(InputError, match="`services` must be a non-empty list"):
        load_release_file(empty)


def test_an_additive_provider_goes_before_the_consumer_that_needs_it(repos: dict[str, Path]) -> None:
    production = {name: _head(repo) for name, repo in repos.items()}
    orders_sha = apply_change(repos["orders"], "orders-gift-note")
    storefront_sha = apply_change(repos["storefront"], "storefront-gift-note")
    members = [  # named consumer first: the order comes from the graph, not the command line
        _member(repos["storefront"], "storefront", storefront_sha, production["storefront"]),
        _member(repos["orders"], "orders", orders_sha, production["orders"]),
    ]
    plan = plan_release(members, _live(repos, production), {"orders": {"consumers": [], "breaking": []}})
    assert [m.service for m in plan.order] == ["orders", "storefront"]
    [edge] = plan.edges
    assert (edge.first, edge.then, edge.rule) == ("orders", "storefront", "additive-provider-first")
    steps = plan.steps()
    assert steps[0]["after"] == [] and steps[0]["why"] == ["depends on no other service of the release"]
    assert steps[1]["after"] == ["orders"] and steps[1]["previous_commit"] == production["storefront"]
    assert plan.summary().startswith("orders → storefront (storefront consumes orders")


def test_a_consumer_that_stops_using_an_operation_goes_before_the_provider_that_removes_it(
    repos: dict[str, Path],
) -> None:
    production = {name: _head(repo) for name, repo in repos.items()}
    orders_sha = apply_change(repos["orders"], "orders-remove-order-status")
    storefront_sha = apply_change(repos["storefront"], "storefront-use-get-order")
    members = [
        _member(repos["orders"], "orders", orders_sha, production["orders"]),
        _member(repos["storefront"], "storefront", storefront_sha, production["storefront"]),
    ]
    plan = plan_release(members, _live(repos, production), {"orders": REMOVAL})
    assert [m.service for m in plan.order] == ["storefront", "orders"]
    [edge] = plan.edges
    assert (edge.first, edge.then, edge.rule) == ("storefront", "orders", "consumer-stops-first")
    assert "stops using GET /orders/{order_id}/status before orders removes" in edge.why

    # the consumer's commit that still calls it: the provider goes first, its deploy gate asks a person
    still = _member(repos["storefront"], "storefront", production["storefront"], "0" * 40)
    plan = plan_release([members[0], still], _live(repos, production), {"orders": REMOVAL})
    assert [m.service for m in plan.order] == ["orders", "storefront"]
    assert plan.edges[0].rule == "breaking-still-used"


def test_services_that_do_not_depend_on_each_other_keep_the_given_order(repos: dict[str, Path]) -> None:
    production = {name: _head(repo) for name, repo in repos.items()}
    members = [_member(repos["orders"], "orders", production["orders"], production["orders"])]
    plan = plan_release(members, {}, {})
    assert [m.service for m in plan.order] == ["orders"] and plan.edges == []


def test_a_failed_release_rolls_back_the_promoted_services_newest_first() -> None:
    assert rollback_order(["orders", "storefront"]) == ["storefront", "orders"]
    assert rollback_order(["payments", "orders", "storefront"]) == ["storefront", "orders", "payments"]
    assert rollback_order([]) == []
