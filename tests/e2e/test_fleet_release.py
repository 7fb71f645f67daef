"""Releases of several services, as a user runs them (issue #19 item 4): `pilotage deliver A@REV B@REV`.

The failing release is built on a real injected error, not latency (a loaded machine can roll back on latency
spuriously): catalog's harmless commit, then payments-sca-check, whose canary answers 500 for the document's example
amount. The gift-note release is the seed's example: orders adds gift_note with an additive migration (PostgreSQL),
storefront's new version needs it; named consumer first, delivered orders first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import fast_settings, of_type, read_log, run_cli, why_failed
from tests.fixtures.fleet import apply_change, fresh_postgres_database, make_service_repo, trivial_change

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _work(tmp_path: Path, port: int, extra: str = "") -> Path:
    """Short stages and two canary steps (the release's order and ending are asserted, not a rollout's steps); the
    previous version stays warm (standby_s default 300 s) for the rollback. ``extra``: more ``pilotage.toml`` lines."""
    work = tmp_path / "ops"
    work.mkdir()
    stages = fast_settings(canary_steps=(50, 100))
    (work / "pilotage.toml").write_text(f"fleet_port_base = {port}\n{stages}{extra}", encoding="utf-8")
    return work


#: Synthetic traffic of the gift-note release: each checkout is a chain of five requests through four proxies
#: (storefront → catalog, orders → inventory, payments), and blue and green each get their own generator during
#: the preview; at the default 40 rps each, one 2-core machine saturated in one run of two (both versions p50
#: 0.85 s: paused as shared degradation, correctly), at 10 rps it does not.
CHAIN_RPS = "synthetic_traffic_rps = 10.0\n"


def test_a_release_naming_a_service_twice_is_refused_and_nothing_is_delivered(tmp_path: Path) -> None:
    work = _work(tmp_path, 18700)
    result = run_cli(work, "deliver", "orders@HEAD", "storefront@HEAD", "orders@main")
    assert result.code == 2
    [line] = result.stderr.strip().splitlines()[:1]
    assert "release names orders twice (orders@HEAD, orders@main)" in line
    assert "Traceback" not in result.stderr
    assert not (work / ".pilotage" / "events.db").exists() or not of_type(read_log(work), "flow.started")


def test_a_release_whose_second_service_fails_its_canary_rolls_back_both(tmp_path: Path) -> None:
    work = _work(tmp_path, 18710)
    repos = {name: make_service_repo(name, tmp_path / "repos") for name in ("catalog", "payments")}
    added = run_cli(work, "service", "add", str(repos["catalog"]), str(repos["payments"]), "--json")
    assert added.code == 0, added.stderr
    first = {a["service"]: a["commit"] for a in added.json()}
    harmless = trivial_change(repos["catalog"])
    failing = apply_change(repos["payments"], "payments-sca-check")

    result = run_cli(work, "deliver", "catalog@HEAD", "payments@HEAD", "--json", timeout_s=1500)
    assert result.code == 1, result.stdout[-3000:] + result.stderr
    summary = result.json()
    assert summary["status"] == "rolled_back" and summary["error"].startswith("payments:")
    assert [d["outcome"] for d in summary["deliveries"]] == ["promoted", "rolled_back"]
    events = read_log(work)
    [planned] = of_type(events, "release.planned")
    assert [s["service"] for s in planned.data["order"]] == ["catalog", "payments"]
    assert [s["commit"] for s in planned.data["order"]] == [harmless, failing]
    [undone] = of_type(events, "release.rolled_back")
    assert undone.data["failed"] == "payments" and undone.data["not_delivered"] == []
    [catalog] = undone.data["rolled_back"]
    assert (catalog["service"], catalog["commit"], catalog["previous_commit"]) == (
        "catalog",
        harmless,
        first["catalog"],
    )
    assert catalog["standby"] is True  # the warm previous version took the stable route back
    verdict = [e.data for e in of_type(events, "slo.evaluated") if e.runid == undone.data["run_id"]][-1]
    assert verdict["action"] == "rollback" and verdict["canary"]["errors"] > 0  # the injected 500s, not latency
    released = [e.data for e in of_type(events, "service.released") if e.data["service"] == "catalog"]
    assert [r["commit"] for r in released] == [harmless, first["catalog"]]  # promoted, then given back
    for name in ("catalog", "payments"):
        shown = run_cli(work, "service", "show", name, "--json").json()
        assert shown["production_commit"] == first[name]
        assert shown["deliveries"][-1]["outcome"] == "rolled_back"  # catalog's too: promoted, then given back

    explained = run_cli(work, "explain", planned.data["decision_id"])
    assert explained.code == 0, explained.stderr
    assert "release.order → deliver catalog → payments" in explained.stdout.replace("\n", " ")


def test_the_gift_note_release_migrates_and_rolls_out_orders_then_storefront(tmp_path: Path) -> None:
    for database in ("orders", "orders_scratch"):  # empty, as payments' and inventory's data of this run
        fresh_postgres_database(database)
    work = _work(tmp_path, 18720, CHAIN_RPS)
    names = ("catalog", "inventory", "payments", "orders", "storefront")
    repos = {name: make_service_repo(name, tmp_path / "repos") for name in names}
    added = run_cli(work, "service", "add", *(str(repos[n]) for n in names), timeout_s=600)
    assert added.code == 0, added.stderr
    orders = apply_change(repos["orders"], "orders-gift-note")
    storefront = apply_change(repos["storefront"], "storefront-gift-note")

    result = run_cli(work, "deliver", "storefront@HEAD", "orders@HEAD", "--json", timeout_s=2400)
    assert result.code in (0, 1), result.stdout[-3000:] + result.stderr + why_failed(work)
    summary = result.json()
    assert [d["service"] for d in summary["deliveries"]] == ["orders", "storefront"]
    events = read_log(work)
    [planned] = of_type(events, "release.planned")
    assert planned.data["edges"][0]["rule"] == "additive-provider-first"
    assert [d["outcome"] for d in summary["deliveries"]] == ["promoted", "promoted"], why_failed(work)
    # storefront's blue-green: blue got what production's clients send (no gift_note, its body forbids extra
    # fields), green the change's requests, so the judge compared like with like
    [started] = [e for e in of_type(events, "deploy.started") if e.subject == "storefront"]
    assert sorted(started.data["traffic_plans"].values()) == ["baseline_traffic", "traffic"]
    [done] = of_type(events, "release.completed")
    assert done.data["order"] == ["orders", "storefront"]
    released = [(e.data["service"], e.data["commit"]) for e in of_type(events, "service.released")]
    assert released == [("orders", orders), ("storefront", storefront)]
