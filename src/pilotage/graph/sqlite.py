"""``sqlite:///PATH``: the embedded knowledge-graph store (the default).

Two tables, ``nodes(id, kind, key, props)`` and ``edges(src, type, dst, props)``, in a SQLite database in WAL
mode so several processes can read while one writes (``busy_timeout`` 10 s). ``query`` runs read-only SQL
against those tables; recursive CTEs walk paths (see ``docs/architecture.md``).
``sqlite:///:memory:`` gives a private in-memory graph (tests).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pilotage.errors import BackendCorrupt, BackendError, ConfigError, InputError
from pilotage.graph.base import Edge, Graph, Node, node_id
from pilotage.secrets import mask

__all__ = ["SQLiteGraph"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    id    TEXT NOT NULL UNIQUE,
    kind  TEXT NOT NULL,
    key   TEXT NOT NULL,
    props TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS nodes_kind ON nodes(kind);
CREATE TABLE IF NOT EXISTS edges (
    src   TEXT NOT NULL REFERENCES nodes(id),
    type  TEXT NOT NULL,
    dst   TEXT NOT NULL REFERENCES nodes(id),
    props TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (src, type, dst)
);
CREATE INDEX IF NOT EXISTS edges_dst ON edges(dst, type);
"""


def _path_from_url(url: str) -> str:
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"graph URL {url!r} is not sqlite:///PATH", hint="use sqlite:///.pilotage/graph.db")
    return url[len("sqlite:///") :] or ":memory:"


