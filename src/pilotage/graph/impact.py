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

:func:`impact_since` starts from every file ``git diff --name-only REV`` lists in the ingested repository and reports
the union of their impacts (``pilotage impact PATH_OR_SYMBOL --since REV``).
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilotage.errors import InputError
from pilotage.graph.base import Graph

__all__ = [
    "WALK",
    "Affected",
    "ImpactReport",
    "changed_files",
    "impact",
    "impact_of_files",
    "impact_since",
    "pytest_node_ids",
    "resolve_targets",
]

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
    #: ``--since`` only: the revision, the repository folder, the files git lists and those no Module node has.
    since: str | None = None
    repo: str | None = None
    files: list[str] = field(default_factory=list)
    not_in_graph: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready data: ``{target, changed, modules: [...], endpoints: [...], services, tests}``.

        With ``--since``, also ``since``, ``repo``, ``files`` (paths relative to ``repo``) and ``not_in_graph``.
        """
        out: dict[str, Any] = {"target": self.target, "changed": self.changed}
        if self.since is not None:
            out.update(since=self.since, repo=self.repo, files=self.files, not_in_graph=self.not_in_graph)
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
    return _walk(graph, target, resolve_targets(graph, target))


def _walk(graph: Graph, target: str, changed: list[str]) -> ImpactReport:
    """Return the report for the changed node ids ``changed`` (an empty list gives an empty report)."""
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


def _repository_of(graph: Graph, target: str) -> Path:
    """Return the folder whose git history ``--since`` reads.

    That is ``target`` itself (or its folder) when it is a path, else the ingested ``root`` of the node it names.

    Raises:
        InputError: ``target`` names nothing in the graph, or its node has no ``root`` (it was not ingested).
    """
    if os.path.exists(target):
        path = Path(target).resolve()
        return path if path.is_dir() else path.parent
    for nid in resolve_targets(graph, target):
        node = graph.get_node(nid)
        root = node.props.get("root") if node is not None else None
        if isinstance(root, str) and root:
            return Path(root)
    raise InputError(
        f"{target}: not a path, and its node has no ingested root to read git history from",
        hint="give the repository folder: pilotage impact PATH --since REV",
        target=target,
    )


def changed_files(repo: Path, rev: str) -> tuple[Path, list[str]]:
    """Return the repository's top folder and the files ``git diff --name-only REV`` lists (relative to it).

    The diff is between ``rev`` and the working tree, so committed and uncommitted changes to tracked files count;
    untracked files do not (``git add`` them first).

    Raises:
        InputError: ``repo`` is not in a git repository, or ``rev`` is not a revision of it.
        ConfigError: git is not installed.
    """
    from pilotage.codegen.git import git
    from pilotage.errors import BackendError

    try:
        top = Path(git(repo, "rev-parse", "--show-toplevel")).resolve()
        names = git(top, "diff", "--name-only", "--no-renames", rev, "--")
    except BackendError as exc:
        raise InputError(
            f"impact --since {rev}: {exc}", hint="give a folder inside a git repository and a revision it has"
        ) from exc
    return top, sorted(line for line in names.splitlines() if line)


def impact_since(graph: Graph, target: str, rev: str) -> ImpactReport:
    """Return the union of the impacts of every file changed since ``rev`` in ``target``'s repository.

    Args:
        graph: the graph the repository was ingested into.
        target: the repository folder, a file or folder in it, or a symbol/node id of it (its ``root`` is used).
        rev: any git revision (``HEAD~3``, a sha, a branch); the diff runs from it to the working tree.

    Returns:
        The report: ``changed`` holds the Module nodes of the changed files; files the graph has no Module for
        (deleted, not Python, never ingested) are in ``not_in_graph``. No changed file gives an empty report.

    Raises:
        InputError: ``target`` names nothing, is not in a git repository, or ``rev`` is unknown.
    """
    top, names = changed_files(_repository_of(graph, target), rev)
    changed: list[str] = []
    missing: list[str] = []
    for name in names:
        rows = graph.query(
            "SELECT id FROM nodes WHERE kind = 'Module' AND json_extract(props, '$.path') = :p ORDER BY id",
            {"p": str((top / name).resolve())},
        )
        if rows:
            changed += [r["id"] for r in rows if r["id"] not in changed]
        else:
            missing.append(name)
    report = _walk(graph, target, changed)
    report.since, report.repo, report.files, report.not_in_graph = rev, str(top), names, missing
    return report


def impact_of_files(graph: Graph, root: str | Path, files: Sequence[str | Path]) -> ImpactReport | None:
    """Return the union of the impacts of ``files`` of the code under ``root``, or None when the graph does not know it.

    Used by the agents (issue #4): the testing agent orders the tests by it, the deployment agent counts its blast
    radius. Only the SQLite store answers (the walk is SQL); any other backend gives None.

    Args:
        graph: the knowledge graph.
        root: the folder of the service's code (e.g. ``code.generated`` ``head_dir``).
        files: changed files, relative to ``root`` or absolute.

    Returns:
        None when no Module node has a path under ``root`` (the code was never ingested), else the report
        (``changed`` = the Module nodes of ``files``; ``not_in_graph`` = the files without one).
    """
    if not graph.url.startswith("sqlite:"):
        return None
    base = Path(root).resolve()
    known = graph.query(
        "SELECT count(*) AS n FROM nodes WHERE kind = 'Module' AND json_extract(props, '$.path') LIKE :prefix",
        {"prefix": str(base).rstrip("/") + "/%"},
    )
    if not known or not known[0]["n"]:
        return None
    changed: list[str] = []
    missing: list[str] = []
    for name in files:
        rows = graph.query(
            "SELECT id FROM nodes WHERE kind = 'Module' AND json_extract(props, '$.path') = :p ORDER BY id",
            {"p": str((base / name).resolve())},
        )
        changed += [r["id"] for r in rows if r["id"] not in changed]
        if not rows:
            missing.append(str(name))
    report = _walk(graph, str(base), changed)
    report.repo, report.files, report.not_in_graph = str(base), [str(f) for f in files], missing
    return report


def pytest_node_ids(graph: Graph, report: ImpactReport, root: str | Path) -> list[str]:
    """Return the pytest node ids (``tests/test_x.py::TestCase::test_y``, relative to ``root``) of the report's tests.

    In the report's order (shortest explaining path first), without duplicates; a test whose module file is not
    under ``root`` is left out.
    """
    base = Path(root).resolve()
    out: list[str] = []
    for test in report.affected.get("tests", []):
        node = graph.get_node(test.id)
        module = graph.get_node(f"Module:{node.props.get('module')}") if node is not None else None
        path = module.props.get("path") if module is not None else None
        if node is None or not isinstance(path, str) or not Path(path).is_relative_to(base):
            continue
        nid = Path(path).relative_to(base).as_posix() + "::" + str(node.props.get("name", "")).replace(".", "::")
        if nid not in out:
            out.append(nid)
    return out
