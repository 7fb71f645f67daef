"""Impact analysis: what a change to a file or symbol may affect, and the chain of edges that says why.

A change to X affects everything that depends on X, so the walk follows edges *backwards* (from ``dst`` to ``src``)
over the dependency edge types :data:`WALK`: importers (``IMPORTS``), callers (``CALLS``), tests (``TESTS``), the module
that defines a symbol (``DEFINES``), the endpoint a handler serves (``HANDLED_BY``), the package and service that
contain a module (``CONTAINS``, ``EXPOSES``, ``HAS_SPEC``). A changed module also changes every symbol it defines, so
those are starting points too.

The reachable set comes from one recursive CTE on the SQLite store (``UNION`` keeps each node once, so the walk
terminates on cycles and is linear in the edges visited); the explaining path of each node is the shortest one, found
by a breadth-first search over the edges of that set. Results are as approximate as the edges (static calls,
imports-based tests).
"""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilotage.errors import InputError
from pilotage.graph.base import Graph

__all__ = ["WALK", "Affected", "ImpactReport", "impact", "resolve_targets"]

#: Edge types walked backwards: ``src`` depends on ``dst``.
WALK = ("IMPORTS", "CALLS", "TESTS", "DEFINES", "HANDLED_BY", "CONTAINS", "EXPOSES", "HAS_SPEC")
_PRIORITY = {t: i for i, t in enumerate(("TESTS", "HANDLED_BY", "IMPORTS", "DEFINES", "CALLS", "CONTAINS", "EXPOSES"))}
_PRIORITY["HAS_SPEC"] = len(_PRIORITY)
_CATEGORIES = {"Module": "modules", "Endpoint": "endpoints", "Service": "services", "Test": "tests"}
_SYMBOL_KINDS = ("Module", "Package", "Class", "Function", "Test", "Endpoint")

_REACH_SQL = f"""
WITH RECURSIVE reach(id) AS (
    SELECT value FROM json_each(:starts)
    UNION
    SELECT e.src FROM edges e JOIN reach r ON e.dst = r.id
    WHERE e.type IN ({", ".join(repr(t) for t in WALK)})
)
SELECT e.src, e.type, e.dst FROM edges e JOIN reach r ON e.dst = r.id
WHERE e.type IN ({", ".join(repr(t) for t in WALK)})
"""


@dataclass(frozen=True)
class Affected:
    """One affected node and the path that explains it: ``path`` is ``[(src, type, dst)]`` from it to a changed node."""

    id: str
    kind: str
    key: str
    path: list[tuple[str, str, str]]

    def explain(self) -> str:
        """Return the path as text: ``Test:t -TESTS-> Module:m -DEFINES-> Function:m.f``."""
        if not self.path:
            return f"{self.id} (changed)"
        return " ".join([self.path[0][0], *(f"-{t}-> {d}" for _, t, d in self.path)])

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready data."""
        return {"id": self.id, "kind": self.kind, "key": self.key, "depth": len(self.path), "path": self.explain()}


@dataclass
class ImpactReport:
    """Changed nodes and what they affect, by category (modules, endpoints, services, tests)."""

    target: str
    changed: list[str]
    affected: dict[str, list[Affected]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready data: ``{target, changed, modules: [...], endpoints: [...], services, tests}``."""
        out: dict[str, Any] = {"target": self.target, "changed": self.changed}
        for name in _CATEGORIES.values():
            out[name] = [a.to_dict() for a in self.affected.get(name, [])]
        return out


def resolve_targets(graph: Graph, target: str) -> list[str]:
    """Return the node ids ``target`` names: a file or folder path (its modules), a node id, or a symbol key.

    Symbol keys match exactly (``pkg.mod.func``, ``pkg.mod``) or, failing that, as a dotted suffix (``mod.func``).

    Raises:
        InputError: nothing in the graph matches (the hint says to ingest first).
    """
    ids: list[str] = []
    if os.path.exists(target):
        real = str(Path(target).resolve())
        rows = graph.query(
            "SELECT id FROM nodes WHERE kind = 'Module' AND (json_extract(props, '$.path') = :p "
            "OR json_extract(props, '$.path') LIKE :prefix) ORDER BY id",
            {"p": real, "prefix": real.rstrip("/") + "/%"},
        )
        ids = [r["id"] for r in rows]
    elif ":" in target and graph.get_node(target) is not None:
        ids = [target]
    else:
        kinds = ", ".join(repr(k) for k in _SYMBOL_KINDS)
        rows = graph.query(f"SELECT id FROM nodes WHERE key = :k AND kind IN ({kinds}) ORDER BY id", {"k": target})  # noqa: S608
        if not rows:
            rows = graph.query(
                f"SELECT id FROM nodes WHERE key LIKE :k AND kind IN ({kinds}) ORDER BY id",  # noqa: S608
                {"k": "%." + target.replace("%", r"\%")},
            )
        ids = [r["id"] for r in rows]
    if not ids:
        raise InputError(
            f"{target}: no module, symbol or file of that name in the graph",
            hint="run `pilotage graph ingest PATH` first, or give a dotted name like pkg.mod.func",
            target=target,
        )
    return ids


def impact(graph: Graph, target: str) -> ImpactReport:
    """Return what a change to ``target`` (path, node id or symbol key) affects, with explaining paths.

    Raises:
        InputError: ``target`` names nothing in the graph.
    """
    changed = resolve_targets(graph, target)
    starts = list(changed)
    for nid in changed:
        if nid.startswith("Module:"):
            starts += [n.id for e, n in graph.neighbours(nid, "DEFINES")]
    rows = graph.query(_REACH_SQL, {"starts": json.dumps(starts)})
    depends: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        depends.setdefault(r["dst"], []).append((r["src"], r["type"]))
    for edges in depends.values():  # among equally short paths, prefer the most telling edge, then a stable order
        edges.sort(key=lambda e: (_PRIORITY[e[1]], e[0]))
    parent: dict[str, tuple[str, str] | None] = dict.fromkeys(starts)
    queue = deque(starts)
    while queue:  # BFS: the first time a node is reached is by a shortest path
        here = queue.popleft()
        for src, type_ in depends.get(here, []):
            if src not in parent:
                parent[src] = (type_, here)
                queue.append(src)
    report = ImpactReport(target=target, changed=changed)
    for nid in parent:
        kind, _, key = nid.partition(":")
        category = _CATEGORIES.get(kind)
        if category is None:
            continue
        path: list[tuple[str, str, str]] = []
        node = nid
        while (step := parent[node]) is not None:
            path.append((node, step[0], step[1]))
            node = step[1]
        report.affected.setdefault(category, []).append(Affected(nid, kind, key, path))
    for items in report.affected.values():
        items.sort(key=lambda a: (len(a.path), a.id))
    return report
