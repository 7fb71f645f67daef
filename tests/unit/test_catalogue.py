"""The event catalogue: every type has a model, our payloads fit, malformed ones fail, foreign shapes are named.

The real payloads come from real code paths: the governance agent reviewing a change that needs a person's
approval (security.scanned, approval.requested/granted, policy.evaluated, decision.made), a sealed-bid auction
over the bus (market.*, decision.made), the flow supervisor closing a run and the recovery report.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pilotage.agent import Agent, AgentContext
from pilotage.bus.memory import MemoryBus
from pilotage.catalogue import (
    PATTERNS,
    REGISTRY,
    CnetCfp,
    ControlPlaneRecovered,
    DeployStep,
    RunSpec,
    check,
    model_for,
    parse,
)
from pilotage.catalogue_doc import CONTRACT, NOTES, REGENERATE, render
from pilotage.coordination import Auctioneer, place_bid
from pilotage.errors import BackendCorrupt, InputError
from pilotage.events import CloudEvent, EventType, new_event
from pilotage.flows.recovery import RecoveryReport
from pilotage.flows.supervisor import FlowSupervisor
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.settings import Settings
from tests.unit.test_agent_governance import make_ctx
from tests.unit.test_policy_approval import _answer_when_requested, _review_with

ROOT = Path(__file__).resolve().parents[2]
STEP = {"deployment_id": "d1", "step": 0, "weight": 10, "strategy": "canary"}


def test_the_committed_contract_is_the_generated_one() -> None:
    generated = render((ROOT / NOTES).read_text(encoding="utf-8"))
    committed = (ROOT / CONTRACT).read_text(encoding="utf-8")
    assert committed == generated, f"{CONTRACT} is stale: run `{REGENERATE}` from the repository root"


def test_every_event_type_has_a_model() -> None:
    names = {k: v for k, v in vars(EventType).items() if k.isupper() and k not in ("PREFIX", "CNET_CFP")}
    missing = [name for name, type_ in names.items() if model_for(type_) is None]
    assert missing == []
    assert set(REGISTRY) == set(names.values())  # and no model for a type EventType does not name
    assert model_for(EventType.CNET_CFP + ".loadtest") is CnetCfp and list(PATTERNS.values()) == [CnetCfp]
    assert model_for(EventType.CNET_CFP) is None  # the bare prefix is never published


def test_check_names_the_type_and_the_field() -> None:
    check(EventType.DEPLOY_STEP, STEP)
    check("test.anything", {"free": "form"})  # other producers' types are not ours to check
    cases = [
        ({**STEP, "step": "two"}, "step"),  # wrong type
        ({k: v for k, v in STEP.items() if k != "weight"}, "weight"),  # missing
        ({**STEP, "colour": "red"}, "colour"),  # a key the model does not declare
    ]
    for data, field in cases:
        with pytest.raises(InputError, match=rf"dev\.pilotage\.deploy\.step data does not fit DeployStep: {field}"):
            check(EventType.DEPLOY_STEP, data)
    with pytest.raises(InputError, match="dev.pilotage.deploy.teleported is not in the catalogue"):
        check("dev.pilotage.deploy.teleported", {})
    with pytest.raises(InputError, match="cnet.cfp.echo data does not fit CnetCfp: task_id"):
        check(EventType.CNET_CFP + ".echo", {"round": 1})


class Sloppy(Agent):
    """Publishes a deploy.step whose ``step`` is a string (a bug the catalogue must catch)."""

    name = "sloppy"
    subscribes: ClassVar[tuple[str, ...]] = (EventType.FLOW_STARTED,)

    async def on_event(self, event: CloudEvent) -> None:
        await self.emit(EventType.DEPLOY_STEP, {**STEP, "step": "0"}, cause=event)


def test_a_malformed_payload_from_an_agent_fails_its_run_and_is_not_published() -> None:
    bus = MemoryBus()
    ctx = AgentContext(bus, SQLiteGraph("sqlite:///:memory:"), None, None, Settings())  # type: ignore[arg-type]
    run = RunSpec(run_id="r1", service="s", spec_path="/s.yaml", request="Add x support", workdir="/w")
    start = new_event(EventType.FLOW_STARTED, run.model_dump(), source="/t", subject="s", runid="r1")

    async def go() -> list[CloudEvent]:
        await bus.publish(start)
        await Sloppy(ctx).handle(start)
        return [r.event for r in await bus.read(1, 100)]

    events = asyncio.run(go())
    assert [e.type for e in events] == [EventType.FLOW_STARTED, EventType.AGENT_FAILED]
    error = events[1].data["error"]
    assert "dev.pilotage.deploy.step data does not fit DeployStep: step" in error


def test_parse_gives_the_model_or_names_the_offset_of_a_foreign_shape() -> None:
    async def go() -> None:
        bus = MemoryBus()
        await bus.publish(new_event(EventType.DEPLOY_STEP, STEP, source="/t", runid="r1"))
        await bus.publish(new_event(EventType.DEPLOY_STEP, {"step": "x", "pct": 5}, source="/other", runid="r1"))
        good, foreign = await bus.read(1, 10)
        assert parse(good, DeployStep) == DeployStep(**STEP) and parse(good.event, DeployStep).weight == 10
        with pytest.raises(BackendCorrupt, match=r"event at offset 2 \(dev\.pilotage\.deploy\.step\) does not fit"):
            parse(foreign, DeployStep)
        with pytest.raises(InputError, match=rf"event {foreign.event.id} \(dev\.pilotage\.deploy\.step\)"):
            parse(foreign.event, DeployStep)

    asyncio.run(go())


def _parse_ours(events: list[CloudEvent]) -> list[str]:
    """Parse every event Pilotage published (source ``/pilotage/…``) with its model; return their types."""
    ours = [e for e in events if e.source.startswith("/pilotage/")]
    for event in ours:
        model = model_for(event.type)
        assert model is not None, event.type
        parse(event, model)
    return sorted({e.type for e in ours})


def test_the_governance_review_with_an_approval_publishes_catalogued_payloads() -> None:
    events = _review_with(make_ctx(), lambda bus: _answer_when_requested(bus, True))
    assert _parse_ours(events) == sorted(
        [
            EventType.SECURITY_SCANNED,
            EventType.APPROVAL_REQUESTED,
            EventType.APPROVAL_GRANTED,
            EventType.POLICY_EVALUATED,
            EventType.DECISION,
        ]
    )


def test_an_auction_and_a_closed_run_publish_catalogued_payloads() -> None:
    async def go() -> list[CloudEvent]:
        bus = MemoryBus()
        earned = {"deployment_id": "d1"}  # an outcome the ledger credits (10 credits to deployment)
        await bus.publish(CloudEvent(type=EventType.DEPLOY_PROMOTED, source="/t", data=earned))
        job = asyncio.create_task(
            Auctioneer(bus, poll_s=0.01).run("loadtest-slot", window_s=5.0, expected={"deployment"}, auction_id="a1")
        )
        while not await bus.read(1, 10, pattern=EventType.MARKET_AUCTION_OPENED):
            await asyncio.sleep(0.01)
        await place_bid(bus, "a1", "deployment", 3, request="r1/abc")
        await job
        await bus.publish(new_event(EventType.FLOW_STARTED, {}, source="/t", subject="s", runid="r2"))
        failed = {"agent": "x", "error": "boom", "error_type": "InputError", "cause_event_id": "", "verdict": None}
        await bus.publish(new_event(EventType.AGENT_FAILED, failed, source="/t", runid="r2"))
        assert (await FlowSupervisor(bus).check("r2")).status == "failed"
        return [r.event for r in await bus.read(1, 100)]

    types = _parse_ours(asyncio.run(go()))
    assert types == sorted(
        [EventType.MARKET_AUCTION_OPENED, EventType.MARKET_BID, EventType.MARKET_AUCTION_CLOSED]
        + [EventType.DECISION, EventType.FLOW_FAILED]
    )


def test_the_recovery_report_fits_its_model() -> None:
    report = RecoveryReport(instance="cp-1", runs_open=["r1"], failures=["d1: cannot resume"])
    report.orphans_killed.append({"pid": 42, "command": "uvicorn", "instance": "cp-0", "signal": "SIGTERM"})
    data: dict[str, Any] = report.to_dict()
    check(EventType.CONTROL_PLANE_RECOVERED, data)
    assert ControlPlaneRecovered.model_validate(data).runs_open == ["r1"]


def test_a_real_bandit_scan_fits_security_scanned(tmp_path: Path) -> None:
    from pilotage.policy.scans import scan_bandit

    (tmp_path / "app.py").write_text("import subprocess\nsubprocess.call('ls', shell=True)\n", encoding="utf-8")
    scan = scan_bandit(tmp_path)
    assert scan["status"] == "completed" and scan["lines"] == 2 and scan["findings"]
    check(EventType.SECURITY_SCANNED, {"commit": "c" * 40, **scan})
