"""Real input for deliveries (issue #17): httpbin from PyPI upgraded 0.10.3 → 0.10.4, the example fleet's services.

Each service installs its own dependencies into a venv with its descriptor's prepare step (PyPI), so these are the
slowest delivery tests; they run the CLI as a user does. Their stages are short (conftest's FAST): what is asserted
is the verdicts and where production ends up, not the length of a load test or a watch.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import FAST, fast_settings, of_type, read_log, run_cli, why_failed
from tests.fixtures.fleet import (
    bad_change,
    fresh_postgres_database,
    make_httpbin_repo,
    make_service_repo,
    trivial_change,
    upgrade_httpbin,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _work(tmp_path: Path, port: int, stages: str = FAST) -> Path:
    work = tmp_path / "ops"
    work.mkdir()
    (work / "pilotage.toml").write_text(f"fleet_port_base = {port}\n{stages}", encoding="utf-8")
    return work


def test_the_httpbin_upgrade_is_judged_through_its_proxy_and_promoted(tmp_path: Path) -> None:
    repo = make_httpbin_repo(tmp_path / "repos", "0.10.3")
    work = _work(tmp_path, 18640)
    assert run_cli(work, "service", "add", str(repo)).code == 0
    upgrade = upgrade_httpbin(repo, "0.10.4")

    result = run_cli(work, "deliver", "httpbin", "HEAD", "--json", timeout_s=900)
    assert result.code == 0, result.stdout[-3000:] + result.stderr + why_failed(work)
    assert result.json()["outcome"] == "promoted"
    events = read_log(work)
    code = of_type(events, "code.generated")[-1].data
    assert code["head_prepared"] != code["base_prepared"]  # each httpbin version got its own venv
    verdicts = [e.data for e in of_type(events, "slo.evaluated")]
    assert verdicts and all(v["healthy"] for v in verdicts)
    assert verdicts[0]["canary"]["requests"] > 0  # counted by the stable route's proxy: httpbin has no /metrics
    shown = run_cli(work, "service", "show", "httpbin", "--json").json()
    assert shown["production_commit"] == upgrade


def test_orders_keeps_its_data_in_postgresql_and_a_delivery_is_promoted(tmp_path: Path) -> None:
    for database in ("orders", "orders_scratch"):  # the latter its descriptor's scratch_env (tests' instances)
        fresh_postgres_database(database)  # as payments and inventory: an earlier run's orders name their old data
    work = _work(tmp_path, 18650, fast_settings(api_tests=True, canary_steps=(50, 100)))  # spec-derived tests asserted
    for provider in ("payments", "inventory"):  # orders pays through them (PAYMENTS_URL, INVENTORY_URL)
        added = run_cli(work, "service", "add", str(make_service_repo(provider, tmp_path / "repos")))
        assert added.code == 0, added.stderr
    repo = make_service_repo("orders", tmp_path / "repos")
    added = run_cli(work, "service", "add", str(repo))
    assert added.code == 0, added.stderr
    change = trivial_change(repo)
    result = run_cli(work, "deliver", "orders", "HEAD", "--json", timeout_s=900)
    assert result.code == 0, result.stdout[-3000:] + result.stderr + why_failed(work)
    tests = of_type(read_log(work), "tests.completed")[-1].data
    assert tests["unit"]["passed"] > 0 and tests["schemathesis"]["requests"] > 0  # own tests + spec-derived
    assert run_cli(work, "service", "show", "orders", "--json").json()["production_commit"] == change


def test_a_catalog_commit_failing_on_production_data_is_rolled_back_by_the_canary(tmp_path: Path) -> None:
    """The commit passes the catalog's own tests (one-word names) and fails on the seeded rows the canary reads."""
    repo = make_service_repo("catalog", tmp_path / "repos")
    work = _work(tmp_path, 18660)
    added = run_cli(work, "service", "add", str(repo), "--json")
    assert added.code == 0, added.stderr
    first = added.json()[0]["commit"]
    bad_change(repo, "catalog")
    result = run_cli(work, "deliver", "catalog", "HEAD", timeout_s=900)
    assert result.code == 1, result.stdout[-3000:] + result.stderr
    assert "ended rolled_back" in result.stderr
    events = read_log(work)
    verdict = of_type(events, "slo.evaluated")[-1].data
    assert verdict["action"] == "rollback" and verdict["canary"]["errors"] > 0
    assert not of_type(events, "service.released")
    assert run_cli(work, "service", "show", "catalog", "--json").json()["production_commit"] == first
