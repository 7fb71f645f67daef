"""The credit market: balances earned by outcomes, spent in sealed-bid second-price auctions for scarce resources.

**Balances live in the event log.** An agent's balance is a function of the log, recomputed by
:meth:`Ledger.from_events`: credits earned by outcome events (:data:`EARNINGS`) minus the prices paid in closed
auctions (``market.auction_closed``). Nothing else holds it, so every process reading the log agrees.

Earning table (credits are integers):

=============================== =================== ======= ==========================================================
outcome event                   earned by           credits why
=============================== =================== ======= ==========================================================
``deploy.promoted``             deployment          10      a rollout that stayed healthy through every step
``deploy.rolled_back``          reliability         10      a rollback that stopped an SLO breach (it follows one)
``tests.completed`` (failed)    testing             8       a test run that caught a regression before rollout
``perf.advice``                 performance         3       a load-test finding with its evidence
``deploy.promoted``             performance/<svc>   5       the service's change reached 100 % healthy: its next
                                                            load test gets priority (the load-test slot's bidder,
                                                            :mod:`pilotage.coordination.slot`)
``env.scaled_down``             cost                2       an idle environment scaled to zero
``cnet.done``                   the worker          1       a contract-net task done
=============================== =================== ======= ==========================================================

**Auctions** (:func:`auction_reasoning`, pure): sealed bids (each bidder sees only its own), ``units`` identical
units of a resource (1 for the machine's single load-test slot, k for k staging environments), unit demand.

1. A bid must be an integer ≥ 0 and at most the bidder's balance when the auction closes; a bid over the balance
   is *rejected* (recorded with the balance) and the bidder takes part with 0 — it cannot spend credits it does
   not have, and still keeps its minimum share.
2. **Minimum share**: a bidder that lost ``min_share_after`` auctions of this resource in a row (default 3,
   ``Settings.market_min_share_after``) gets a unit first, at price 0 (longest wait first, then name). So among
   ``b`` bidders who keep bidding, each wins at least once every ``b × (min_share_after + 1)`` auctions, credits or
   not: nothing starves.
3. The other units go to the highest bids (ties: longer wait, then name); each winner pays the highest losing
   bid among those bidders (the (k+1)-th price; 0 when no bidder lost): Vickrey's second-price rule, generalised
   to k units with unit demand, where bidding one's true value is a dominant strategy (Vickrey 1961).
4. Every price is at most the winner's own valid bid, hence at most its balance: **balances never go negative**.
   Should two auctioneers close concurrently and charge the same credits twice, the ledger caps the second
   charge at the balance left and marks it ``capped`` (still never negative).

An auction with no bidder closes with action ``no_sale``. Bids logged after the close, duplicate bids (only the
first per bidder counts) and malformed bids are recorded in the decision's inputs and not counted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pilotage.agent import Reasoning
from pilotage.bus.base import Bus
from pilotage.bus.query import EventLog, data_matches
from pilotage.catalogue import checked_event
from pilotage.coordination.messages import coordination_id, record_decision
from pilotage.errors import InputError
from pilotage.events import CloudEvent, EventType

__all__ = [
    "AUCTION_RULE",
    "EARNINGS",
    "Auctioneer",
    "EarningRule",
    "Ledger",
    "auction_reasoning",
    "market_report",
    "place_bid",
    "slot_report",
]

MARKET_SOURCE = "/pilotage/coordination/market"
AUCTION_RULE = (
    "sealed bids; bids over the balance rejected (bid 0); bidders who lost min_share_after auctions of the resource "
    "in a row win first at price 0; other units to the highest bids (ties: longer wait, name) at the highest "
    "losing bid (second price)"
)


@dataclass(frozen=True)
class EarningRule:
    """One row of the earning table: ``credits`` to ``agent`` for each ``event_type`` event that ``applies``."""

    event_type: str
    agent: str
    credits: int
    outcome: str
    applies: Callable[[dict[str, Any]], bool] = lambda data: True
    agent_key: str = ""
    per_subject: bool = False

    def earner(self, data: dict[str, Any], subject: str | None = None) -> str:
        """Return who earns.

        ``data[agent_key]`` when set (the worker of a ``cnet.done``); ``<agent>/<subject>`` for a per-service
        account (``performance/checkout``); else ``agent``.
        """
        if self.agent_key:
            return str(data.get(self.agent_key) or self.agent)
        if self.per_subject:
            return f"{self.agent}/{subject or 'unknown'}"
        return self.agent


EARNINGS: tuple[EarningRule, ...] = (
    EarningRule(EventType.DEPLOY_PROMOTED, "deployment", 10, "a rollout that stayed healthy through every step"),
    EarningRule(EventType.DEPLOY_ROLLED_BACK, "reliability", 10, "a rollback that stopped an SLO breach"),
    EarningRule(
        EventType.TESTS_COMPLETED,
        "testing",
        8,
        "a test run that caught a regression",
        lambda d: d.get("passed") is False,
    ),
    EarningRule(EventType.PERF_ADVICE, "performance", 3, "a load-test finding with its evidence"),
    EarningRule(
        EventType.DEPLOY_PROMOTED,
        "performance",
        5,
        "the service's change reached 100 % healthy: priority for its next load test",
        per_subject=True,
    ),
    EarningRule(EventType.ENV_SCALED_DOWN, "cost", 2, "an idle environment scaled to zero"),
    EarningRule(EventType.CNET_DONE, "worker", 1, "a contract-net task done", agent_key="worker"),
)
_RULES: dict[str, list[EarningRule]] = {}
for _rule in EARNINGS:
    _RULES.setdefault(_rule.event_type, []).append(_rule)


@dataclass
class Ledger:
    """Balances and auction history derived from the log (see the module docstring).

    Attributes:
        earned: credits earned per agent.
        paid: credits paid per agent (after capping at the balance).
        waits: ``(resource, agent)`` → auctions of the resource lost in a row.
        entries: every credit and debit, in log order: ``{offset, agent, credits, outcome, event_id}``.
        auctions: the data of every ``market.auction_closed``, in log order.
    """

    earned: dict[str, int] = field(default_factory=dict)
    paid: dict[str, int] = field(default_factory=dict)
    waits: dict[tuple[str, str], int] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)
    auctions: list[dict[str, Any]] = field(default_factory=list)

    def balance(self, agent: str) -> int:
        """Return the agent's credits (earned − paid, never below 0)."""
        return max(self.earned.get(agent, 0) - self.paid.get(agent, 0), 0)

    def balances(self) -> dict[str, int]:
        """Return ``{agent: balance}`` for every agent that earned or paid, by name."""
        return {a: self.balance(a) for a in sorted(set(self.earned) | set(self.paid))}

    def wait(self, resource: str, agent: str) -> int:
        """Return how many auctions of ``resource`` ``agent`` lost in a row (0 after a win)."""
        return self.waits.get((resource, agent), 0)

    def apply(self, offset: int, event: CloudEvent) -> None:
        """Fold one event into the ledger (events of other types are ignored)."""
        data = event.data if isinstance(event.data, dict) else {}
        for rule in _RULES.get(event.type, ()):
            if not rule.applies(data) or (rule.per_subject and not event.subject):
                continue  # a per-service account needs the service (the event's subject)
            agent = rule.earner(data, event.subject)
            self.earned[agent] = self.earned.get(agent, 0) + rule.credits
            self.entries.append(
                {
                    "offset": offset,
                    "agent": agent,
                    "credits": rule.credits,
                    "outcome": rule.outcome,
                    "event_id": event.id,
                }
            )
        if event.type == EventType.MARKET_AUCTION_CLOSED:
            self._close(offset, event.id, data)

    def _close(self, offset: int, event_id: str, data: dict[str, Any]) -> None:
        resource = str(data.get("resource", ""))
        for winner in data.get("winners") or []:
            agent, price = str(winner.get("agent")), int(winner.get("price", 0))
            charged = min(price, self.balance(agent))
            self.paid[agent] = self.paid.get(agent, 0) + charged
            self.waits[(resource, agent)] = 0
            entry = {"offset": offset, "agent": agent, "credits": -charged, "event_id": event_id,
                     "outcome": f"won {resource} in auction {data.get('auction_id')}"}  # fmt: skip
            if charged < price:
                entry["capped"] = price
            self.entries.append(entry)
        for loser in data.get("losers") or []:
            self.waits[(resource, str(loser))] = self.wait(resource, str(loser)) + 1
        self.auctions.append({**data, "offset": offset})

    @classmethod
    def from_events(cls, records: Iterable[tuple[int, CloudEvent]]) -> Ledger:
        """Return the ledger of ``(offset, event)`` pairs in log order."""
        ledger = cls()
        for offset, event in records:
            ledger.apply(offset, event)
        return ledger

    @classmethod
    async def load(cls, bus: Bus) -> Ledger:
        """Read the whole log and return its ledger."""
        return cls.from_events((r.offset, r.event) for r in await EventLog(bus).records())


