from pathlib import Path

import pytest

from pilotage.errors import ConfigError, InputError
from pilotage.graph.sqlite import SQLiteGraph


def test_upsert_merges_props_and_edges_link_nodes(tmp_path: Path) -> None:
    with SQLiteGraph(f"sqlite:///{tmp_path}/g.db") as g:
        svc = g.upsert_node("Service", "checkout", {"owner": "team-a"})
        g.upsert_node("Service", "checkout", {"tier": 1})
        spec = g.upsert_node("Spec", "checkout@abc", {"version": "1.0"})
        g.upsert_edge(svc.id, "HAS_SPEC", spec.id, {"current": True})
        node = g.get_node("Service:checkout")
        assert node is not None and node.props == {"owner": "team-a", "tier": 1}
        [(edge, other)] = g.neighbours(svc.id, "HAS_SPEC")
        assert other.id == "Spec:checkout@abc" and edge.props == {"current": True}
        [(edge_in, back)] = g.neighbours(spec.id, direction="in")
        assert back.id == svc.id and edge_in.type == "HAS_SPEC"
        assert [n.key for n in g.nodes("Service")] == ["checkout"]


def test_graph_persists_and_query_runs_sql(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/g.db"
    with SQLiteGraph(url) as g:
        for i in range(3):
            g.upsert_node("Endpoint", f"GET /x{i}")
    with SQLiteGraph(url) as g:
        rows = g.query("SELECT kind, count(*) AS n FROM nodes GROUP BY kind")
        assert rows == [{"kind": "Endpoint", "n": 3}]
        with pytest.raises(InputError, match="graph query failed"):
            g.query("SELEC nonsense")
        with pytest.raises(InputError):
            g.query("DELETE FROM nodes")
        assert len(g.nodes()) == 3


def test_edge_to_missing_node_is_input_error() -> None:
    g = SQLiteGraph("sqlite:///:memory:")
    g.upsert_node("Service", "a")
    with pytest.raises(InputError, match="no node Spec:missing"):
        g.upsert_edge("Service:a", "HAS_SPEC", "Spec:missing")


def test_bad_url_is_config_error() -> None:
    with pytest.raises(ConfigError, match="sqlite:///"):
        SQLiteGraph("neo5j://x")
