"""Agent base: perceive → reason → act → learn, and the :class:`Decision` record.

Agents never call each other. Each subscribes to event-type patterns on the bus (``subscribes``) and, for
each event, runs its loop in :meth:`Agent.on_event`:

1. **perceive** — gather the inputs of the choice from the event, the run (``flow.started``) and the graph;
2. **reason** — :meth:`Agent.reason`, a *pure* function of ``(kind, inputs)``; :meth:`Agent.decide` calls it and
   publishes a ``dev.pilotage.decision.made`` event with the inputs, the rule or score, the chosen action and
   the rationale, so ``pilotage explain`` can show it and ``pilotage events replay`` can recompute it;
3. **act** — side effects, each world-changing one preceded by :meth:`Agent.authorize` (a policy verdict
   event; fail closed) and followed by an outcome event (:meth:`Agent.emit`);
4. **learn** — write outcomes to the knowledge graph.

Any exception raised by ``on_event`` becomes a ``dev.pilotage.agent.failed`` event carrying a one-line error (a
:class:`~pilotage.errors.PilotageError`'s own line, else the exception class and message; the traceback goes to
the log file); the flow that waits on the run ends with that error at once.

Crash safety (issue #7). Delivery is at-least-once: a handler interrupted by a crash runs again on the same event
after a restart. So that the second run does not duplicate what the first one published, every event an agent
publishes *while handling* an event gets a deterministic id, ``uuid5(cause id / agent / type / n)`` (``n`` counts
the events of that type the handler published so far), and the bus keeps the first event with a given id
(idempotent publish). :meth:`Agent.decide` then reads the decision back from the log: a decision already recorded
is the one the agent acts on (it is never re-taken with different inputs), so what the log explains is what was
done.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pilotage.bus.query import EventLog
from pilotage.catalogue import RunSpec, check, parse
from pilotage.errors import InputError, PilotageError, PolicyDenied
from pilotage.events import CloudEvent, EventType, new_event

if TYPE_CHECKING:
    from pilotage.bus.base import Bus, Subscription
    from pilotage.graph.base import Graph
    from pilotage.policy.base import PolicyEngine, Verdict
    from pilotage.runtime.base import Runtime
    from pilotage.settings import Settings

__all__ = ["Agent", "AgentContext", "Decision", "Reasoning", "RunSpec", "handled_event_id", "one_line_reason"]

log = logging.getLogger(__name__)

#: Longest reason (characters) an ``agent.failed`` event carries for an exception that is not a PilotageError.
MAX_REASON_CHARS = 500

#: Namespace of the deterministic ids of events published while handling an event (uuid5).
EVENT_ID_NAMESPACE = uuid.UUID("6f1c8e52-3b0a-4c8e-9a51-7d2f0c4b9e10")


@dataclass
class _Handling:
    """The event an agent is handling in the current task, and how many events of each type it published."""

    agent: str
    cause_id: str
    counts: dict[str, int] = field(default_factory=dict)


_handling: contextvars.ContextVar[_Handling | None] = contextvars.ContextVar("pilotage_handling", default=None)


def handled_event_id(cause_id: str, agent: str, type: str, n: int = 0) -> str:
    """Return the id of the ``n``-th (0-based) event of ``type`` that ``agent`` publishes while handling ``cause_id``.

    The same handler run twice on the same event publishes the same ids, so the second run's events are
    duplicates the bus drops (idempotent publish) instead of new facts.
    """
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{cause_id}/{agent}/{type}/{n}"))


def one_line_reason(exc: BaseException) -> str:
    """Return ``"<ExceptionClass>: <message>"`` on one line, at most :data:`MAX_REASON_CHARS` characters.

    Used for exceptions that are not :class:`~pilotage.errors.PilotageError` (their own ``one_line`` serves).
    """
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


@dataclass(frozen=True)
class Reasoning:
    """The output of :meth:`Agent.reason`.

    Attributes:
        action: the chosen action.
        rule: the rule or model applied.
        score: a number, a dict of numbers, or None.
        rationale: one paragraph a person can read.
    """

    action: str
    rule: str
    score: Any
    rationale: str


@dataclass(frozen=True)
class Decision:
    """A recorded choice: published as the data of a ``dev.pilotage.decision.made`` event.

    ``id`` equals the id of that event, so ``pilotage explain ID`` finds it. ``verdict`` is the policy verdict
    (``Verdict.to_dict()``) that gated the action, when one did.
    """

    id: str
    agent: str
    kind: str
    inputs: dict[str, Any]
    action: str
    rule: str
    score: Any
    rationale: str
    verdict: dict[str, Any] | None = None
    cause_event_id: str = ""
    run_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the decision as a JSON-serialisable dict."""
        return asdict(self)


