"""Human in the loop: an action a policy marks ``needs_approval`` waits for ``pilotage approve ID`` / ``deny ID``.

The exchange happens on the bus, so the person may answer from another process (another terminal, later the
dashboard) as long as it shares the event log:

1. the agent asks the engine; when the only obstacle is a pending approval (:attr:`Verdict.awaits_approval`) it
   publishes ``dev.pilotage.approval.requested`` ``{approval_id, action, agent, needs_approval, verdict, input,
   timeout_s, default: "deny", cause_event_id}`` and waits;
2. ``pilotage approve ID`` publishes ``dev.pilotage.approval.granted`` (``pilotage deny ID``:
   ``dev.pilotage.approval.denied``) ``{approval_id, by, reason, approved: [messages]}`` in the same run;
3. on a grant the agent calls :meth:`~pilotage.agent.Agent.authorize` again with ``input.approval = {id, granted:
   true, by, approved}``, which satisfies exactly those messages (:func:`~pilotage.policy.base.make_verdict`);
   on a deny, or when nobody answers within ``timeout_s``, it publishes a deny ``policy.evaluated`` naming the
   approval and raises :class:`~pilotage.errors.PolicyDenied` (after a timeout it first publishes
   ``dev.pilotage.approval.expired``).

Default timeout: :data:`APPROVAL_TIMEOUT_S` = 600 s, then **deny** (fail closed), shorter than the flow's 900 s
budget so the documented default is what ends the wait. An agent context may override it with
``ctx.extras["approval_timeout_s"]``. The approval id is derived from the event that caused the action and the
action, so a redelivered event finds the same request and its answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import TYPE_CHECKING, Any, NoReturn

from pilotage.errors import InputError, PolicyDenied
from pilotage.events import CloudEvent, EventType, new_event
from pilotage.policy.base import Verdict

if TYPE_CHECKING:
    from pilotage.agent import Agent
    from pilotage.bus.base import Bus

__all__ = [
    "APPROVAL_DENIED",
    "APPROVAL_EXPIRED",
    "APPROVAL_GRANTED",
    "APPROVAL_REQUESTED",
    "APPROVAL_TIMEOUT_S",
    "answer",
    "approval_id",
    "authorize_with_approval",
    "find_approval",
    "pending_approvals",
]

APPROVAL_REQUESTED = "dev.pilotage.approval.requested"
APPROVAL_GRANTED = "dev.pilotage.approval.granted"
APPROVAL_DENIED = "dev.pilotage.approval.denied"
APPROVAL_EXPIRED = "dev.pilotage.approval.expired"
_ANSWERS = (APPROVAL_GRANTED, APPROVAL_DENIED, APPROVAL_EXPIRED)
#: Seconds an action waits for a person before the default (deny) applies.
APPROVAL_TIMEOUT_S = 600.0
#: Seconds between two reads of the log while waiting (the answer may come from another process).
POLL_S = 0.2


def approval_id(cause: CloudEvent, action: str) -> str:
    """Return the id of the approval ``action`` caused by ``cause`` needs: ``apr-`` + 12 hex digits (stable)."""
    return "apr-" + hashlib.sha256(f"{cause.id}/{action}".encode()).hexdigest()[:12]


async def _scan(bus: Bus, types: tuple[str, ...], ident: str, start: int = 1) -> tuple[dict[str, CloudEvent], int]:
    """Return ``{type: newest event of that type with data.approval_id == ident}`` and the next offset."""
    found: dict[str, CloudEvent] = {}
    offset = start
    while True:
        batch = await bus.read(offset, 1000, pattern="dev.pilotage.approval.*")
        if not batch:
            return found, offset
        for record in batch:
            data = record.event.data
            if record.event.type in types and isinstance(data, dict) and data.get("approval_id") == ident:
                found[record.event.type] = record.event
        offset = batch[-1].offset + 1


async def find_approval(bus: Bus, ident: str) -> tuple[CloudEvent | None, CloudEvent | None]:
    """Return (the ``approval.requested`` event of ``ident`` or None, its answer event or None) from the log."""
    found, _ = await _scan(bus, (APPROVAL_REQUESTED, *_ANSWERS), ident)
    answer_event = next((found[t] for t in _ANSWERS if t in found), None)
    return found.get(APPROVAL_REQUESTED), answer_event


async def pending_approvals(bus: Bus) -> list[dict[str, Any]]:
    """Return the data of every ``approval.requested`` without an answer (oldest first), with ``run_id``."""
    requested: dict[str, CloudEvent] = {}
    answered: set[str] = set()
    offset = 1
    while True:
        batch = await bus.read(offset, 1000, pattern="dev.pilotage.approval.*")
        if not batch:
            break
        for record in batch:
            data = record.event.data if isinstance(record.event.data, dict) else {}
            ident = str(data.get("approval_id", ""))
            if record.event.type == APPROVAL_REQUESTED:
                requested.setdefault(ident, record.event)
            elif record.event.type in _ANSWERS:
                answered.add(ident)
        offset = batch[-1].offset + 1
    return [
        {**event.data, "run_id": event.runid, "requested_at": event.time}
        for ident, event in requested.items()
        if ident not in answered
    ]


async def answer(bus: Bus, ident: str, *, granted: bool, by: str, reason: str = "") -> CloudEvent:
    """Publish a person's answer to approval ``ident`` (what ``pilotage approve`` / ``pilotage deny`` do).

    Raises:
        InputError: no approval ``ident`` was requested, or it was already answered (names by whom).
    """
    request, previous = await find_approval(bus, ident)
    if request is None:
        raise InputError(f"no approval {ident} was requested", hint="list the pending ones: pilotage policy pending")
    if previous is not None:
        data = previous.data if isinstance(previous.data, dict) else {}
        what = previous.type.rsplit(".", 1)[-1]
        raise InputError(
            f"approval {ident} is already {what}" + (f" by {data['by']}" if data.get("by") else ""),
            hint="an answer cannot be changed; ask for the action again",
        )
    data = request.data if isinstance(request.data, dict) else {}
    event = new_event(
        APPROVAL_GRANTED if granted else APPROVAL_DENIED,
        {
            "approval_id": ident,
            "action": data.get("action"),
            "by": by,
            "reason": reason,
            "approved": list(data.get("needs_approval") or []) if granted else [],
        },
        source="/pilotage/cli",
        subject=request.subject,
        runid=request.runid,
    )
    await bus.publish(event)
    return event


async def _wait(bus: Bus, ident: str, timeout_s: float) -> CloudEvent | None:
    deadline = time.monotonic() + timeout_s
    offset = 1
    while True:
        found, offset = await _scan(bus, (APPROVAL_GRANTED, APPROVAL_DENIED), ident, offset)
        if found:
            return found.get(APPROVAL_DENIED) or found[APPROVAL_GRANTED]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        await asyncio.sleep(min(POLL_S, remaining))


async def _refuse(
    agent: Agent, verdict: Verdict, reason: str, policy_input: dict[str, Any], cause: CloudEvent
) -> NoReturn:
    refused = Verdict(
        action=verdict.action,
        allow=False,
        reasons=[reason, *verdict.reasons],
        policies=verdict.policies,
        engine=verdict.engine,
        needs_approval=verdict.needs_approval,
        findings=verdict.findings,
    )
    await agent.emit(
        EventType.POLICY_EVALUATED, {"agent": agent.name, **refused.to_dict(), "input": policy_input}, cause=cause
    )
    raise PolicyDenied(f"policy denied {verdict.action}: {reason}", verdict=refused, hint="ask for the action again")


async def authorize_with_approval(
    agent: Agent, action: str, policy_input: dict[str, Any], *, cause: CloudEvent, timeout_s: float | None = None
) -> Verdict:
    """Like :meth:`Agent.authorize`, but an action that only needs approval waits for a person (module doc).

    Args:
        agent: the agent asking (its bus, policy engine, ``emit`` and ``authorize`` are used).
        action: the policy action.
        policy_input: the input document.
        cause: the event the action answers (run, subject, approval id).
        timeout_s: seconds to wait; default ``ctx.extras["approval_timeout_s"]`` or :data:`APPROVAL_TIMEOUT_S`.

    Returns:
        The allowing verdict (after the approval, when one was needed).

    Raises:
        PolicyDenied: a policy denied, the person denied, or nobody answered in time (default: deny).
        InputError: ``policy_input`` is not JSON-serialisable.
    """
    first = agent.ctx.policy.evaluate(action, policy_input)
    if not first.awaits_approval:
        return await agent.authorize(action, policy_input, cause=cause)
    wait_s = float(agent.ctx.extras.get("approval_timeout_s", APPROVAL_TIMEOUT_S) if timeout_s is None else timeout_s)
    ident = approval_id(cause, action)
    request, _ = await find_approval(agent.ctx.bus, ident)
    if request is None:
        await agent.emit(
            APPROVAL_REQUESTED,
            {
                "approval_id": ident,
                "action": action,
                "agent": agent.name,
                "needs_approval": first.needs_approval,
                "verdict": first.to_dict(),
                "input": policy_input,
                "timeout_s": wait_s,
                "default": "deny",
                "cause_event_id": cause.id,
            },
            cause=cause,
        )
    reply = await _wait(agent.ctx.bus, ident, wait_s)
    if reply is None:
        await agent.emit(APPROVAL_EXPIRED, {"approval_id": ident, "action": action, "default": "deny"}, cause=cause)
        await _refuse(
            agent, first, f"approval {ident} got no answer within {wait_s:g} s: default deny", policy_input, cause
        )
    data = reply.data if isinstance(reply.data, dict) else {}
    who = str(data.get("by") or "someone")
    if reply.type == APPROVAL_DENIED:
        why = f": {data['reason']}" if data.get("reason") else ""
        await _refuse(agent, first, f"approval {ident} denied by {who}{why}", policy_input, cause)
    approval = {"id": ident, "granted": True, "by": who, "approved": list(data.get("approved") or [])}
    return await agent.authorize(action, {**policy_input, "approval": approval}, cause=cause)
