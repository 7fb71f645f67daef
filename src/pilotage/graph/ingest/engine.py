"""``ingest(graph, path)``: put a Python repository into the knowledge graph, incrementally.

Nodes (keys in ``docs/graph-schema.md``): ``Package``, ``Module``, ``Class``, ``Function``, ``Test``, ``Endpoint`` and
the ``Service``; edges ``CONTAINS``, ``DEFINES``, ``IMPORTS``, ``CALLS``, ``TESTS``, ``HANDLED_BY``, ``EXPOSES``.

Incremental: a Module node keeps its file's ``mtime_ns``, ``size`` and ``sha256``. A file whose size and mtime are
unchanged is not opened; one whose bytes hash the same is not parsed. Only changed modules have their nodes and
outgoing edges rewritten; modules whose file disappeared (or no longer parses) are deleted with their symbols.
Known limit: an unchanged module's calls or imports into a symbol or module that did not exist when it was last
read are only seen after it changes or after ``--full``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilotage.errors import ConfigError, InputError
from pilotage.graph.base import Graph, node_id
from pilotage.graph.ingest.coverage import coverage_contexts, coverage_edges
from pilotage.graph.ingest.imports import grimp_imports, resolve_module
from pilotage.graph.ingest.parse import ParsedModule, is_test_path, parse_module
from pilotage.graph.ingest.scan import Skipped, discover, find_specs, module_name, read_text
from pilotage.graph.ingest.wiring import Batch, endpoint_batch, resolve_call

__all__ = ["IngestReport", "ingest"]

SYMBOL_KINDS = ("Class", "Function", "Test")


@dataclass
class IngestReport:
    """What one ingest did. ``seconds`` is wall time; counts are files unless named otherwise."""

    root: str
    service: str
    files: int = 0
    parsed: int = 0
    unchanged: int = 0
    removed: int = 0
    nodes_written: int = 0
    edges_written: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    imports: dict[str, str] = field(default_factory=dict)
    endpoints: int = 0
    endpoints_unmatched: list[str] = field(default_factory=list)
    coverage: dict[str, Any] | None = None
    commit: str | None = None
    seconds: float = 0.0

    @property
    def ingested(self) -> int:
        """Python files now in the graph (parsed this time or unchanged since the last ingest)."""
        return self.parsed + self.unchanged

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-ready data (``skipped`` as ``[{path, reason}]``)."""
        return {
            "root": self.root,
            "service": self.service,
            "files": self.files,
            "ingested": self.ingested,
            "parsed": self.parsed,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "nodes_written": self.nodes_written,
            "edges_written": self.edges_written,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "imports": self.imports,
            "endpoints": self.endpoints,
            "commit": self.commit,
            "endpoints_unmatched": self.endpoints_unmatched,
            "coverage": self.coverage,
            "seconds": round(self.seconds, 4),
        }


@dataclass
class _Module:
    name: str
    path: Path
    is_package: bool
    props: dict[str, Any]
    parsed: ParsedModule | None = None  # None: unchanged since the stored props


def _stored(graph: Graph, root: str) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """Return Module props by name and the symbol ids of each module, for modules ingested from ``root``."""
    modules = {
        r["key"]: json.loads(r["props"])
        for r in graph.query(
            "SELECT key, props FROM nodes WHERE kind = 'Module' AND json_extract(props, '$.root') = :root",
            {"root": root},
        )
    }
    symbols: dict[str, list[str]] = {}
    for r in graph.query(
        "SELECT id, json_extract(props, '$.module') AS module FROM nodes "
        "WHERE kind IN ('Class', 'Function', 'Test') AND json_extract(props, '$.root') = :root",
        {"root": root},
    ):
        symbols.setdefault(r["module"], []).append(r["id"])
    return modules, symbols


_Job = tuple[str, str, bool, bool, str]  # text, module name, is_package, is_test, file name


def _parse_job(job: _Job) -> ParsedModule | str:
    """Parse one file; an unparsable one gives the reason (a string) instead of raising."""
    text, name, is_package, is_test, filename = job
    try:
        return parse_module(text, name, is_package=is_package, is_test=is_test, filename=filename)
    except InputError as exc:
        return exc.message.replace(f"{filename}:", "").strip()


