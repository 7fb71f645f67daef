"""``pilotage demo`` and ``pilotage demo --inject-fault`` end to end, asserting on the events in the log.

The first test runs the README's first command as shipped (no ``pilotage.toml``: the embedded defaults); the others
assert nothing about the length of a load test, a watch or schemathesis' examples, and run with conftest's FAST.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import FAST, of_type, read_log, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_demo_promotes_and_records_every_decision(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "demo", "--json")
    assert result.code == 0, result.stderr
    summary = result.json()
    assert summary["status"] == "completed" and summary["outcome"] == "promoted"
    events = read_log(tmp_path)
    run = [e for e in events if e.runid == summary["run_id"]]
    types = [e.type.removeprefix("dev.pilotage.") for e in run]
    for needed in (
        "flow.started",
        "spec.proposed",
        "spec.validated",
        "code.generated",
        "pr.opened",
        "policy.evaluated",
        "tests.completed",
        "perf.measured",
        "deploy.requested",
        "deploy.started",
        "deploy.step",
        "slo.evaluated",
        "deploy.promoted",
        "env.scaled_down",
        "model.updated",
        "flow.completed",
    ):
        assert needed in types, f"{needed} missing from {types}"
    assert types.index("spec.validated") < types.index("code.generated") < types.index("tests.completed")
    assert types.index("tests.completed") < types.index("deploy.started") < types.index("deploy.promoted")
    decisions = [e.data for e in of_type(run, "decision.made")]
    agents = {d["agent"] for d in decisions}
    assert {
        "design",
        "codegen",
        "governance",
        "testing",
        "performance",
        "deployment",
        "reliability",
        "rollout",
        "learning",
    } <= agents
    for d in decisions:
        assert d["inputs"], f"decision {d['kind']} has no inputs"
        assert d["rationale"] and d["rule"], f"decision {d['kind']} has no rationale/rule"
    strategy = next(d for d in decisions if d["kind"] == "deploy.strategy")
    # issue 3: every rollout step is an slo.assessment on the bundled slo.yaml; the last one is the post-promotion watch
    steps = [d for d in decisions if d["kind"] == "slo.assessment"]
    assert steps and all(d["action"] == "continue" for d in steps)
    assert steps[0]["inputs"]["slo"]["path"].endswith("checkout-service/slo.yaml")
    assert steps[-1]["inputs"]["phase"] == "watch" and steps[-1]["inputs"]["weight"] == 100
    assert len(steps[0]["inputs"]["canary_series"]) >= 2 and steps[0]["score"]["assessment"]["outcome"] == "pass"
    # issue 16: the demo's change is moderate (5–20 % of the source lines) → blue-green, as in the seed's step 6
    assert 5.0 < strategy["inputs"]["change_percent"] <= 20.0 and strategy["action"] == "blue-green"
    phases = [(e.data["phase"], e.data["weight"]) for e in of_type(run, "deploy.step")]
    assert phases == [("preview", 0), ("watch", 100)]  # green at its preview address, then one switch
    assert of_type(run, "deploy.started")[0].data["preview_url"].startswith("http://127.0.0.1:")
    assert steps[0]["inputs"]["phase"] == "preview" and steps[0]["inputs"]["smoke"]
    assert all(s["status"] == 200 for s in steps[0]["inputs"]["smoke"])
    moves = [d for d in decisions if d["kind"] == "rollout.next"]
    assert [d["action"] for d in moves] == ["advance", "promote"]
    assert strategy["verdict"] is None or strategy["verdict"]["allow"] is True
    tests = of_type(run, "tests.completed")[0].data
    assert tests["passed"] is True and tests["schemathesis"]["server_errors"] == 0
    assert tests["schemathesis"]["requests"] > 0
    deny = [e for e in of_type(run, "policy.evaluated") if not e.data["allow"]]
    assert deny == []
    report = Path(summary["report"])
    assert report.exists() and strategy["id"] in report.read_text()

    explained = run_cli(tmp_path, "explain", strategy["id"], "--json")
    assert explained.code == 0, explained.stderr
    doc = explained.json()
    assert doc["kind"] == "deploy.strategy" and doc["inputs"] == strategy["inputs"]
    # the verdict that gated the deploy, and the launch it led to (issue #7)
    assert doc["policy_verdict"]["action"] == "deploy" and doc["policy_verdict"]["allow"] is True
    assert [e["type"] for e in doc["outcome_events"]][:1] == ["dev.pilotage.deploy.requested"]
    human = run_cli(tmp_path, "explain", strategy["id"])
    assert human.code == 0 and "verdict   deploy: allow" in human.stdout and "deploy.requested" in human.stdout

    replayed = run_cli(tmp_path, "events", "replay", "--json")
    assert replayed.code == 0, replayed.stderr + replayed.stdout
    assert replayed.json() == {"decisions": len(decisions), "differing": 0, "results": []}

    # issue 17: the demo is a delivery to a managed service: the baseline served on the stable address as
    # production, the change rolled out there beside it, and promoted into production
    code = of_type(run, "code.generated")[0].data
    started = of_type(run, "deploy.started")[0].data
    shown = run_cli(tmp_path, "service", "show", "checkout", "--json")
    assert shown.code == 0, shown.stderr
    service = shown.json()
    assert service["generated"] is True and service["repo_path"] == code["repo_path"]
    assert service["production_commit"] == code["commit"] and started["proxy_url"] == service["stable_url"]
    assert started["baseline"]["version"] == code["base_commit"][:12]
    assert [(d["run_id"], d["outcome"]) for d in service["deliveries"]] == [(summary["run_id"], "promoted")]
    ups = [e.data for e in events if e.type == "dev.pilotage.service.up" and e.data["service"] == "checkout"]
    assert ups[0]["commit"] == code["base_commit"] and ups[0]["url"] == service["stable_url"]


def test_demo_with_injected_fault_rolls_back(tmp_path: Path) -> None:
    (tmp_path / "pilotage.toml").write_text(FAST, encoding="utf-8")
    result = run_cli(tmp_path, "demo", "--inject-fault", "--json")
    assert result.code == 0, result.stderr
    summary = result.json()
    assert summary["outcome"] == "rolled_back"
    run = [e for e in read_log(tmp_path) if e.runid == summary["run_id"]]
    assert of_type(run, "slo.breach"), "no slo.breach event"
    assert of_type(run, "deploy.rolled_back") and of_type(run, "incident.opened")
    assert not of_type(run, "deploy.promoted")
    judgement = [e.data for e in of_type(run, "decision.made") if e.data["action"] == "rollback"]
    assert judgement, "no rollback decision"
    breach = of_type(run, "slo.breach")[0].data
    assert breach["canary"]["error_rate"] > breach["slo_error_rate"]
    rolled = [e for e in of_type(run, "policy.evaluated") if e.data["action"] == "rollback"]
    assert rolled and rolled[0].data["allow"] is True
    model = of_type(run, "model.updated")[0].data
    assert model["beta"] >= 2  # one observed failure on top of the Beta(1, 1) prior
    # issue 16: blue-green caught the fault at green's preview address, before any user was switched to it
    assert [(e.data["phase"], e.data["weight"]) for e in of_type(run, "deploy.step")] == [("preview", 0)]
    back = of_type(run, "deploy.rolled_back")[0].data
    assert back["strategy"] == "blue-green" and back["phase"] == "preview" and back["protected_at"] > 0

    human = run_cli(tmp_path, "events", "tail", "-n", "5")
    assert human.code == 0 and "done" in human.stdout

    replayed = run_cli(tmp_path, "events", "replay", "--json")
    assert replayed.code == 0 and replayed.json()["differing"] == 0, replayed.stdout + replayed.stderr
    explained = run_cli(tmp_path, "explain", judgement[0]["id"], "--json").json()
    assert explained["policy_verdict"]["action"] == "rollback" and explained["policy_verdict"]["allow"] is True
    assert "dev.pilotage.slo.evaluated" in [e["type"] for e in explained["outcome_events"]]


def test_petstore_goes_through_pilotage_run(tmp_path: Path, petstore: Path) -> None:
    (tmp_path / "pilotage.toml").write_text(FAST, encoding="utf-8")
    result = run_cli(
        tmp_path,
        "run",
        "--spec",
        str(petstore),
        "--request",
        "Add coupon support with fields code:string, percent:integer",
        "--idle-after",
        "2",
        "--json",
    )
    assert result.code == 0, result.stderr + result.stdout
    summary = result.json()
    assert summary["outcome"] == "promoted"
    run = [e for e in read_log(tmp_path) if e.runid == summary["run_id"]]
    tests = of_type(run, "tests.completed")[0].data
    assert tests["schemathesis"]["server_errors"] == 0
    assert len(tests["schemathesis"]["operations"]) >= 19 + 5
    perf = of_type(run, "perf.measured")[0].data
    assert perf["total"]["requests"] > 0 and perf["total"]["p95_ms"] > 0
    assert of_type(run, "deploy.promoted")
