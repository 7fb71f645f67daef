"""Helpers of the ingester: the write batch, call resolution, and Endpoint nodes from OpenAPI and route decorators.

Endpoint nodes use the design agent's key, ``"{service} {METHOD} {path}"``, so an endpoint the lifecycle wrote from a
spec and the handler found in the code are the same node. An operation of an OpenAPI document is linked to the
function whose decorator declares the same method and path (FastAPI ``@app.get("/pets/{id}")``, Flask
``@app.route("/pets/<int:id>")``, the Flask parameter rewritten to ``{id}``); routes with no operation in any spec are
Endpoint nodes too (``in_spec: false``), operations with no handler are listed as unmatched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilotage.graph.base import Graph, node_id
from pilotage.graph.ingest.parse import HTTP_METHODS

__all__ = ["Batch", "endpoint_batch", "resolve_call"]


@dataclass
class Batch:
    """Nodes and edges of one ingest, written in one transaction by ``SQLiteGraph.write_batch``."""

    nodes: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    edges: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    merges: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    delete_nodes: list[str] = field(default_factory=list)
    delete_edges_from: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    endpoints: int = 0

    def node(self, kind: str, key: str, props: dict[str, Any]) -> None:
        """Write the node with exactly ``props`` (the ingester owns code nodes)."""
        self.nodes.append((kind, key, props))

    def node_merge(self, kind: str, key: str, props: dict[str, Any]) -> None:
        """Merge ``props`` into a node others may own too (Service, Endpoint): written with ``upsert_node``."""
        self.merges.append((kind, key, props))

    def edge(self, src: str, type: str, dst: str, props: dict[str, Any]) -> None:
        """Write the edge ``src -type-> dst`` with ``props``."""
        self.edges.append((src, type, dst, props))


def resolve_call(
    target: str, module: str, local: dict[str, str], known: dict[str, str], packages: dict[str, dict[str, str]]
) -> str | None:
    """Resolve a call written as ``target`` in ``module`` to a defined symbol key, or None (approximate).

    Order: a name imported into the module (``local`` aliases), a module-level definition, the name as written; then
    re-exports through packages' ``__init__`` aliases (``httpx.Client`` → ``httpx._client.Client``), 3 hops at most.
    """
    head, _, rest = target.partition(".")
    if target in known:
        candidate = target
    elif head in local:
        candidate = local[head] + (f".{rest}" if rest else "")
    elif f"{module}.{target}" in known:
        candidate = f"{module}.{target}"
    else:
        candidate = target
    for _ in range(3):
        if candidate in known:
            return candidate
        package, _, name = candidate.rpartition(".")
        first, _, tail = name.partition(".")
        exported = packages.get(package, {}).get(first)
        if exported is None:
            # ``pkg.Class.method`` where ``pkg`` re-exports ``Class``
            package2, _, attr = package.rpartition(".")
            exported2 = packages.get(package2, {}).get(attr)
            if exported2 is None:
                return None
            candidate = f"{exported2}.{name}"
            continue
        candidate = exported + (f".{tail}" if tail else "")
    return candidate if candidate in known else None


def _spec_operations(specs: list[tuple[Path, dict[str, Any]]]) -> dict[tuple[str, str], dict[str, Any]]:
    ops: dict[tuple[str, str], dict[str, Any]] = {}
    for path, doc in specs:
        for route, item in (doc.get("paths") or {}).items():
            for method, op in (item or {}).items():
                if method in HTTP_METHODS and isinstance(op, dict):
                    ops[(method.upper(), str(route))] = {"spec": str(path), "operation_id": op.get("operationId")}
    return ops


def endpoint_batch(
    batch: Batch,
    graph: Graph,
    routes: list[tuple[str, str, str, int]],
    specs: list[tuple[Path, dict[str, Any]]],
    known: dict[str, str],
    service: str,
    root: str,
) -> list[str]:
    """Add Endpoint nodes, ``HANDLED_BY`` and ``EXPOSES`` edges; delete this root's endpoints that are gone.

    Args:
        batch: the batch to add to.
        graph: the store (read: this root's existing Endpoint and Package nodes, to delete the stale ones).
        routes: ``(METHOD, /path, handler qualname, line)`` of every route decorator.
        specs: ``(file, OpenAPI document)`` pairs.
        known: defined symbol key → kind.
        service: the Service that EXPOSES the endpoints.
        root: the ingested folder (owner of the nodes).

    Returns:
        Keys of spec operations no decorator handles (``"service METHOD /path"``).
    """
    ops = _spec_operations(specs)
    handlers = {(m, p): (h, line) for m, p, h, line in routes if h in known}
    keys = sorted(set(ops) | set(handlers))
    sid = node_id("Service", service)
    wanted = set()
    for method, route in keys:
        key = f"{service} {method} {route}"
        wanted.add(node_id("Endpoint", key))
        props = {"service": service, "method": method, "path": route, "root": root, "in_spec": (method, route) in ops}
        props.update(ops.get((method, route), {}))
        batch.node_merge("Endpoint", key, props)
        batch.edge(sid, "EXPOSES", node_id("Endpoint", key), {})
        batch.delete_edges_from.append((node_id("Endpoint", key), ("HANDLED_BY",)))
        if (method, route) in handlers:
            handler, line = handlers[(method, route)]
            batch.edge(node_id("Endpoint", key), "HANDLED_BY", node_id(known[handler], handler), {"line": line})
    batch.endpoints = len(keys)
    stale = graph.query(
        "SELECT id FROM nodes WHERE kind IN ('Endpoint', 'Package') AND json_extract(props, '$.root') = :root",
        {"root": root},
    )
    packages = {n for kind, n, _ in batch.nodes if kind == "Package"}
    for row in stale:
        kind, _, key = row["id"].partition(":")
        if (kind == "Endpoint" and row["id"] not in wanted) or (kind == "Package" and key not in packages):
            batch.delete_nodes.append(row["id"])
    return [f"{service} {m} {p}" for m, p in keys if (m, p) in ops and (m, p) not in handlers]
