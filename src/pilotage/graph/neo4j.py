"""``neo4j://USER:PASSWORD@HOST:7687[/DATABASE]``: the knowledge graph in a Neo4j server (the ``[neo4j]`` extra).

**Untested here**: no Neo4j server runs where Pilotage is built; the shared contract suite
(``tests/contract/test_graph.py``) runs against it only when ``PILOTAGE_NEO4J_URL`` is set.

Layout, with the official ``neo4j`` driver: every node is ``(:Pilotage:<Kind> {id, kind, key, seq, props})`` and
every edge ``-[:<TYPE> {props, seq}]->`` between two such nodes; ``props`` is the JSON text of the properties
(Neo4j properties cannot hold nested maps), ``seq`` the insertion order from a ``(:PilotageMeta {name: 'seq'})``
counter. Kinds and edge types must be identifiers (``[A-Za-z_][A-Za-z0-9_]*``): they become labels and relationship
types. A uniqueness constraint on ``Pilotage.id`` is created on first use. ``query`` runs Cypher in a read
transaction (a write is refused by the server). ``bolt://``, ``neo4j+s://`` and ``bolt+s://`` URLs work the same.

Limits: ``graph ingest`` and ``impact`` need the SQLite store (bulk ``write_batch``, SQL recursive CTE). The output
of ``pilotage graph export --format cypher`` has its own layout (one label per kind, properties spread), not this one.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pilotage.errors import BackendError, BackendUnavailable, ConfigError, InputError
from pilotage.graph.base import Edge, Graph, Node, node_id
from pilotage.secrets import mask

__all__ = ["Neo4jGraph"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SCHEMES = ("neo4j", "neo4j+s", "neo4j+ssc", "bolt", "bolt+s", "bolt+ssc")
_CONSTRAINT = "CREATE CONSTRAINT pilotage_id IF NOT EXISTS FOR (n:Pilotage) REQUIRE n.id IS UNIQUE"
_ENDS = "MATCH (n:Pilotage) WHERE n.id IN [$a, $b] RETURN n.id AS id"
_SEQ = "MERGE (c:PilotageMeta {name: 'seq'}) ON CREATE SET c.value = 0 SET c.value = c.value + 1 RETURN c.value AS seq"


def _ident(name: str, what: str) -> str:
    if not _IDENT.match(name):
        raise InputError(f"{what} {name!r} is not an identifier", hint="use letters, digits and _ (e.g. HAS_SPEC)")
    return name


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


class Neo4jGraph(Graph):
    """Property graph in a Neo4j server (untested here: no server runs in this project's CI).

    Args:
        url: ``neo4j://user:password@host:7687/database`` (user, password and database optional; the password
            URL-encoded). ``bolt://`` and the ``+s``/``+ssc`` TLS variants are accepted.

    Raises:
        ConfigError: the URL is not a Neo4j URL, or the ``neo4j`` driver is not installed
            (``pip install 'pilotage[neo4j]'``). The constructor does no I/O; the first call connects.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES or not parts.hostname:
            raise ConfigError(f"graph URL {_redact(url)!r} is not a Neo4j URL", hint="use neo4j://USER:PASS@HOST:7687")
        try:
            import neo4j
        except ImportError as exc:
            raise ConfigError("the neo4j driver is not installed", hint="pip install 'pilotage[neo4j]'") from exc
        self._neo4j = neo4j
        self.url = url
        port = f":{parts.port}" if parts.port else ""
        self._uri = f"{parts.scheme}://{parts.hostname}{port}"
        self._auth = (unquote(parts.username), unquote(parts.password or "")) if parts.username else None
        self._database = parts.path.strip("/") or None
        self._driver: Any = None
        self._lock = threading.RLock()

    # -- plumbing ------------------------------------------------------------------------------------------------
    def _session(self) -> Any:
        with self._lock:
            if self._driver is None:
                driver = self._neo4j.GraphDatabase.driver(self._uri, auth=self._auth)
                try:
                    driver.verify_connectivity()
                    with driver.session(database=self._database) as session:
                        session.run(
                            "CREATE CONSTRAINT pilotage_id IF NOT EXISTS FOR (n:Pilotage) REQUIRE n.id IS UNIQUE"
                        )
                except self._neo4j.exceptions.Neo4jError as exc:
                    driver.close()
                    raise BackendError(f"graph {_redact(self.url)}: {exc}") from exc
                except self._neo4j.exceptions.DriverError as exc:
                    driver.close()
                    raise BackendUnavailable(
                        f"graph {_redact(self.url)} is unreachable: {exc}", hint="start Neo4j or fix graph_url"
                    ) from exc
                self._driver = driver
            return self._driver.session(database=self._database)

    def _write(self, work: Any, what: str) -> Any:
        try:
            with self._session() as session:
                return session.execute_write(work)
        except InputError:
            raise
        except self._neo4j.exceptions.Neo4jError as exc:
            raise BackendError(f"graph {_redact(self.url)}: cannot write {what}: {exc}") from exc
        except self._neo4j.exceptions.DriverError as exc:
            raise BackendUnavailable(f"graph {_redact(self.url)}: cannot write {what}: {exc}") from exc

    def _read(self, text: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            with self._session() as session:
                return list(session.execute_read(lambda tx: tx.run(text, params).data()))
        except self._neo4j.exceptions.DriverError as exc:
            raise BackendUnavailable(f"graph {_redact(self.url)}: {exc}") from exc

    @staticmethod
    def _node(row: dict[str, Any]) -> Node:
        return Node(id=row["id"], kind=row["kind"], key=row["key"], props=json.loads(row["props"] or "{}"))

    # -- the contract --------------------------------------------------------------------------------------------
    def upsert_node(self, kind: str, key: str, props: dict[str, Any] | None = None) -> Node:
        """Create the node or merge ``props`` into it (top-level keys replaced); return the stored node.

        Raises:
            InputError: ``kind`` is not an identifier.
            BackendError: the server refused the write; BackendUnavailable: it cannot be reached.
        """
        props = mask(props or {})  # issue 15: no registered secret reaches the graph
        nid = node_id(kind, key)
        label = _ident(kind, "node kind")

        def work(tx: Any) -> dict[str, Any]:
            # SET takes the node's write lock before RETURN reads props: concurrent upserts of one node serialise.
            row = tx.run(
                f"MERGE (n:Pilotage {{id: $id}}) ON CREATE SET n:`{label}`, n.kind = $kind, n.key = $key, "
                "n.props = '{}', n.fresh = true SET n.kind = $kind "
                "WITH n, coalesce(n.fresh, false) AS fresh REMOVE n.fresh RETURN n.props AS props, fresh",
                {"id": nid, "kind": kind, "key": key},
            ).single()
            merged = {**json.loads(row["props"] or "{}"), **(props or {})}
            text = json.dumps(merged, sort_keys=True, default=str)
            if row["fresh"]:
                seq = tx.run(_SEQ).single()["seq"]
                tx.run("MATCH (n:Pilotage {id: $id}) SET n.props = $props, n.seq = $seq", id=nid, props=text, seq=seq)
            else:
                tx.run("MATCH (n:Pilotage {id: $id}) SET n.props = $props", id=nid, props=text)
            return merged

        merged = self._write(work, f"node {nid}")
        return Node(nid, kind, key, merged)

    def upsert_edge(self, src: str, type: str, dst: str, props: dict[str, Any] | None = None) -> Edge:
        """Create ``src -type-> dst`` or merge ``props`` into it.

        Raises:
            InputError: a node is missing, or ``type`` is not an identifier.
            BackendError: the server refused the write; BackendUnavailable: it cannot be reached.
        """
        props = mask(props or {})  # issue 15: no registered secret reaches the graph
        rel = _ident(type, "edge type")

        def work(tx: Any) -> dict[str, Any]:
            found = {
                r["id"] for r in tx.run("MATCH (n:Pilotage) WHERE n.id IN [$a, $b] RETURN n.id AS id", a=src, b=dst)
            }
            missing = [n for n in (src, dst) if n not in found]
            if missing:
                raise InputError(f"edge {src} -{type}-> {dst}: no node {missing[0]}", hint="upsert the node first")
            row = tx.run(
                f"MATCH (a:Pilotage {{id: $src}}), (b:Pilotage {{id: $dst}}) MERGE (a)-[r:`{rel}`]->(b) "
                "ON CREATE SET r.props = '{}', r.fresh = true SET r.props = coalesce(r.props, '{}') "
                "WITH r, coalesce(r.fresh, false) AS fresh REMOVE r.fresh RETURN r.props AS props, fresh",
                src=src,
                dst=dst,
            ).single()
            merged = {**json.loads(row["props"] or "{}"), **(props or {})}
            text = json.dumps(merged, sort_keys=True, default=str)
            seq = tx.run(_SEQ).single()["seq"] if row["fresh"] else None
            tx.run(
                f"MATCH (:Pilotage {{id: $src}})-[r:`{rel}`]->(:Pilotage {{id: $dst}}) "
                "SET r.props = $props, r.seq = coalesce(r.seq, $seq)",
                src=src,
                dst=dst,
                props=text,
                seq=seq,
            )
            return merged

        merged = self._write(work, f"edge {src}-{type}->{dst}")
        return Edge(src, type, dst, merged)

    def get_node(self, id: str) -> Node | None:
        """Return the node with ``id`` or None."""
        rows = self._read(
            "MATCH (n:Pilotage {id: $id}) RETURN n.id AS id, n.kind AS kind, n.key AS key, n.props AS props", {"id": id}
        )
        return self._node(rows[0]) if rows else None

    def neighbours(
        self, id: str, type: str | None = None, direction: Literal["out", "in", "both"] = "out"
    ) -> list[tuple[Edge, Node]]:
        """Return (edge, other node) pairs adjacent to ``id``, out-edges before in-edges, each in insertion order."""
        rel = f":`{_ident(type, 'edge type')}`" if type is not None else ""
        patterns = {
            "out": ["(h:Pilotage {id: $id})-[r%s]->(o:Pilotage)"],
            "in": ["(h:Pilotage {id: $id})<-[r%s]-(o:Pilotage)"],
            "both": ["(h:Pilotage {id: $id})-[r%s]->(o:Pilotage)", "(h:Pilotage {id: $id})<-[r%s]-(o:Pilotage)"],
        }[direction]
        out: list[tuple[Edge, Node]] = []
        for pattern in patterns:
            rows = self._read(
                f"MATCH {pattern % rel} RETURN startNode(r).id AS src, type(r) AS type, endNode(r).id AS dst, "
                "r.props AS eprops, o.id AS id, o.kind AS kind, o.key AS key, o.props AS props ORDER BY r.seq",
                {"id": id},
            )
            for row in rows:
                edge = Edge(row["src"], row["type"], row["dst"], json.loads(row["eprops"] or "{}"))
                out.append((edge, self._node(row)))
        return out

    def nodes(self, kind: str | None = None, limit: int = 10_000) -> list[Node]:
        """Return up to ``limit`` nodes (of ``kind`` when given) in insertion order."""
        where = "WHERE n.kind = $kind " if kind is not None else ""
        rows = self._read(
            f"MATCH (n:Pilotage) {where}RETURN n.id AS id, n.kind AS kind, n.key AS key, n.props AS props "
            "ORDER BY n.seq LIMIT $limit",
            {"kind": kind, "limit": limit},
        )
        return [self._node(r) for r in rows]

    def query(self, text: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run one Cypher query in a read transaction; return rows as dicts (nodes and relationships as dicts).

        Raises:
            InputError: the Cypher does not parse, or tries to write (refused in a read transaction).
            BackendUnavailable: the server cannot be reached.
        """
        try:
            return self._read(text, params or {})
        except self._neo4j.exceptions.Neo4jError as exc:
            raise InputError(
                f"graph query failed: {exc.message or exc}",
                hint="Cypher over (:Pilotage {id, kind, key, props}) nodes; props is JSON text",
                query=text,
            ) from exc

    def close(self) -> None:
        """Close the driver. Idempotent."""
        with self._lock:
            if self._driver is not None:
                self._driver.close()
                self._driver = None
