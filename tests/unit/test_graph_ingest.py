"""graph ingest on a small repository: nodes, IMPORTS/DEFINES/CALLS/TESTS edges, endpoints, incremental re-ingest."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilotage.graph.ingest import ingest
from pilotage.graph.sqlite import SQLiteGraph
from tests.fixtures.graph_repo import make_repo


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[SQLiteGraph]:
    with SQLiteGraph(f"sqlite:///{tmp_path}/graph.db") as g:
        yield g


def edge(g: SQLiteGraph, src: str, type_: str, dst: str) -> dict[str, object] | None:
    for e, other in g.neighbours(src, type_):
        if other.id == dst:
            return e.props
    return None


def test_ingest_builds_nodes_and_edges(tmp_path: Path, graph: SQLiteGraph) -> None:
    repo = make_repo(tmp_path / "shop")
    report = ingest(graph, repo)
    assert (report.files, report.parsed, report.skipped) == (7, 7, [])
    assert report.imports == {"shop": "grimp"}
    kinds = {r["kind"]: r["n"] for r in graph.query("SELECT kind, count(*) AS n FROM nodes GROUP BY kind")}
    assert kinds == {"Module": 7, "Package": 1, "Class": 1, "Function": 8, "Test": 2, "Service": 1, "Endpoint": 5}
    assert edge(graph, "Module:shop.api", "IMPORTS", "Module:shop.pricing") == {"source": "grimp", "line": 4}
    assert edge(graph, "Module:test_pricing", "IMPORTS", "Module:shop") == {"source": "ast", "line": 1}
    assert edge(graph, "Module:shop.pricing", "DEFINES", "Function:shop.pricing.total") == {"line": 5}
    assert edge(graph, "Function:shop.pricing.total", "CALLS", "Function:shop.pricing.discount") is not None
    assert edge(graph, "Function:shop.models.Item.price", "CALLS", "Function:shop.models.Item._base") is not None
    assert edge(graph, "Class:shop.models.Item", "DEFINES", "Function:shop.models.Item.price") == {"line": 2}
    assert edge(graph, "Function:shop.api.get_item", "CALLS", "Class:shop.models.Item") is not None
    # `from shop import total` in the test resolves through the package's re-export to shop.pricing.total
    assert edge(graph, "Test:test_pricing.test_total", "TESTS", "Function:shop.pricing.total") == {
        "source": "calls",
        "line": 5,
    }
    assert edge(graph, "Test:test_models.test_price", "TESTS", "Module:shop.models") == {"source": "imports"}
    assert edge(graph, "Service:shop", "CONTAINS", "Package:shop") == {}
    module = graph.get_node("Module:shop.pricing")
    assert module is not None and module.props["path"] == str((repo / "shop/pricing.py").resolve())
    assert len(module.props["sha256"]) == 64


def test_endpoints_link_spec_operations_to_handlers(tmp_path: Path, graph: SQLiteGraph) -> None:
    report = ingest(graph, make_repo(tmp_path / "shop"), service="shop")
    assert report.endpoints_unmatched == ["shop GET /missing"]
    [(e, handler)] = graph.neighbours("Endpoint:shop GET /items/{item_id}", "HANDLED_BY")
    assert handler.id == "Function:shop.api.get_item" and e.props == {"line": 14}
    [(_, flask)] = graph.neighbours("Endpoint:shop POST /orders", "HANDLED_BY")
    assert flask.id == "Function:shop.legacy.create_order"
    node = graph.get_node("Endpoint:shop POST /orders")
    assert node is not None and node.props["operation_id"] == "createOrder" and node.props["in_spec"] is True
    extra = graph.get_node("Endpoint:shop POST /orders/")
    assert extra is not None and extra.props["in_spec"] is False
    assert edge(graph, "Service:shop", "EXPOSES", "Endpoint:shop GET /missing") == {}


def test_reingest_reads_only_changed_files(tmp_path: Path, graph: SQLiteGraph) -> None:
    repo = make_repo(tmp_path / "shop")
    ingest(graph, repo)
    again = ingest(graph, repo)
    assert (again.parsed, again.unchanged, again.removed) == (0, 7, 0)
    pricing = repo / "shop/pricing.py"
    pricing.write_text(pricing.read_text() + "\n\ndef tax(x):\n    return total([x])\n")
    changed = ingest(graph, repo)
    assert (changed.parsed, changed.unchanged) == (1, 6)
    assert edge(graph, "Function:shop.pricing.tax", "CALLS", "Function:shop.pricing.total") is not None
    # edges INTO the re-read module from unchanged ones survive
    assert edge(graph, "Module:shop.api", "IMPORTS", "Module:shop.pricing") is not None
    assert edge(graph, "Test:test_pricing.test_total", "TESTS", "Function:shop.pricing.total") is not None
    # same bytes, new mtime: hashed, not parsed
    os.utime(pricing, ns=(1, 1))
    touched = ingest(graph, repo)
    assert (touched.parsed, touched.unchanged) == (0, 7)


def test_reingest_removes_deleted_files_and_their_symbols(tmp_path: Path, graph: SQLiteGraph) -> None:
    repo = make_repo(tmp_path / "shop")
    ingest(graph, repo)
    (repo / "shop/legacy.py").unlink()
    (repo / "shop/models.py").write_text("class Item:\n    pass\n")
    report = ingest(graph, repo)
    assert (report.removed, report.parsed) == (1, 1)
    assert graph.get_node("Module:shop.legacy") is None
    assert graph.get_node("Function:shop.legacy.create_order") is None
    assert graph.get_node("Function:shop.models.Item.price") is None
    assert graph.get_node("Endpoint:shop POST /orders/") is None  # route gone, not in the spec
    assert graph.neighbours("Endpoint:shop POST /orders", "HANDLED_BY") == []
    assert "shop POST /orders" in report.endpoints_unmatched
    dangling = graph.query("SELECT count(*) AS n FROM edges WHERE dst NOT IN (SELECT id FROM nodes)")
    assert dangling == [{"n": 0}]


def test_write_batch_deletes_edges_of_deleted_nodes(graph: SQLiteGraph) -> None:
    graph.write_batch(
        [("Module", "a", {"x": 1}), ("Module", "b", {})],
        [("Module:a", "IMPORTS", "Module:b", {}), ("Module:b", "IMPORTS", "Module:a", {})],
    )
    graph.write_batch([("Module", "a", {"y": 2})], delete_nodes=["Module:b"])
    node = graph.get_node("Module:a")
    assert node is not None and node.props == {"y": 2}  # replaced, not merged
    assert graph.query("SELECT count(*) AS n FROM edges") == [{"n": 0}]


def test_ingest_of_a_git_checkout_links_the_service_to_its_head_commit(tmp_path: Path) -> None:
    import subprocess

    from pilotage.graph.ingest import ingest
    from pilotage.graph.sqlite import SQLiteGraph

    repo = tmp_path / "svc"
    (repo / "shop").mkdir(parents=True)
    (repo / "shop" / "__init__.py").write_text("")
    (repo / "shop" / "pricing.py").write_text("def total(xs):\n    return sum(xs)\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    graph = SQLiteGraph("sqlite:///:memory:")
    report = ingest(graph, repo, service="shop")
    assert report.commit == sha
    [(edge, commit)] = graph.neighbours("Service:shop", "HAS_COMMIT")
    assert commit.id == f"Commit:{sha}" and edge.props == {"source": "ingest"}
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "m.py").write_text("x = 1\n")
    assert ingest(graph, plain, service="plain").commit is None
