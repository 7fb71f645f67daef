"""Scarce resources held by auction: the load-test slot (issue #8) and the rollout analysis slots (issue #19).

The machine's single load-test slot is ``loadtest-slot``; the rollout analysis slots are ``analysis-slot``, with
``Settings.analysis_slots`` units. A requester (the performance agent, once per load test) calls
:meth:`SlotArbiter.hold`; inside the ``async with`` it is the only holder of the resource on the whole bus (every
process of every control plane sharing the log). A resource of ``units`` > 1 has at most that many holders at
once: each auction sells the units free when it runs (one per winner), and each winner releases its own unit.

**Bidder identity.** Credits are per account and an account is per service: the performance agent bids as
``performance/<service>`` (:func:`slot_bidder`), so credits earned by that service's good outcomes (see the
earning table in :mod:`pilotage.coordination.market`) buy its load tests priority. A bid also names its
*request* (``<run id>/<commit12>``) so two runs of the same service are told apart: the auction has unit demand
per account, so the second bid of an account in one auction is a duplicate (not counted) and that run takes part
in the next auction.

**Protocol** (all over the log; every id is deterministic, so any number of contenders can run it at once):

1. the auctions of a resource are numbered; the *pending* auction is ``<resource>#<n>`` with ``n`` = 1 + the
   number of the newest auction of the resource that was opened. A requester bids there at once
   (``market.bid``, amount from its bidding rule, at most its balance), even while the slot is held;
2. when the slot is free (no auction yet, the newest one sold nothing, its winner published
   ``market.released``, or the winner held it longer than ``hold_s``: a crashed holder), every waiting contender
   runs the auction (:class:`~pilotage.coordination.market.Auctioneer`): the opened event, the decision and the
   close have ids derived from the auction id, so the log holds one of each and all contenders act on the same
   recorded decision;
3. the auction closes as soon as every *expected* bidder bid — those who bid before it opened and the losers of
   the previous auction (who bid again) — or after ``window_s`` (``Settings.market_auction_window_s``) when one
   of them does not. **A single requester never waits**: it bid before opening, so the auction closes on its
   first read (4 events: bid, opened, decision, closed; plus ``released`` after the load test);
4. the winner holds the slot until it publishes ``market.released``; losers bid in the next auction. The price is
   the second price; a bidder that lost ``market_min_share_after`` auctions in a row wins at price 0 (minimum
   share), so a service with no credits still gets its load test.

A handler run again after a crash (same request) that finds itself the unreleased winner of the newest auction
holds the slot again instead of waiting for its own expiry.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pilotage.bus.base import Bus
from pilotage.bus.query import EventLog
from pilotage.catalogue import checked_event
from pilotage.coordination.market import MARKET_SOURCE, Auctioneer, Ledger, place_bid
from pilotage.coordination.messages import coordination_id
from pilotage.events import CloudEvent, EventType

if TYPE_CHECKING:
    from pilotage.agent import Agent, Reasoning

__all__ = [
    "ANALYSIS_SLOT",
    "LOADTEST_SLOT",
    "SlotArbiter",
    "SlotGrant",
    "SlotView",
    "agent_slot",
    "bid_amount",
    "bid_reasoning",
    "slot_bidder",
]

#: The machine's single load-test slot: one load test at a time on the whole bus.
LOADTEST_SLOT = "loadtest-slot"
#: Rollout analysis slots (issue #19): at most ``Settings.analysis_slots`` rollout steps analysed at once.
ANALYSIS_SLOT = "analysis-slot"


def slot_bidder(service: str) -> str:
    """Return the credit account that bids for ``service``'s load tests: ``performance/<service>``."""
    return f"performance/{service}"


def bid_amount(balance: int, fraction: float) -> int:
    """Return the bidding rule's bid: ``floor(balance × fraction)``, within ``[0, balance]`` (credits).

    Args:
        balance: the bidder's credits now (≥ 0).
        fraction: share of the balance bid (``Settings.market_bid_fraction``, 0.5: a richer account bids more,
            and one auction never empties it).
    """
    return max(0, min(balance, math.floor(max(balance, 0) * max(fraction, 0.0))))


def bid_reasoning(inputs: dict[str, Any], what: str) -> Reasoning:
    """An agent's bid for ``what`` (a slot): action ``bid``, score ``{"amount"}`` = :func:`bid_amount` (pure).

    Args:
        inputs: ``bidder``, ``resource``, ``auction_id``, ``balance`` (credits), ``fraction`` (0..1).
        what: the slot in the rule's words (``load-test slot``, ``rollout analysis slot``).
    """
    from pilotage.agent import Reasoning

    amount = bid_amount(int(inputs.get("balance", 0)), float(inputs.get("fraction", 0.0)))
    return Reasoning(
        "bid",
        f"bid floor(balance x market_bid_fraction) credits of the service's account for the {what}",
        {"amount": amount},
        f"{inputs.get('bidder')} has {inputs.get('balance', 0)} credits: bids {amount} in auction "
        f"{inputs.get('auction_id')} for {inputs.get('resource')}.",
    )


