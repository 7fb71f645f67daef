"""The credit market: ledger from the log, sealed-bid second-price auctions, minimum share, bad bids."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilotage.bus.memory import MemoryBus
from pilotage.coordination import Auctioneer, CoordinationAgent, Ledger, auction_reasoning, place_bid
from pilotage.errors import InputError
from pilotage.events import CloudEvent, EventType
from pilotage.replay import DetachedContext


def outcome(type_: str, **data: Any) -> CloudEvent:
    return CloudEvent(type=type_, source="/t", data=data)


def inputs(bids: dict[str, int], balances: dict[str, int], waits: dict[str, int] | None = None, units: int = 1):
    return {
        "auction_id": "a1",
        "resource": "loadtest-slot",
        "units": units,
        "min_share_after": 3,
        "bids": [{"agent": a, "amount": n} for a, n in bids.items()],
        "balances": balances,
        "waits": waits or {},
    }


def test_ledger_credits_outcomes_by_the_table_and_debits_auction_prices() -> None:
    events = [
        outcome(EventType.DEPLOY_PROMOTED, deployment_id="d1"),
        outcome(EventType.TESTS_COMPLETED, passed=False),
        outcome(EventType.TESTS_COMPLETED, passed=True),  # a passing run catches nothing: no credit
        outcome(EventType.DEPLOY_ROLLED_BACK, deployment_id="d2"),
        outcome(EventType.CNET_DONE, worker="w1/0", task_id="t"),
        outcome(
            EventType.MARKET_AUCTION_CLOSED,
            auction_id="a",
            resource="slot",
            winners=[{"agent": "deployment", "price": 4}],
            losers=["testing"],
        ),  # fmt: skip
        outcome(
            EventType.MARKET_AUCTION_CLOSED,
            auction_id="b",
            resource="slot",
            winners=[{"agent": "w1/0", "price": 5}],
            losers=["testing"],
        ),  # fmt: skip
    ]
    ledger = Ledger.from_events(enumerate(events, start=1))
    assert ledger.balances() == {"deployment": 6, "reliability": 10, "testing": 8, "w1/0": 0}
    assert ledger.paid["w1/0"] == 1 and ledger.entries[-1]["capped"] == 5  # charged only what it had
    assert ledger.wait("slot", "testing") == 2 and ledger.wait("slot", "deployment") == 0


def test_one_unit_goes_to_the_highest_bid_at_the_second_price() -> None:
    r = auction_reasoning(inputs({"a": 7, "b": 3, "c": 5}, {"a": 10, "b": 10, "c": 10}))
    assert r.action == "allocate"
    assert r.score["winners"] == [{"agent": "a", "price": 5, "via": "second price"}]
    assert r.score["losers"] == ["b", "c"]
    alone = auction_reasoning(inputs({"a": 7}, {"a": 10}))
    assert alone.score["winners"][0]["price"] == 0  # nobody lost: the second price is 0


def test_k_units_go_to_the_k_highest_bids_at_the_highest_losing_bid() -> None:
    r = auction_reasoning(inputs({"a": 9, "b": 6, "c": 4, "d": 2}, dict.fromkeys("abcd", 10), units=2))
    assert [(w["agent"], w["price"]) for w in r.score["winners"]] == [("a", 4), ("b", 4)]
    tie = auction_reasoning(inputs({"x": 5, "y": 5}, {"x": 5, "y": 5}, waits={"y": 1}))
    assert tie.score["winners"][0]["agent"] == "y"  # equal bids: the one that waited longer


def test_a_bid_over_the_balance_is_rejected_and_counts_as_zero() -> None:
    r = auction_reasoning(inputs({"rich": 3, "broke": 50}, {"rich": 3, "broke": 1}))
    assert r.score["rejected"] == [{"agent": "broke", "amount": 50, "balance": 1}]
    assert r.score["winners"] == [{"agent": "rich", "price": 0, "via": "second price"}]


def test_an_agent_without_credits_gets_its_minimum_share() -> None:
    waits = {"poor": 3}
    r = auction_reasoning(inputs({"rich": 9, "poor": 0}, {"rich": 20, "poor": 0}, waits=waits))
    assert r.score["winners"] == [{"agent": "poor", "price": 0, "via": "minimum share"}]
    before = auction_reasoning(inputs({"rich": 9, "poor": 0}, {"rich": 20, "poor": 0}, waits={"poor": 2}))
    assert before.score["winners"][0]["agent"] == "rich"


def test_an_auction_without_bidders_is_no_sale() -> None:
    r = auction_reasoning(inputs({}, {}))
    assert r.action == "no_sale" and r.score == {"winners": [], "losers": [], "rejected": []}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.dictionaries(st.sampled_from("abcd"), st.integers(0, 40), max_size=4), st.integers(1, 2)),
        max_size=12,
    ),
    st.dictionaries(st.sampled_from("abcd"), st.integers(0, 30)),
)
def test_balances_never_go_negative_whatever_is_bid(rounds: list[tuple[dict[str, int], int]], grants: dict) -> None:
    events = [outcome(EventType.DEPLOY_PROMOTED) for _ in range(1)]
    ledger = Ledger.from_events(enumerate(events, start=1))
    ledger.earned.update(grants)
    offset = 10
    for bids, units in rounds:
        balances = {a: ledger.balance(a) for a in bids}
        waits = {a: ledger.wait("r", a) for a in bids}
        r = auction_reasoning({**inputs(bids, balances, waits, units), "resource": "r"})
        for winner in r.score["winners"]:
            assert winner["price"] <= balances[winner["agent"]]
        offset += 1
        ledger.apply(offset, outcome(EventType.MARKET_AUCTION_CLOSED, resource="r", **r.score))
        assert all(v >= 0 for v in ledger.balances().values())
        assert all(ledger.earned.get(a, 0) - ledger.paid.get(a, 0) >= 0 for a in ledger.balances())


def test_an_auction_over_the_bus_with_bad_bids_and_an_overspending_agent() -> None:
    async def go() -> None:
        bus = MemoryBus()
        await bus.publish(outcome(EventType.DEPLOY_PROMOTED, deployment_id="d1"))  # deployment: 10
        await bus.publish(outcome(EventType.TESTS_COMPLETED, passed=False))  # testing: 8
        with pytest.raises(InputError, match="reliability has 0 credits and cannot bid 5"):
            await place_bid(bus, "a1", "reliability", 5)
        auctioneer = Auctioneer(bus, poll_s=0.01)
        job = asyncio.create_task(
            auctioneer.run("loadtest-slot", window_s=5.0, expected={"deployment", "testing"}, auction_id="a1")
        )
        while not await bus.read(1, 10, pattern=EventType.MARKET_AUCTION_OPENED):
            await asyncio.sleep(0.01)
        await place_bid(bus, "a1", "deployment", 6)
        bid = {"auction_id": "a1", "agent": "deployment", "amount": 1}
        await bus.publish(CloudEvent(type=EventType.MARKET_BID, source="/t", data=bid))  # a second bid: duplicate
        await bus.publish(CloudEvent(type=EventType.MARKET_BID, source="/t", data={"auction_id": "a1", "amount": "x"}))
        await place_bid(bus, "a1", "testing", 4)
        closed = await job
        assert closed["winners"] == [{"agent": "deployment", "price": 4, "via": "second price"}]
        assert closed["losers"] == ["testing"]
        ledger = await Ledger.load(bus)
        assert ledger.balances() == {"deployment": 6, "testing": 8}
        decision = (await bus.read(1, 100, pattern=EventType.DECISION))[0].event.data
        assert len(decision["inputs"]["duplicates"]) == 1 and len(decision["inputs"]["invalid"]) == 1
        again = CoordinationAgent(DetachedContext()).reason("market.auction", decision["inputs"])
        assert (again.action, again.score) == (decision["action"], decision["score"])
        empty = await Auctioneer(bus, poll_s=0.01).run("staging-env", units=2, window_s=0.05)
        assert empty["action"] == "no_sale" and empty["winners"] == []

    asyncio.run(go())
