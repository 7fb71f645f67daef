"""The fleet in the knowledge graph (issue #19): Service → API → Operation, and who consumes what.

Written by :func:`record_service` when a service is added (`pilotage service add`) and when a delivery is released
(its production descriptor and document), so the graph always holds production's view:

* ``Service`` (name): ``name`` (merged with the other writers' props);
* ``API`` (the API name): ``name``, ``service``, ``openapi``, ``commit``, ``base_path``, ``operations`` (a count;
  None while a served document is not known);
* ``Operation`` (``service METHOD /path``, the key of ``Endpoint`` nodes): ``service``, ``api``, ``method``,
  ``path``, ``operation_id``, ``commit``; ``removed_in`` (a commit) once a release dropped it;
* ``Service -PROVIDES-> API``; ``API -DEFINES-> Operation`` (the operations of the current document only);
* ``Service -CONSUMES-> Operation`` (``env``, ``declared_as``);
* ``Service -DEPENDS_ON-> Service`` (``via``: ``consumes`` or ``dependsOn``; ``env``; ``unresolved``: declared
  operations not found in the provider's current operations).

:func:`call_report` compares what a consumer declares with the HTTP calls the graph ingest found in its code
(``Module`` props ``http_calls``, :mod:`pilotage.graph.ingest.parse`): operations declared but never called,
operations of managed providers called but not declared, and calls that match no provider's operation.
Stale edges are deleted with the SQLite store's ``write_batch``; on another store they stay (upserts only).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pilotage.fleet.deps import dependency_graph
from pilotage.fleet.descriptor import ServiceDescriptor
from pilotage.graph.base import Edge, Graph, Node, node_id
from pilotage.graph.export import load
from pilotage.spec.openapi import base_path, iter_operations

__all__ = ["FLEET_KINDS", "call_report", "fleet_subgraph", "provider_operations", "record_service"]

#: Node kinds drawn by ``pilotage service graph``.
FLEET_KINDS = ("Service", "API", "Operation")
_LIMIT = 10_000_000
#: Calls listed per category in a report.
MAX_LISTED = 50


def _batch(graph: Graph, nodes: list[Any], edges: list[Any], delete_from: list[Any]) -> None:
    if hasattr(graph, "write_batch"):
        graph.write_batch(nodes=nodes, edges=edges, delete_edges_from=delete_from)
        return
    for kind, key, props in nodes:
        graph.upsert_node(kind, key, props)
    for src, type_, dst, props in edges:
        graph.upsert_edge(src, type_, dst, props)


def provider_operations(graph: Graph, provider: str) -> list[Node]:
    """The current ``Operation`` nodes of ``provider`` (not removed by a release), in insertion order."""
    return [
        n
        for n in graph.nodes("Operation", limit=_LIMIT)
        if n.props.get("service") == provider and not n.props.get("removed_in")
    ]


def _provider_part(
    graph: Graph, descriptor: ServiceDescriptor, commit: str, doc: dict[str, Any] | None
) -> tuple[list[Any], list[Any], list[Any]]:
    """Nodes, edges and edge deletions of what ``descriptor`` provides (APIs, operations when ``doc`` is known)."""
    name, svc = descriptor.name, node_id("Service", descriptor.name)
    nodes: list[Any] = []
    edges: list[Any] = []
    deletes: list[Any] = [(svc, ("PROVIDES",))]
    ops = [(op.label, op.method.upper(), op.path, str(op.operation.get("operationId") or "")) for op in
           iter_operations(doc)] if doc is not None else None  # fmt: skip
    for api in descriptor.apis:
        props: dict[str, Any] = {"name": api, "service": name, "openapi": descriptor.openapi, "commit": commit}
        props["base_path"] = base_path(doc) if doc is not None else ""
        props["operations"] = len(ops) if ops is not None else None
        nodes.append(("API", api, props))
        edges.append((svc, "PROVIDES", node_id("API", api), {}))
        if ops is not None:
            deletes.append((node_id("API", api), ("DEFINES",)))
    if ops is None:
        return nodes, edges, deletes
    current = set()
    for label, method, path, op_id in ops:
        key = f"{name} {label}"
        current.add(node_id("Operation", key))
        props = {"service": name, "api": descriptor.apis[0], "method": method, "path": path, "operation_id": op_id}
        nodes.append(("Operation", key, props | {"commit": commit}))
        edges.extend((node_id("API", api), "DEFINES", node_id("Operation", key), {}) for api in descriptor.apis)
    for gone in provider_operations(graph, name):
        if gone.id not in current:  # kept for the consumers that still declare it, marked
            nodes.append(("Operation", gone.key, {**gone.props, "removed_in": commit}))
    return nodes, edges, deletes


def _resolve(ref: str, operations: list[Node]) -> Node | None:
    method, _, path = ref.strip().partition(" ")
    label = f"{method.upper()} {path.strip()}"
    for op in operations:
        if op.props.get("operation_id") == ref or f"{op.props.get('method')} {op.props.get('path')}" == label:
            return op
    return None


def _consumer_part(
    graph: Graph, descriptor: ServiceDescriptor, managed: Mapping[str, ServiceDescriptor]
) -> tuple[list[Any], list[Any]]:
    """Edges (and their deletions) of what ``descriptor`` depends on and consumes."""
    svc = node_id("Service", descriptor.name)
    edges: list[Any] = []
    by_provider = {c.service: c for c in descriptor.consumes}
    for dep in dependency_graph({**managed, descriptor.name: descriptor})[descriptor.name]:
        entry = by_provider.get(dep)
        props: dict[str, Any] = {"via": "consumes" if entry else "dependsOn", "env": entry.env if entry else ""}
        if entry is not None:
            operations, unresolved = provider_operations(graph, dep), []
            for ref in entry.operations:
                op = _resolve(ref, operations)
                if op is None:
                    unresolved.append(ref)
                else:
                    edges.append((svc, "CONSUMES", op.id, {"env": entry.env, "declared_as": ref}))
            props["unresolved"] = unresolved
        edges.append((svc, "DEPENDS_ON", node_id("Service", dep), props))
    return edges, [(svc, ("CONSUMES", "DEPENDS_ON"))]


def record_service(
    graph: Graph,
    descriptor: ServiceDescriptor,
    commit: str,
    document: dict[str, Any] | None,
    managed: Mapping[str, ServiceDescriptor],
) -> dict[str, int]:
    """Write ``descriptor``'s service as production ``commit`` (module docstring) and return counts.

    Args:
        graph: the knowledge graph.
        descriptor: the production descriptor.
        commit: the production commit.
        document: its OpenAPI document (None: none, or not known yet — a served document; APIs are written
            with ``operations`` None and the operations of the last known document stay).
        managed: every managed service's production descriptor (its dependencies are the managed ones; the
            services that depend on this one get their edges to it rewritten too).

    Returns:
        ``{"apis", "operations", "consumes", "depends_on"}`` written for this service.
    """
    for name in (descriptor.name, *descriptor.dependencies):
        if name == descriptor.name or name in managed:
            graph.upsert_node("Service", name, {"name": name})
    nodes, edges, deletes = _provider_part(graph, descriptor, commit, document)
    _batch(graph, nodes, edges, deletes)
    consumer_edges, consumer_deletes = _consumer_part(graph, descriptor, managed)
    _batch(graph, [], consumer_edges, consumer_deletes)
    for name, other in managed.items():  # services that consume or depend on this one, whatever the order added
        if name != descriptor.name and descriptor.name in other.dependencies:
            again, gone = _consumer_part(graph, other, {**managed, descriptor.name: descriptor})
            _batch(graph, [], again, gone)
    return {
        "apis": sum(1 for n in nodes if n[0] == "API"),
        "operations": sum(1 for n in nodes if n[0] == "Operation" and not n[2].get("removed_in")),
        "consumes": sum(1 for e in consumer_edges if e[1] == "CONSUMES"),
        "depends_on": sum(1 for e in consumer_edges if e[1] == "DEPENDS_ON"),
    }


def fleet_subgraph(graph: Graph, names: set[str]) -> tuple[list[Node], list[Edge]]:
    """The managed services ``names``, their APIs and operations, and the fleet edges between them."""
    nodes, edges = load(graph, list(FLEET_KINDS))
    kept = [n for n in nodes if (n.key if n.kind == "Service" else n.props.get("service")) in names]
    ids = {n.id for n in kept}
    fleet_edges = ("PROVIDES", "DEFINES", "CONSUMES", "DEPENDS_ON")
    return kept, [e for e in edges if e.type in fleet_edges and e.src in ids and e.dst in ids]


def _segments_match(call: list[str], template: list[str]) -> int:
    """How many literal segments match (-1: no match); a ``{param}`` takes any non-empty segment."""
    if len(call) != len(template):
        return -1
    literal = 0
    for c, t in zip(call, template, strict=True):
        if c == t:
            literal += 1
        elif not (t.startswith("{") and t.endswith("}") and c):
            return -1
    return literal


def _match(method: str, path: str, operations: list[Node], prefix: str) -> list[Node]:
    """The operations a call matches best (most literal segments), after the provider's ``servers`` path."""
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        path = path[len(prefix) :] or "/"
    call = path.rstrip("/").split("/")
    scored = [(_segments_match(call, str(op.props.get("path", "")).rstrip("/").split("/")), op) for op in operations
              if op.props.get("method") == method]  # fmt: skip
    best = max((s for s, _ in scored), default=-1)
    return [op for s, op in scored if s == best and best >= 0]


