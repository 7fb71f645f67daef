"""Replay: recompute every recorded decision from its recorded inputs, without side effects (DESIGN.md section 6).

Each ``dev.pilotage.decision.made`` event carries a :class:`~pilotage.agent.Decision`: the agent, the decision
kind, the inputs, and what :meth:`~pilotage.agent.Agent.reason` answered (action, rule, score, rationale).
:func:`replay_decisions` builds every agent on a :class:`DetachedContext` — a context whose backends raise on
any use, so a ``reason`` that reads the bus, the graph, the policy engine, the runtime or the settings fails the
replay instead of quietly reading today's state — calls ``reason(kind, inputs)`` again and compares.

Compared: ``action`` and ``score`` (after a JSON round trip, as the log stores them; floats must be equal, not
close: ``reason`` is deterministic). ``rule`` and ``rationale`` are reported but do not count as a difference
(wording may change between versions without the decision changing).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pilotage.agent import Agent, AgentContext
from pilotage.bus.base import Record
from pilotage.errors import BackendError
from pilotage.events import EventType

__all__ = ["DetachedContext", "ReplayReport", "ReplayResult", "detached_agents", "replay_decisions"]


class _Detached:
    """Stands in for a backend during replay: any attribute use raises BackendError naming the backend."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> Any:
        raise BackendError(
            f"replay: reason() used the {self._what} ({name}); a decision must follow from its recorded inputs alone",
            hint="move the read into the agent's perceive step and pass the value in the inputs",
        )


def DetachedContext() -> AgentContext:  # noqa: N802 - reads as the type it builds
    """Return an :class:`AgentContext` whose bus, graph, policy, runtime and settings raise on any use."""
    return AgentContext(
        bus=_Detached("bus"),  # type: ignore[arg-type]
        graph=_Detached("graph"),  # type: ignore[arg-type]
        policy=_Detached("policy engine"),  # type: ignore[arg-type]
        runtime=_Detached("runtime"),  # type: ignore[arg-type]
        settings=_Detached("settings"),  # type: ignore[arg-type]
    )


def detached_agents() -> dict[str, Agent]:
    """Return every lifecycle agent by name, built on a :func:`DetachedContext` (no backend is opened)."""
    from pilotage.app import all_agents

    return {agent.name: agent for agent in all_agents(DetachedContext())}


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


@dataclass(frozen=True)
class ReplayResult:
    """One replayed decision.

    Attributes:
        decision_id: id of the ``decision.made`` event (``pilotage explain`` takes it).
        offset: its offset in the log.
        agent, kind: who decided what.
        recorded: ``{action, score}`` from the log.
        recomputed: ``{action, score}`` from ``reason`` now, or None when it raised.
        error: the one-line error when ``reason`` raised or the agent is unknown.
        rule_changed: the recomputed rule text differs (reported, not a difference).
    """

    decision_id: str
    offset: int
    agent: str
    kind: str
    recorded: dict[str, Any]
    recomputed: dict[str, Any] | None
    error: str | None = None
    rule_changed: bool = False

    @property
    def differs(self) -> bool:
        """True when the action or score differs, or the decision could not be recomputed."""
        return self.error is not None or self.recomputed != self.recorded

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-serialisable dict (with ``differs``)."""
        return {
            "decision_id": self.decision_id,
            "offset": self.offset,
            "agent": self.agent,
            "kind": self.kind,
            "recorded": self.recorded,
            "recomputed": self.recomputed,
            "error": self.error,
            "rule_changed": self.rule_changed,
            "differs": self.differs,
        }


@dataclass
class ReplayReport:
    """Every replayed decision; ``differing`` lists those whose action or score came out different."""

    results: list[ReplayResult] = field(default_factory=list)

    @property
    def differing(self) -> list[ReplayResult]:
        """The decisions that came out different (or could not be recomputed)."""
        return [r for r in self.results if r.differs]

    def to_dict(self) -> dict[str, Any]:
        """Return ``{decisions, differing, results: [...]}``, ``results`` holding only the differing ones."""
        return {
            "decisions": len(self.results),
            "differing": len(self.differing),
            "results": [r.to_dict() for r in self.differing],
        }


def replay_one(agents: dict[str, Agent], record: Record) -> ReplayResult:
    """Recompute the decision recorded in ``record`` (a ``decision.made`` event) with its agent's ``reason``."""
    data = record.event.data if isinstance(record.event.data, dict) else {}
    name, kind = str(data.get("agent", "?")), str(data.get("kind", "?"))
    recorded = _canonical({"action": data.get("action"), "score": data.get("score")})
    event_id, offset = record.event.id, record.offset
    agent = agents.get(name)
    if agent is None:
        return ReplayResult(event_id, offset, name, kind, recorded, None, error=f"no agent called {name!r}")
    try:
        reasoning = agent.reason(kind, data.get("inputs") or {})
    except Exception as exc:  # noqa: BLE001 - any failure to recompute is reported as a difference
        return ReplayResult(event_id, offset, name, kind, recorded, None, error=f"{type(exc).__name__}: {exc}")
    recomputed = _canonical({"action": reasoning.action, "score": reasoning.score})
    return ReplayResult(
        event_id, offset, name, kind, recorded, recomputed, rule_changed=reasoning.rule != data.get("rule")
    )


def replay_decisions(records: Iterable[Record], agents: dict[str, Agent] | None = None) -> ReplayReport:
    """Replay every ``decision.made`` record of ``records`` (other types are skipped), in order.

    Args:
        records: log records, e.g. ``bus.read(offset, ...)``.
        agents: agents by name; default :func:`detached_agents` (no backend, no side effect).

    Returns:
        The :class:`ReplayReport`.
    """
    agents = agents if agents is not None else detached_agents()
    report = ReplayReport()
    for record in records:
        if record.event.type == EventType.DECISION:
            report.results.append(replay_one(agents, record))
    return report