def _stat_or_read(path: Path, old: dict[str, Any] | None, full: bool) -> tuple[dict[str, Any], str | None]:
    """Return ``(props, text)``: text is None when the file is unchanged (same size+mtime, or same sha256).

    Raises:
        OSError, UnicodeDecodeError: the file cannot be read as UTF-8 text.
    """
    st = path.stat()
    props: dict[str, Any] = {"path": str(path), "mtime_ns": st.st_mtime_ns, "size": st.st_size}
    same_file = old is not None and not full and old.get("path") == str(path)
    if same_file and old is not None and (old.get("mtime_ns"), old.get("size")) == (st.st_mtime_ns, st.st_size):
        return {**old, **props}, None
    data, text = read_text(path)
    digest = hashlib.sha256(data).hexdigest()
    if same_file and old is not None and old.get("sha256") == digest:
        return {**old, **props}, None
    return {**props, "sha256": digest}, text


def _collect(
    files: list[Path], stored: dict[str, dict[str, Any]], full: bool, skipped: list[Skipped]
) -> dict[str, _Module]:
    """Return the modules now under the root (changed ones parsed); unreadable files go to ``skipped``."""
    modules: dict[str, _Module] = {}
    paths: dict[str, Path] = {}
    jobs: list[_Job] = []
    for path in files:
        name, is_package = module_name(path)
        if name in paths:
            skipped.append(Skipped(str(path), f"duplicate module name {name} (also {paths[name]})"))
            continue
        paths[name] = path
        try:
            props, text = _stat_or_read(path, stored.get(name), full)
        except UnicodeDecodeError as exc:
            skipped.append(Skipped(str(path), f"not UTF-8: byte {exc.start} ({exc.reason})"))
            continue
        except OSError as exc:
            kind = "symlink loop" if exc.errno == errno.ELOOP else "unreadable"
            skipped.append(Skipped(str(path), f"{kind}: {exc.strerror or exc}"))
            continue
        modules[name] = _Module(name, path, is_package, props)
        if text is not None:
            jobs.append((text, name, is_package, is_test_path(path.name), str(path)))
    for job, result in zip(jobs, map(_parse_job, jobs), strict=True):
        name = job[1]
        if isinstance(result, str):
            skipped.append(Skipped(job[4], result))
            del modules[name]
            continue
        m = modules[name]
        m.parsed = result
        m.props.update(
            is_package=m.is_package,
            is_test=result.is_test,
            lines=result.lines,
            routes=[[r.method, r.path, r.handler, r.line] for r in result.routes],
            http_calls=[[c.method, c.path, c.caller, c.line] for c in result.http_calls],
            aliases=result.aliases if m.is_package else {},
        )
    return modules


def _imports(
    modules: dict[str, _Module], skipped: list[Skipped], report: IngestReport
) -> dict[str, tuple[set[str], str]]:
    """Return module → (internal modules it imports, ``grimp`` or ``ast``), for every changed module."""
    changed = [m for m in modules.values() if m.parsed is not None]
    if not changed:
        return {}
    bad_tops = {module_name(Path(s.path))[0].split(".")[0] for s in skipped if s.path.endswith(".py")}
    packages: dict[str, Path] = {}
    for m in modules.values():
        if m.is_package and "." not in m.name:
            if m.name in bad_tops:
                report.imports[m.name] = "ast: the package has skipped files"
            else:
                packages[m.name] = m.path.parent
    found, fallbacks = grimp_imports(packages, [m.name for m in changed])
    for name, why in fallbacks.items():
        report.imports[name] = f"ast: {why}"
    for name in packages:
        report.imports.setdefault(name, "grimp")
    out: dict[str, tuple[set[str], str]] = {}
    for m in changed:
        assert m.parsed is not None
        if m.name in found:
            out[m.name] = (found[m.name], "grimp")
        else:  # ast: keep the longest known prefix of each imported name
            targets = (resolve_module(t, modules) for t, _ in m.parsed.imports)
            out[m.name] = ({t for t in targets if t is not None and t != m.name}, "ast")
    return out