def _code_calls(graph: Graph, service: str) -> list[tuple[str, str, str]] | None:
    """``(METHOD, path, file:line)`` of the service's ingested non-test code; None when it was never ingested."""
    modules = [m for m in graph.nodes("Module", limit=_LIMIT) if m.props.get("service") == service]
    if not modules:
        return None
    calls: list[tuple[str, str, str]] = []
    for module in modules:
        file = Path(str(module.props.get("path", "")))
        root = Path(str(module.props.get("root", "")))
        rel = file.relative_to(root) if file.is_relative_to(root) else file
        if module.props.get("is_test") or {"tests", "test"} & set(rel.parts[:-1]):
            continue
        calls.extend((str(m), str(p), f"{rel}:{line}") for m, p, _caller, line in module.props.get("http_calls") or [])
    return calls


def call_report(graph: Graph, consumer: ServiceDescriptor, managed: Mapping[str, ServiceDescriptor]) -> dict[str, Any]:
    """Compare ``consumer``'s declared operations with the HTTP calls found in its ingested code.

    Returns:
        ``{"ingested": False}`` when its code was never ingested (``pilotage graph ingest PATH --service NAME``);
        else ``{"ingested": True, "calls": n, "declared_not_called": [{provider, operation}],
        "called_not_declared": [{provider, operation, at}], "unmatched_calls": [{call, at}]}`` (lists cut at
        :data:`MAX_LISTED`), ``at`` being ``file:line`` under the ingested folder.
    """
    calls = _code_calls(graph, consumer.name)
    if calls is None:
        return {"ingested": False, "hint": f"pilotage graph ingest PATH --service {consumer.name}"}
    declared = {c.service for c in consumer.consumes}
    providers = [p for p in sorted(managed) if p != consumer.name]
    ops = {p: provider_operations(graph, p) for p in providers}
    prefixes = {p: _api_prefix(graph, managed[p]) for p in providers}
    used: dict[str, set[str]] = {}
    not_declared, unmatched = [], []
    for method, path, at in calls:
        hits = _call_hits(method, path, sorted(declared & set(providers)), ops, prefixes)
        hits = hits or _call_hits(method, path, [p for p in providers if p not in declared], ops, prefixes)
        if not hits:
            unmatched.append({"call": f"{method} {path}", "at": at})
        for provider, op in hits:
            used.setdefault(provider, set()).add(op.id)
            if not _declares(consumer, provider, op):
                not_declared.append({"provider": provider, "operation": _label(op), "at": at})
    never = []
    for entry in consumer.consumes:
        for ref in entry.operations:
            found = _resolve(ref, ops.get(entry.service, []))
            if found is None or found.id not in used.get(entry.service, set()):
                never.append({"provider": entry.service, "operation": _label(found) if found else ref})
    return {
        "ingested": True,
        "calls": len(calls),
        "declared_not_called": never[:MAX_LISTED],
        "called_not_declared": not_declared[:MAX_LISTED],
        "unmatched_calls": unmatched[:MAX_LISTED],
    }


def _api_prefix(graph: Graph, descriptor: ServiceDescriptor) -> str:
    api = graph.get_node(node_id("API", descriptor.apis[0])) if descriptor.apis else None
    return str(api.props.get("base_path") or "") if api is not None else ""


def _call_hits(
    method: str, path: str, providers: list[str], ops: dict[str, list[Node]], prefixes: dict[str, str]
) -> list[tuple[str, Node]]:
    return [(p, op) for p in providers for op in _match(method, path, ops[p], prefixes[p])]


def _declares(consumer: ServiceDescriptor, provider: str, op: Node) -> bool:
    return any(
        _resolve(ref, [op]) is not None for c in consumer.consumes if c.service == provider for ref in c.operations
    )


def _label(op: Node) -> str:
    return f"{op.props.get('method')} {op.props.get('path')}"
