"""Rollout analysis slots: a rollout step's analysis holds one of ``Settings.analysis_slots`` (issue #19, item 5).

Analysing a step drives the synthetic traffic and polls both versions for ``analysis_window_s`` (or the watch) —
real work on the machine's cores, and the canary judge's latency samples are only meaningful when the machine is
not saturated. So under ``pilotage serve``, with many deliveries at once, the reliability agent holds a unit of
:data:`~pilotage.coordination.slot.ANALYSIS_SLOT` while it observes a step, won in the same sealed-bid
second-price auctions as the load-test slot (:class:`~pilotage.coordination.slot.SlotArbiter` with
``units = analysis_slots``). It bids as ``reliability/<service>`` for the request ``<run id>/<deployment>/<step>``;
each bid is a ``slo.slot_bid`` decision (``floor(balance × market_bid_fraction)``, :func:`slot_bid_reasoning`),
so ``pilotage events replay`` recomputes it. A lone rollout's auction closes at once (5 events, no wait).

The slot also paces the synthetic traffic: a deployment's generators (its route's and blue-green's preview's,
started by the rollout controller) are held while its step waits for a slot and between steps, and run while the
step is analysed (:func:`~pilotage.runtime.traffic_registry.hold_traffic`). Without it, N rollouts waiting for 2
slots sent
N × ``synthetic_traffic_rps`` at once: on a 2-core machine (bench_fleet, N = 10, 4 deliveries at once) that load
alone pushed production past its latency objective and the judge paused rollouts as shared degradation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from pilotage.coordination.slot import ANALYSIS_SLOT, SlotGrant, agent_slot, bid_reasoning
from pilotage.events import CloudEvent
from pilotage.runtime.traffic_registry import hold_traffic

if TYPE_CHECKING:
    from pilotage.agent import Agent, Reasoning

__all__ = ["BID_KIND", "analysis_bidder", "analysis_slot", "slot_bid_reasoning"]

#: Decision kind of the reliability agent's bids for an analysis slot.
BID_KIND = "slo.slot_bid"


def analysis_bidder(service: str) -> str:
    """Return the credit account that bids for ``service``'s rollout analyses: ``reliability/<service>``."""
    return f"reliability/{service}"


def slot_bid_reasoning(inputs: dict[str, Any]) -> Reasoning:
    """The bid for an analysis slot (:func:`~pilotage.coordination.slot.bid_reasoning`, pure).

    Args:
        inputs: ``bidder``, ``resource``, ``auction_id``, ``balance`` (credits), ``fraction`` (0..1).
    """
    return bid_reasoning(inputs, "rollout analysis slot")


@asynccontextmanager
async def analysis_slot(
    agent: Agent, event: CloudEvent, service: str, request: str, traffic: Sequence[str] = ()
) -> AsyncIterator[SlotGrant]:
    """Hold one analysis slot for ``request`` (``<run id>/<deployment>/<step>``) inside the ``async with``.

    Args:
        agent: the reliability agent (its settings, bus and ``decide``).
        event: the ``deploy.step`` being analysed (the decisions' cause and run).
        service: the service whose account bids.
        request: what the unit is for; a redelivered step finds its own unreleased unit again.
        traffic: names of the deployment's synthetic traffic generators: held until the slot is won, run while it
            is held, held again when it is released (see the module docstring).
    """
    settings = agent.ctx.settings
    longest = max(settings.analysis_window_s, settings.post_promotion_watch_s) + settings.rollout_inconclusive_grace_s
    hold_s = 2 * (longest + settings.service_ready_timeout_s)  # past it a crashed holder's unit counts as free
    bidder = analysis_bidder(service)
    await hold_traffic(traffic, True)
    async with agent_slot(
        agent, event, ANALYSIS_SLOT, bidder, request, kind=BID_KIND, hold_s=hold_s, units=settings.analysis_slots
    ) as grant:
        await hold_traffic(traffic, False)
        try:
            yield grant
        finally:
            await hold_traffic(traffic, True)
