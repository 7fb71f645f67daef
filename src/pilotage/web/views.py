"""What the HTTP API answers, read from the event log and the graph through the owners the CLI uses.

Every function takes the open backends (never a database file): the log through
:class:`~pilotage.bus.query.EventLog`, the fleet through :func:`pilotage.fleet.registry.load_fleet`, a decision
through :func:`pilotage.explain.explain_decision`, approvals through :mod:`pilotage.policy.approval`, credits
through :mod:`pilotage.coordination.market`. They return plain dicts shaped as :mod:`pilotage.web.models`; the
routes mask secrets in them (:func:`pilotage.secrets.mask`) before answering. Lookups of an unknown name raise
:class:`~pilotage.errors.InputError` (the API answers 404).
"""

from __future__ import annotations

from typing import Any

from pilotage.bus.base import Bus
from pilotage.bus.query import EventLog
from pilotage.errors import InputError
from pilotage.events import CloudEvent, EventType
from pilotage.explain import explain_decision
from pilotage.fleet.onboard import fleet_graph_doc, relations
from pilotage.fleet.registry import load_fleet, require_managed, slo_status
from pilotage.graph.base import Graph

__all__ = [
    "cost_ledger",
    "decision",
    "event_page",
    "event_out",
    "fleet_graph",
    "market",
    "run_detail",
    "runs",
    "service_detail",
    "services",
]

_CLOSING = (EventType.FLOW_COMPLETED, EventType.FLOW_FAILED)


def event_out(offset: int, event: CloudEvent) -> dict[str, Any]:
    """An EventOut dict: the offset and the CloudEvent's fields."""
    return {"offset": offset, **event.model_dump(mode="json", include={"id", "type", "source", "subject", "time",
                                                                       "runid", "data"})}  # fmt: skip


async def event_page(
    bus: Bus, *, type: str, run: str | None, service: str | None, after: int, limit: int
) -> dict[str, Any]:
    """Return an EventPage: up to ``limit`` events with offset > ``after`` matching the type glob, run, service."""
    found = await EventLog(bus).records(type, run=run, after=after, limit=limit + 1, subject=service)
    page = found[:limit]
    return {
        "items": [event_out(r.offset, r.event) for r in page],
        "next_after": page[-1].offset if page else after,
        "has_more": len(found) > limit,
    }


def _run(start: CloudEvent, closing: CloudEvent | None) -> dict[str, Any]:
    data = start.data if isinstance(start.data, dict) else {}
    closed = closing.data if closing is not None and isinstance(closing.data, dict) else {}
    return {
        "run_id": start.runid,
        "service": str(data.get("service", start.subject or "")),
        "kind": str(data.get("kind") or "generate"),
        "request": str(data.get("request", "")),
        "started": start.time,
        "status": str(closed.get("status", "running")) if closing is not None else "running",
        "outcome": str(closed.get("outcome") or ""),
        "error": closed.get("error"),
        "closed": closing.time if closing is not None else None,
        "duration_s": closed.get("duration_s"),
    }


async def runs(bus: Bus, *, service: str | None, offset: int, limit: int) -> dict[str, Any]:
    """Return a RunPage: runs (``flow.started`` and their closing event), newest first, of ``service`` if given."""
    log = EventLog(bus)
    closings = {e.runid: e for e in await log.all("dev.pilotage.flow.*") if e.type in _CLOSING}
    starts = [e for e in await log.all(EventType.FLOW_STARTED) if e.runid]
    items = [_run(e, closings.get(e.runid)) for e in reversed(starts)]
    if service is not None:
        items = [r for r in items if r["service"] == service]
    return {"items": items[offset : offset + limit], "total": len(items)}