def _rank(bid: dict[str, Any], waits: dict[str, int]) -> tuple[int, int, str]:
    return (-int(bid["effective"]), -waits.get(str(bid["agent"]), 0), str(bid["agent"]))


def _request(bid: dict[str, Any]) -> dict[str, Any]:
    return {"request": bid["request"]} if bid.get("request") else {}


def auction_reasoning(inputs: dict[str, Any]) -> Reasoning:
    """Allocate the units of one sealed-bid auction from its recorded inputs (pure, deterministic).

    Args:
        inputs: ``{"auction_id", "resource", "units", "min_share_after", "bids": [{"agent", "amount", "request"?}],
            "balances": {agent: credits}, "waits": {agent: auctions lost in a row}, "invalid", "duplicates"}``.

    Returns:
        action ``allocate`` with score ``{"winners": [{"agent", "price", "via", "request"?}], "losers": [agent],
        "rejected": [{"agent", "amount", "balance"}]}``, or ``no_sale`` when nobody bid.
    """
    units = max(int(inputs.get("units", 1)), 0)
    min_share_after = int(inputs.get("min_share_after", 3))
    balances = {str(k): int(v) for k, v in (inputs.get("balances") or {}).items()}
    waits = {str(k): int(v) for k, v in (inputs.get("waits") or {}).items()}
    bids: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for bid in inputs.get("bids") or []:
        agent, amount = str(bid["agent"]), int(bid["amount"])
        effective = amount
        if amount > balances.get(agent, 0):
            rejected.append({"agent": agent, "amount": amount, "balance": balances.get(agent, 0)})
            effective = 0
        bids.append({"agent": agent, "effective": effective, **_request(bid)})
    if not bids:
        return Reasoning("no_sale", AUCTION_RULE, {"winners": [], "losers": [], "rejected": []},
                         f"No bid for {inputs.get('resource')} in auction {inputs.get('auction_id')}.")  # fmt: skip
    starving = sorted(
        (b for b in bids if waits.get(b["agent"], 0) >= min_share_after),
        key=lambda b: (-waits[b["agent"]], str(b["agent"])),
    )[:units]
    winners = [{"agent": b["agent"], "price": 0, "via": "minimum share", **_request(b)} for b in starving]
    rest = sorted((b for b in bids if b not in starving), key=lambda b: _rank(b, waits))
    open_units = units - len(winners)
    top, losing = rest[:open_units], rest[open_units:]
    price = int(losing[0]["effective"]) if losing else 0
    winners += [{"agent": b["agent"], "price": price, "via": "second price", **_request(b)} for b in top]
    won = {w["agent"] for w in winners}
    losers = sorted(b["agent"] for b in bids if b["agent"] not in won)
    described = ", ".join(f"{w['agent']} pays {w['price']} ({w['via']})" for w in winners) or "nobody"
    rationale = (
        f"{len(bids)} bid(s) for {units} unit(s) of {inputs.get('resource')}: {described}; "
        f"{len(rejected)} bid(s) over the balance rejected (taken as 0), {len(losers)} bidder(s) lost."
    )
    return Reasoning("allocate", AUCTION_RULE, {"winners": winners, "losers": losers, "rejected": rejected}, rationale)


