"""Contract-net on the memory bus with in-process worker hosts: award rule, rounds, faults, crash re-run, grouping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from pilotage.bus.base import Bus
from pilotage.bus.memory import MemoryBus
from pilotage.coordination import (
    Capability,
    ContractNetManager,
    ContractNetOptions,
    CoordinationAgent,
    TaskState,
    WorkerHost,
    allocate_or_run_locally,
    award_reasoning,
)
from pilotage.coordination.contract_net import IllegalTransition, TaskOutcome
from pilotage.coordination.messages import Bid, cfp_type, parse_bid
from pilotage.events import CloudEvent, EventType
from pilotage.replay import DetachedContext

FAST = ContractNetOptions(bid_window_s=0.3, stale_s=2.0, heartbeat_s=0.2, max_rounds=3, poll_s=0.01)


def echo(estimate_s: float, *, fail: bool = False, hang: bool = False) -> Capability:
    async def run(payload: dict[str, Any]) -> dict[str, Any]:
        if hang:
            await asyncio.sleep(3600)
        await asyncio.sleep(float(payload.get("sleep_s", 0.0)))
        if fail:
            raise RuntimeError("disk full")
        return {"echo": payload}

    return Capability("echo", run, lambda _p: estimate_s)


async def events_of(bus: Bus, type_: str) -> list[CloudEvent]:
    return [r.event for r in await bus.read(1, 100_000, pattern=type_)]


def scenario(body: Callable[[MemoryBus], Awaitable[None]]) -> None:
    async def go() -> None:
        bus = MemoryBus()
        await body(bus)

    asyncio.run(go())


async def hosts(bus: Bus, *specs: tuple[str, Capability], members: int = 1) -> list[WorkerHost]:
    out = []
    for host_id, capability in specs:
        host = WorkerHost(bus, host_id, {"echo": capability}, members=members, heartbeat_s=FAST.heartbeat_s)
        await host.start()
        out.append(host)
    return out


async def stop_all(started: list[WorkerHost]) -> None:
    for host in started:
        await host.stop()


# -- the award rule (pure) --------------------------------------------------------------------------------------
def bid(worker: str, queue: int, est: float, caps: list[str]) -> dict[str, Any]:
    return {**Bid.make(worker, worker.split("/")[0], queue, est, caps).model_dump(), "offset": 1}


def test_award_rule_lowest_cost_then_fewest_capabilities_then_id() -> None:
    inputs = {
        "task_id": "t",
        "round": 0,
        "capability": "echo",
        "bids": [
            bid("c/0", 0, 2.0, ["echo"]),  # cost 2.0
            bid("b/0", 1, 0.5, ["echo", "tests"]),  # cost 1.0, generalist
            bid("a/0", 0, 1.0, ["echo", "loadtest", "tests"]),  # cost 1.0, broader generalist
            bid("z/0", 0, 1.0, ["echo"]),  # cost 1.0, specialist
        ],
        "excluded": [],
    }
    reasoning = award_reasoning(inputs)
    assert reasoning.action == "award"
    assert reasoning.score == {"winner": "z/0", "host": "z", "cost_s": 1.0, "bids": 4}
    inputs["bids"].append(bid("y/0", 0, 1.0, ["echo"]))  # same cost and capabilities: smaller id wins
    assert award_reasoning(inputs).score["winner"] == "y/0"
    inputs["excluded"] = ["y/0", "z/0"]
    assert award_reasoning(inputs).score["winner"] == "b/0"
    inputs["excluded"] = [b["worker"] for b in inputs["bids"]]
    assert award_reasoning(inputs).action == "no_award"


def test_a_bid_must_report_its_cost_by_the_formula() -> None:
    good = Bid.make("w/0", "w", 2, 1.5, ["echo"]).model_dump()
    assert good["cost_s"] == 4.5 and parse_bid(good)[0] is not None
    assert parse_bid({**good, "cost_s": 0.1})[1].startswith("cost_s 0.1 is not")
    assert parse_bid({**good, "queue_length": -1})[0] is None
    assert parse_bid("not a bid")[0] is None


def test_illegal_transition_is_refused() -> None:
    task = TaskOutcome("t", "echo")
    with pytest.raises(IllegalTransition):
        task.advance(TaskState.DONE)
    task.advance(TaskState.ANNOUNCED)
    task.advance(TaskState.AWARDED)
    task.advance(TaskState.DONE)
    with pytest.raises(IllegalTransition):
        task.advance(TaskState.ANNOUNCED)


# -- rounds over the bus ----------------------------------------------------------------------------------------
def test_cheapest_worker_wins_does_the_task_and_the_award_replays() -> None:
    async def body(bus: MemoryBus) -> None:
        started = await hosts(bus, ("slow", echo(3.0)), ("fast", echo(0.5)), ("mid", echo(1.0)))
        ran_locally: list[dict[str, Any]] = []

        async def local(payload: dict[str, Any]) -> dict[str, Any]:
            ran_locally.append(payload)
            return {"local": True}

        allocation = await allocate_or_run_locally(bus, "echo", {"n": 7}, local, options=FAST)
        await stop_all(started)
        assert allocation.where == "worker:fast/0" and allocation.result == {"echo": {"n": 7}}
        assert allocation.rounds == 1 and not ran_locally
        decisions = await events_of(bus, EventType.DECISION)
        assert [d.id for d in decisions] == allocation.decision_ids
        award = decisions[0].data
        assert award["agent"] == "coordination" and award["kind"] == "cnet.award"
        assert sorted(b["worker"] for b in award["inputs"]["bids"]) == ["fast/0", "mid/0", "slow/0"]
        again = CoordinationAgent(DetachedContext()).reason("cnet.award", award["inputs"])
        assert (again.action, again.score) == (award["action"], award["score"])
        accepts = await events_of(bus, EventType.CNET_ACCEPT)
        rejects = await events_of(bus, EventType.CNET_REJECT)
        done = await events_of(bus, EventType.CNET_DONE)
        assert [a.data["worker"] for a in accepts] == ["fast/0"]
        assert sorted(r["worker"] for r in rejects[0].data["rejected"]) == ["mid/0", "slow/0"]
        assert len(done) == 1 and done[0].data["decision_id"] == award["id"]

    scenario(body)


def test_no_live_worker_runs_in_process_without_a_call() -> None:
    async def body(bus: MemoryBus) -> None:
        async def local(payload: dict[str, Any]) -> dict[str, Any]:
            return {"local": payload["n"]}

        allocation = await allocate_or_run_locally(bus, "echo", {"n": 1}, local, options=FAST)
        assert allocation.where == "local" and allocation.result == {"local": 1} and allocation.rounds == 0
        assert await bus.read(1, 100) == []  # not one event: no call for proposals, no decision

    scenario(body)


def test_live_workers_that_do_not_answer_before_the_deadline_leave_the_task_local() -> None:
    async def body(bus: MemoryBus) -> None:
        # a host announces itself but never reads calls (hung process): nobody bids before the deadline
        beat = {"host": "mute", "capabilities": ["echo"], "sent_at": time.time()}
        await bus.publish(CloudEvent(type=EventType.WORKER_HEARTBEAT, source="/t", data=beat))

        async def local(payload: dict[str, Any]) -> dict[str, Any]:
            return {"local": True}

        allocation = await allocate_or_run_locally(bus, "echo", {}, local, options=FAST)
        assert allocation.where == "local" and allocation.rounds == 1
        decision = (await events_of(bus, EventType.DECISION))[0].data
        assert decision["action"] == "no_award" and decision["inputs"]["bids"] == []
        assert await events_of(bus, EventType.CNET_ACCEPT) == []

    scenario(body)


def test_failure_is_reannounced_and_done_by_another_worker() -> None:
    async def body(bus: MemoryBus) -> None:
        started = await hosts(bus, ("broken", echo(0.1, fail=True)), ("steady", echo(1.0)))
        manager = ContractNetManager(bus, options=FAST)
        outcome = await manager.run("task-f", "echo", {"x": 1}, exec_timeout_s=5)
        await stop_all(started)
        assert outcome.state is TaskState.DONE and outcome.worker == "steady/0" and outcome.round == 1
        assert outcome.excluded == ["broken/0"]
        failures = await events_of(bus, EventType.CNET_FAILURE)
        assert [f.data["error"] for f in failures] == ["RuntimeError: disk full"]
        calls = await events_of(bus, cfp_type("echo"))
        assert [c.data["round"] for c in calls] == [0, 1]
        assert calls[1].data["excluded"] == ["broken/0"]
        assert calls[1].data["reannounced_because"]["reason"] == "failure"
        assert [s for s, _, _ in outcome.history] == ["announced", "awarded", "announced", "awarded", "done"]

    scenario(body)


def test_a_winner_that_never_answers_is_cancelled_and_the_task_reannounced() -> None:
    async def body(bus: MemoryBus) -> None:
        started = await hosts(bus, ("hung", echo(0.1, hang=True)), ("steady", echo(1.0)))
        manager = ContractNetManager(bus, options=FAST)
        outcome = await manager.run("task-h", "echo", {}, exec_timeout_s=0.5)
        hung_running = started[0].heartbeat_data()["running"]
        await stop_all(started)
        assert outcome.state is TaskState.DONE and outcome.worker == "steady/0"
        cancels = await events_of(bus, EventType.CNET_CANCEL)
        assert [(c.data["worker"], c.data["reason"]) for c in cancels] == [("hung/0", "timeout")]
        assert hung_running == []  # the cancel stopped the hung task
        assert len(await events_of(bus, EventType.CNET_DONE)) == 1

    scenario(body)


def test_a_lost_winner_is_found_by_its_missing_heartbeats() -> None:
    async def body(bus: MemoryBus) -> None:
        started = await hosts(bus, ("doomed", echo(0.1, hang=True)), ("steady", echo(1.0)))
        manager = ContractNetManager(bus, options=FAST)
        job = asyncio.create_task(manager.run("task-l", "echo", {}, exec_timeout_s=60))
        while not await events_of(bus, EventType.CNET_ACCEPT):
            await asyncio.sleep(0.01)
        await started[0].stop(announce=False)  # as if killed: no more heartbeats, no worker.stopped
        outcome = await job
        await started[1].stop()
        assert outcome.state is TaskState.DONE and outcome.worker == "steady/0"
        cancels = await events_of(bus, EventType.CNET_CANCEL)
        assert [(c.data["worker"], c.data["reason"]) for c in cancels] == [("doomed/0", "lost")]

    scenario(body)


def test_malformed_duplicate_and_late_bids_are_recorded_and_not_counted() -> None:
    async def body(bus: MemoryBus) -> None:
        started = await hosts(bus, ("real", echo(1.0)))
        ghost = {"host": "ghost", "capabilities": ["echo"], "sent_at": time.time() + 5}
        await bus.publish(CloudEvent(type=EventType.WORKER_HEARTBEAT, source="/t", data=ghost))

        async def ghost_bids() -> None:
            while not (calls := await events_of(bus, cfp_type("echo"))):
                await asyncio.sleep(0.005)
            base = {"task_id": calls[0].data["task_id"], "round": 0, "host": "ghost"}
            cheap = Bid.make("ghost/0", "ghost", 0, 0.2, ["echo"]).model_dump()
            await bus.publish(CloudEvent(type=EventType.CNET_PROPOSE, source="/g", data={**base, "bid": {"x": 1}}))
            await bus.publish(CloudEvent(type=EventType.CNET_PROPOSE, source="/g", data={**base, "bid": cheap}))
            await bus.publish(CloudEvent(type=EventType.CNET_PROPOSE, source="/g", data={**base, "bid": cheap}))
            while not await events_of(bus, EventType.CNET_ACCEPT):
                await asyncio.sleep(0.005)
            late = Bid.make("late/0", "late", 0, 0.1, ["echo"]).model_dump()
            await bus.publish(
                CloudEvent(type=EventType.CNET_PROPOSE, source="/l", data={**base, "host": "late", "bid": late})
            )

        injector = asyncio.create_task(ghost_bids())
        outcome = await ContractNetManager(bus, options=FAST).run("task-m", "echo", {"sleep_s": 0.3}, exec_timeout_s=5)
        await injector
        await stop_all(started)
        award = (await events_of(bus, EventType.DECISION))[0].data
        assert len(award["inputs"]["invalid"]) == 1 and len(award["inputs"]["duplicates"]) == 1
        assert sorted(b["worker"] for b in award["inputs"]["bids"]) == ["ghost/0", "real/0"]
        assert award["score"]["winner"] == "ghost/0"  # the cheap ghost wins … and never answers: re-announced
        assert outcome.state is TaskState.DONE and outcome.worker == "real/0"
        reasons = [r["reason"] for e in await events_of(bus, EventType.CNET_REJECT) for r in e.data["rejected"]]
        assert reasons.count("late") == 1 and "malformed" in reasons and "duplicate" in reasons

    scenario(body)


def test_a_manager_run_again_on_the_same_task_joins_it_instead_of_repeating_it() -> None:
    async def body(bus: MemoryBus) -> None:
        started = await hosts(bus, ("only", echo(0.5)))
        first = await ContractNetManager(bus, options=FAST).run("task-r", "echo", {"k": 1}, exec_timeout_s=5)
        second = await ContractNetManager(bus, options=FAST).run("task-r", "echo", {"k": 1}, exec_timeout_s=5)
        await stop_all(started)
        assert first.state is second.state is TaskState.DONE and first.result == second.result
        assert first.decision_ids == second.decision_ids
        for type_ in (cfp_type("echo"), EventType.CNET_ACCEPT, EventType.CNET_DONE, EventType.DECISION):
            assert len(await events_of(bus, type_)) == 1, type_

    scenario(body)


def test_a_group_leader_sends_one_proposal_for_all_its_members() -> None:
    async def body(bus: MemoryBus) -> None:
        started = await hosts(bus, ("svc-a", echo(1.0)), ("svc-b", echo(1.0)), members=50)
        outcome = await ContractNetManager(bus, options=FAST).run("task-g", "echo", {}, exec_timeout_s=5)
        await stop_all(started)
        proposals = await events_of(bus, EventType.CNET_PROPOSE)
        assert len(proposals) == 2 and {p.data["members"] for p in proposals} == {50}
        assert outcome.worker == "svc-a/0"  # equal costs and capabilities: the smallest id

    scenario(body)
