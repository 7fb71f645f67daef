"""Bad input for graph ingest: each skipped file is reported with its reason, the rest is still ingested."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pilotage.errors import InputError
from pilotage.graph.ingest import ingest
from pilotage.graph.sqlite import SQLiteGraph


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[SQLiteGraph]:
    with SQLiteGraph(f"sqlite:///{tmp_path}/graph.db") as g:
        yield g


def package(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg/__init__.py").write_text("")
    (root / "pkg/good.py").write_text("import pkg.other\n\n\ndef ok():\n    return 1\n")
    (root / "pkg/other.py").write_text("def helper():\n    return 2\n")
    return root


def reasons(report_skipped: list[object]) -> dict[str, str]:
    return {Path(s.path).name: s.reason for s in report_skipped}  # type: ignore[attr-defined]


def test_syntax_error_is_skipped_with_line(tmp_path: Path, graph: SQLiteGraph) -> None:
    repo = package(tmp_path / "r")
    (repo / "pkg/broken.py").write_text("def f(:\n    pass\n")
    report = ingest(graph, repo)
    assert (report.files, report.parsed) == (4, 3)
    assert reasons(report.skipped)["broken.py"].startswith("line 1 syntax error")
    assert graph.get_node("Function:pkg.good.ok") is not None
    # grimp cannot build a package with an unparsable file: the imports come from ast, and say so
    assert report.imports == {"pkg": "ast: the package has skipped files"}
    [(e, other)] = graph.neighbours("Module:pkg.good", "IMPORTS")
    assert other.id == "Module:pkg.other" and e.props == {"source": "ast", "line": 1}


def test_non_utf8_file_is_skipped(tmp_path: Path, graph: SQLiteGraph) -> None:
    repo = package(tmp_path / "r")
    (repo / "pkg/latin.py").write_bytes(b"name = '\xe9t\xe9'\n")
    report = ingest(graph, repo)
    assert report.parsed == 3
    assert reasons(report.skipped) == {"latin.py": "not UTF-8: byte 8 (invalid continuation byte)"}


def test_symlink_loops_are_skipped(tmp_path: Path, graph: SQLiteGraph) -> None:
    repo = package(tmp_path / "r")
    (repo / "pkg/again").symlink_to(repo / "pkg", target_is_directory=True)  # folder loop
    (repo / "pkg/self.py").symlink_to(repo / "pkg/self.py")  # file loop
    report = ingest(graph, repo)
    assert report.parsed == 3
    found = reasons(report.skipped)
    assert found["again"].startswith("symlink loop:")
    assert found["self.py"].startswith("symlink loop:")


def test_folder_without_python_files_ingests_nothing(tmp_path: Path, graph: SQLiteGraph) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/readme.md").write_text("# nothing here\n")
    report = ingest(graph, tmp_path / "docs")
    assert (report.files, report.ingested, report.skipped) == (0, 0, [])
    assert graph.nodes("Module") == []


def test_missing_path_is_an_input_error(tmp_path: Path, graph: SQLiteGraph) -> None:
    with pytest.raises(InputError, match="no such file or folder") as info:
        ingest(graph, tmp_path / "nope")
    assert info.value.context["path"] == str(tmp_path / "nope")


def test_all_files_bad_ingests_nothing(tmp_path: Path, graph: SQLiteGraph) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r/a.py").write_text("def (\n")
    report = ingest(graph, tmp_path / "r")
    assert (report.files, report.ingested) == (1, 0)
    assert list(reasons(report.skipped)) == ["a.py"]


def test_spec_that_is_not_openapi_is_reported(tmp_path: Path, graph: SQLiteGraph) -> None:
    repo = package(tmp_path / "r")
    notspec = tmp_path / "values.yaml"
    notspec.write_text("replicas: 3\n")
    report = ingest(graph, repo, specs=[notspec])
    assert reasons(report.skipped) == {"values.yaml": "not an OpenAPI document (no openapi/paths keys)"}
