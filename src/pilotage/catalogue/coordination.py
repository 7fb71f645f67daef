"""Event-data models of approvals (signed) and of coordination: contract net, workers, the credit market."""

from __future__ import annotations

from typing import Any

from pilotage.catalogue.base import EventData, Obj


# --- governance: approvals (signed; pilotage.policy.approval) -------------------------------------------------
class _Signed(EventData):
    """HMAC-SHA256 ``signature`` (hex) over the type, run id and ``approval.SIGNED_FIELDS``."""

    signature: str
    key_id: str
    signature_alg: str


class ApprovalRequested(_Signed):
    """An action waits for a person (``pilotage approve``/``deny``). Any agent whose policy needs approval."""

    approval_id: str
    action: str
    agent: str
    needs_approval: list[str]
    verdict: Obj
    input: Obj
    timeout_s: float
    default: str
    cause_event_id: str


class ApprovalAnswered(_Signed):
    """A person's answer (granted or denied). `pilotage approve` / `pilotage deny` → the waiting agent."""

    approval_id: str
    action: str
    by: str
    reason: str
    approved: list[str]
    cause_event_id: str


class ApprovalExpired(_Signed):
    """No signed answer in time: the default applies. The waiting agent."""

    approval_id: str
    action: str
    default: str
    cause_event_id: str


class ApprovalRejected(EventData):
    """An unsigned, forged or mismatched answer, ignored. The waiting agent."""

    approval_id: str
    action: str
    rejected_event_id: str
    rejected_type: str
    rejected_source: str
    claimed_by: str
    reason: str


# --- coordination (issue 8): contract net, workers, market ----------------------------------------------------
class _Round(EventData):
    task_id: str
    round: int


class CnetCfp(_Round):
    """Call for proposals, type ``cnet.cfp.<capability>``; ``bid_deadline`` Unix s. Manager → worker hosts."""

    capability: str
    payload: Obj
    bid_deadline: float
    exec_timeout_s: float
    excluded: list[str]
    reannounced_because: Obj | None


class CnetPropose(_Round):
    """A host's best bid (``messages.Bid``: worker, host, queue_length, est_duration_s, cost_s). → manager."""

    host: str
    group: str
    members: int
    bid: Obj


class CnetRefuse(_Round):
    """A host declines the call. Worker host → manager."""

    host: str
    group: str
    reason: str


class CnetAccept(_Round):
    """Accept-proposal; ``exec_deadline`` Unix s. Manager → the winning host."""

    capability: str
    worker: str
    host: str
    decision_id: str
    payload: Obj
    exec_deadline: float


class CnetReject(_Round):
    """Reject-proposal: ``rejected`` [{worker, host, reason: outbid/malformed/duplicate/late}]. Manager."""

    decision_id: str
    rejected: list[Obj]


class CnetCancel(_Round):
    """The winner timed out or was lost. Manager → the winning host."""

    worker: str
    host: str
    reason: str


class CnetDone(_Round):
    """Inform-done with the task's result. Worker host → manager."""

    worker: str
    host: str
    decision_id: str | None
    result: Any
    duration_s: float


class CnetFailure(_Round):
    """The task raised (one-line ``error``). Worker host → manager."""

    worker: str
    host: str
    decision_id: str | None
    error: str
    duration_s: float


class WorkerHeartbeat(EventData):
    """A worker host is alive, every ``cnet_heartbeat_s``. Worker host → managers (worker directory)."""

    host: str
    group: str
    pid: int
    hostname: str
    capabilities: list[str]
    members: int
    queued: int
    running: list[Obj]
    done: int
    sent_at: float


class WorkerStopped(EventData):
    """A worker host stopped (SIGTERM). Worker host → managers."""

    host: str
    sent_at: float


class _Auction(EventData):
    auction_id: str
    resource: str
    units: int


class MarketAuctionOpened(_Auction):
    """A sealed-bid auction opens; ``seq``/``hold_s`` for the load-test slot. Auctioneer → bidders."""

    closes_at: float
    seq: int | None = None
    hold_s: float | None = None


class MarketBid(EventData):
    """A sealed bid in integer credits; ``request`` = ``<run>/<sha12>`` for the load-test slot. → auctioneer."""

    auction_id: str
    agent: str
    amount: int
    sent_at: float
    request: str | None = None


class MarketAuctionClosed(_Auction):
    """The auction's result: ``winners`` [{agent, price, via, request?}]. Auctioneer → ledger, slot arbiter."""

    action: str
    winners: list[Obj]
    losers: list[str]
    rejected: list[Obj]
    decision_id: str
    bids: int
    closed_at: float
    seq: int | None = None
    hold_s: float | None = None


class MarketReleased(EventData):
    """The holder released the resource. Slot holder → slot arbiter (next auction)."""

    auction_id: str
    resource: str
    agent: str
    request: str
    sent_at: float
