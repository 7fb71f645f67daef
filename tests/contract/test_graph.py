"""Shared behaviour every knowledge-graph backend must have; subclassed per backend (issue #4).

sqlite always runs; neo4j runs only when ``PILOTAGE_NEO4J_URL`` is set (``neo4j://USER:PASS@HOST:7687``), and
then deletes every ``:Pilotage`` / ``:PilotageMeta`` node of that database before each test: point it at a
throw-away database. No Neo4j server runs where Pilotage is built, so that half is untested here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pilotage.errors import ConfigError, InputError
from pilotage.graph.base import Graph
from pilotage.graph.sqlite import SQLiteGraph
from pilotage.registry import backend_class

NEO4J_URL = os.environ.get("PILOTAGE_NEO4J_URL", "")


class GraphContract:
    """Subclasses provide ``make_graph`` and the queries below in their own language."""

    #: A query with parameter ``kind`` returning one row ``{"n": number of nodes of that kind}``.
    count_query = ""
    #: A query that does not parse, and one that tries to write.
    bad_query = ""
    write_query = ""

    def make_graph(self, tmp_path: Path) -> Graph:
        raise NotImplementedError

    def test_upsert_merges_props_and_returns_the_stored_node(self, tmp_path: Path) -> None:
        with self.make_graph(tmp_path) as g:
            first = g.upsert_node("Service", "checkout", {"owner": "team-a", "tags": ["x"]})
            assert (first.id, first.kind, first.key) == ("Service:checkout", "Service", "checkout")
            merged = g.upsert_node("Service", "checkout", {"tier": 1, "nested": {"a": [1, 2]}})
            expected = {"owner": "team-a", "tags": ["x"], "tier": 1, "nested": {"a": [1, 2]}}
            assert merged.props == expected
            node = g.get_node("Service:checkout")
            assert node is not None and node.props == expected and node.kind == "Service"
            assert g.get_node("Service:nope") is None

    def test_edges_merge_and_neighbours_follow_direction_and_type(self, tmp_path: Path) -> None:
        with self.make_graph(tmp_path) as g:
            svc = g.upsert_node("Service", "s")
            spec = g.upsert_node("Spec", "s@1")
            ep = g.upsert_node("Endpoint", "s GET /x")
            g.upsert_edge(svc.id, "HAS_SPEC", spec.id, {"current": True})
            edge = g.upsert_edge(svc.id, "HAS_SPEC", spec.id, {"digest": "abc"})
            assert edge.props == {"current": True, "digest": "abc"}
            g.upsert_edge(spec.id, "DEFINES", ep.id)
            g.upsert_edge(svc.id, "EXPOSES", ep.id)
            out = [(e.type, n.id) for e, n in g.neighbours(svc.id)]
            assert out == [("HAS_SPEC", "Spec:s@1"), ("EXPOSES", "Endpoint:s GET /x")]
            [(e, n)] = g.neighbours(svc.id, "HAS_SPEC")
            assert (e.src, e.type, e.dst, e.props, n.id) == (svc.id, "HAS_SPEC", spec.id, edge.props, spec.id)
            into = [(e.src, e.type) for e, _ in g.neighbours(ep.id, direction="in")]
            assert into == [("Spec:s@1", "DEFINES"), ("Service:s", "EXPOSES")]
            both = [(e.type, n.id) for e, n in g.neighbours(spec.id, direction="both")]
            assert both == [("DEFINES", "Endpoint:s GET /x"), ("HAS_SPEC", "Service:s")]
            assert g.neighbours(ep.id) == []

    def test_edge_to_a_missing_node_is_an_input_error(self, tmp_path: Path) -> None:
        with self.make_graph(tmp_path) as g:
            g.upsert_node("Service", "a")
            with pytest.raises(InputError, match="no node Spec:missing"):
                g.upsert_edge("Service:a", "HAS_SPEC", "Spec:missing")
            assert g.neighbours("Service:a") == []

    def test_nodes_in_insertion_order_by_kind_with_limit(self, tmp_path: Path) -> None:
        with self.make_graph(tmp_path) as g:
            for key in ("c", "a", "b"):
                g.upsert_node("Commit", key)
                g.upsert_node("TestRun", f"r-{key}")
            g.upsert_node("Commit", "c", {"again": True})  # an update keeps the place
            assert [n.key for n in g.nodes("Commit")] == ["c", "a", "b"]
            assert [n.id for n in g.nodes(limit=3)] == ["Commit:c", "TestRun:r-c", "Commit:a"]
            assert len(g.nodes()) == 6 and g.nodes("Nothing") == []

    def test_query_in_the_backends_language_is_read_only(self, tmp_path: Path) -> None:
        with self.make_graph(tmp_path) as g:
            for i in range(3):
                g.upsert_node("Endpoint", f"GET /x{i}")
            g.upsert_node("Service", "s")
            assert g.query(self.count_query, {"kind": "Endpoint"}) == [{"n": 3}]
            with pytest.raises(InputError, match="graph query failed"):
                g.query(self.bad_query)
            with pytest.raises(InputError, match="graph query failed"):
                g.query(self.write_query)
            assert len(g.nodes()) == 4

    def test_persists_across_connections(self, tmp_path: Path) -> None:
        with self.make_graph(tmp_path) as g:
            g.upsert_node("Model", "svc/canary", {"alpha": 2.0, "beta": 1.0})
            g.upsert_node("Deployment", "d1")
            g.upsert_edge("Deployment:d1", "COUNTED_IN", "Model:svc/canary", {"outcome": "promoted"})
        with self.reopen(tmp_path) as again:
            node = again.get_node("Model:svc/canary")
            assert node is not None and node.props == {"alpha": 2.0, "beta": 1.0}
            [(edge, _)] = again.neighbours("Deployment:d1")
            assert edge.props == {"outcome": "promoted"}

    def reopen(self, tmp_path: Path) -> Graph:
        """A second connection to the same store (default: ``make_graph`` without wiping)."""
        raise NotImplementedError


class TestSQLiteGraph(GraphContract):
    count_query = "SELECT count(*) AS n FROM nodes WHERE kind = :kind"
    bad_query = "SELEC nonsense"
    write_query = "DELETE FROM nodes"

    def make_graph(self, tmp_path: Path) -> Graph:
        graph: Graph = backend_class("graph", f"sqlite:///{tmp_path}/g.db")(f"sqlite:///{tmp_path}/g.db")
        assert isinstance(graph, SQLiteGraph)
        return graph

    def reopen(self, tmp_path: Path) -> Graph:
        return self.make_graph(tmp_path)


@pytest.mark.integration
@pytest.mark.skipif(not NEO4J_URL, reason="PILOTAGE_NEO4J_URL is not set: no Neo4j server (untested here)")
class TestNeo4jGraph(GraphContract):
    count_query = "MATCH (n:Pilotage {kind: $kind}) RETURN count(n) AS n"
    bad_query = "MATCH (n RETURN n"
    write_query = "CREATE (n:Pilotage {id: 'x'}) RETURN n"

    def make_graph(self, tmp_path: Path) -> Graph:
        from pilotage.graph.neo4j import Neo4jGraph

        graph = backend_class("graph", NEO4J_URL)(NEO4J_URL)
        assert isinstance(graph, Neo4jGraph)

        def wipe(tx: Any) -> None:
            tx.run("MATCH (n) WHERE n:Pilotage OR n:PilotageMeta DETACH DELETE n").consume()

        graph.upsert_node("Service", "wipe-probe")  # connects and creates the constraint
        graph._write(wipe, "wipe")
        return graph

    def reopen(self, tmp_path: Path) -> Graph:
        graph: Graph = backend_class("graph", NEO4J_URL)(NEO4J_URL)
        return graph


def test_neo4j_url_is_registered_and_checked_without_a_server() -> None:
    """The neo4j:// scheme resolves to the driver-backed class; a bad URL is a ConfigError before any I/O."""
    pytest.importorskip("neo4j", reason="the [neo4j] extra is not installed")
    from pilotage.graph.neo4j import Neo4jGraph

    assert backend_class("graph", "neo4j://u:p@localhost:7687/graphdb") is Neo4jGraph
    graph = Neo4jGraph("neo4j://u:s%40cret@db.example:7687/graphdb")  # no connection is made here
    assert (graph._uri, graph._auth, graph._database) == ("neo4j://db.example:7687", ("u", "s@cret"), "graphdb")
    with pytest.raises(ConfigError, match=r"'neo4j://u:\*\*\*@'"):
        Neo4jGraph("neo4j://u:secret@")
    with pytest.raises(InputError, match="not an identifier"):
        graph.upsert_node("Bad Kind", "k")
