"""Contract-net messages (FIPA SC00029H performatives as CloudEvents), the award rule and decision records.

FIPA Contract Net Interaction Protocol (FIPA SC00029H) terms and their event types:

================== ==================================== ===================================================
FIPA performative  event type                           sent by → to
================== ==================================== ===================================================
cfp                ``dev.pilotage.cnet.cfp.<capability>`` manager → every worker host with the capability
propose            ``dev.pilotage.cnet.propose``        host → manager (one per host: its best member's bid)
refuse             ``dev.pilotage.cnet.refuse``         host → manager (capable but will not bid; reason)
accept-proposal    ``dev.pilotage.cnet.accept``         manager → the winning host (names member, decision)
reject-proposal    ``dev.pilotage.cnet.reject``         manager → every other bidder, batched in one event
cancel             ``dev.pilotage.cnet.cancel``         manager → a winner that timed out or was lost
inform-done        ``dev.pilotage.cnet.done``           winner → manager (carries the JSON result)
failure            ``dev.pilotage.cnet.failure``        winner → manager (the one-line error)
================== ==================================== ===================================================

Every message carries ``task_id`` and ``round`` (0 for the first call, +1 per re-announcement). Rejections are
batched (one ``reject`` event lists every rejected bidder) so a round costs O(hosts) events, not O(hosts²)
deliveries. The award itself is a ``decision.made`` event of the ``coordination`` agent (kind ``cnet.award``):
:func:`award_reasoning` is the pure rule, so ``pilotage events replay`` recomputes it and ``pilotage explain``
shows the bids it saw.

**Award rule** (deterministic, total order): among valid, on-time bids of workers not excluded from the task,
the winner has the lowest ``cost_s``, then the fewest capabilities (a specialist is preferred so generalists stay
free for work only they can do), then the smallest worker id. ``cost_s = (queue_length + 1) × est_duration_s``:
the expected time until the task is done on that worker (the queue ahead of it plus the task itself; the +1 keeps
an idle fast worker ahead of an idle slow one, where ``queue_length × est_duration_s`` would tie them at 0).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pilotage.agent import EVENT_ID_NAMESPACE, Decision, Reasoning
from pilotage.bus.base import Bus
from pilotage.bus.query import EventLog
from pilotage.catalogue import checked_event
from pilotage.events import EventType

__all__ = [
    "AWARD_RULE",
    "COORDINATION_AGENT",
    "Bid",
    "award_reasoning",
    "best_bid",
    "cfp_type",
    "coordination_id",
    "parse_bid",
    "record_decision",
]

log = logging.getLogger(__name__)

#: Name under which contract-net managers and auctioneers record their decisions (``pilotage explain`` shows it).
COORDINATION_AGENT = "coordination"
#: The award rule as recorded in every ``cnet.award`` decision.
AWARD_RULE = (
    "lowest cost_s = (queue_length + 1) x est_duration_s, then fewest capabilities, then smallest worker id; "
    "only valid, on-time bids of workers not excluded from the task"
)


def cfp_type(capability: str) -> str:
    """Return the event type of a call for proposals for ``capability`` (``dev.pilotage.cnet.cfp.tests``)."""
    return f"{EventType.CNET_CFP}.{capability}"


def coordination_id(*parts: object) -> str:
    """Return a deterministic event id (uuid5) for the coordination message named by ``parts``.

    A manager that runs again on the same task (after a crash) publishes the same ids; the bus keeps the first.
    """
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, "/".join(str(p) for p in parts)))


class Bid(BaseModel):
    """One worker's offer for one task (the content of a ``propose``).

    Attributes:
        worker: member id (unique across hosts, e.g. ``host-a/0``).
        host: id of the host (group leader) that sent it; the accept goes there.
        queue_length: tasks accepted by the worker and not finished when it bid.
        est_duration_s: the worker's estimate of the task's run time, seconds.
        cost_s: ``(queue_length + 1) × est_duration_s``, seconds.
        capabilities: every capability of the worker.
    """

    model_config = ConfigDict(extra="ignore")

    worker: str = Field(min_length=1)
    host: str = Field(min_length=1)
    queue_length: int = Field(ge=0)
    est_duration_s: float = Field(ge=0)
    cost_s: float = Field(ge=0)
    capabilities: list[str] = Field(default_factory=list)

    @staticmethod
    def make(worker: str, host: str, queue_length: int, est_duration_s: float, capabilities: list[str]) -> Bid:
        """Return a bid with ``cost_s`` computed by the documented formula (rounded to the millisecond)."""
        cost = round((queue_length + 1) * est_duration_s, 3)
        return Bid(
            worker=worker,
            host=host,
            queue_length=queue_length,
            est_duration_s=round(est_duration_s, 3),
            cost_s=cost,
            capabilities=sorted(capabilities),
        )


def parse_bid(data: Any) -> tuple[Bid | None, str]:
    """Return ``(bid, "")`` for a valid ``propose`` bid, else ``(None, reason)`` (malformed bids are not fatal).

    A bid whose ``cost_s`` is not the documented formula of its own figures is malformed (a worker may not
    under-report its cost).
    """
    try:
        bid = Bid.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        return None, f"{'.'.join(str(p) for p in first['loc']) or 'bid'}: {first['msg']}"
    expected = round((bid.queue_length + 1) * bid.est_duration_s, 3)
    if abs(expected - bid.cost_s) > 0.002:
        return None, f"cost_s {bid.cost_s} is not (queue_length + 1) x est_duration_s = {expected}"
    return bid, ""


def _order(bid: dict[str, Any]) -> tuple[float, int, str]:
    return (float(bid["cost_s"]), len(bid.get("capabilities") or []), str(bid["worker"]))


def best_bid(bids: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Return the bid the award rule prefers among ``bids`` (dicts of :class:`Bid` fields), or None."""
    return min(bids, key=_order) if bids else None