def _plan(
    modules: dict[str, _Module], changed: dict[str, _Module], removed: list[str], stored_symbols: dict[str, list[str]]
) -> tuple[dict[str, str], Batch]:
    """Return the symbols known after this ingest (key → kind) and a batch holding the deletions it implies."""
    known: dict[str, str] = {}
    for name, ids in stored_symbols.items():
        if name in modules and name not in changed:
            known.update({i.split(":", 1)[1]: i.split(":", 1)[0] for i in ids})
    batch = Batch()
    batch.delete_nodes.extend(node_id("Module", n) for n in removed)
    for n in removed:
        batch.delete_nodes.extend(stored_symbols.get(n, []))
    for n, m in changed.items():  # symbols that survive keep the edges INTO them; their own edges are rewritten
        assert m.parsed is not None
        known.update({s.qualname: s.kind for s in m.parsed.symbols})
        now = {node_id(s.kind, s.qualname) for s in m.parsed.symbols}
        for old_id in stored_symbols.get(n, []):
            if old_id in now:
                batch.delete_edges_from.append((old_id, ("CALLS", "TESTS", "DEFINES")))
            else:
                batch.delete_nodes.append(old_id)
    return known, batch


def ingest(
    graph: Graph,
    path: Path,
    *,
    service: str | None = None,
    specs: list[Path] | None = None,
    full: bool = False,
    coverage: bool = False,
    coverage_timeout_s: float = 600.0,
) -> IngestReport:
    """Ingest the Python files and OpenAPI documents under ``path`` into ``graph``.

    Args:
        graph: a store with ``write_batch`` (the SQLite store).
        path: repository folder (or one ``.py`` file).
        service: Service node that CONTAINS the top-level packages and EXPOSES the endpoints (default: folder name).
        specs: OpenAPI files to use besides those found under ``path``.
        full: re-read every file even when its size, mtime and hash are unchanged.
        coverage: also run the repository's tests under coverage.py and add ``TESTS`` edges from per-test contexts
            (:mod:`pilotage.graph.ingest.coverage`; runs the repository's code).
        coverage_timeout_s: wall-clock bound of that test run (seconds).

    Returns:
        The report; ``report.ingested == 0`` means nothing could be ingested (the CLI exits 1).

    Raises:
        InputError: ``path`` does not exist.
        ConfigError: the graph backend has no bulk write (only ``sqlite://`` has).
    """
    started = time.perf_counter()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder", hint="give the repository folder to ingest", path=str(path))
    if not hasattr(graph, "write_batch"):
        raise ConfigError(f"graph ingest needs the sqlite:// graph store, not {graph.url}", hint="set graph_url")
    root = path.resolve()
    service = service or root.name
    report = IngestReport(root=str(root), service=service)
    files, spec_candidates, report.skipped = discover(root)
    report.files = len(files)
    stored, stored_symbols = _stored(graph, str(root))
    modules = _collect(files, stored, full, report.skipped)
    changed = {n: m for n, m in modules.items() if m.parsed is not None}
    report.parsed, report.unchanged = len(changed), len(modules) - len(changed)
    removed = [n for n in stored if n not in modules]
    report.removed = len(removed)
    imports = _imports(modules, report.skipped, report)

    known, batch = _plan(modules, changed, removed, stored_symbols)
    aliases = {n: m.props.get("aliases") or {} for n, m in modules.items() if m.is_package}
    base = {"root": str(root), "service": service}
    for m in modules.values():
        batch.node("Module", m.name, {**m.props, **base, "name": m.name})
    for m in changed.values():
        _module_batch(batch, m, imports.get(m.name, (set(), "ast")), modules, known, aliases, base)
    _package_batch(batch, modules, service, base)
    found_specs, spec_skips = find_specs(spec_candidates, [s.resolve() for s in specs or []])
    report.skipped.extend(spec_skips)
    unmatched = endpoint_batch(batch, graph, modules_routes(modules), found_specs, known, service, str(root))
    report.endpoints, report.endpoints_unmatched = batch.endpoints, unmatched
    for kind, key, props in batch.merges:
        graph.upsert_node(kind, key, props)
    report.nodes_written, report.edges_written = graph.write_batch(
        batch.nodes, batch.edges, delete_nodes=batch.delete_nodes, delete_edges_from=batch.delete_edges_from
    )
    report.commit = _link_commit(graph, root, service) if report.ingested else None
    if coverage and report.ingested:
        contexts, status = coverage_contexts(root, coverage_timeout_s)
        edges, stale = coverage_edges(graph, str(root), contexts)
        graph.write_batch(edges=edges, delete_edges=stale)
        report.coverage = {"status": status, "edges": len(edges), "stale_removed": len(stale)}
    report.seconds = time.perf_counter() - started
    return report


