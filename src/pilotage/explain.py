"""Why an agent decided what it did: a ``decision.made`` event with its policy verdict and outcome (``explain``).

One owner for ``pilotage explain`` and the HTTP API's decision view: :func:`explain_decision` reads the events of
the log (oldest first) and returns the decision's data with ``time``, ``run_id``, ``policy_verdict`` (the
``policy.evaluated`` that gated its action, or None) and ``outcome_events`` (what followed from it).
"""

from __future__ import annotations

from typing import Any

from pilotage.errors import InputError
from pilotage.events import CloudEvent, EventType

__all__ = ["explain_decision"]


def _gating_verdict(decision: dict[str, Any], after: list[CloudEvent]) -> dict[str, Any] | None:
    """Return the policy verdict that gated the decision's action (None when no action needed one).

    The ``policy.evaluated`` (of any agent) whose input names the decision, else the verdict recorded in the
    decision, else the agent's first ``policy.evaluated`` after the decision and before its next one.
    """
    policies = [e for e in after if e.type == EventType.POLICY_EVALUATED]
    # the verdict may come from another agent: the reliability agent judges, the rollout agent asks for the rollback
    named = next((e for e in policies if (e.data.get("input") or {}).get("decision_id") == decision["id"]), None)
    if named is not None:
        return {"event_id": named.id, **{k: v for k, v in named.data.items() if k != "input"}}
    if decision.get("verdict"):
        return {"event_id": None, **decision["verdict"]}
    for e in after:
        if e.type == EventType.DECISION and e.data.get("agent") == decision["agent"]:
            break
        if e.type == EventType.POLICY_EVALUATED and e.data.get("agent") == decision["agent"]:
            return {"event_id": e.id, **{k: v for k, v in e.data.items() if k != "input"}}
    return None


def _outcome_events(event: CloudEvent, after: list[CloudEvent]) -> list[CloudEvent]:
    """Events the decision caused: those naming it (``decision_id``), else the agent's next non-policy events."""
    named = [e for e in after if isinstance(e.data, dict) and e.data.get("decision_id") == event.id]
    named = [e for e in named if e.type not in (EventType.DECISION, EventType.POLICY_EVALUATED)]
    if named:
        return named[:3]
    skip = (EventType.DECISION, EventType.POLICY_EVALUATED)
    return [e for e in after if e.source == event.source and e.type not in skip][:3]


def explain_decision(events: list[CloudEvent], decision_id: str, *, where: str = "the event log") -> dict[str, Any]:
    """Return the explain view of decision ``decision_id`` among ``events`` (the log, oldest first).

    Returns:
        The decision's data (``id, agent, kind, inputs, rule, score, action, rationale, verdict``) plus ``time``,
        ``run_id``, ``policy_verdict`` (``{event_id, action, allow, engine, policies, reasons, ...}`` or None) and
        ``outcome_events`` (``[{type, id, data}]``, at most 3).

    Raises:
        InputError: no event has that id (``where`` names the log), or it is not a decision.
    """
    index = next((i for i, e in enumerate(events) if e.id == decision_id), None)
    if index is None:
        raise InputError(
            f"no event with id {decision_id!r} in {where}",
            hint="copy an id from `pilotage events tail --type dev.pilotage.decision.made`",
        )
    event = events[index]
    if event.type != EventType.DECISION:
        raise InputError(
            f"event {decision_id} is a {event.type}, not a decision",
            hint="pass the id of a dev.pilotage.decision.made event",
        )
    after = [e for e in events[index + 1 :] if e.runid == event.runid]
    outcome = _outcome_events(event, after)
    return {
        **event.data,
        "time": event.time,
        "run_id": event.runid,
        "policy_verdict": _gating_verdict(event.data, after),
        "outcome_events": [{"type": e.type, "id": e.id, "data": e.data} for e in outcome],
    }
