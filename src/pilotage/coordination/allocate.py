"""Allocate a lifecycle task by contract-net when workers exist, else run it in-process; the coordination agent.

:func:`allocate_or_run_locally` is what an agent calls for work a worker process could do (the testing agent's
test run, the performance agent's load test). It costs nothing when no worker is live: the worker directory is
read (the heartbeats of the last ``stale_s`` seconds), and with no live host offering the capability the task
runs in-process at once, without a call for proposals and without a decision. With live hosts it runs the
contract-net protocol (:class:`~pilotage.coordination.contract_net.ContractNetManager`); when no host bids in
time, or no worker completes the task in ``max_rounds`` rounds, the task runs in-process too. The returned
:class:`Allocation` says where it ran and why.

:class:`CoordinationAgent` is the agent under whose name contract-net awards and auctions are recorded: it
subscribes to nothing (managers and auctioneers run inside the agents and commands that need them) and its
:meth:`~CoordinationAgent.reason` recomputes those decisions for ``pilotage events replay``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pilotage.agent import Agent, Reasoning
from pilotage.bus.base import Bus
from pilotage.coordination.contract_net import ContractNetManager, ContractNetOptions, TaskState, WorkerDirectory
from pilotage.coordination.messages import COORDINATION_AGENT, award_reasoning, cfp_type
from pilotage.events import CloudEvent

__all__ = ["Allocation", "CoordinationAgent", "allocate_or_run_locally"]


@dataclass(frozen=True)
class Allocation:
    """Where a task ran and what it returned.

    Attributes:
        result: the task's JSON result (from the worker's ``done`` or from ``run_local``).
        where: ``worker:<worker id>`` or ``local``.
        reason: why it ran where it did (one line).
        task_id: the contract-net task id ("" when no call for proposals was made).
        decision_ids: the ``cnet.award`` decisions (``pilotage explain`` shows them), one per round.
        rounds: calls for proposals made (0 when no worker was live).
    """

    result: dict[str, Any]
    where: str
    reason: str
    task_id: str = ""
    decision_ids: list[str] = field(default_factory=list)
    rounds: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the allocation without its result (for event data): where, reason, task_id, decisions, rounds."""
        return {
            "where": self.where,
            "reason": self.reason,
            "task_id": self.task_id,
            "decision_ids": self.decision_ids,
            "rounds": self.rounds,
        }


async def allocate_or_run_locally(
    bus: Bus,
    capability: str,
    payload: dict[str, Any],
    run_local: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
    *,
    agent: Agent | None = None,
    cause: CloudEvent | None = None,
    options: ContractNetOptions | None = None,
    exec_timeout_s: float = 600.0,
) -> Allocation:
    """Have a worker do the task by contract-net when one is live, else (or when none completes it) run it here.

    Args:
        bus: the event log.
        capability: the capability the task needs (``tests``, ``loadtest`` …).
        payload: the task's JSON object (what ``run_local`` and the worker receive).
        run_local: the in-process fallback, same contract as the worker's capability function.
        agent: the agent asking; with ``cause`` it makes the task id deterministic (a handler run again after a
            crash joins the same task instead of starting another).
        cause: the event being handled (its run and subject go on the protocol's events).
        options: protocol timing (default :class:`ContractNetOptions`; agents pass
            ``ContractNetOptions.from_settings(settings)``).
        exec_timeout_s: seconds the winning worker has from the award to ``done``.

    Returns:
        The :class:`Allocation`.

    Raises:
        Whatever ``run_local`` raises when the task runs in-process; a worker's failure never raises (the task
        is re-announced, then run here).
    """
    options = options or ContractNetOptions()
    directory = WorkerDirectory(bus, options.stale_s)
    live = await directory.live(capability)
    if not live:
        result = await run_local(payload)
        return Allocation(result, "local", f"no live worker offers {capability!r}")
    if agent is not None and cause is not None:
        task_id = agent._new_event(cfp_type(capability), None, cause).id  # deterministic while handling cause
    else:
        task_id = str(uuid.uuid4())
    manager = ContractNetManager(
        bus,
        options=options,
        directory=directory,
        source=agent.source if agent is not None else "/pilotage/coordination/contract-net",
        subject=cause.subject if cause is not None else None,
        run_id=cause.runid if cause is not None else "",
        cause_event_id=cause.id if cause is not None else "",
    )
    outcome = await manager.run(task_id, capability, payload, exec_timeout_s=exec_timeout_s)
    rounds = outcome.round + 1
    if outcome.state is TaskState.DONE and outcome.result is not None:
        return Allocation(
            outcome.result,
            f"worker:{outcome.worker}",
            f"awarded by contract-net to {outcome.worker} ({len(live)} live host(s))",
            task_id,
            outcome.decision_ids,
            rounds,
        )
    result = await run_local(payload)
    return Allocation(result, "local", outcome.reason or "no worker completed the task", task_id,
                      outcome.decision_ids, rounds)  # fmt: skip


class CoordinationAgent(Agent):
    """The agent that contract-net awards (``cnet.award``) and auctions (``market.auction``) are recorded under.

    It handles no event; it exists so ``pilotage explain`` names who decided and ``pilotage events replay``
    recomputes those decisions from their recorded inputs.
    """

    name = COORDINATION_AGENT
    subscribes = ()

    async def on_event(self, event: CloudEvent) -> None:
        """Handle nothing (no subscriptions)."""

    def reason(self, kind: str, inputs: dict[str, Any]) -> Reasoning:
        """``cnet.award`` → :func:`award_reasoning`; ``market.auction`` → :func:`auction_reasoning`."""
        if kind == "cnet.award":
            return award_reasoning(inputs)
        if kind == "market.auction":
            from pilotage.coordination.market import auction_reasoning

            return auction_reasoning(inputs)
        return super().reason(kind, inputs)