def _link_commit(graph: Graph, root: Path, service: str) -> str | None:
    """Link ``Service -HAS_COMMIT-> Commit:<HEAD sha>`` when ``root`` is in a git checkout; return the sha or None.

    The codegen agent writes the same ``Commit:<sha>`` nodes, and deployments, test runs and metric samples hang
    off them (``OF``, ``TESTED_BY``, ``MEASURED``), so ingested code and delivery facts meet on one node.
    """
    import subprocess

    try:
        done = subprocess.run(
            ["git", "-C", str(root if root.is_dir() else root.parent), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    sha = done.stdout.strip()
    if done.returncode != 0 or len(sha) != 40:
        return None
    commit = graph.upsert_node("Commit", sha, {"sha": sha, "root": str(root)})
    graph.upsert_edge(node_id("Service", service), "HAS_COMMIT", commit.id, {"source": "ingest"})
    return sha


def modules_routes(modules: dict[str, _Module]) -> list[tuple[str, str, str, int]]:
    """Return ``(METHOD, /path, handler qualname, line)`` of every route decorator in ``modules``."""
    return [(r[0], r[1], r[2], r[3]) for m in modules.values() for r in m.props.get("routes") or []]


def _module_batch(
    batch: Batch,
    m: _Module,
    imported_via: tuple[set[str], str],
    modules: dict[str, _Module],
    known: dict[str, str],
    aliases: dict[str, dict[str, str]],
    base: dict[str, Any],
) -> None:
    """Add a changed module's symbols and its DEFINES, IMPORTS, CALLS and TESTS edges to ``batch``."""
    parsed = m.parsed
    assert parsed is not None
    mid = node_id("Module", m.name)
    batch.delete_edges_from.append((mid, ("DEFINES", "IMPORTS")))
    lines: dict[str, int] = {}
    for target, line in parsed.imports:
        lines.setdefault(target, line)
    imported, source = imported_via
    for dst in sorted(imported):
        if dst in modules:
            batch.edge(mid, "IMPORTS", node_id("Module", dst), {"source": source, "line": lines.get(dst)})
    for sym in parsed.symbols:
        short = sym.qualname[len(m.name) + 1 :]
        props = {**base, "module": m.name, "name": short, "line": sym.line, "end_line": sym.end_line}
        batch.node(sym.kind, sym.qualname, props)
        batch.edge(mid, "DEFINES", node_id(sym.kind, sym.qualname), {"line": sym.line})
    kinds = {s.qualname: s.kind for s in parsed.symbols}
    for sym in parsed.symbols:  # a class DEFINES its methods (and nested classes)
        owner = sym.qualname.rpartition(".")[0]
        if kinds.get(owner) == "Class":
            batch.edge(node_id("Class", owner), "DEFINES", node_id(sym.kind, sym.qualname), {"line": sym.line})
    for caller, target, line in parsed.calls:
        callee = resolve_call(target, m.name, parsed.aliases, known, aliases)
        if callee is None or callee == caller or caller not in kinds:
            continue
        src = node_id(kinds[caller], caller)
        batch.edge(src, "CALLS", node_id(known[callee], callee), {"line": line, "approximate": True})
        if kinds[caller] == "Test" and known[callee] != "Test":
            batch.edge(src, "TESTS", node_id(known[callee], callee), {"source": "calls", "line": line})
    tested = [dst for dst in sorted(imported) if dst in modules and not modules[dst].props.get("is_test")]
    for sym in (s for s in parsed.symbols if s.kind == "Test"):
        for dst in tested:
            batch.edge(node_id("Test", sym.qualname), "TESTS", node_id("Module", dst), {"source": "imports"})


def _package_batch(batch: Batch, modules: dict[str, _Module], service: str, base: dict[str, Any]) -> None:
    """Add Package nodes and the CONTAINS tree Service → Package → (sub-)Package/Module."""
    batch.node_merge("Service", service, {"name": service})
    sid = node_id("Service", service)
    for name, m in modules.items():
        parent = name if m.is_package else name.rpartition(".")[0]
        if m.is_package:
            batch.node("Package", name, {**base, "name": name, "path": str(m.path.parent)})
            up = name.rpartition(".")[0]
            if up in modules:
                batch.edge(node_id("Package", up), "CONTAINS", node_id("Package", name), {})
            else:
                batch.edge(sid, "CONTAINS", node_id("Package", name), {})
        if parent and parent in modules:
            batch.edge(node_id("Package", parent), "CONTAINS", node_id("Module", name), {})
        elif not m.is_package:
            batch.edge(sid, "CONTAINS", node_id("Module", name), {})