async def place_bid(
    bus: Bus, auction_id: str, agent: str, amount: int, *, ledger: Ledger | None = None, request: str = ""
) -> CloudEvent:
    """Publish ``agent``'s sealed bid of ``amount`` credits in ``auction_id``; return the bid event.

    The bid is checked against the agent's balance now (the auctioneer checks again at the close). ``request``
    names what the bid is for when one account may bid for several requests (the load-test slot: ``<run>/<sha>``);
    the bid's id is derived from auction, agent and request, so a re-sent bid is logged once.

    Raises:
        InputError: ``amount`` is negative or more than the agent's balance (the message gives the balance).
    """
    if amount < 0:
        raise InputError(f"bid of {amount} credits by {agent}: bids are >= 0", hint="bid 0 or more credits")
    ledger = ledger if ledger is not None else await Ledger.load(bus)
    balance = ledger.balance(agent)
    if amount > balance:
        raise InputError(
            f"{agent} has {balance} credits and cannot bid {amount} in auction {auction_id}",
            hint=f"bid at most {balance}; credits are earned by outcomes (`pilotage market` shows the table)",
            balance=balance,
        )
    event = checked_event(
        EventType.MARKET_BID,
        {"auction_id": auction_id, "agent": agent, "amount": amount, "sent_at": time.time(),
         **({"request": request} if request else {})},
        source=f"/pilotage/agents/{agent}",
        id=coordination_id(auction_id, "bid", agent, *([request] if request else [])),
    )  # fmt: skip
    await bus.publish(event)
    return event


