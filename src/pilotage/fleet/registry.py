"""Services under management: what the event log says about each (issue #17).

The state of the fleet is a function of the log (as every environment is): :func:`fold_fleet` reads

* ``service.added`` — a repository put under management (`pilotage service add`), its stable port and the
  production commit it started with;
* ``service.released`` — a delivery promoted: the new production commit;
* ``flow.queued`` (a delivery waiting in ``pilotage serve``'s queue, issue #19), ``flow.started`` of kind
  ``deliver`` and the closing ``flow.completed``/``flow.failed`` of those runs — the
  deliveries and their outcomes;
* ``service.up``/``service.down`` — whether the production version serves now, where, and wake-up times.

:func:`add_service` validates a repository and publishes ``service.added``; the graph gets the Service and Commit
nodes (``Service -[PRODUCTION]-> Commit``).
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pilotage.bus.base import Bus, Record
from pilotage.bus.query import EventLog
from pilotage.catalogue import checked_event
from pilotage.codegen.git import is_repo
from pilotage.errors import InputError
from pilotage.events import EventType
from pilotage.fleet.checkout import descriptor_at, resolve_rev
from pilotage.fleet.deps import cycle_error, dependency_graph, find_cycle
from pilotage.fleet.descriptor import ServiceDescriptor, parse_descriptor
from pilotage.graph.base import Graph

__all__ = [
    "AddCheck",
    "ManagedService",
    "add_service",
    "fold_fleet",
    "live_descriptors",
    "load_fleet",
    "managed_service",
    "refuse_concurrent",
    "refuse_cycle",
    "register_generated",
    "require_managed",
    "slo_status",
    "stable_route_name",
]

#: Deliveries kept per service in :attr:`ManagedService.deliveries` (newest last).
MAX_DELIVERIES = 20
_FLEET_TYPES = (
    EventType.SERVICE_ADDED,
    EventType.SERVICE_RELEASED,
    EventType.SERVICE_UP,
    EventType.SERVICE_DOWN,
    EventType.FLOW_QUEUED,
    EventType.FLOW_STARTED,
    EventType.FLOW_COMPLETED,
    EventType.FLOW_FAILED,
)


def stable_route_name(service: str) -> str:
    """The runtime route of a service's stable address (``service:<name>``)."""
    return f"service:{service}"


