"""Coordination (issue #8): contract-net task allocation and a credit market, over any bus backend.

- :mod:`~pilotage.coordination.messages`: the FIPA contract-net performatives as events, the award rule, records;
- :mod:`~pilotage.coordination.contract_net`: the manager's state machine, the worker directory;
- :mod:`~pilotage.coordination.worker`: worker hosts (group leaders) and their members;
- :mod:`~pilotage.coordination.tasks`: the capabilities a worker offers (``loadtest``, ``tests``, ``echo``);
- :mod:`~pilotage.coordination.allocate`: :func:`allocate_or_run_locally` for agents, the coordination agent;
- :mod:`~pilotage.coordination.market`: credit ledger from the log, sealed-bid second-price auctions;
- :mod:`~pilotage.coordination.slot`: the machine's load-test slot held by auction (the performance agent uses it).

Design and scaling: ``docs/architecture.md`` ("Coordination").
"""

from __future__ import annotations

from pilotage.coordination.allocate import Allocation, CoordinationAgent, allocate_or_run_locally
from pilotage.coordination.contract_net import (
    ContractNetManager,
    ContractNetOptions,
    TaskOutcome,
    TaskState,
    WorkerDirectory,
)
from pilotage.coordination.market import Auctioneer, Ledger, auction_reasoning, place_bid
from pilotage.coordination.messages import award_reasoning
from pilotage.coordination.slot import LOADTEST_SLOT, SlotArbiter, SlotGrant
from pilotage.coordination.worker import Capability, WorkerHost

__all__ = [
    "LOADTEST_SLOT",
    "Allocation",
    "Auctioneer",
    "Capability",
    "ContractNetManager",
    "ContractNetOptions",
    "CoordinationAgent",
    "Ledger",
    "SlotArbiter",
    "SlotGrant",
    "TaskOutcome",
    "TaskState",
    "WorkerDirectory",
    "WorkerHost",
    "allocate_or_run_locally",
    "auction_reasoning",
    "award_reasoning",
    "place_bid",
]