async def run_detail(bus: Bus, run_id: str) -> dict[str, Any]:
    """Return the RunOut of ``run_id``.

    Raises:
        InputError: no run has that id.
    """
    log = EventLog(bus)
    start = await log.first(EventType.FLOW_STARTED, run=run_id)
    if start is None:
        raise InputError(f"no run {run_id!r} in the event log", hint="list the runs: GET /api/v1/runs")
    closing = next((e for e in await log.all("dev.pilotage.flow.*", run=run_id) if e.type in _CLOSING), None)
    return _run(start, closing)


def _service(service: Any, slo: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": service.name,
        "production_commit": service.production_commit,
        "stable_url": service.stable_url,
        "state": service.state,
        "owner": service.descriptor.get("owner"),
        "generated": service.generated,
        "last_delivery": service.deliveries[-1] if service.deliveries else None,
        "slo": slo,
    }


async def services(bus: Bus) -> list[dict[str, Any]]:
    """Return a ServiceOut dict per managed service (``pilotage service list``), by name."""
    fleet = await load_fleet(bus)
    return [_service(fleet[name], await slo_status(bus, fleet[name])) for name in sorted(fleet)]


async def service_detail(bus: Bus, graph: Graph, name: str) -> dict[str, Any]:
    """Return the ServiceDetail of ``name`` (``pilotage service show``).

    Raises:
        InputError: ``name`` is not a managed service.
    """
    fleet = await load_fleet(bus)
    service = require_managed(fleet, name)
    return _service(service, await slo_status(bus, service)) | {
        "repo_path": service.repo_path,
        "descriptor": service.descriptor,
        "deliveries": service.deliveries,
        "dependencies": relations(graph, fleet, name),
    }


async def fleet_graph(bus: Bus, graph: Graph) -> dict[str, Any]:
    """Return the FleetGraph (``pilotage service graph --format json`` and its Mermaid text)."""
    return fleet_graph_doc(graph, await load_fleet(bus))


async def decision(bus: Bus, decision_id: str) -> dict[str, Any]:
    """Return the DecisionView of ``decision_id`` (``pilotage explain``).

    Raises:
        InputError: no event has that id, or it is not a decision.
    """
    log = EventLog(bus)
    found = await log.by_id(decision_id, EventType.DECISION)
    if found is None:
        raise InputError(f"no decision {decision_id!r} in the event log", hint="copy an id from a run's events")
    return explain_decision(await log.all(run=found.event.runid), decision_id)


async def cost_ledger(bus: Bus) -> dict[str, Any]:
    """Return the CostLedger: every ``env.scaled_down`` (service from its run's ``flow.started``) and totals."""
    log = EventLog(bus)
    services = {e.runid: str((e.data or {}).get("service") or e.subject) for e in await log.all(EventType.FLOW_STARTED)}
    entries = []
    for event in await log.all(EventType.ENV_SCALED_DOWN):
        d = event.data
        service = event.subject or services.get(event.runid)
        keys = ("environment", "deployment_id", "idle_s", "instances_stopped", "saving_usd_per_hour", "price_source")
        entries.append({"time": event.time, "run_id": event.runid, "service": service, **{k: d[k] for k in keys}})
    totals: dict[str, dict[str, Any]] = {}
    for entry in entries:
        total = totals.setdefault(str(entry["service"]), {"service": str(entry["service"]), "scale_downs": 0,
                                                           "saving_usd_per_hour": 0.0})  # fmt: skip
        total["scale_downs"] += 1
        total["saving_usd_per_hour"] = round(total["saving_usd_per_hour"] + entry["saving_usd_per_hour"], 6)
    return {"entries": entries, "totals": [totals[k] for k in sorted(totals)]}


async def market(bus: Bus, limit: int) -> dict[str, Any]:
    """Return the AuctionsOut (``pilotage market``): balances, the load-test slot, the newest ``limit`` auctions."""
    from pilotage.coordination.market import Ledger, market_report
    from pilotage.coordination.slot import LOADTEST_SLOT, SlotView

    ledger = await Ledger.load(bus)
    return market_report(ledger, limit, await SlotView(bus, LOADTEST_SLOT).refresh())
