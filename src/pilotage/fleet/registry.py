"""Services under management: what the event log says about each (issue #17).

The state of the fleet is a function of the log (as every environment is): :func:`fold_fleet` reads

* ``service.added`` — a repository put under management (`pilotage service add`), its stable port and the
  production commit it started with;
* ``service.released`` — a delivery promoted: the new production commit;
* ``flow.started`` of kind ``deliver`` and the closing ``flow.completed``/``flow.failed`` of those runs — the
  deliveries and their outcomes;
* ``service.up``/``service.down`` — whether the production version serves now, where, and wake-up times.

:func:`add_service` validates a repository and publishes ``service.added``; the graph gets the Service and Commit
nodes (``Service -[PRODUCTION]-> Commit``).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilotage.bus.base import Bus, Record
from pilotage.bus.query import EventLog
from pilotage.catalogue import checked_event
from pilotage.codegen.git import is_repo
from pilotage.errors import InputError
from pilotage.events import EventType
from pilotage.fleet.checkout import descriptor_at, resolve_rev
from pilotage.graph.base import Graph

__all__ = [
    "ManagedService",
    "add_service",
    "fold_fleet",
    "load_fleet",
    "managed_service",
    "require_managed",
    "stable_route_name",
]

#: Deliveries kept per service in :attr:`ManagedService.deliveries` (newest last).
MAX_DELIVERIES = 20
_FLEET_TYPES = (
    EventType.SERVICE_ADDED,
    EventType.SERVICE_RELEASED,
    EventType.SERVICE_UP,
    EventType.SERVICE_DOWN,
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
        descriptor: the ``pilotage.yaml`` of the production commit when added (schema field names).
        deliveries: ``{run_id, rev, status, outcome, started, closed}`` of recent deliveries, oldest first.
        up: the newest ``service.up``/``service.down`` data with ``state`` ``up``/``down``; None if never started.
        wake_s: the wake-up times reported by ``service.up`` (reason ``woken``), seconds.
    """

    name: str
    repo_path: str
    stable_port: int
    production_commit: str
    descriptor: dict[str, Any]
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    up: dict[str, Any] | None = None
    wake_s: list[float] = field(default_factory=list)

    @property
    def stable_url(self) -> str:
        """The stable address clients and other services use."""
        return f"http://127.0.0.1:{self.stable_port}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (``service show --json``)."""
        return {
            "name": self.name,
            "repo_path": self.repo_path,
            "stable_url": self.stable_url,
            "stable_port": self.stable_port,
            "production_commit": self.production_commit,
            "owner": self.descriptor.get("owner"),
            "descriptor": self.descriptor,
            "deliveries": self.deliveries,
            "up": self.up,
            "wake_s": self.wake_s,
        }


def _apply(fleet: dict[str, ManagedService], runs: dict[str, tuple[str, dict[str, Any]]], event: Any) -> None:
    data, kind = event.data, event.type
    if kind == EventType.SERVICE_ADDED and data["service"] not in fleet:
        fleet[data["service"]] = ManagedService(
            data["service"], data["repo_path"], int(data["stable_port"]), data["commit"], dict(data["descriptor"])
        )
        return
    if kind == EventType.FLOW_STARTED:
        if data.get("kind") == "deliver" and data.get("service") in fleet:
            entry = {"run_id": data["run_id"], "rev": data.get("rev", ""), "status": "running", "outcome": ""}
            entry["started"] = event.time
            fleet[data["service"]].deliveries = (fleet[data["service"]].deliveries + [entry])[-MAX_DELIVERIES:]
            runs[data["run_id"]] = (data["service"], entry)
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
        service.production_commit = data["commit"]
        for entry in reversed(service.deliveries):
            if entry["run_id"] == data["run_id"]:
                entry["commit"] = data["commit"]
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


async def add_service(bus: Bus, graph: Graph, path: str | Path, *, port_base: int, port: int = 0) -> dict[str, Any]:
    """Put the git repository at ``path`` under management and return the ``service.added`` data.

    The production commit is the repository's ``HEAD``; its ``pilotage.yaml`` must be valid; the stable port is
    ``port`` or the first free port from ``port_base`` not taken by another managed service.

    Raises:
        InputError: ``path`` is not a folder or not the top of a git repository, it has no commit, or the
            descriptor's name is taken by another managed service (exit 2).
        ConfigError: the descriptor at ``HEAD`` is missing or invalid (names the file and field).
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
