"""TESTS edges from coverage.py per-test contexts (graph ingest --coverage) on the fixture repository."""

from __future__ import annotations

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


def edges_of(graph: SQLiteGraph, test: str) -> dict[str, dict[str, object]]:
    return {other.id: e.props for e, other in graph.neighbours(test, "TESTS")}


def test_coverage_contexts_add_tests_edges_static_analysis_misses(tmp_path: Path, graph: SQLiteGraph) -> None:
    repo = make_repo(tmp_path / "shop")
    report = ingest(graph, repo, coverage=True)
    assert report.coverage == {"status": "ok", "edges": 2, "stale_removed": 0}
    edges = edges_of(graph, "Test:test_pricing.test_total")
    # discount is only reached through total: static analysis does not see it, coverage does
    assert edges["Function:shop.pricing.discount"] == {"source": "coverage", "lines": 1}
    assert edges["Function:shop.pricing.total"] == {"source": "coverage", "lines": 1}
    assert edges["Module:shop"] == {"source": "imports"}

    (repo / "tests/test_pricing.py").write_text("from shop import pricing\n\n\ndef test_total():\n    assert pricing\n")
    again = ingest(graph, repo, coverage=True)
    assert again.coverage is not None and again.coverage["edges"] == 0
    assert "Function:shop.pricing.discount" not in edges_of(graph, "Test:test_pricing.test_total")


def test_coverage_without_tests_keeps_static_edges_and_says_why(tmp_path: Path, graph: SQLiteGraph) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib/mod.py").write_text("def f():\n    return 1\n")
    report = ingest(graph, tmp_path / "lib", coverage=True)
    assert report.coverage is not None and report.coverage["edges"] == 0
    assert "pytest exit 5" in report.coverage["status"]  # pytest: no tests collected