def award_reasoning(inputs: dict[str, Any]) -> Reasoning:
    """Choose the winner of one contract-net round from its recorded inputs (pure, deterministic).

    Args:
        inputs: ``{"task_id", "round", "capability", "bids": [Bid fields + "offset"], "excluded": [worker ids],
            "invalid": [{"event_id", "reason"}], "duplicates": [...], "late": [...], "hosts_live": int}``.

    Returns:
        action ``award`` (score ``{"winner", "host", "cost_s", "bids"}``) or ``no_award`` (no eligible bid: the
        task runs in-process or is re-announced by the caller).
    """
    excluded = set(inputs.get("excluded") or [])
    eligible = [b for b in inputs.get("bids") or [] if b.get("worker") not in excluded]
    winner = best_bid(eligible)
    noted = (
        f"{len(inputs.get('invalid') or [])} malformed, {len(inputs.get('duplicates') or [])} duplicate, "
        f"{len(inputs.get('late') or [])} late bid(s) ignored"
    )
    if winner is None:
        return Reasoning(
            action="no_award",
            rule=AWARD_RULE,
            score={"winner": None, "host": None, "cost_s": None, "bids": 0},
            rationale=f"No eligible bid for {inputs.get('capability')} task {inputs.get('task_id')} round "
            f"{inputs.get('round')} ({len(excluded)} worker(s) excluded after failing it; {noted}).",
        )
    ranked = sorted(eligible, key=_order)
    runner = ranked[1] if len(ranked) > 1 else None
    versus = (
        f"; next best {runner['worker']} at {runner['cost_s']} s with {len(runner.get('capabilities') or [])} "
        "capabilities"
        if runner
        else "; it was the only eligible bid"
    )
    return Reasoning(
        action="award",
        rule=AWARD_RULE,
        score={"winner": winner["worker"], "host": winner["host"], "cost_s": winner["cost_s"], "bids": len(eligible)},
        rationale=f"{winner['worker']} wins {inputs.get('capability')} task round {inputs.get('round')}: cost "
        f"{winner['cost_s']} s (queue {winner['queue_length']} x {winner['est_duration_s']} s + the task), "
        f"{len(winner.get('capabilities') or [])} capabilities{versus}; {len(eligible)} eligible bid(s), {noted}.",
    )


async def record_decision(
    bus: Bus,
    *,
    event_id: str,
    kind: str,
    inputs: dict[str, Any],
    reasoning: Reasoning,
    source: str,
    cause_event_id: str = "",
    run_id: str = "",
    subject: str | None = None,
) -> Decision:
    """Publish a ``decision.made`` of the coordination agent under ``event_id``; return the decision the log holds.

    As :meth:`pilotage.agent.Agent.decide`: when the id is already in the log (a manager that ran again after a
    crash), the recorded decision is returned and acted on, never re-taken.
    """
    decision = Decision(
        id=event_id,
        agent=COORDINATION_AGENT,
        kind=kind,
        inputs=json.loads(json.dumps(inputs)),
        action=reasoning.action,
        rule=reasoning.rule,
        score=reasoning.score,
        rationale=reasoning.rationale,
        cause_event_id=cause_event_id,
        run_id=run_id,
    )
    event = checked_event(
        EventType.DECISION, decision.to_dict(), source=source, subject=subject, runid=run_id, id=event_id
    )
    stored = await EventLog(bus).at(await bus.publish(event))
    if stored is not None and stored.id == event_id and isinstance(stored.data, dict):
        recorded = stored.data
        if recorded != decision.to_dict():
            log.info("coordination acts on decision %s recorded before a restart", event_id)
            return Decision(**{k: v for k, v in recorded.items() if k in Decision.__dataclass_fields__})
    return decision