class SQLiteGraph(Graph):
    """Property graph in one SQLite file.

    Args:
        url: ``sqlite:///relative/or/absolute/path.db`` or ``sqlite:///:memory:``.

    Raises:
        ConfigError: the URL is not a sqlite URL (raised by the constructor, which does no I/O otherwise).
    """

    def __init__(self, url: str = "sqlite:///.pilotage/graph.db") -> None:
        self.url = url
        self._path = _path_from_url(url)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                if self._path != ":memory:":
                    Path(self._path).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self._path, timeout=10.0, check_same_thread=False, isolation_level=None)
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
            except sqlite3.DatabaseError as exc:
                raise BackendCorrupt(
                    f"graph database {self._path} cannot be opened: {exc}",
                    hint=f"move {self._path} aside; the graph is re-derived by the next run",
                    path=self._path,
                ) from exc
            self._conn = conn
        return self._conn

    @staticmethod
    def _node(row: sqlite3.Row) -> Node:
        return Node(id=row["id"], kind=row["kind"], key=row["key"], props=json.loads(row["props"]))

    def upsert_node(self, kind: str, key: str, props: dict[str, Any] | None = None) -> Node:
        """Create the node or merge ``props`` into it (top-level keys replaced); return the stored node."""
        props = mask(props or {})  # issue 15: no registered secret reaches the graph
        nid = node_id(kind, key)
        with self._lock:
            db = self._db()
            try:
                db.execute("BEGIN IMMEDIATE")
                row = db.execute("SELECT props FROM nodes WHERE id = ?", (nid,)).fetchone()
                merged = {**(json.loads(row["props"]) if row else {}), **(props or {})}
                text = json.dumps(merged, sort_keys=True, default=str)
                if row:
                    db.execute("UPDATE nodes SET props = ? WHERE id = ?", (text, nid))
                else:
                    db.execute("INSERT INTO nodes(id, kind, key, props) VALUES (?, ?, ?, ?)", (nid, kind, key, text))
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                db.execute("ROLLBACK") if db.in_transaction else None
                raise BackendError(f"graph {self._path}: cannot write node {nid}: {exc}") from exc
        return Node(nid, kind, key, merged)

    def upsert_edge(self, src: str, type: str, dst: str, props: dict[str, Any] | None = None) -> Edge:
        """Create ``src -type-> dst`` or merge ``props`` into it. Raises InputError when a node is missing."""
        props = mask(props or {})  # issue 15: no registered secret reaches the graph
        with self._lock:
            db = self._db()
            try:
                db.execute("BEGIN IMMEDIATE")
                found = {r["id"] for r in db.execute("SELECT id FROM nodes WHERE id IN (?, ?)", (src, dst))}
                missing = [n for n in (src, dst) if n not in found]
                if missing:
                    db.execute("ROLLBACK")
                    raise InputError(f"edge {src} -{type}-> {dst}: no node {missing[0]}", hint="upsert the node first")
                row = db.execute(
                    "SELECT props FROM edges WHERE src = ? AND type = ? AND dst = ?", (src, type, dst)
                ).fetchone()
                merged = {**(json.loads(row["props"]) if row else {}), **(props or {})}
                db.execute(
                    "INSERT INTO edges(src, type, dst, props) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(src, type, dst) DO UPDATE SET props = excluded.props",
                    (src, type, dst, json.dumps(merged, sort_keys=True, default=str)),
                )
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                db.execute("ROLLBACK") if db.in_transaction else None
                raise BackendError(f"graph {self._path}: cannot write edge {src}-{type}->{dst}: {exc}") from exc
        return Edge(src, type, dst, merged)

    def get_node(self, id: str) -> Node | None:
        """Return the node with ``id`` or None."""
        with self._lock:
            row = self._db().execute("SELECT * FROM nodes WHERE id = ?", (id,)).fetchone()
        return self._node(row) if row else None

    def neighbours(
        self, id: str, type: str | None = None, direction: Literal["out", "in", "both"] = "out"
    ) -> list[tuple[Edge, Node]]:
        """Return (edge, other node) pairs adjacent to ``id`` in edge-insertion order."""
        out: list[tuple[Edge, Node]] = []
        sides = {"out": [("src", "dst")], "in": [("dst", "src")], "both": [("src", "dst"), ("dst", "src")]}[direction]
        with self._lock:
            db = self._db()
            for here, there in sides:
                sql = (
                    f"SELECT e.src, e.type, e.dst, e.props AS eprops, n.* FROM edges e "  # noqa: S608 - fixed names
                    f"JOIN nodes n ON n.id = e.{there} WHERE e.{here} = ?"
                )
                args: list[Any] = [id]
                if type is not None:
                    sql += " AND e.type = ?"
                    args.append(type)
                for row in db.execute(sql + " ORDER BY e.rowid", args):
                    edge = Edge(row["src"], row["type"], row["dst"], json.loads(row["eprops"]))
                    out.append((edge, self._node(row)))
        return out

    def nodes(self, kind: str | None = None, limit: int = 10_000) -> list[Node]:
        """Return up to ``limit`` nodes (of ``kind`` when given) in insertion order."""
        with self._lock:
            db = self._db()
            if kind is None:
                rows = db.execute("SELECT * FROM nodes ORDER BY seq LIMIT ?", (limit,))
            else:
                rows = db.execute("SELECT * FROM nodes WHERE kind = ? ORDER BY seq LIMIT ?", (kind, limit))
            return [self._node(r) for r in rows]

    def query(self, text: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run one read-only SQL statement over ``nodes`` and ``edges``; return rows as dicts.

        Raises:
            InputError: the SQL does not parse or tries to write (the database is opened read-only for it).
        """
        with self._lock:
            db = self._db()
            try:
                db.execute("PRAGMA query_only = ON")
                rows = db.execute(text, params or {}).fetchall()
            except sqlite3.Error as exc:
                raise InputError(
                    f"graph query failed: {exc}",
                    hint="SQL over tables nodes(id, kind, key, props) and edges(src, type, dst, props)",
                    query=text,
                ) from exc
            finally:
                db.execute("PRAGMA query_only = OFF")
        return [dict(r) for r in rows]

    def write_batch(
        self,
        nodes: Iterable[tuple[str, str, dict[str, Any]]] = (),
        edges: Iterable[tuple[str, str, str, dict[str, Any]]] = (),
        *,
        delete_nodes: Iterable[str] = (),
        delete_edges_from: Iterable[tuple[str, Sequence[str]]] = (),
        delete_edges: Iterable[tuple[str, str, str]] = (),
    ) -> tuple[int, int]:
        """Apply deletions then writes in ONE transaction (bulk path of ``graph ingest``).

        Unlike :meth:`upsert_node`, a written node's ``props`` REPLACE the stored ones (the caller owns them). Edges
        are written without checking their nodes: the caller writes both ends in the same batch or knows they exist.

        Args:
            nodes: ``(kind, key, props)`` triples to insert or replace.
            edges: ``(src id, type, dst id, props)`` to insert or replace.
            delete_nodes: node ids to delete, with every edge that touches them.
            delete_edges_from: ``(src id, edge types)``: delete those outgoing edges first.
            delete_edges: ``(src id, type, dst id)`` of single edges to delete.

        Returns:
            ``(nodes written, edges written)``.

        Raises:
            BackendError: SQLite failed; nothing of the batch is kept.
        """
        with self._lock:
            db = self._db()
            try:
                db.execute("BEGIN IMMEDIATE")
                for src, types in delete_edges_from:
                    marks = ",".join("?" * len(types))
                    db.execute(f"DELETE FROM edges WHERE src = ? AND type IN ({marks})", (src, *types))  # noqa: S608
                db.executemany("DELETE FROM edges WHERE src = ? AND type = ? AND dst = ?", list(delete_edges))
                gone = [(nid,) for nid in delete_nodes]
                db.executemany("DELETE FROM edges WHERE src = ?", gone)
                db.executemany("DELETE FROM edges WHERE dst = ?", gone)
                db.executemany("DELETE FROM nodes WHERE id = ?", gone)
                node_rows = [
                    (node_id(kind, key), kind, key, json.dumps(props, sort_keys=True, default=str))
                    for kind, key, props in nodes
                ]
                db.executemany(
                    "INSERT INTO nodes(id, kind, key, props) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET props = excluded.props",
                    node_rows,
                )
                edge_rows = [(s, t, d, json.dumps(p, sort_keys=True, default=str)) for s, t, d, p in edges]
                db.executemany(
                    "INSERT INTO edges(src, type, dst, props) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(src, type, dst) DO UPDATE SET props = excluded.props",
                    edge_rows,
                )
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                db.execute("ROLLBACK") if db.in_transaction else None
                raise BackendError(f"graph {self._path}: cannot write batch: {exc}") from exc
        return len(node_rows), len(edge_rows)

    def close(self) -> None:
        """Close the connection. Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
