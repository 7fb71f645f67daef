"""Impact analysis and export on the small repository of tests/fixtures/graph_repo.py."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilotage.errors import InputError
from pilotage.graph.export import export
from pilotage.graph.impact import impact, impact_since
from pilotage.graph.ingest import ingest
from pilotage.graph.sqlite import SQLiteGraph
from tests.fixtures.graph_repo import make_repo


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[SQLiteGraph, Path]]:
    repo = make_repo(tmp_path / "shop")
    with SQLiteGraph(f"sqlite:///{tmp_path}/graph.db") as g:
        ingest(g, repo)
        yield g, repo


def by_key(items: list[dict[str, object]]) -> dict[object, object]:
    return {i["key"]: i["path"] for i in items}


def test_impact_of_a_file_lists_modules_endpoints_services_tests_with_paths(shop: tuple[SQLiteGraph, Path]) -> None:
    graph, repo = shop
    doc = impact(graph, str(repo / "shop/pricing.py")).to_dict()
    assert doc["changed"] == ["Module:shop.pricing"]
    assert by_key(doc["tests"]) == {
        "test_pricing.test_total": "Test:test_pricing.test_total -TESTS-> Function:shop.pricing.total",
    }
    assert by_key(doc["endpoints"])["shop GET /items"] == (
        "Endpoint:shop GET /items -HANDLED_BY-> Function:shop.api.list_items -CALLS-> Function:shop.pricing.total"
    )
    assert "shop GET /items/{item_id}" not in by_key(doc["endpoints"])  # get_item does not call pricing
    assert set(by_key(doc["modules"])) == {"shop.pricing", "shop", "shop.api", "test_pricing"}
    assert by_key(doc["services"]) == {
        "shop": "Service:shop -CONTAINS-> Package:shop -CONTAINS-> Module:shop.pricing",
    }


def test_impact_of_a_symbol_follows_calls_and_imports(shop: tuple[SQLiteGraph, Path]) -> None:
    graph, _ = shop
    doc = impact(graph, "Item._base").to_dict()
    assert doc["changed"] == ["Function:shop.models.Item._base"]
    assert by_key(doc["tests"]) == {
        "test_models.test_price": (
            "Test:test_models.test_price -TESTS-> Class:shop.models.Item -DEFINES-> Function:shop.models.Item._base"
        )
    }
    assert by_key(doc["endpoints"])["shop GET /items/{item_id}"] == (
        "Endpoint:shop GET /items/{item_id} -HANDLED_BY-> Function:shop.api.get_item -CALLS-> Class:shop.models.Item "
        "-DEFINES-> Function:shop.models.Item._base"
    )
    assert "shop GET /items" not in by_key(doc["endpoints"])


def test_impact_of_unknown_target_is_an_input_error(shop: tuple[SQLiteGraph, Path]) -> None:
    graph, _ = shop
    with pytest.raises(InputError, match="no_such_thing: no module, symbol or file"):
        impact(graph, "no_such_thing")


def test_export_graphml_cypher_mermaid(shop: tuple[SQLiteGraph, Path]) -> None:
    graph, _ = shop
    n_nodes = graph.query("SELECT count(*) AS n FROM nodes")[0]["n"]
    n_edges = graph.query("SELECT count(*) AS n FROM edges")[0]["n"]
    root = ET.fromstring("\n".join(export(graph, "graphml")))
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    assert len(root.findall(".//g:node", ns)) == n_nodes and len(root.findall(".//g:edge", ns)) == n_edges
    cypher = list(export(graph, "cypher"))
    assert len(cypher) == n_nodes + n_edges
    assert any(
        line.startswith("MERGE (n:`Function` {id: 'Function:shop.pricing.total'}) SET n += {") and "`line`: 5" in line
        for line in cypher
    )
    assert (
        "MATCH (a {id: 'Module:shop.api'}), (b {id: 'Module:shop.pricing'}) MERGE (a)-[r:`IMPORTS`]->(b) "
        "SET r += {`line`: 4, `source`: 'grimp'};"
    ) in cypher
    mermaid = list(export(graph, "mermaid", ["Service", "Package"]))
    assert mermaid == ["flowchart LR", '    n0["Service: shop"]', '    n1["Package: shop"]', "    n0 -->|CONTAINS| n1"]
    with pytest.raises(InputError, match="unknown export format 'dot'"):
        export(graph, "dot")


def test_impact_since_a_revision_is_the_union_over_the_files_git_lists(tmp_path: Path) -> None:
    from pilotage.codegen import git

    repo = git.init_repo(make_repo(tmp_path / "shop"))
    (repo / "NOTES.txt").write_text("v1\n")
    base = git.commit_all(repo, "baseline")
    with (repo / "shop/pricing.py").open("a") as f:  # committed change
        f.write("\n\ndef vat(price):\n    return price * 0.2\n")
    git.commit_all(repo, "vat")
    (repo / "shop/models.py").write_text((repo / "shop/models.py").read_text().replace("return 1", "return 2"))
    (repo / "NOTES.txt").write_text("v2\n")  # uncommitted changes count too (diff against the working tree)
    with SQLiteGraph(f"sqlite:///{tmp_path}/graph.db") as graph:
        ingest(graph, repo)
        doc = impact_since(graph, str(repo), base).to_dict()
        assert doc["files"] == ["NOTES.txt", "shop/models.py", "shop/pricing.py"]
        assert doc["not_in_graph"] == ["NOTES.txt"] and doc["repo"] == str(repo.resolve())
        assert doc["changed"] == ["Module:shop.models", "Module:shop.pricing"]
        assert sorted(by_key(doc["tests"])) == ["test_models.test_price", "test_pricing.test_total"]
        assert sorted(by_key(doc["endpoints"])) == ["shop GET /items", "shop GET /items/{item_id}"]
        assert by_key(doc["tests"])["test_pricing.test_total"] == (
            "Test:test_pricing.test_total -TESTS-> Function:shop.pricing.total"
        )
        # a symbol of the repository finds the same repository through its node's root
        assert impact_since(graph, "shop.pricing.total", "HEAD").to_dict()["files"] == ["NOTES.txt", "shop/models.py"]
        assert impact_since(graph, str(repo), "HEAD~0").to_dict()["changed"] == ["Module:shop.models"]
        git.git(repo, "stash")
        clean = impact_since(graph, str(repo), "HEAD").to_dict()
        assert (clean["files"], clean["changed"], clean["tests"], clean["endpoints"]) == ([], [], [], [])
        with pytest.raises(InputError, match="impact --since no-such-rev: git diff"):
            impact_since(graph, str(repo), "no-such-rev")
        (tmp_path / "plain").mkdir()
        with pytest.raises(InputError, match="impact --since HEAD: git rev-parse"):
            impact_since(graph, str(tmp_path / "plain"), "HEAD")