@dataclass
class ManagedService:
    """One service under management, folded from the log.

    Attributes:
        name, repo_path, stable_port: as added; the stable address is ``http://127.0.0.1:<stable_port>``.
        production_commit: the commit the stable address serves (the newest ``service.released``, else as added).
        descriptor: the ``pilotage.yaml`` of the production commit (schema field names): as added, then as
            released (``service.released`` carries it since issue #19).
        deliveries: ``{run_id, rev, status, outcome, queued, started, closed}`` of recent deliveries, oldest
            first; ``status`` is ``queued`` (waiting for ``pilotage serve``'s admission), ``running``, then the
            closing status (``completed``/``failed``).
        up: the newest ``service.up``/``service.down`` data with ``state`` ``up``/``down``; None if never started.
        wake_s: the wake-up times reported by ``service.up`` (reason ``woken``), seconds.
        generated: Pilotage generated the repository (``pilotage run``/``demo``); a later run may replace it.
    """

    name: str
    repo_path: str
    stable_port: int
    production_commit: str
    descriptor: dict[str, Any]
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    up: dict[str, Any] | None = None
    wake_s: list[float] = field(default_factory=list)
    generated: bool = False

    @property
    def state(self) -> str:
        """``up``, ``down`` (never started, or stopped), or why it is not up (the ``service.down`` reason)."""
        if self.up is None:
            return "down"
        return "up" if self.up["state"] == "up" else str(self.up.get("reason", "down"))

    @property
    def stable_url(self) -> str:
        """The stable address clients and other services use."""
        return f"http://127.0.0.1:{self.stable_port}"

    def production_descriptor(self) -> ServiceDescriptor:
        """The production commit's descriptor, parsed (``<repo>/pilotage.yaml@<sha12>`` in messages).

        Raises:
            ConfigError: the stored descriptor no longer validates (a schema changed since it was recorded).
        """
        return parse_descriptor(self.descriptor, path=f"{self.repo_path}/pilotage.yaml@{self.production_commit[:12]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (``service show --json``)."""
        return {
            "name": self.name,
            "repo_path": self.repo_path,
            "stable_url": self.stable_url,
            "stable_port": self.stable_port,
            "production_commit": self.production_commit,
            "owner": self.descriptor.get("owner"),
            "generated": self.generated,
            "descriptor": self.descriptor,
            "deliveries": self.deliveries,
            "up": self.up,
            "wake_s": self.wake_s,
        }


def _track(service: ManagedService, runs: dict[str, tuple[str, dict[str, Any]]], entry: dict[str, Any]) -> None:
    service.deliveries = (service.deliveries + [entry])[-MAX_DELIVERIES:]
    runs[entry["run_id"]] = (service.name, entry)


def _added(fleet: dict[str, ManagedService], runs: dict[str, tuple[str, dict[str, Any]]], data: Any) -> None:
    """A new service, or a generated service regenerated by a run (``replaces`` its current repository)."""
    name, current = data["service"], fleet.get(data["service"])
    if current is not None and not (current.generated and data.get("replaces") == current.repo_path):
        return  # a name is never taken over (`pilotage service add` refuses it first)
    service = ManagedService(
        name, data["repo_path"], int(data["stable_port"]), data["commit"], dict(data["descriptor"])
    )
    service.generated = bool(data.get("generated"))
    if current is not None:
        service.deliveries, service.up, service.wake_s = current.deliveries, current.up, current.wake_s
    fleet[name] = service
    pending = runs.pop(f"pending:{data.get('run_id', '')}", None)
    if pending is not None:  # the run that generated it delivers its change next
        _track(service, runs, pending[1])


def _started(
    fleet: dict[str, ManagedService], runs: dict[str, tuple[str, dict[str, Any]]], data: Any, at: Any, queued: bool
) -> None:
    known = runs.get(data["run_id"]) or runs.get(f"pending:{data['run_id']}")
    if known is not None:  # queued before: now admitted (issue 19)
        if not queued and known[1]["status"] == "queued":
            known[1].update(status="running", started=at)
        return
    rev = data.get("rev") or str(data.get("request", ""))[:80]
    entry = {"run_id": data["run_id"], "rev": rev, "status": "queued" if queued else "running", "outcome": ""}
    entry.update({"queued": at} if queued else {"started": at})
    if data.get("kind") == "deliver" and data.get("service") in fleet:
        _track(fleet[data["service"]], runs, entry)
    elif data.get("kind") != "deliver":  # a generated service's run: tracked once its codegen adds the service
        runs[f"pending:{data['run_id']}"] = (str(data.get("service", "")), entry)


def _released(service: ManagedService, data: dict[str, Any]) -> None:
    """``service.released``: the new production commit; a release's rollback marks the delivery it undid."""
    service.production_commit = data["commit"]
    if isinstance(data.get("descriptor"), dict):
        service.descriptor = dict(data["descriptor"])
    for entry in reversed(service.deliveries):
        if entry["run_id"] == data["run_id"]:
            entry["commit"] = data["commit"]
        if data.get("rolled_back_run") and entry["run_id"] == data["rolled_back_run"]:
            entry.update(outcome="rolled_back", error=f"promoted, then rolled back by release {data['run_id']}")


def _apply(fleet: dict[str, ManagedService], runs: dict[str, tuple[str, dict[str, Any]]], event: Any) -> None:
    data, kind = event.data, event.type
    if kind == EventType.SERVICE_ADDED:
        _added(fleet, runs, data)
        return
    if kind in (EventType.FLOW_QUEUED, EventType.FLOW_STARTED):
        _started(fleet, runs, data, event.time, kind == EventType.FLOW_QUEUED)
        return
    if kind in (EventType.FLOW_COMPLETED, EventType.FLOW_FAILED):
        if data.get("run_id") in runs:
            entry = runs[data["run_id"]][1]
            entry.update(status=data.get("status", ""), outcome=data.get("outcome", ""), closed=event.time)
            entry["error"] = data.get("error")
        return
    service = fleet.get(str(data.get("service", "")))
    if service is None:
        return
    if kind == EventType.SERVICE_RELEASED:
        _released(service, data)
    elif kind in (EventType.SERVICE_UP, EventType.SERVICE_DOWN):
        service.up = {**data, "state": "up" if kind == EventType.SERVICE_UP else "down", "at": event.time}
        if data.get("wake_s") is not None:
            service.wake_s.append(float(data["wake_s"]))


def fold_fleet(events: list[Any]) -> dict[str, ManagedService]:
    """Return the managed services described by ``events`` (oldest first), by name; see the module docstring."""
    fleet: dict[str, ManagedService] = {}
    runs: dict[str, tuple[str, dict[str, Any]]] = {}
    for event in events:
        if event.type in _FLEET_TYPES and isinstance(event.data, dict):
            _apply(fleet, runs, event)
    return fleet


async def load_fleet(bus: Bus) -> dict[str, ManagedService]:
    """Read the fleet's events from the log and fold them (:func:`fold_fleet`)."""
    log = EventLog(bus)
    events: list[Record] = []
    for pattern in ("dev.pilotage.service.*", "dev.pilotage.flow.*"):
        events.extend(await log.records(pattern))
    events.sort(key=lambda r: r.offset)
    return fold_fleet([r.event for r in events])


def require_managed(fleet: dict[str, ManagedService], name: str) -> ManagedService:
    """Return ``fleet[name]``.

    Raises:
        InputError: no such service (the message lists the managed ones).
    """
    if name not in fleet:
        known = ", ".join(sorted(fleet)) or "none"
        raise InputError(f"service {name!r} is not managed here (managed: {known})", hint="pilotage service add PATH")
    return fleet[name]


async def managed_service(bus: Bus, name: str) -> ManagedService:
    """Return the managed service ``name`` from the log.

    Raises:
        InputError: no such service (the message lists the managed ones).
    """
    return require_managed(await load_fleet(bus), name)


def _check_stable_port(port: int, fleet: dict[str, ManagedService]) -> None:
    """Refuse a chosen stable port outside 1024–65535 (``fleet_port_base``'s range) or held by a managed service.

    Raises:
        InputError: naming the port (and the service holding it); exit 2.
    """
    if not 1024 <= port <= 65535:
        raise InputError(f"--port {port} is not a port from 1024 to 65535", hint="choose another, or leave it out")
    holder = next((s.name for s in fleet.values() if s.stable_port == port), None)
    if holder is not None:
        raise InputError(
            f"--port {port} is the stable address of {holder} already",
            hint="choose another --port, or leave it out (the next free port from fleet_port_base)",
        )


def _free_port(base: int, taken: set[int]) -> int:
    for port in range(base, base + 1000):
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise InputError(f"no free port in {base}..{base + 999} for a stable address", hint="set fleet_port_base")


#: ``check(descriptor, fleet)`` run by :func:`add_service` before it publishes (raises to refuse the service).
AddCheck = Callable[[ServiceDescriptor, dict[str, ManagedService]], Awaitable[None]]


def live_descriptors(fleet: dict[str, ManagedService]) -> dict[str, ServiceDescriptor]:
    """Each managed service's production descriptor, by name (:meth:`ManagedService.production_descriptor`)."""
    return {name: service.production_descriptor() for name, service in fleet.items()}


def refuse_cycle(descriptor: ServiceDescriptor, fleet: dict[str, ManagedService]) -> None:
    """Refuse ``descriptor`` when it closes a dependency cycle with the fleet's live descriptors (issue #19).

    Raises:
        ConfigError: naming the cycle (``payments → orders → payments``) and the descriptor.
    """
    cycle = find_cycle(dependency_graph({**live_descriptors(fleet), descriptor.name: descriptor}))
    if cycle is not None:
        raise cycle_error(cycle, descriptor.path)


async def add_service(
    bus: Bus, graph: Graph, path: str | Path, *, port_base: int, port: int = 0, check: AddCheck | None = None
) -> dict[str, Any]:
    """Put the git repository at ``path`` under management and return the ``service.added`` data.

    The production commit is the repository's ``HEAD``; its ``pilotage.yaml`` must be valid and must not close a
    dependency cycle (:func:`refuse_cycle`); ``check`` (the CLI's: the ``consumes`` providers and operations
    against their documents, :mod:`pilotage.fleet.documents`) may refuse it too. The stable port is ``port`` or
    the first free port from ``port_base`` not taken by another managed service.

    Raises:
        InputError: ``path`` is not a folder or not the top of a git repository, it has no commit, the
            descriptor's name is taken by another managed service, or ``port`` is outside 1024–65535 or another
            service's (exit 2).
        ConfigError: the descriptor at ``HEAD`` is missing or invalid, or closes a dependency cycle (names the file
            and field); whatever ``check`` raises.
    """
    repo = Path(path).expanduser().resolve()
    if not repo.is_dir():
        raise InputError(f"{path} is not a folder", hint="pass the path of the service's git repository")
    if not is_repo(repo):
        raise InputError(f"{repo} is not a git repository", hint="run `git init` there and commit the service")
    sha = resolve_rev(repo, "HEAD")
    descriptor = descriptor_at(repo, sha)
    fleet = await load_fleet(bus)
    if descriptor.name in fleet and fleet[descriptor.name].repo_path == str(repo):
        raise InputError(
            f"{repo} is already managed as {descriptor.name!r}",
            hint=f"see `pilotage service show {descriptor.name}`; deliver its commits with `pilotage deliver`",
        )
    if descriptor.name in fleet:
        other = fleet[descriptor.name].repo_path
        raise InputError(
            f"service name {descriptor.name!r} ({repo}/pilotage.yaml) is already taken by {other}",
            hint="choose another `name` in pilotage.yaml",
        )
    refuse_cycle(descriptor, fleet)
    if port:
        _check_stable_port(port, fleet)
    if check is not None:
        await check(descriptor, fleet)
    stable_port = port or _free_port(port_base, {s.stable_port for s in fleet.values()})
    data = {
        "service": descriptor.name,
        "repo_path": str(repo),
        "commit": sha,
        "stable_port": stable_port,
        "descriptor": descriptor.to_dict(),
    }
    await bus.publish(checked_event(EventType.SERVICE_ADDED, data, source="pilotage/fleet", subject=descriptor.name))
    node = graph.upsert_node("Service", descriptor.name, {"name": descriptor.name, "repo_path": str(repo)})
    graph.upsert_node("Commit", sha, {"sha": sha, "service": descriptor.name})
    graph.upsert_edge(node.id, "PRODUCTION", f"Commit:{sha}")
    return data


def refuse_concurrent(service: ManagedService, budget_s: float, *, except_run: str = "") -> None:
    """Refuse a second delivery of a service while one runs (two rollouts would share its stable route).

    A delivery counts as running until its run closes, or — a run whose process died — its budget has passed;
    ``except_run`` is the asking run itself.

    Raises:
        InputError: a delivery of the service started less than ``budget_s`` ago and has not ended.
    """
    for entry in reversed(service.deliveries):
        if entry.get("status") != "running" or entry["run_id"] == except_run:
            continue
        age_s = (datetime.now(UTC) - datetime.fromisoformat(entry["started"])).total_seconds()
        if age_s < budget_s:
            raise InputError(
                f"a delivery of {service.name} is in progress (run {entry['run_id']}, {entry['rev'][:12]}, started "
                f"{age_s:.0f} s ago): two rollouts cannot share its stable address",
                hint=f"wait for it to end (`pilotage service show {service.name}`), then deliver",
            )


async def register_generated(
    bus: Bus,
    graph: Graph,
    repo: Path,
    commit: str,
    *,
    run_id: str,
    port_base: int,
    port: int = 0,
    budget_s: float = 900.0,
) -> dict[str, Any]:
    """Make a service Pilotage generated a managed service whose production commit is ``commit`` (its baseline).

    ``pilotage run``/``demo`` produce a commit like any other delivery (issue #17): the codegen agent commits the
    baseline generated from the run's document, and this registers the repository so the rest of the run delivers
    the change against that production, on the service's stable address. A run regenerates the service from its
    document: an earlier generated repository of the same name is *replaced* (``replaces``); the stable port is
    kept (else ``port``, else the first free one from ``port_base``).

    Returns:
        The ``service.added`` data published, or the current entry's when it already is exactly this.

    Raises:
        InputError: the name belongs to a service added with `pilotage service add` (never taken over), or another
            run of it is delivering now (:func:`refuse_concurrent` with ``budget_s``).
        ConfigError: the generated ``pilotage.yaml`` is invalid.
    """
    descriptor = descriptor_at(repo, commit)
    name = descriptor.name
    fleet = await load_fleet(bus)
    current = fleet.get(name)
    if current is not None and not current.generated:
        raise InputError(
            f"service {name!r} is managed from {current.repo_path}, which Pilotage did not generate: a run cannot "
            "replace it",
            hint=f"pass --service with another name, or deliver a commit of that repository: pilotage deliver {name}",
        )
    if current is not None:
        refuse_concurrent(current, budget_s, except_run=run_id)
    if current is not None and current.repo_path == str(repo) and current.production_commit == commit:
        return {"service": name, "repo_path": str(repo), "commit": commit, "stable_port": current.stable_port}
    taken = {s.stable_port for s in fleet.values()}
    stable_port = current.stable_port if current else (port or _free_port(port_base, taken))
    data = {
        "service": name,
        "repo_path": str(repo),
        "commit": commit,
        "stable_port": stable_port,
        "descriptor": descriptor.to_dict(),
        "generated": True,
        "replaces": current.repo_path if current else "",
        "run_id": run_id,
    }
    await bus.publish(checked_event(EventType.SERVICE_ADDED, data, source="pilotage/fleet", subject=name))
    node = graph.upsert_node("Service", name, {"name": name, "repo_path": str(repo), "generated": True})
    graph.upsert_node("Commit", commit, {"sha": commit, "service": name})
    graph.upsert_edge(node.id, "PRODUCTION", f"Commit:{commit}")
    return data


async def slo_status(bus: Bus, service: ManagedService) -> dict[str, Any]:
    """Return ``{summary, verdict}``: the last watch verdict (``slo.evaluated`` data) of the service's deliveries.

    ``verdict`` is None (``summary`` "no delivery judged yet") when no delivery of it reached a judged step.
    """
    verdict = None
    for entry in reversed(service.deliveries):
        found = await EventLog(bus).latest(EventType.SLO_EVALUATED, run=entry["run_id"])
        if found is not None:
            verdict = found.data
            break
    if verdict is None:
        return {"summary": "no delivery judged yet", "verdict": None}
    canary = verdict.get("canary") or {}
    state = "healthy" if verdict.get("healthy") else f"{verdict.get('action')} ({verdict.get('cause') or 'breach'})"
    summary = (
        f"{state} at the last watched step ({verdict.get('phase')}, {verdict.get('weight')}%): "
        f"{canary.get('errors')}/{canary.get('requests')} errors, SLO error rate ≤ {verdict.get('slo_error_rate')}"
    )
    return {"summary": summary, "verdict": verdict}
