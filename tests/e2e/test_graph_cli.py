"""`pilotage graph ingest|query|export` and `pilotage impact` as a user runs them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import h11
import pytest

from tests.e2e.conftest import run_cli
from tests.fixtures.graph_repo import make_repo

pytestmark = pytest.mark.e2e


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_ingest_installed_h11_and_query_known_facts(tmp_path: Path) -> None:
    source = Path(h11.__file__).parent
    result = run_cli(tmp_path, "graph", "ingest", str(source), "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["service"] == "h11" and doc["imports"] == {"h11": "grimp"} and doc["skipped"] == []
    assert doc["ingested"] == len([p for p in source.rglob("*.py") if "__pycache__" not in p.parts])
    # h11/_connection.py: "from ._events import (...)"
    query = run_cli(
        tmp_path,
        "graph",
        "query",
        "SELECT dst, props FROM edges WHERE src = 'Module:h11._connection' AND type = 'IMPORTS' ORDER BY dst",
        "--json",
    )
    assert query.code == 0, query.stderr
    rows = {r["dst"]: r["props"] for r in query.json()}
    assert "Module:h11._events" in rows and '"source": "grimp"' in rows["Module:h11._events"]
    # Connection.send calls Connection.send_with_data_passthrough
    calls = run_cli(
        tmp_path,
        "graph",
        "query",
        "SELECT dst FROM edges WHERE src = 'Function:h11._connection.Connection.send' AND type = 'CALLS'",
        "--json",
    ).json()
    assert {"dst": "Function:h11._connection.Connection.send_with_data_passthrough"} in calls
    again = run_cli(tmp_path, "graph", "ingest", str(source), "--json").json()
    assert (again["parsed"], again["unchanged"]) == (0, doc["ingested"])


def test_ingest_then_impact_selects_tests_and_endpoints(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "shop")
    result = run_cli(tmp_path, "graph", "ingest", str(repo), "--service", "shop")
    assert result.code == 0, result.stderr
    assert "7 Python files, 7 read" in result.stdout and "no handler found for shop GET /missing" in result.stdout
    impact = run_cli(tmp_path, "impact", "shop/shop/pricing.py", "--json")
    assert impact.code == 0, impact.stderr
    doc = impact.json()
    assert [t["key"] for t in doc["tests"]] == ["test_pricing.test_total"]
    assert [e["key"] for e in doc["endpoints"]] == ["shop GET /items"]
    assert [s["key"] for s in doc["services"]] == ["shop"]
    covered = run_cli(tmp_path, "graph", "ingest", str(repo), "--service", "shop", "--coverage", "--json")
    assert covered.code == 0 and covered.json()["coverage"]["status"] == "ok", covered.stderr
    deep = run_cli(tmp_path, "impact", "shop.pricing.discount", "--json").json()
    assert [t["path"] for t in deep["tests"]] == [
        "Test:test_pricing.test_total -TESTS-> Function:shop.pricing.discount"
    ]
    text = run_cli(tmp_path, "impact", "shop.pricing.total")
    assert "test_pricing.test_total  Test:test_pricing.test_total -TESTS-> Function:shop.pricing.total" in text.stdout


def test_export_formats(tmp_path: Path) -> None:
    run_cli(tmp_path, "graph", "ingest", str(make_repo(tmp_path / "shop")))
    graphml = run_cli(tmp_path, "graph", "export", "--format", "graphml", "-o", "g.graphml", "--json")
    assert graphml.code == 0, graphml.stderr
    root = ET.parse(tmp_path / "g.graphml").getroot()
    counts = run_cli(
        tmp_path,
        "graph",
        "query",
        "SELECT (SELECT count(*) FROM nodes) AS n, (SELECT count(*) FROM edges) AS e",
        "--json",
    ).json()
    ns = "{http://graphml.graphdrawing.org/xmlns}"
    assert counts == [{"n": len(root.findall(f".//{ns}node")), "e": len(root.findall(f".//{ns}edge"))}]
    assert counts[0]["n"] == 25 and graphml.json()["lines"] == 10 + 25 + counts[0]["e"]
    mermaid = run_cli(tmp_path, "graph", "export", "--format", "mermaid", "--kind", "Service", "--kind", "Package")
    assert mermaid.stdout.splitlines()[0] == "flowchart LR" and '["Package: shop"]' in mermaid.stdout


def test_bad_inputs_through_the_cli(tmp_path: Path) -> None:
    missing = run_cli(tmp_path, "graph", "ingest", "nope")
    assert missing.code == 2 and "nope: no such file or folder" in one_line_error(missing.stderr)
    (tmp_path / "empty").mkdir()
    empty = run_cli(tmp_path, "graph", "ingest", "empty", "--json")
    assert empty.code == 1 and "nothing ingested from empty: no Python files" in one_line_error(empty.stderr)
    assert empty.json()["files"] == 0
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed/ok.py").write_text("def f():\n    return 1\n")
    (tmp_path / "mixed/bad.py").write_bytes(b"x = '\xff'\n")
    mixed = run_cli(tmp_path, "graph", "ingest", "mixed", "--json")
    assert mixed.code == 0 and mixed.stderr == ""
    assert [s["reason"] for s in mixed.json()["skipped"]] == ["not UTF-8: byte 5 (invalid start byte)"]
    bad_sql = run_cli(tmp_path, "graph", "query", "DELETE FROM nodes")
    assert bad_sql.code == 2 and "graph query failed" in one_line_error(bad_sql.stderr)
    unknown = run_cli(tmp_path, "impact", "no.such.symbol")
    assert unknown.code == 2 and "no.such.symbol: no module, symbol or file" in one_line_error(unknown.stderr)


def test_impact_since_reads_git_diff_of_the_ingested_repository(tmp_path: Path) -> None:
    from pilotage.codegen import git

    repo = git.init_repo(make_repo(tmp_path / "shop"))
    base = git.commit_all(repo, "baseline")
    (repo / "shop/models.py").write_text((repo / "shop/models.py").read_text().replace("return 1", "return 2"))
    assert run_cli(tmp_path, "graph", "ingest", "shop").code == 0
    result = run_cli(tmp_path, "impact", "shop", "--since", base, "--json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["files"] == ["shop/models.py"] and doc["changed"] == ["Module:shop.models"]
    assert [t["key"] for t in doc["tests"]] == ["test_models.test_price"]
    assert [e["key"] for e in doc["endpoints"]] == ["shop GET /items/{item_id}"]
    text = run_cli(tmp_path, "impact", "shop", "--since", base)
    assert f"changed since {base} in {repo.resolve()}: 1 files, 1 in the graph" in text.stdout
    bad = run_cli(tmp_path, "impact", "shop", "--since", "nope")
    assert bad.code == 2 and "impact --since nope: git diff" in one_line_error(bad.stderr)
