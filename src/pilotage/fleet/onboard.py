"""Adding services with their dependencies, and what the fleet says about one of them (issue #19).

:func:`add_services` is ``pilotage service add PATH…``: every repository's descriptor is read first, the new
services are ordered providers first (:func:`pilotage.fleet.deps.providers_first`; a cycle among them and the
managed services refuses them all before anything is added), then each is added (:func:`pilotage.fleet.registry.
add_service`) after :func:`pilotage.fleet.documents.check_consumed` accepted its ``consumes`` against the
providers' production documents, and written to the graph (:func:`pilotage.fleet.graph.record_service`).

A provider's own document is read at add time only when that needs no running service (a file, the cache, or a
stable address that answers): its API gets its operations then, or when a consumer's check or a release loads it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pilotage.bus.base import Bus
from pilotage.codegen.git import is_repo
from pilotage.errors import ConfigError, InputError
from pilotage.fleet.checkout import descriptor_at, resolve_rev
from pilotage.fleet.deps import consumers_of, providers_first
from pilotage.fleet.descriptor import ServiceDescriptor
from pilotage.fleet.documents import DocumentSource, check_consumed
from pilotage.fleet.graph import call_report, provider_operations, record_service
from pilotage.fleet.registry import ManagedService, add_service, live_descriptors, load_fleet
from pilotage.fleet.verification import verifications_of
from pilotage.graph.base import Graph, node_id
from pilotage.runtime.base import InstanceRuntime
from pilotage.settings import Settings

__all__ = ["add_services", "fleet_graph_doc", "record_managed", "relations"]


def _head_descriptor(path: Path) -> ServiceDescriptor:
    """The descriptor at ``HEAD`` of the repository ``path`` (the checks :func:`add_service` makes again).

    Raises:
        InputError: not a folder, not a git repository, no commit.
        ConfigError: no valid descriptor at HEAD.
    """
    repo = Path(path).expanduser().resolve()
    if not repo.is_dir():
        raise InputError(f"{path} is not a folder", hint="pass the path of the service's git repository")
    if not is_repo(repo):
        raise InputError(f"{repo} is not a git repository", hint="run `git init` there and commit the service")
    return descriptor_at(repo, resolve_rev(repo, "HEAD"))


async def record_managed(graph: Graph, source: DocumentSource, fleet: dict[str, ManagedService], name: str) -> str:
    """Write managed service ``name``'s production to the graph; return "" or why its operations are unknown.

    Its document is read through ``source`` (give one without a runtime to start nothing); a document that cannot
    be loaded leaves the API without operations (the reason is returned, never raised).
    """
    service = fleet[name]
    descriptor = service.production_descriptor()
    note, doc = "", None
    try:
        loaded = await source.production(service, fleet)
        doc = loaded.doc if loaded else None
    except ConfigError as exc:
        note = exc.message
    record_service(graph, descriptor, service.production_commit, doc, live_descriptors(fleet))
    return note


async def add_services(
    bus: Bus,
    graph: Graph,
    settings: Settings,
    runtime: InstanceRuntime | None,
    paths: list[Path],
    *,
    port: int = 0,
) -> list[dict[str, Any]]:
    """Add the repositories ``paths`` as managed services, providers first (module docstring).

    Args:
        bus: the event log.
        graph: the knowledge graph.
        settings: ``fleet_port_base``, the home.
        runtime: starts a provider's commit when its served document is needed and nothing else gives it.
        paths: git repositories with a ``pilotage.yaml``.
        port: the stable port (one path only; 0: the next free one).

    Returns:
        The ``service.added`` data of each, in the order added, with ``graph`` (counts written) and ``note`` (why
        its operations are not known yet, or "").

    Raises:
        InputError: a path is not a git repository with a commit, a name is taken (exit 2).
        ConfigError: a descriptor is invalid, the services form a dependency cycle, a ``consumes`` names an unknown
            service or operation, or a provider's document cannot be loaded (exit 3). Services before the failing
            one in the order stay added.
    """
    descriptors = [await asyncio.to_thread(_head_descriptor, p) for p in paths]
    fleet = await load_fleet(bus)
    order = providers_first(descriptors, live_descriptors(fleet))
    source = DocumentSource(settings, runtime)
    quiet = DocumentSource(settings)

    async def check(descriptor: ServiceDescriptor, current: dict[str, ManagedService]) -> None:
        await check_consumed(source, descriptor, current)

    added = []
    for i in order:
        data = await add_service(bus, graph, paths[i], port_base=settings.fleet_port_base, port=port, check=check)
        fleet = await load_fleet(bus)
        note = await record_managed(graph, quiet, fleet, data["service"])
        for provider in {c.service for c in descriptors[i].consumes}:  # their documents are known now
            await record_managed(graph, quiet, fleet, provider)
        added.append(data | {"note": note})
    return added


def relations(graph: Graph, fleet: dict[str, ManagedService], name: str) -> dict[str, Any]:
    """What the fleet says about ``name``: the APIs it provides, what it consumes, who consumes it, its calls.

    Read from the production descriptors and the graph's operations (no document is loaded).

    Returns:
        ``{"provides": [{api, operations}], "consumes": [{service, env, operations}], "consumers": [{service,
        env, operations: [{operation, operation_id, declared_as}], unresolved}], "depends_on": [names],
        "calls": call_report(...), "verifications": verifications_of(...)}`` (who verified which commit).
    """
    managed = live_descriptors(fleet)
    descriptor = managed[name]
    provides = []
    for api in descriptor.apis:
        node = graph.get_node(node_id("API", api))
        provides.append({"api": api, "operations": node.props.get("operations") if node else None})
    doc = _document_of_graph(graph, name)
    return {
        "provides": provides,
        "consumes": [
            {"service": c.service, "env": c.env, "operations": list(c.operations)} for c in descriptor.consumes
        ],
        "consumers": [c.to_dict() for c in consumers_of(name, managed, doc)],
        "depends_on": [d for d in descriptor.dependencies if d in managed],
        "calls": call_report(graph, descriptor, managed),
        "verifications": verifications_of(graph, name),  # issue 19: VERIFIED edges of its commits
    }


def _document_of_graph(graph: Graph, name: str) -> dict[str, Any]:
    """A minimal OpenAPI document of ``name``'s current operations in the graph (to resolve declarations)."""
    paths: dict[str, Any] = {}
    for op in provider_operations(graph, name):
        entry = {"operationId": op.props["operation_id"]} if op.props.get("operation_id") else {}
        paths.setdefault(str(op.props.get("path")), {})[str(op.props.get("method")).lower()] = entry
    return {"openapi": "3.0.3", "paths": paths}


def fleet_graph_doc(graph: Graph, fleet: dict[str, ManagedService]) -> dict[str, Any]:
    """The fleet graph as JSON (``service graph --format json``, the HTTP API's ``/fleet/graph``).

    Returns:
        ``{"services": {name: relations(...)}, "nodes": [{id, kind, key, props}], "edges": [{src, type, dst,
        props}], "mermaid": the Mermaid flowchart text}``.
    """
    from pilotage.fleet.graph import fleet_subgraph
    from pilotage.graph.export import to_mermaid

    nodes, edges = fleet_subgraph(graph, set(fleet))
    return {
        "services": {name: relations(graph, fleet, name) for name in sorted(fleet)},
        "nodes": [{"id": n.id, "kind": n.kind, "key": n.key, "props": n.props} for n in nodes],
        "edges": [{"src": e.src, "type": e.type, "dst": e.dst, "props": e.props} for e in edges],
        "mermaid": "\n".join(to_mermaid(nodes, edges)),
    }
