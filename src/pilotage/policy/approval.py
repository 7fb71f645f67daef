"""Human in the loop: an action a policy marks ``needs_approval`` waits for ``pilotage approve ID`` / ``deny ID``.

The exchange happens on the bus, so the person may answer from another process (another terminal, later the
dashboard) as long as it shares the event log:

1. the agent asks the engine; when the only obstacle is a pending approval (:attr:`Verdict.awaits_approval`) it
   publishes ``dev.pilotage.approval.requested`` ``{approval_id, action, agent, needs_approval, verdict, input,
   timeout_s, default: "deny", cause_event_id}`` and waits;
2. ``pilotage approve ID`` publishes ``dev.pilotage.approval.granted`` (``pilotage deny ID``:
   ``dev.pilotage.approval.denied``) ``{approval_id, action, by, reason, approved: [messages], cause_event_id}``
   in the same run;
3. on a grant the agent calls :meth:`~pilotage.agent.Agent.authorize` again with ``input.approval = {id, granted:
   true, by, approved}``, which satisfies exactly those messages (:func:`~pilotage.policy.base.make_verdict`);
   on a deny, or when nobody answers within ``timeout_s``, it publishes a deny ``policy.evaluated`` naming the
   approval and raises :class:`~pilotage.errors.PolicyDenied` (after a timeout it first publishes
   ``dev.pilotage.approval.expired``).

Signed answers (issue #15, finding 3). Any process that can write the log — the code under review included — can
publish an event, so an event alone proves nothing. Every approval event carries ``signature`` (HMAC-SHA256 under
the operator's key, :mod:`pilotage.policy.approval_key`), ``key_id`` and ``signature_alg`` over its type, its run
and the fields of :data:`SIGNED_FIELDS` — for an answer: the approval id, the action, the decision (the event
type), the approver, the reason, the approved messages and the event the request answers. The control plane and
the CLI hold the key; no process a run starts does. The waiting agent acts only on an answer whose signature it
verifies and that names its own action, cause and run; any other answer is recorded as
``dev.pilotage.approval.rejected`` ``{approval_id, action, rejected_event_id, rejected_type, claimed_by, reason}``
and ignored — the wait goes on, and ends with the default deny when no signed answer comes. A forged request,
answer or expiry is likewise invisible to ``pilotage policy pending`` / ``approve`` / ``deny``.

Default timeout: :data:`APPROVAL_TIMEOUT_S` = 600 s, then **deny** (fail closed), shorter than the flow's 900 s
budget so the documented default is what ends the wait. An agent context may override it with
``ctx.extras["approval_timeout_s"]``. The approval id is derived from the event that caused the action and the
action, so a redelivered event finds the same request and its answer. An action that moves traffic back to the
known-good version (:data:`~pilotage.policy.base.SAFE_DIRECTION_ACTIONS`) never waits for a person.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any, NoReturn

from pilotage.bus.query import EventLog
from pilotage.catalogue import checked_event
from pilotage.errors import InputError, PolicyDenied
from pilotage.events import CloudEvent, EventType
from pilotage.policy.approval_key import SIGNATURE_ALG, key_id, key_path, load_key, sign, verify
from pilotage.policy.base import SAFE_DIRECTION_ACTIONS, Verdict

if TYPE_CHECKING:
    from pilotage.agent import Agent
    from pilotage.bus.base import Bus

__all__ = [
    "APPROVAL_TIMEOUT_S",
    "SIGNED_FIELDS",
    "answer",
    "approval_id",
    "authorize_with_approval",
    "find_approval",
    "pending_approvals",
    "seal",
    "seal_problem",
]

log = logging.getLogger(__name__)

_ANSWERS = (EventType.APPROVAL_GRANTED, EventType.APPROVAL_DENIED)
_ANSWER_FIELDS = ("approval_id", "action", "by", "reason", "approved", "cause_event_id")
#: The data fields each approval event signs, besides its type (the decision) and its run id.
SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    EventType.APPROVAL_REQUESTED: ("approval_id", "action", "agent", "needs_approval", "default", "cause_event_id"),
    EventType.APPROVAL_GRANTED: _ANSWER_FIELDS,
    EventType.APPROVAL_DENIED: _ANSWER_FIELDS,
    EventType.APPROVAL_EXPIRED: ("approval_id", "action", "default", "cause_event_id"),
}
#: Seconds an action waits for a person before the default (deny) applies.
APPROVAL_TIMEOUT_S = 600.0
#: Seconds between two reads of the log while waiting (the answer may come from another process).
POLL_S = 0.2


def approval_id(cause: CloudEvent, action: str) -> str:
    """Return the id of the approval ``action`` caused by ``cause`` needs: ``apr-`` + 12 hex digits (stable)."""
    return "apr-" + hashlib.sha256(f"{cause.id}/{action}".encode()).hexdigest()[:12]


def _signed_message(type: str, runid: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": type, "run_id": runid, **{name: data.get(name) for name in SIGNED_FIELDS[type]}}


def seal(key: bytes, type: str, data: dict[str, Any], runid: str) -> dict[str, Any]:
    """Return ``data`` with ``signature``, ``key_id`` and ``signature_alg`` added (the event is ``type`` in ``runid``).

    Raises:
        KeyError: ``type`` is not an approval event that is signed (:data:`SIGNED_FIELDS`).
    """
    signature = sign(key, _signed_message(type, runid, data))
    return {**data, "signature": signature, "key_id": key_id(key), "signature_alg": SIGNATURE_ALG}


def seal_problem(key: bytes, event: CloudEvent) -> str | None:
    """Return None when ``event`` carries a valid signature under ``key``, else why not (one line)."""
    data = event.data if isinstance(event.data, dict) else {}
    if event.type not in SIGNED_FIELDS:
        return f"{event.type} is not a signed approval event"
    if not data.get("signature"):
        return "unsigned"
    if data.get("key_id") != key_id(key):
        return f"signed with another key (key id {data.get('key_id')!r}, the operator's is {key_id(key)})"
    if not verify(key, _signed_message(event.type, event.runid, data), data.get("signature")):
        return "bad signature (forged, or changed after signing)"
    return None


def _mismatch(event: CloudEvent, action: str, cause_id: str, runid: str) -> str | None:
    """Return why an answer does not answer the request (action, cause event, run), or None."""
    data = event.data if isinstance(event.data, dict) else {}
    if data.get("action") != action:
        return f"answers action {data.get('action')!r}, not {action!r}"
    if data.get("cause_event_id") != cause_id:
        return f"answers event {data.get('cause_event_id')!r}, not {cause_id!r}"
    if event.runid != runid:
        return f"belongs to run {event.runid!r}, not {runid!r}"
    return None


#: Every approval event (requests, answers, expiries, rejections).
_APPROVALS = EventType.PREFIX + "approval.*"


async def _scan(bus: Bus, ident: str, after: int = 0) -> tuple[list[CloudEvent], int]:
    """Return the approval events with ``data.approval_id == ident`` after offset ``after``, and the last offset seen.

    Pass the returned offset as ``after`` next time to read only what came since.
    """
    records = await EventLog(bus).records(_APPROVALS, after=after, approval_id=ident)
    return [r.event for r in records], (records[-1].offset if records else after)


def _first_request(key: bytes, events: list[CloudEvent]) -> CloudEvent | None:
    return next((e for e in events if e.type == EventType.APPROVAL_REQUESTED and seal_problem(key, e) is None), None)


def _first_answer(key: bytes, events: list[CloudEvent], request: CloudEvent) -> CloudEvent | None:
    """Return the first signed answer or expiry of ``request`` in ``events`` (forged ones do not count)."""
    data = request.data if isinstance(request.data, dict) else {}
    action, cause_id = str(data.get("action")), str(data.get("cause_event_id"))
    for event in events:
        if event.type in (*_ANSWERS, EventType.APPROVAL_EXPIRED) and seal_problem(key, event) is None:
            if _mismatch(event, action, cause_id, request.runid) is None:
                return event
    return None


async def find_approval(bus: Bus, ident: str, key: bytes) -> tuple[CloudEvent | None, CloudEvent | None]:
    """Return (the signed ``approval.requested`` of ``ident`` or None, its signed answer or expiry or None)."""
    events, _ = await _scan(bus, ident)
    request = _first_request(key, events)
    return request, (_first_answer(key, events, request) if request is not None else None)


async def pending_approvals(bus: Bus, key: bytes) -> list[dict[str, Any]]:
    """Return the data of every signed ``approval.requested`` without a signed answer (oldest first), with ``run_id``.

    Unsigned or badly signed requests, answers and expiries are ignored: a run's process cannot add or hide one.
    """
    by_id: dict[str, list[CloudEvent]] = {}
    for event in await EventLog(bus).all(_APPROVALS):
        data = event.data if isinstance(event.data, dict) else {}
        by_id.setdefault(str(data.get("approval_id", "")), []).append(event)
    waiting = []
    for events in by_id.values():
        request = _first_request(key, events)
        if request is not None and _first_answer(key, events, request) is None:
            waiting.append(request)
    return [
        {**event.data, "run_id": event.runid, "requested_at": event.time}
        for event in sorted(waiting, key=lambda e: e.time)
    ]


async def answer(
    bus: Bus, ident: str, *, granted: bool, by: str, key: bytes, reason: str = "", source: str = "/pilotage/cli"
) -> CloudEvent:
    """Publish a person's signed answer to approval ``ident`` (what ``pilotage approve`` / ``pilotage deny`` do).

    Args:
        bus: the event log the waiting agent reads.
        ident: the approval id (``apr-...``).
        granted: True to approve, False to deny.
        by: who answers (signed with the rest).
        key: the operator's approval key (:func:`pilotage.policy.approval_key.load_key`).
        reason: why (signed, shown in the verdict).
        source: the CloudEvents source of the answer (``/pilotage/cli``, ``/pilotage/api``).

    Raises:
        InputError: no signed approval ``ident`` was requested, or it was already answered (names by whom).
    """
    request, previous = await find_approval(bus, ident, key)
    if request is None:
        raise InputError(
            f"no approval {ident} was requested (or its request is not signed with your approval key)",
            hint="list the pending ones: pilotage policy pending",
        )
    if previous is not None:
        data = previous.data if isinstance(previous.data, dict) else {}
        what = previous.type.rsplit(".", 1)[-1]
        raise InputError(
            f"approval {ident} is already {what}" + (f" by {data['by']}" if data.get("by") else ""),
            hint="an answer cannot be changed; ask for the action again",
        )
    data = request.data if isinstance(request.data, dict) else {}
    type = EventType.APPROVAL_GRANTED if granted else EventType.APPROVAL_DENIED
    body = {
        "approval_id": ident,
        "action": data.get("action"),
        "by": by,
        "reason": reason,
        "approved": list(data.get("needs_approval") or []) if granted else [],
        "cause_event_id": data.get("cause_event_id"),
    }
    sealed = seal(key, type, body, request.runid)
    event = checked_event(type, sealed, source=source, subject=request.subject, runid=request.runid)
    await bus.publish(event)
    return event


async def _wait(
    agent: Agent, ident: str, action: str, cause: CloudEvent, timeout_s: float, key: bytes
) -> tuple[CloudEvent | None, int]:
    """Return the first signed answer to ``ident`` within ``timeout_s`` (None after it) and how many were rejected."""
    deadline = time.monotonic() + timeout_s
    offset = 0
    rejected: set[str] = set()
    while True:
        events, offset = await _scan(agent.ctx.bus, ident, offset)
        for event in events:
            if event.type not in _ANSWERS:
                continue
            problem = seal_problem(key, event) or _mismatch(event, action, cause.id, cause.runid)
            if problem is None:
                return event, len(rejected)
            if event.id not in rejected:
                rejected.add(event.id)
                await _reject(agent, ident, action, event, problem, cause)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, len(rejected)
        await asyncio.sleep(min(POLL_S, remaining))


async def _reject(agent: Agent, ident: str, action: str, event: CloudEvent, problem: str, cause: CloudEvent) -> None:
    data = event.data if isinstance(event.data, dict) else {}
    log.warning("approval %s: ignored %s %s: %s", ident, event.type, event.id, problem)
    await agent.emit(
        EventType.APPROVAL_REJECTED,
        {
            "approval_id": ident,
            "action": action,
            "rejected_event_id": event.id,
            "rejected_type": event.type,
            "rejected_source": event.source,
            "claimed_by": str(data.get("by", "")),
            "reason": problem,
        },
        cause=cause,
    )


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
    asked = f" (the approval was asked for: {'; '.join(verdict.needs_approval)})" if verdict.needs_approval else ""
    raise PolicyDenied(
        f"policy denied {verdict.action}: {reason}{asked}", verdict=refused, hint="ask for the action again"
    )


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
        PolicyDenied: a policy denied, the person denied, or no signed answer came in time (default: deny).
        InputError: ``policy_input`` is not JSON-serialisable.
        ConfigError: the operator's approval key cannot be read or created (:func:`load_key`).
    """
    if action in SAFE_DIRECTION_ACTIONS:  # moving traffic back to the known-good version never waits for a person
        return await agent.authorize(action, policy_input, cause=cause)
    first = agent.evaluate_policy(action, policy_input)
    if not first.awaits_approval:
        return await agent.authorize(action, policy_input, cause=cause)
    key = load_key(key_path(agent.ctx.settings))
    wait_s = float(agent.ctx.extras.get("approval_timeout_s", APPROVAL_TIMEOUT_S) if timeout_s is None else timeout_s)
    ident = approval_id(cause, action)
    request, _ = await find_approval(agent.ctx.bus, ident, key)
    if request is None:
        body = {
            "approval_id": ident,
            "action": action,
            "agent": agent.name,
            "needs_approval": first.needs_approval,
            "verdict": first.to_dict(),
            "input": policy_input,
            "timeout_s": wait_s,
            "default": "deny",
            "cause_event_id": cause.id,
        }
        await agent.emit(
            EventType.APPROVAL_REQUESTED, seal(key, EventType.APPROVAL_REQUESTED, body, cause.runid), cause=cause
        )
    reply, ignored = await _wait(agent, ident, action, cause, wait_s, key)
    if reply is None:
        body = {"approval_id": ident, "action": action, "default": "deny", "cause_event_id": cause.id}
        await agent.emit(
            EventType.APPROVAL_EXPIRED, seal(key, EventType.APPROVAL_EXPIRED, body, cause.runid), cause=cause
        )
        forged = f" ({ignored} unsigned or forged answer(s) ignored)" if ignored else ""
        await _refuse(
            agent,
            first,
            f"approval {ident} got no answer within {wait_s:g} s{forged}: default deny",
            policy_input,
            cause,
        )
    data = reply.data if isinstance(reply.data, dict) else {}
    who = str(data.get("by") or "someone")
    if reply.type == EventType.APPROVAL_DENIED:
        why = f": {data['reason']}" if data.get("reason") else ""
        await _refuse(agent, first, f"approval {ident} denied by {who}{why}", policy_input, cause)
    approval = {"id": ident, "granted": True, "by": who, "approved": list(data.get("approved") or [])}
    return await agent.authorize(action, {**policy_input, "approval": approval}, cause=cause)
