"""The seed's strategy table end to end (issue 16): a small change is canaried, a large one released behind a flag.

The moderate change — the demo's, rolled out blue-green — is ``tests/e2e/test_demo.py``. Here ``pilotage run``
gets a change of a known size (source lines changed over the base's source lines) and an injected fault, and the
log must show the strategy the table gives, the fault caught, and the strategy's own way back.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pilotage.spec.evolve import evolve
from pilotage.spec.grammar import parse_request
from tests.e2e.conftest import of_type, read_log, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: Small test budgets: the point here is the rollout, not the test or load-test agents (smaller than conftest's FAST,
#: whose 2 s analysis window this module does not take: 3 s, the default).
FAST = "schemathesis_max_examples = 1\nload_test_duration_s = 1.0\nanalysis_window_s = 3.0\n"
STATUS_ONLY: dict = {
    "openapi": "3.0.3",
    "info": {"title": "status", "version": "1.0.0"},
    "paths": {
        "/status": {
            "get": {
                "operationId": "getStatus",
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}}
                            }
                        },
                    }
                },
            }
        }
    },
}


def _write(tmp_path: Path, doc: dict) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    (tmp_path / "pilotage.toml").write_text(FAST, encoding="utf-8")
    return spec


def _run(tmp_path: Path, spec: Path, request: str) -> list:
    result = run_cli(tmp_path, "run", "--spec", str(spec), "--request", request, "--inject-fault", "0.3", "--json")
    assert result.code == 0, result.stderr + result.stdout
    summary = result.json()
    assert summary["outcome"] == "rolled_back", summary
    return [e for e in read_log(tmp_path) if e.runid == summary["run_id"]]


def test_a_small_change_is_canaried_and_a_fault_rolls_it_back(tmp_path: Path) -> None:
    doc = STATUS_ONLY
    for name in ("orders", "invoices", "customers", "products", "carts", "payments", "refunds", "shipments"):
        doc = evolve(doc, parse_request(f"Add {name} support with fields name:string, amount:integer"))
    for name in ("reviews", "coupons", "stores", "vendors", "warehouses", "returns", "regions", "tickets"):
        doc = evolve(doc, parse_request(f"Add {name} support with fields name:string, amount:integer"))
    run = _run(tmp_path, _write(tmp_path, doc), "Add discount code support with fields code:string, percent:integer")
    decision = next(e.data for e in of_type(run, "decision.made") if e.data["kind"] == "deploy.strategy")
    assert decision["inputs"]["change_percent"] <= 5.0, decision["inputs"]
    assert decision["score"]["table_strategy"] == "canary" and decision["action"] == "canary"
    steps = [e.data for e in of_type(run, "deploy.step")]
    assert steps[0]["weight"] == 10 and steps[0]["phase"] == "step"  # the canary's first weight, real users' share
    warm = steps[0]["warmup"]  # the fresh canary got 20 requests at its own address before the step's analysis
    assert warm["requests"] == warm["sent"] == 20 and sum(warm["statuses"].values()) + warm["failures"] == 20
    verdict = next(e.data for e in of_type(run, "slo.evaluated") if e.data["step"] == 0)
    assert verdict["warmup"] == warm  # recorded beside the verdict, not judged
    rolled = of_type(run, "deploy.rolled_back")[0].data
    assert rolled["strategy"] == "canary" and rolled["phase"] == "step"
    report = Path(of_type(run, "incident.opened")[0].data["report_path"]).read_text(encoding="utf-8")
    # back to production alone on the service's stable route (issue 17), the canary stopped
    assert "stable route service:spec: production" in report and "stopped" in report
    assert not of_type(run, "deploy.promoted")


def test_a_large_change_goes_behind_a_flag_and_a_fault_turns_the_flag_off(tmp_path: Path) -> None:
    request = (
        "Add customer profile support with fields name:string, email:string, phone:string, street:string, "
        "city:string, zip:string, country:string, birthday:date, vip:boolean, credit:number, visits:integer, "
        "company:string, title:string, fax:string, mobile:string, region:string, language:string, "
        "currency:string, timezone:string, referrer:string, segment:string, score:number, tier:integer, "
        "note:string?"
    )
    run = _run(tmp_path, _write(tmp_path, STATUS_ONLY), request)
    decision = next(e.data for e in of_type(run, "decision.made") if e.data["kind"] == "deploy.strategy")
    assert decision["inputs"]["change_percent"] > 20.0, decision["inputs"]
    assert decision["action"] == "feature-flag"
    started = of_type(run, "deploy.started")[0].data
    assert started["flag_key"] and started["flags_url"].startswith("http://127.0.0.1:")
    steps = [e.data for e in of_type(run, "deploy.step")]
    assert steps[0]["weight"] == 5  # 5 % of targeting keys get the new operations
    judged = of_type(run, "slo.evaluated")[-1].data
    assert judged["action"] == "rollback"  # flag-on requests failed, flag-off ones did not
    rolled = of_type(run, "deploy.rolled_back")[0].data
    assert rolled["strategy"] == "feature-flag" and "turned off" in rolled["reason"]
    # no process restarted: users were protected by the flag turned off (the new version, started once, is
    # stopped after that, leaving production alone on the stable route: issue 17)
    assert len(of_type(run, "deploy.started")) == 1 and not of_type(run, "deploy.resumed")
    report = Path(of_type(run, "incident.opened")[0].data["report_path"]).read_text(encoding="utf-8")
    assert "feature flag" in report and "off for every targeting key" in report
    assert "stopped" not in report.split("feature flag", 1)[1].split("\n", 1)[0]
    assert "stable route service:spec: production" in report