class Auctioneer:
    """Runs sealed-bid auctions over the bus: ``auction_opened`` → ``bid``s → decision → ``auction_closed``.

    Args:
        bus: the event log.
        min_share_after: lost auctions in a row after which a bidder wins at price 0.
        poll_s: seconds between reads of the log while bids come in.
        source: CloudEvents source of its events.
    """

    def __init__(
        self, bus: Bus, *, min_share_after: int = 3, poll_s: float = 0.02, source: str = MARKET_SOURCE
    ) -> None:
        self.bus = bus
        self.min_share_after = min_share_after
        self.poll_s = poll_s
        self.source = source

    async def run(
        self,
        resource: str,
        *,
        units: int = 1,
        window_s: float = 1.0,
        expected: set[str] | None = None,
        auction_id: str | None = None,
        bids_since: int | None = None,
        extra: dict[str, Any] | None = None,
        run_id: str = "",
        cause_event_id: str = "",
    ) -> dict[str, Any]:
        """Open an auction, collect bids for ``window_s`` (or until every ``expected`` bidder bid), close it.

        Several processes may run the same ``auction_id`` at once: the opened event, the decision and the close
        have ids derived from it, so the log holds one of each and every caller returns the recorded close.

        Args:
            resource: what is sold.
            units: how many identical units.
            window_s: seconds from the opening to the close at the latest.
            expected: bidder names whose bids close the auction early once all are in.
            auction_id: the auction's id (default: a new uuid).
            bids_since: offset from which bids count (default: after the opened event); bids placed before
                the opening (the load-test slot's pending auction) are read from there.
            extra: more fields for the opened and closed events (``seq``, ``hold_s`` of the load-test slot).
            run_id: run recorded on the decision and the close ("" outside a run).
            cause_event_id: event recorded as the decision's cause (``pilotage explain`` shows it).

        Returns:
            The ``market.auction_closed`` data: ``auction_id``, ``resource``, ``units``, ``winners``
            [{agent, price, via, request?}], ``losers``, ``rejected``, ``action``, ``decision_id``, ``bids``,
            ``closed_at`` and ``extra``.
        """
        auction_id = auction_id or str(uuid.uuid4())
        opened = checked_event(
            EventType.MARKET_AUCTION_OPENED,
            {"auction_id": auction_id, "resource": resource, "units": units,
             "closes_at": round(time.time() + window_s, 6), **(extra or {})},
            source=self.source,
            id=coordination_id(auction_id, "opened"),
        )  # fmt: skip
        log = EventLog(self.bus)
        offset = await self.bus.publish(opened)
        stored = await log.at(offset)
        closes_at = float(stored.data["closes_at"]) if stored is not None else time.time()
        start = offset + 1 if bids_since is None else bids_since
        bids, invalid, duplicates = await self._collect(auction_id, start, closes_at, expected or set())
        ledger = await Ledger.load(self.bus)
        bidders = [b["agent"] for b in bids]
        inputs = {
            "auction_id": auction_id,
            "resource": resource,
            "units": units,
            "min_share_after": self.min_share_after,
            "bids": bids,
            "balances": {a: ledger.balance(a) for a in bidders},
            "waits": {a: ledger.wait(resource, a) for a in bidders},
            "invalid": invalid,
            "duplicates": duplicates,
        }
        decision = await record_decision(
            self.bus,
            event_id=coordination_id(auction_id, "decision"),
            kind="market.auction",
            inputs=inputs,
            reasoning=auction_reasoning(inputs),
            source=self.source,
            run_id=run_id,
            cause_event_id=cause_event_id,
        )
        closed = {"auction_id": auction_id, "resource": resource, "units": units, "action": decision.action,
                  **decision.score, "decision_id": decision.id, "bids": len(decision.inputs.get("bids") or []),
                  "closed_at": round(time.time(), 6), **(extra or {})}  # fmt: skip
        closed_id = coordination_id(auction_id, "closed")
        event = checked_event(EventType.MARKET_AUCTION_CLOSED, closed, source=self.source, runid=run_id, id=closed_id)
        stored = await log.at(await self.bus.publish(event))  # another process may have closed it first
        if stored is not None and stored.id == closed_id:
            return dict(stored.data)
        return closed

    async def _collect(
        self, auction_id: str, position: int, closes_at: float, expected: set[str]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        bids: dict[str, dict[str, Any]] = {}
        invalid: list[dict[str, Any]] = []
        duplicates: list[dict[str, Any]] = []
        log = EventLog(self.bus)
        while True:
            for record in await log.records(EventType.MARKET_BID, after=position - 1):
                position = record.offset + 1
                if not data_matches(record.event, {"auction_id": auction_id}):
                    continue
                data = record.event.data
                agent, amount = data.get("agent"), data.get("amount")
                if not isinstance(agent, str) or not agent or type(amount) is not int or amount < 0:
                    reason = "agent must be a name, amount an integer >= 0"
                    invalid.append({"event_id": record.event.id, "reason": reason})
                elif agent in bids:
                    duplicates.append({"event_id": record.event.id, "agent": agent, "amount": amount})
                else:
                    bids[agent] = {"agent": agent, "amount": amount, "event_id": record.event.id}
                    if data.get("request"):
                        bids[agent]["request"] = str(data["request"])
            now = time.time()
            if now >= closes_at or (expected and expected <= set(bids)):
                return list(bids.values()), invalid, duplicates
            await asyncio.sleep(min(self.poll_s, closes_at - now))


def slot_report(view: Any) -> dict[str, Any]:
    """Return ``{resource, holder: {agent, request, price, via, auction_id, since} | None, waiting, auctions}``."""
    return {
        "resource": view.resource,
        "holder": view.holder(),
        "waiting": view.waiting(),
        "auctions": view.newest_opened,
    }


def market_report(ledger: Any, limit: int, view: Any = None) -> dict[str, Any]:
    """Return ``{balances: [{agent, earned, paid, balance}], slot, auctions: [...], earnings: [...]}``.

    ``slot`` is :func:`slot_report` of ``view`` (the load-test slot), or None without a view.
    """
    bidders = {str(w.get("agent")) for a in ledger.auctions for w in a.get("winners") or []}
    bidders |= {str(name) for a in ledger.auctions for name in a.get("losers") or []}
    agents = sorted(set(ledger.earned) | set(ledger.paid) | bidders)
    return {
        "balances": [
            {"agent": a, "earned": ledger.earned.get(a, 0), "paid": ledger.paid.get(a, 0), "balance": ledger.balance(a)}
            for a in agents
        ],
        "slot": slot_report(view) if view is not None else None,
        "auctions": ledger.auctions[-limit:] if limit > 0 else [],
        "earnings": [
            {"event_type": r.event_type, "agent": r.agent_key or r.agent, "credits": r.credits, "outcome": r.outcome}
            for r in EARNINGS
        ],
    }
