"""The application edge: builds the backends named by :class:`~pilotage.settings.Settings` and the agents.

Only the CLI (and later the control plane) calls this module; the library below it receives backends as
arguments and never reads settings itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from pilotage.agent import Agent, AgentContext
from pilotage.bus.base import Bus
from pilotage.graph.base import Graph
from pilotage.policy.base import PolicyEngine
from pilotage.registry import backend_class
from pilotage.runtime.base import Runtime
from pilotage.runtime.dataplane_process import close_data_plane_process, open_data_plane_process
from pilotage.runtime.dataplane_process import current as data_plane_process
from pilotage.settings import Settings

__all__ = ["all_agents", "backends", "open_bus", "open_graph", "open_policy", "open_runtime"]


def open_bus(settings: Settings) -> Bus:
    """Return the bus for ``settings.bus_url`` (not yet connected). Raises ConfigError for an unknown URL."""
    bus: Bus = backend_class("bus", settings.bus_url)(settings.bus_url)
    return bus


def open_graph(settings: Settings) -> Graph:
    """Return the graph store for ``settings.graph_url``. Raises ConfigError for an unknown URL."""
    graph: Graph = backend_class("graph", settings.graph_url)(settings.graph_url)
    return graph


def open_policy(settings: Settings) -> PolicyEngine:
    """Return the policy engine for ``settings.policy_url`` with the user's policy folders and data."""
    from pilotage.policy import open_engine

    return open_engine(settings)


def open_runtime(settings: Settings) -> Runtime:
    """Return the execution runtime for ``settings.runtime_url``."""
    runtime: Runtime = backend_class("runtime", settings.runtime_url)(settings.runtime_url)
    return runtime


@contextlib.asynccontextmanager
async def backends(settings: Settings) -> AsyncIterator[AgentContext]:
    """Open every backend, yield an :class:`AgentContext`, and close them all (runtime first) on exit.

    The run's test principal is made here (:func:`pilotage.testing.credentials.ensure_principal`), and the
    data-plane child process started (setting ``data_plane``, :mod:`pilotage.runtime.dataplane_process`) and
    stopped after the runtime closed.

    Raises:
        ConfigError: a URL is unknown or its extra is missing.
        InputError: a policy does not compile (checked before anything runs: fail closed).
        BackendError: the bus or graph cannot be opened.
    """
    from pilotage.testing.credentials import ensure_principal

    ensure_principal()  # issue 18: the run's test principal, in the environment of every process the run starts
    policy = open_policy(settings)
    policy.check()
    bus = open_bus(settings)
    graph = open_graph(settings)
    runtime = open_runtime(settings)
    ctx = AgentContext(bus=bus, graph=graph, policy=policy, runtime=runtime, settings=settings)
    data_plane = _open_data_plane(settings)
    try:
        await bus.open()
        yield ctx
    finally:
        try:
            await close_rollouts(ctx)
            await runtime.close()
        finally:
            if data_plane:
                await asyncio.to_thread(close_data_plane_process)  # waits for the child: not on the loop
            graph.close()
            policy.close()
            await bus.close()


def _open_data_plane(settings: Settings) -> bool:
    """Start the data-plane child when ``settings.data_plane`` is ``process`` and none runs; True if started here."""
    if settings.data_plane != "process" or data_plane_process() is not None:
        return False
    open_data_plane_process(settings.path_in_home("dataplane.log"))
    return True


async def close_rollouts(ctx: AgentContext) -> None:
    """Stop what the rollout controller runs beside the runtime (the OFREP flag server), if it was started."""
    from pilotage.rollout.controller import RolloutController

    controller = ctx.extras.get("rollout_controller")
    if isinstance(controller, RolloutController):
        await controller.close()


def all_agents(ctx: AgentContext) -> list[Agent]:
    """Instantiate the lifecycle agents (plus rollout, learning and coordination) on ``ctx``."""
    from pilotage.agents.codegen import CodegenAgent
    from pilotage.agents.cost import CostAgent
    from pilotage.agents.deployment import DeploymentAgent
    from pilotage.agents.design import DesignAgent
    from pilotage.agents.governance import GovernanceAgent
    from pilotage.agents.learning import LearningAgent
    from pilotage.agents.performance import PerformanceAgent
    from pilotage.agents.reliability import ReliabilityAgent
    from pilotage.agents.rollout import RolloutAgent
    from pilotage.agents.source import SourceAgent
    from pilotage.agents.testing import TestingAgent
    from pilotage.coordination.allocate import CoordinationAgent  # issue 8: records awards/auctions (replay)

    classes: list[type[Agent]] = [
        DesignAgent,
        SourceAgent,
        CodegenAgent,
        GovernanceAgent,
        TestingAgent,
        PerformanceAgent,
        DeploymentAgent,
        ReliabilityAgent,
        RolloutAgent,
        CostAgent,
        LearningAgent,
        CoordinationAgent,
    ]
    return [cls(ctx) for cls in classes]