@dataclass(frozen=True)
class SlotGrant:
    """The auction a requester won, and what it cost.

    Attributes:
        resource: the resource held.
        bidder: the account that won (``performance/<service>``).
        request: the request that holds it (``<run id>/<commit12>``).
        auction_id: ``<resource>#<n>``.
        decision_id: the ``market.auction`` decision (``pilotage explain`` shows every bid).
        price: credits paid (second price; 0 via the minimum share or with no other bid).
        via: ``second price`` or ``minimum share``.
        auctions: auctions taken part in (1 without contention).
        waited_s: seconds from the request to the win.
        bids: the bids of the winning auction (its size shows the contention).
    """

    resource: str
    bidder: str
    request: str
    auction_id: str
    decision_id: str
    price: int
    via: str
    auctions: int
    waited_s: float
    bids: int

    def to_dict(self) -> dict[str, Any]:
        """Return the grant as JSON (for ``perf.measured``'s ``slot``)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class _Auction:
    seq: int
    opened_offset: int = 0
    opened: dict[str, Any] | None = None
    closed: dict[str, Any] | None = None
    closed_at: float = 0.0
    released: set[str] = field(default_factory=set)  # requests (else agents) whose unit was released
    bidders: set[str] = field(default_factory=set)

    def holders(self, now: float) -> list[dict[str, Any]]:
        """Return the winners of this auction still holding their unit at ``now`` (not released, not expired)."""
        if self.closed is None or now > self.closed_at + float((self.opened or {}).get("hold_s", math.inf)):
            return []
        auction_id = self.closed.get("auction_id")
        return [
            {**w, "auction_id": auction_id, "since": self.closed_at}
            for w in self.closed.get("winners") or []
            if str(w.get("request") or w.get("agent")) not in self.released
        ]


class SlotView:
    """The auctions of one resource, read incrementally from the log (``dev.pilotage.market.*`` events).

    Args:
        bus: the event log.
        resource: the resource name.
        units: how many holders the resource has at most (1: the load-test slot).
    """

    def __init__(self, bus: Bus, resource: str, units: int = 1) -> None:
        self.bus = bus
        self.resource = resource
        self.units = max(1, units)
        self.auctions: dict[int, _Auction] = {}
        self._next = 1

    def _auction(self, auction_id: object) -> _Auction | None:
        prefix, _, seq = str(auction_id).rpartition("#")
        if prefix != self.resource or not seq.isdigit():
            return None
        return self.auctions.setdefault(int(seq), _Auction(int(seq)))

    async def refresh(self) -> SlotView:
        """Read the market events logged since the last call; return self."""
        for record in await EventLog(self.bus).records(EventType.PREFIX + "market.*", after=self._next - 1):
            self._take(record.offset, record.event)
            self._next = record.offset + 1
        return self

    def _take(self, offset: int, event: CloudEvent) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        auction = self._auction(data.get("auction_id"))
        if auction is None:
            return
        if event.type == EventType.MARKET_AUCTION_OPENED and auction.opened is None:
            auction.opened, auction.opened_offset = data, offset
        elif event.type == EventType.MARKET_AUCTION_CLOSED and auction.closed is None:
            auction.closed, auction.closed_at = data, float(data.get("closed_at", time.time()))
        elif event.type == EventType.MARKET_RELEASED:
            auction.released.add(str(data.get("request") or data.get("agent")))
        elif event.type == EventType.MARKET_BID:
            auction.bidders.add(str(data.get("agent", "")))

    @property
    def newest_opened(self) -> int:
        """Return the number of the newest opened auction (0 when none)."""
        return max((a.seq for a in self.auctions.values() if a.opened is not None), default=0)

    def holders(self, now: float | None = None) -> list[dict[str, Any]]:
        """Return the entries of the winners holding a unit now, oldest auction first.

        An entry is ``agent``, ``request``, ``price``, ``via``, ``auction_id``, ``since``: won in a closed auction,
        not released, hold not expired.
        """
        now = time.time() if now is None else now
        return [h for seq in sorted(self.auctions) for h in self.auctions[seq].holders(now)]

    def holder(self, now: float | None = None) -> dict[str, Any] | None:
        """Return the oldest entry of :meth:`holders` (the load-test slot's one holder), or None."""
        held = self.holders(now)
        return held[0] if held else None

    def held_by(self, bidder: str, request: str, now: float | None = None) -> _Auction | None:
        """Return the auction whose unit ``bidder`` holds for ``request`` now, or None."""
        for held in self.holders(now):
            if (held.get("agent"), held.get("request")) == (bidder, request):
                return self.auctions.get(int(str(held["auction_id"]).rpartition("#")[2]))
        return None

    def free_units(self, now: float | None = None) -> int:
        """Return the units nobody holds now (0..``units``)."""
        return max(0, self.units - len(self.holders(now)))

    def is_free(self, now: float | None = None) -> bool:
        """Return True when a unit is free and no auction of the resource is open."""
        newest = self.auctions.get(self.newest_opened)
        return (newest is None or newest.closed is not None) and self.free_units(now) > 0

    def expected(self, seq: int) -> set[str]:
        """Return the bidders auction ``seq`` waits for: its bidders so far and the previous auction's losers."""
        previous = self.auctions.get(seq - 1)
        losers = set((previous.closed or {}).get("losers") or []) if previous is not None else set()
        current = self.auctions.get(seq)
        return losers | (current.bidders if current is not None else set())

    def waiting(self) -> list[str]:
        """Return the bidders of the pending auction (``pilotage market`` shows them)."""
        pending = self.auctions.get(self.newest_opened + 1)
        current = self.auctions.get(self.newest_opened)
        names = set(pending.bidders if pending else set())
        if current is not None and current.closed is None:
            names |= current.bidders
        return sorted(names)


BidRule = Callable[[int, str], Awaitable[int]]


class SlotArbiter:
    """Holds a scarce resource for one requester at a time, by auction (see the module docstring).

    Args:
        bus: the event log.
        resource: what is held (default :data:`LOADTEST_SLOT`).
        units: units of the resource: most holders at once (1 for the load-test slot).
        window_s: most seconds an auction waits for expected bidders that have not bid.
        min_share_after: lost auctions in a row after which a bidder wins at price 0.
        poll_s: seconds between two reads of the log while waiting for the slot.
        run_id: run of the auction decisions ("" outside a lifecycle run).
        cause_event_id: the event that made the request (recorded in the decisions).
    """

    def __init__(
        self,
        bus: Bus,
        resource: str = LOADTEST_SLOT,
        *,
        units: int = 1,
        window_s: float = 0.25,
        min_share_after: int = 3,
        poll_s: float = 0.05,
        run_id: str = "",
        cause_event_id: str = "",
    ) -> None:
        self.bus = bus
        self.resource = resource
        self.window_s = window_s
        self.poll_s = poll_s
        self.view = SlotView(bus, resource, units)
        self.auctioneer = Auctioneer(bus, min_share_after=min_share_after, poll_s=min(poll_s, 0.02))
        self.run_id = run_id
        self.cause_event_id = cause_event_id

    async def acquire(self, bidder: str, request: str, bid: BidRule, *, hold_s: float = 900.0) -> SlotGrant:
        """Take part in auctions of the resource until ``bidder``/``request`` wins one; return the grant.

        Args:
            bidder: the credit account (``performance/<service>``).
            request: what the slot is for (``<run id>/<commit12>``), unique per concurrent request.
            bid: ``async (balance, auction_id) -> credits`` — the bidding rule (the performance agent records
                it as a decision); a bid over the balance is clamped to it.
            hold_s: seconds after the win when other contenders consider the slot free even without a release.
        """
        started = time.time()
        taken = 0
        while True:
            await self.view.refresh()
            seq = self.view.newest_opened
            newest = self.view.auctions.get(seq)
            mine = self.view.held_by(bidder, request)
            if mine is not None:  # a re-run that already holds it
                return self._grant(mine, bidder, request, taken, started)
            if newest is None or newest.closed is not None:
                seq += 1  # the pending auction
            auction_id = f"{self.resource}#{seq}"
            ledger = await Ledger.load(self.bus)
            balance = ledger.balance(bidder)
            amount = max(0, min(await bid(balance, auction_id), balance))
            await place_bid(self.bus, auction_id, bidder, amount, request=request, ledger=ledger)
            closed = await self._run_when_free(seq, auction_id, hold_s)
            taken += 1
            won = next((w for w in closed.get("winners") or [] if w.get("agent") == bidder), None)
            if won is not None and won.get("request", request) == request:
                await self.view.refresh()
                return self._grant(self.view.auctions.get(seq), bidder, request, taken, started)

    async def _run_when_free(self, seq: int, auction_id: str, hold_s: float) -> dict[str, Any]:
        """Wait until the auction can run, run it (every contender does; ids are shared), return its close."""
        while True:
            await self.view.refresh()
            auction = self.view.auctions.get(seq)
            if auction is not None and auction.closed is not None:
                return auction.closed
            if self.view.is_free() or (auction is not None and auction.opened is not None):
                previous = self.view.auctions.get(seq - 1)
                return await self.auctioneer.run(
                    self.resource,
                    units=max(1, self.view.free_units()),
                    window_s=self.window_s,
                    expected=self.view.expected(seq),
                    auction_id=auction_id,
                    bids_since=previous.opened_offset + 1 if previous is not None else 1,
                    extra={"seq": seq, "hold_s": hold_s},
                    run_id=self.run_id,
                    cause_event_id=self.cause_event_id,
                )
            await asyncio.sleep(self.poll_s)

    def _grant(self, auction: _Auction | None, bidder: str, request: str, taken: int, started: float) -> SlotGrant:
        closed = (auction.closed if auction is not None else None) or {}
        winner: dict[str, Any] = next((w for w in closed.get("winners") or [] if w.get("agent") == bidder), {})
        return SlotGrant(
            resource=self.resource,
            bidder=bidder,
            request=request,
            auction_id=str(closed.get("auction_id", "")),
            decision_id=str(closed.get("decision_id", "")),
            price=int(winner.get("price", 0)),
            via=str(winner.get("via", "")),
            auctions=max(taken, 1),
            waited_s=round(time.time() - started, 3),
            bids=int(closed.get("bids", 1)),
        )

    async def release(self, grant: SlotGrant) -> None:
        """Publish ``market.released`` for ``grant``: the next auction of the resource may run."""
        data = {
            "auction_id": grant.auction_id,
            "resource": grant.resource,
            "agent": grant.bidder,
            "request": grant.request,
            "sent_at": time.time(),
        }
        released_id = coordination_id(grant.auction_id, "released", *([grant.request] if self.view.units > 1 else []))
        await self.bus.publish(
            checked_event(EventType.MARKET_RELEASED, data, source=MARKET_SOURCE, runid=self.run_id, id=released_id)
        )

    @asynccontextmanager
    async def hold(self, bidder: str, request: str, bid: BidRule, *, hold_s: float = 900.0) -> AsyncIterator[SlotGrant]:
        """Acquire the resource (:meth:`acquire`), yield the grant, release it (also on error or cancellation)."""
        grant = await self.acquire(bidder, request, bid, hold_s=hold_s)
        try:
            yield grant
        finally:
            await asyncio.shield(self.release(grant))


def agent_slot(
    agent: Agent,
    event: CloudEvent,
    resource: str,
    bidder: str,
    request: str,
    *,
    kind: str,
    hold_s: float,
    units: int = 1,
) -> AbstractAsyncContextManager[SlotGrant]:
    """Return the context in which ``agent`` holds a unit of ``resource`` for ``request``, won by auction.

    Each bid is the agent's decision of ``kind`` on inputs ``bidder``, ``resource``, ``auction_id``, ``balance``
    and ``fraction`` (``Settings.market_bid_fraction``); its ``score["amount"]`` is bid (the agent's ``reason``
    for ``kind`` applies :func:`bid_amount`), so ``pilotage events replay`` recomputes it.

    Args:
        agent: the requesting agent (its settings, bus and ``decide``).
        event: the event being handled (the decisions' cause and run).
        resource: :data:`LOADTEST_SLOT` or :data:`ANALYSIS_SLOT`.
        bidder: the credit account (``performance/<service>``, ``reliability/<service>``).
        request: what the unit is for; a handler run again finds its own unreleased unit.
        kind: the bid decision's kind (``perf.slot_bid``, ``slo.slot_bid``).
        hold_s: seconds after the win past which other contenders count the unit free (a crashed holder).
        units: units of the resource (``Settings.analysis_slots`` for the analysis slots).
    """
    settings = agent.ctx.settings
    arbiter = SlotArbiter(
        agent.ctx.bus,
        resource,
        units=units,
        window_s=settings.market_auction_window_s,
        min_share_after=settings.market_min_share_after,
        run_id=event.runid,
        cause_event_id=event.id,
    )

    async def bid(balance: int, auction_id: str) -> int:
        inputs = {"bidder": bidder, "resource": resource, "auction_id": auction_id, "balance": balance,
                  "fraction": settings.market_bid_fraction}  # fmt: skip
        decision = await agent.decide(kind, inputs, cause=event)
        return int((decision.score or {}).get("amount", 0))

    return arbiter.hold(bidder, request, bid, hold_s=hold_s)
