"""Rollout analysis slots (issue 19, item 5): a resource of k units held by auction, k holders at most at once.

Contenders are coroutines of one process on memory:// using the real :class:`SlotArbiter`; the reliability agent's
bid decision is checked through its pure ``reason``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pilotage.agent import AgentContext
from pilotage.agents.reliability import ReliabilityAgent
from pilotage.bus.memory import MemoryBus
from pilotage.coordination.slot import ANALYSIS_SLOT, SlotArbiter, SlotView, bid_amount
from pilotage.events import CloudEvent, EventType, new_event
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.replay import DetachedContext
from pilotage.rollout.analysis_slot import BID_KIND, analysis_bidder, analysis_slot
from pilotage.runtime.traffic_registry import start_traffic, stop_traffic
from pilotage.settings import Settings


async def half(balance: int, auction_id: str) -> int:
    return bid_amount(balance, 0.5)


class Holders:
    """Contenders that count how many hold a unit at the same time."""

    def __init__(self, bus: MemoryBus, units: int) -> None:
        self.bus, self.units = bus, units
        self.holding = 0
        self.most = 0
        self.done: list[str] = []

    async def contend(self, service: str, request: str, hold_s: float) -> None:
        arbiter = SlotArbiter(self.bus, ANALYSIS_SLOT, units=self.units, window_s=0.1, poll_s=0.01)
        async with arbiter.hold(analysis_bidder(service), request, half):
            self.holding += 1
            self.most = max(self.most, self.holding)
            await asyncio.sleep(hold_s)  # the step's analysis
            self.holding -= 1
        self.done.append(request)


def test_at_most_k_analyses_hold_a_slot_and_every_one_gets_one() -> None:
    async def main() -> dict[str, Any]:
        bus = MemoryBus()
        await bus.open()
        holders = Holders(bus, units=2)
        services = [f"svc{n}" for n in range(5)]
        await asyncio.wait_for(
            asyncio.gather(*(holders.contend(s, f"run-{s}/d1/0", 0.2) for s in services)), timeout=60
        )
        assert holders.most == 2  # two at once, never three
        assert sorted(holders.done) == sorted(f"run-{s}/d1/0" for s in services)
        view = await SlotView(bus, ANALYSIS_SLOT, units=2).refresh()
        assert view.holders() == [] and view.free_units() == 2 and view.is_free()
        released = [r.event for r in await bus.read(1, 1000, pattern=EventType.MARKET_RELEASED)]
        assert len(released) == 5 and len({e.id for e in released}) == 5  # one release per unit, none deduplicated
        return {"auctions": view.newest_opened}

    result = asyncio.run(main())
    assert 2 <= result["auctions"] <= 5  # an auction sells every free unit: fewer auctions than holders


def test_a_released_unit_frees_only_its_own_place() -> None:
    async def main() -> None:
        bus = MemoryBus()
        await bus.open()
        first = SlotArbiter(bus, ANALYSIS_SLOT, units=2, window_s=0.05, poll_s=0.01)
        a = await first.acquire("reliability/a", "ra/d/0", half)
        b = await SlotArbiter(bus, ANALYSIS_SLOT, units=2, window_s=0.05, poll_s=0.01).acquire(
            "reliability/b", "rb/d/0", half
        )
        view = await SlotView(bus, ANALYSIS_SLOT, units=2).refresh()
        assert {h["request"] for h in view.holders()} == {"ra/d/0", "rb/d/0"} and view.free_units() == 0
        await first.release(a)
        await view.refresh()
        assert [h["request"] for h in view.holders()] == ["rb/d/0"] and view.free_units() == 1
        # the same request asking again (a redelivered step) finds its own unit instead of a new auction
        again = await SlotArbiter(bus, ANALYSIS_SLOT, units=2, poll_s=0.01).acquire("reliability/b", "rb/d/0", half)
        assert again.auction_id == b.auction_id

    asyncio.run(main())


def test_the_reliability_agents_bid_is_a_recorded_pure_rule() -> None:
    agent = ReliabilityAgent(DetachedContext())  # type: ignore[arg-type]
    inputs = {"bidder": "reliability/orders", "resource": ANALYSIS_SLOT, "auction_id": "analysis-slot#4",
              "balance": 9, "fraction": 0.5}  # fmt: skip
    decision = agent.reason(BID_KIND, inputs)
    assert (decision.action, decision.score) == ("bid", {"amount": 4})


def test_a_deployments_traffic_is_held_until_its_step_wins_a_slot_and_after_it_releases_it() -> None:
    """Synthetic traffic runs only while the step is analysed (the generator points nowhere: only `held` is read)."""

    async def main() -> list[tuple[str, bool]]:
        bus = MemoryBus()
        await bus.open()
        ctx = AgentContext(bus=bus, graph=SQLiteGraph("sqlite:///:memory:"), policy=None, runtime=None,
                           settings=Settings(analysis_slots=1))  # type: ignore[arg-type]  # fmt: skip
        agent = ReliabilityAgent(ctx)
        step = new_event(EventType.DEPLOY_STEP, {"deployment_id": "dep-1"}, source="test", subject="svc", runid="run-1")
        other = await SlotArbiter(bus, ANALYSIS_SLOT, units=1, poll_s=0.01).acquire("reliability/b", "rb/d/0", half)
        generator = await start_traffic("dep-1", "http://127.0.0.1:9", ["/x"], 1.0)
        seen: list[tuple[str, bool]] = []
        try:
            waiting = asyncio.create_task(_analyse(agent, step, generator, seen))
            await asyncio.sleep(0.3)
            seen.append(("another step holds the only slot", generator.held))
            await SlotArbiter(bus, ANALYSIS_SLOT, units=1).release(other)
            await asyncio.wait_for(waiting, timeout=30)
            seen.append(("after the analysis", generator.held))
        finally:
            await stop_traffic("dep-1")
        return seen

    async def _analyse(agent: ReliabilityAgent, step: CloudEvent, generator: Any, seen: list[Any]) -> None:
        async with analysis_slot(agent, step, "svc", "run-1/dep-1/0", ("dep-1", "dep-1#preview")):
            seen.append(("analysed", generator.held))

    assert asyncio.run(main()) == [
        ("another step holds the only slot", True),
        ("analysed", False),
        ("after the analysis", True),
    ]
