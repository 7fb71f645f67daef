"""What parse_module reads from one file: symbols, resolved relative imports, calls, route decorators."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotage.errors import InputError
from pilotage.graph.ingest.parse import Route, parse_module
from pilotage.graph.ingest.scan import module_name

SOURCE = """
from . import sibling
from ..core import engine as eng
import os.path

class Repo:
    def save(self):
        self.flush()
        eng.start()
        helper()

    def flush(self):
        pass

def helper():
    def inner():
        os.path.join("a")
    return inner

@bp.route("/pets/<int:pet_id>", methods=["GET", "DELETE"])
def pet(pet_id):
    return pet_id

@router.post("/pets")
async def create():
    return None
"""


def test_symbols_imports_calls_and_routes() -> None:
    parsed = parse_module(SOURCE, "app.api.views", is_package=False, is_test=False, filename="views.py")
    assert [(s.kind, s.qualname, s.line) for s in parsed.symbols] == [
        ("Class", "app.api.views.Repo", 6),
        ("Function", "app.api.views.Repo.save", 7),
        ("Function", "app.api.views.Repo.flush", 12),
        ("Function", "app.api.views.helper", 15),
        ("Function", "app.api.views.helper.inner", 16),
        ("Function", "app.api.views.pet", 21),
        ("Function", "app.api.views.create", 25),
    ]
    assert ("app.api.sibling", 2) in parsed.imports and ("app.core.engine", 3) in parsed.imports
    assert parsed.aliases == {"sibling": "app.api.sibling", "eng": "app.core.engine", "os": "os"}
    assert parsed.calls == [
        ("app.api.views.Repo.save", "app.api.views.Repo.flush", 8),
        ("app.api.views.Repo.save", "eng.start", 9),
        ("app.api.views.Repo.save", "helper", 10),
        ("app.api.views.helper.inner", "os.path.join", 17),
    ]
    assert parsed.routes == [
        Route("GET", "/pets/{pet_id}", "app.api.views.pet", 20),
        Route("DELETE", "/pets/{pet_id}", "app.api.views.pet", 20),
        Route("POST", "/pets", "app.api.views.create", 24),
    ]


def test_tests_are_top_level_test_functions_of_test_files() -> None:
    source = "def test_a():\n    def test_inner():\n        pass\n\nclass TestB:\n    def test_c(self):\n        pass\n"
    parsed = parse_module(source, "test_x", is_package=False, is_test=True, filename="test_x.py")
    assert [(s.kind, s.qualname) for s in parsed.symbols] == [
        ("Test", "test_x.test_a"),
        ("Function", "test_x.test_a.test_inner"),
        ("Class", "test_x.TestB"),
        ("Test", "test_x.TestB.test_c"),
    ]


def test_package_relative_import_resolves_from_the_package() -> None:
    parsed = parse_module("from .core import x\n", "app", is_package=True, is_test=False, filename="__init__.py")
    assert parsed.aliases == {"x": "app.core.x"}


def test_syntax_error_names_file_and_line() -> None:
    with pytest.raises(InputError, match=r"bad.py: line 2 syntax error") as info:
        parse_module("x = 1\ndef (:\n", "bad", is_package=False, is_test=False, filename="bad.py")
    assert info.value.context == {"path": "bad.py", "line": 2}


def test_module_name_follows_init_chain(tmp_path: Path) -> None:
    root = tmp_path
    (root / "src/app/sub").mkdir(parents=True)
    (root / "src/app/__init__.py").write_text("")
    (root / "src/app/sub/__init__.py").write_text("")
    (root / "src/app/sub/mod.py").write_text("")
    assert module_name(root / "src/app/sub/mod.py") == ("app.sub.mod", False)
    assert module_name(root / "src/app/sub/__init__.py") == ("app.sub", True)
    assert module_name(root / "src/loose.py") == ("loose", False)
