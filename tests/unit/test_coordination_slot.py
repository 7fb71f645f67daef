"""The load-test slot held by auction (issue 8): one holder at a time, second price, minimum share, lone requester.

Contenders are coroutines of one process on memory:// (the cross-process case is in
``tests/integration/test_coordination_slot_processes.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from pilotage.agents.performance import PerformanceAgent
from pilotage.bus.memory import MemoryBus
from pilotage.coordination import CoordinationAgent, Ledger
from pilotage.coordination.slot import LOADTEST_SLOT, SlotArbiter, SlotGrant, SlotView, bid_amount, slot_bidder
from pilotage.events import CloudEvent, EventType
from pilotage.replay import DetachedContext


async def earn(bus: MemoryBus, service: str, promotions: int) -> None:
    """Give ``performance/<service>`` 5 credits per promoted rollout of the service (the earning table)."""
    for _ in range(promotions):
        await bus.publish(CloudEvent(type=EventType.DEPLOY_PROMOTED, source="/t", subject=service, data={}))


def half(balance: int, auction_id: str) -> Any:
    async def rule(b: int, a: str) -> int:
        return bid_amount(b, 0.5)

    return rule(balance, auction_id)


class Slot:
    """Contenders that record when they hold the slot, to check there is never more than one holder."""

    def __init__(self, bus: MemoryBus, window_s: float = 0.25) -> None:
        self.bus = bus
        self.window_s = window_s
        self.holding = 0
        self.most = 0
        self.order: list[str] = []
        self.grants: dict[str, SlotGrant] = {}
        self.balances: list[dict[str, int]] = []

    async def contend(self, service: str, request: str, hold_s: float = 0.05) -> SlotGrant:
        arbiter = SlotArbiter(self.bus, window_s=self.window_s, poll_s=0.01)
        async with arbiter.hold(slot_bidder(service), request, half) as grant:
            self.holding += 1
            self.most = max(self.most, self.holding)
            self.order.append(request)
            self.balances.append((await Ledger.load(self.bus)).balances())
            await asyncio.sleep(hold_s)  # the load test
            self.holding -= 1
        self.grants[request] = grant
        return grant


async def bidders_of_pending(bus: MemoryBus, count: int) -> None:
    view = SlotView(bus, LOADTEST_SLOT)
    while len(view.waiting()) < count:
        await asyncio.sleep(0.01)
        await view.refresh()


def test_a_lone_requester_wins_at_once_without_waiting_for_the_window() -> None:
    async def main() -> None:
        bus = MemoryBus()
        await bus.open()
        await earn(bus, "checkout", 2)
        arbiter = SlotArbiter(bus, window_s=30.0)  # a waited window would exceed the 10 s below
        grant = await asyncio.wait_for(arbiter.acquire("performance/checkout", "r1/abc", half), 10)
        await arbiter.release(grant)
        types = [r.event.type for r in await bus.read(1, 100, pattern="dev.pilotage.*") if "market" in r.event.type]
        assert types == [EventType.MARKET_BID, EventType.MARKET_AUCTION_OPENED, EventType.MARKET_AUCTION_CLOSED,
                         EventType.MARKET_RELEASED]  # fmt: skip
        assert (grant.auction_id, grant.price, grant.via, grant.auctions, grant.bids) == (
            "loadtest-slot#1", 0, "second price", 1, 1)  # fmt: skip
        decision = (await bus.read(1, 100, pattern=EventType.DECISION))[0].event.data
        assert decision["agent"] == "coordination" and decision["kind"] == "market.auction"
        assert decision["inputs"]["bids"][0]["amount"] == 5 and decision["inputs"]["bids"][0]["request"] == "r1/abc"
        view = await SlotView(bus, LOADTEST_SLOT).refresh()
        assert view.is_free() and view.holder() is None

    asyncio.run(main())


def test_contending_runs_hold_the_slot_one_at_a_time_and_the_winner_pays_the_second_price() -> None:
    async def main() -> None:
        bus = MemoryBus()
        await bus.open()
        await earn(bus, "svc-a", 2)  # 10 credits: bids 5
        await earn(bus, "svc-b", 1)  # 5 credits: bids 2
        slot = Slot(bus)
        blocker = SlotArbiter(bus)
        held = await blocker.acquire("performance/other", "r0/000", half)
        a = asyncio.create_task(slot.contend("svc-a", "ra/aaa"))
        b = asyncio.create_task(slot.contend("svc-b", "rb/bbb"))
        await bidders_of_pending(bus, 2)
        await blocker.release(held)
        await asyncio.gather(a, b)
        assert slot.most == 1 and slot.order == ["ra/aaa", "rb/bbb"]
        won, second = slot.grants["ra/aaa"], slot.grants["rb/bbb"]
        assert (won.price, won.via, won.bids, won.auctions) == (2, "second price", 2, 1)
        assert (second.price, second.bids, second.auctions) == (0, 1, 2)  # alone in the next auction
        ledger = await Ledger.load(bus)
        assert ledger.balance("performance/svc-a") == 8 and ledger.balance("performance/svc-b") == 5
        assert all(v >= 0 for seen in slot.balances for v in seen.values())
        # the auction is a decision: replay recomputes it from its inputs
        coordination = CoordinationAgent(DetachedContext())
        for record in await bus.read(1, 1000, pattern=EventType.DECISION):
            d = record.event.data
            again = coordination.reason(d["kind"], d["inputs"])
            assert (again.action, again.score) == (d["action"], d["score"])

    asyncio.run(main())


def test_a_bidder_without_credits_gets_its_minimum_share() -> None:
    async def main() -> None:
        bus = MemoryBus()
        await bus.open()
        for service in ("r1", "r2", "r3", "r4"):
            await earn(bus, service, 4)  # 20 credits each: bids 10
        slot = Slot(bus)
        blocker = SlotArbiter(bus)
        held = await blocker.acquire("performance/other", "r0/000", half)
        tasks = [asyncio.create_task(slot.contend(s, f"{s}/x")) for s in ("r1", "r2", "r3", "r4", "poor")]
        await bidders_of_pending(bus, 5)
        await blocker.release(held)
        await asyncio.gather(*tasks)
        assert slot.most == 1
        poor = slot.grants["poor/x"]
        # lost 3 auctions in a row to richer bidders, then wins the 4th at price 0 although r-services bid 10
        assert (poor.via, poor.price, poor.auctions) == ("minimum share", 0, 4)
        assert slot.order.index("poor/x") == 3 and len(slot.order) == 5
        ledger = await Ledger.load(bus)
        assert ledger.balance("performance/poor") == 0
        assert all(v >= 0 for seen in slot.balances for v in seen.values())

    asyncio.run(main())


def test_two_runs_of_one_service_share_its_account_and_take_turns() -> None:
    async def main() -> None:
        bus = MemoryBus()
        await bus.open()
        await earn(bus, "svc", 2)
        slot = Slot(bus)
        blocker = SlotArbiter(bus)
        held = await blocker.acquire("performance/other", "r0/000", half)
        first = asyncio.create_task(slot.contend("svc", "run1/a"))
        second = asyncio.create_task(slot.contend("svc", "run2/b"))
        await bidders_of_pending(bus, 1)  # one account
        while len(await bus.read(1, 100, pattern=EventType.MARKET_BID)) < 3:
            await asyncio.sleep(0.01)
        await blocker.release(held)
        await asyncio.gather(first, second)
        assert slot.most == 1 and sorted(slot.order) == ["run1/a", "run2/b"]
        closes = [r.event.data for r in await bus.read(1, 100, pattern=EventType.MARKET_AUCTION_CLOSED)]
        assert [c["winners"][0]["request"] for c in closes[1:]] == slot.order

    asyncio.run(main())


def test_a_rerun_that_already_holds_the_slot_keeps_it() -> None:
    async def main() -> None:
        bus = MemoryBus()
        await bus.open()
        first = await SlotArbiter(bus).acquire("performance/svc", "run1/a", half)
        again = await asyncio.wait_for(SlotArbiter(bus, window_s=30).acquire("performance/svc", "run1/a", half), 10)
        assert again.auction_id == first.auction_id and again.decision_id == first.decision_id

    asyncio.run(main())


def test_the_performance_agents_bid_rule_is_a_replayable_decision() -> None:
    agent = PerformanceAgent(DetachedContext())
    inputs = {"bidder": "performance/checkout", "resource": LOADTEST_SLOT, "auction_id": "loadtest-slot#3",
              "balance": 11, "fraction": 0.5}  # fmt: skip
    decision = agent.reason("perf.slot_bid", inputs)
    assert decision.action == "bid" and decision.score == {"amount": 5}
    assert bid_amount(0, 0.5) == 0 and bid_amount(7, 1.0) == 7 and bid_amount(7, 2.0) == 7