#: Characters of a failure's one-line error kept in ``agent.failed`` (a service's output quoted in it can be any
#: size; the event log refuses events over 1 MiB, and a failure that cannot be published would hang its run).
MAX_ERROR_CHARS = 4000


@dataclass
class AgentContext:
    """What an agent may use: the bus, the graph, the policy engine, the runtime and the settings."""

    bus: Bus
    graph: Graph
    policy: PolicyEngine
    runtime: Runtime
    settings: Settings
    extras: dict[str, Any] = field(default_factory=dict)


class Agent(ABC):
    """Base class of every agent. Subclasses set ``name`` and ``subscribes`` and implement ``on_event``.

    Args:
        ctx: the backends and settings (no I/O happens in the constructor).
    """

    name: ClassVar[str] = "agent"
    #: Event-type glob patterns this agent handles.
    subscribes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self._runs: dict[str, RunSpec] = {}

    @property
    def log(self) -> EventLog:
        """Queries over the event log of ``ctx.bus`` ("has this happened in the run yet?")."""
        return EventLog(self.ctx.bus)

    @property
    def source(self) -> str:
        """CloudEvents ``source`` of everything this agent publishes."""
        return f"/pilotage/agents/{self.name}"

    async def start(self, members: int = 1) -> list[Subscription]:
        """Subscribe to every pattern in ``subscribes`` (consumer group ``agent.<name>.<pattern>``).

        Args:
            members: members per group (issue #19, 5: ``pilotage serve`` handles that many runs at once). With
                more than one, each member leases one event at a time, so a long handler (a test run, a rollout
                step's analysis) holds back only its own run; the bus never leases an event while an earlier
                event of the same subject (the service) is leased to another member, so one service's events
                keep their order.
        """
        subs = []
        batch = 16 if members <= 1 else 1
        for pattern in self.subscribes:
            group = f"agent.{self.name}.{pattern}"
            for n in range(max(1, members)):
                consumer = None if members <= 1 else f"{group}#{id(self):x}.{n}"
                subs.append(
                    await self.ctx.bus.subscribe(
                        pattern, self.handle, group=group, start_at_end_if_new=True, batch=batch, consumer=consumer
                    )
                )
        return subs

    async def handle(self, event: CloudEvent) -> None:
        """Run :meth:`on_event`; any exception it raises becomes a ``dev.pilotage.agent.failed`` event.

        Events of a run that already ended (``flow.completed`` / ``flow.failed`` in the log) are skipped, so a
        control plane restarted after a crash does not act on abandoned runs.
        """
        if event.runid and await self._run_closed(event.runid):
            log.info("agent %s skips %s of closed run %s", self.name, event.type, event.runid)
            return
        token = _handling.set(_Handling(self.name, event.id))
        try:
            await self._handle(event)
        finally:
            _handling.reset(token)

    async def _handle(self, event: CloudEvent) -> None:
        """Run :meth:`on_event`; publish ``agent.failed`` with a one-line reason when it raises (issue #15, 7).

        A :class:`~pilotage.errors.PilotageError` gives its own one-line message (an agent that reads an event
        through :func:`pilotage.catalogue.parse` gets an ``InputError`` naming the event and the field for a
        foreign or older shape). Any other exception (a bug, an ``OSError`` such as a full disk) gives
        ``"<ExceptionClass>: <message>"`` folded to one line and cut to :data:`MAX_REASON_CHARS`; its traceback
        goes to the log file, never into the event. Either way the run fails at once instead of waiting for its
        time budget.

        Raises:
            BackendError: ``agent.failed`` itself could not be published (the bus then stops its control plane).
        """
        try:
            await self.on_event(event)
        except PilotageError as exc:
            log.info("agent %s failed on %s: %s", self.name, event.type, exc.one_line())
            verdict = exc.verdict.to_dict() if isinstance(exc, PolicyDenied) else None
            await self._publish_failure(event, exc.one_line(), type(exc).__name__, verdict)
        except Exception as exc:  # noqa: BLE001 - every failure of a handler must end its run, not hang it
            log.exception("agent %s failed on %s (%s)", self.name, event.type, event.id)
            await self._publish_failure(event, one_line_reason(exc), type(exc).__name__, None)

    async def _publish_failure(
        self, event: CloudEvent, error: str, error_type: str, verdict: dict[str, Any] | None
    ) -> None:
        await self.emit(
            EventType.AGENT_FAILED,
            {
                "agent": self.name,
                "error": error if len(error) <= MAX_ERROR_CHARS else error[:MAX_ERROR_CHARS] + " … (cut; see the log)",
                "error_type": error_type,
                "cause_event_id": event.id,
                "cause_event_type": event.type,
                "verdict": verdict,
            },
            cause=event,
        )

    @abstractmethod
    async def on_event(self, event: CloudEvent) -> None:
        """Perceive → reason → act → learn for one event."""

    def reason(self, kind: str, inputs: dict[str, Any]) -> Reasoning:
        """Choose an action for a decision of ``kind`` from ``inputs`` alone (pure, deterministic).

        Raises:
            NotImplementedError: the agent makes no decision of this kind.
        """
        raise NotImplementedError(f"agent {self.name} makes no decision of kind {kind!r}")

    def _new_event(self, type: str, data: Any, cause: CloudEvent, *, series: str = "") -> CloudEvent:
        """Return a new event of ``type``; its id is deterministic while :meth:`handle` runs on ``cause``.

        ``series`` splits the count of one type (decisions are counted per kind): a handler run again after a
        crash that skips an earlier decision (a slot bid it won before the crash) still gets its later
        decisions' ids right, instead of taking the skipped one's.
        """
        event = new_event(type, data, source=self.source, subject=cause.subject, runid=cause.runid)
        handling = _handling.get()
        if handling is None or handling.agent != self.name or handling.cause_id != cause.id:
            return event  # called outside a handler (tests, tools): a fresh random id
        counted = f"{type}#{series}" if series else type
        n = handling.counts.get(counted, 0)
        handling.counts[counted] = n + 1
        return event.model_copy(update={"id": handled_event_id(cause.id, self.name, counted, n)})

    async def emit(self, type: str, data: Any, *, cause: CloudEvent) -> CloudEvent:
        """Publish an event of ``type`` with ``data`` in the run and subject of ``cause``; return it.

        While handling ``cause`` the id is deterministic (:func:`handled_event_id`): a handler that runs again
        after a crash republishes the same ids and the log keeps the first copy.

        Raises:
            InputError: ``data`` does not fit the catalogue model of ``type`` (:func:`pilotage.catalogue.check`).
        """
        check(type, data)
        event = self._new_event(type, data, cause)
        await self.ctx.bus.publish(event)
        return event

    async def decide(
        self, kind: str, inputs: dict[str, Any], *, cause: CloudEvent, verdict: Verdict | None = None
    ) -> Decision:
        """Run :meth:`reason` on ``inputs`` and publish the :class:`Decision`; return the decision the log holds.

        When a run of this handler before a crash already recorded this decision (same deterministic id), the
        recorded one is returned and acted on, not the one just computed: a recorded decision is never re-taken.
        """
        reasoning = self.reason(kind, inputs)
        event = self._new_event(EventType.DECISION, None, cause, series=kind)
        decision = Decision(
            id=event.id,
            agent=self.name,
            kind=kind,
            inputs=inputs,
            action=reasoning.action,
            rule=reasoning.rule,
            score=reasoning.score,
            rationale=reasoning.rationale,
            verdict=verdict.to_dict() if verdict is not None else None,
            cause_event_id=cause.id,
            run_id=cause.runid,
        )
        check(EventType.DECISION, decision.to_dict())
        offset = await self.ctx.bus.publish(event.model_copy(update={"data": decision.to_dict()}))
        stored = await self.log.at(offset)
        if stored is not None and stored.id == event.id and isinstance(stored.data, dict):
            recorded = stored.data
            if recorded != decision.to_dict():
                log.info("agent %s acts on decision %s recorded before a restart", self.name, event.id)
                return Decision(**{k: v for k, v in recorded.items() if k in Decision.__dataclass_fields__})
        return decision

    def evaluate_policy(self, action: str, input: dict[str, Any]) -> Verdict:
        """Ask the policy engine about ``action``; an engine that raises gives a no-answer verdict (``error`` set).

        The engine contract says ``evaluate`` does not raise for a policy failure; an engine that does anyway
        (a broken backend, a bug) is an engine error like a timeout: a deny, except in the safe direction.

        Raises:
            InputError: ``input`` is not JSON-serialisable (a programming error), except for a safe-direction
                action, which proceeds without a verdict.
        """
        from pilotage.policy.base import SAFE_DIRECTION_ACTIONS, no_verdict

        engine = self.ctx.policy
        try:
            return engine.evaluate(action, input)
        except InputError as exc:
            if action not in SAFE_DIRECTION_ACTIONS:
                raise
            reason = f"policy input error: {exc.one_line()}"
        except Exception as exc:  # the engine broke its contract: no verdict (a deny, or the safe direction)
            log.warning("policy engine %s raised on %s: %r", engine.url, action, exc)
            reason = f"policy engine error: {type(exc).__name__}: {exc}"
        return no_verdict(action, reason, policies=[f"data.pilotage.{action}"], engine=engine.url)

    async def authorize(self, action: str, input: dict[str, Any], *, cause: CloudEvent) -> Verdict:
        """Ask the policy engine about ``action``, publish ``dev.pilotage.policy.evaluated``, return the verdict.

        A verdict whose only obstacle is ``needs_approval`` waits for a person (``pilotage approve``/``deny``, or
        the default deny after the timeout): see :func:`pilotage.policy.approval.authorize_with_approval`.

        Direction (:mod:`pilotage.policy.base`, "Fail closed"): an action that moves traffic back to the known-good
        version (``rollback``) is never refused and never waits — without a verdict (engine error, timeout, OPA
        down) or against a deny it proceeds with an allowing verdict whose ``override`` says so
        (``"no verdict; safe direction"`` / ``"deny overridden; safe direction"``) and whose ``error``/``reasons``
        keep what the engine or the policy said. Every other action is fail closed.

        Raises:
            PolicyDenied: the verdict is a deny (fail closed: an engine error is a deny too), or the approval was
                denied or not given in time; never for a safe-direction action.
        """
        from pilotage.policy.base import SAFE_DIRECTION_ACTIONS, safe_direction

        verdict = self.evaluate_policy(action, input)
        if action in SAFE_DIRECTION_ACTIONS:
            verdict = safe_direction(verdict)
            if verdict.override:
                log.warning("agent %s: %s %s: %s", self.name, action, verdict.override, "; ".join(verdict.reasons))
        elif verdict.awaits_approval and "approval" not in input:
            from pilotage.policy.approval import authorize_with_approval

            return await authorize_with_approval(self, action, input, cause=cause)
        await self.emit(
            EventType.POLICY_EVALUATED,
            {"agent": self.name, **verdict.to_dict(), "input": input},
            cause=cause,
        )
        if not verdict.allow:
            raise PolicyDenied(
                f"policy denied {action}: " + "; ".join(verdict.reasons or ["no reason given"]),
                verdict=verdict,
                hint="change the input or the policy, then run again",
            )
        return verdict

    async def _run_closed(self, runid: str) -> bool:
        for closing in (EventType.FLOW_COMPLETED, EventType.FLOW_FAILED):
            if await self.log.exists(closing, run=runid):
                return True
        return False

    async def latest(self, runid: str, type: str) -> CloudEvent | None:
        """Return the newest event of ``type`` in run ``runid`` from the log, or None (derivable state)."""
        return await self.log.latest(type, run=runid)

    async def run_spec(self, event: CloudEvent) -> RunSpec:
        """Return the :class:`RunSpec` of the run ``event`` belongs to, read from the log (cached).

        Raises:
            InputError: the log holds no ``dev.pilotage.flow.started`` event for that run, or its data is not a
                run spec.
        """
        if event.runid in self._runs:
            return self._runs[event.runid]
        started = await self.log.first(EventType.FLOW_STARTED, run=event.runid)
        if started is None:
            raise InputError(f"no flow.started event for run {event.runid!r} in the log", hint="start the run again")
        spec = self._runs[event.runid] = parse(started, RunSpec)
        return spec
