"""Generation on untrusted documents is bounded in time and memory (issue #15, found by a hostile-input trial).

Before: a ``pattern`` with overlapping quantifiers hung the control plane in ``re.search`` (holding the GIL, so
neither SIGTERM nor a time budget could stop it); ``minLength: 50000000`` made ``pilotage run`` use 3.2 GB; and
``multipleOf: 1e-300`` with ``minimum: 1e300`` ended in ``OverflowError``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pilotage.codegen.examples import MAX_EXAMPLE_SIZE, example
from pilotage.codegen.generator import generate_service
from pilotage.errors import InputError


def _doc(schema: dict[str, Any]) -> dict[str, Any]:
    content = {"application/json": {"schema": schema}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/things": {
                "get": {"operationId": "listThings", "responses": {"200": {"description": "ok", "content": content}}}
            }
        },
    }


@pytest.mark.timeout(60)
def test_a_pattern_that_backtracks_catastrophically_is_refused_in_seconds(tmp_path: Path) -> None:
    schema = {"type": "string", "pattern": "^(a|aa)+$", "example": "a" * 48 + "!"}
    started = time.monotonic()
    with pytest.raises(InputError, match=r"pattern '\^\(a\|aa\)\+\$' takes over .* \(catastrophic backtracking\)"):
        generate_service(_doc(schema), tmp_path / "svc")
    assert time.monotonic() - started < 30  # the old code never returned (measured > 60 s, killed)
    assert not (tmp_path / "svc" / "app").exists()


def test_a_pattern_that_matches_quickly_still_validates_examples(tmp_path: Path) -> None:
    good = generate_service(_doc({"type": "string", "pattern": "^[a-z]+$", "example": "abc"}), tmp_path / "a")
    bad = generate_service(_doc({"type": "string", "pattern": "^[a-z]+$", "example": "ABC"}), tmp_path / "b")
    assert good.warnings == []
    assert bad.warnings == []  # the non-matching example is replaced by a built one that matches (default "string")
    assert "'string'" in (tmp_path / "b" / "app" / "main.py").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        ({"type": "string", "minLength": 50_000_000}, "minLength 50000000"),
        ({"type": "array", "minItems": 3_000, "items": {"type": "array", "minItems": 3_000}}, "minItems 3000"),
        ({"type": "array", "minItems": 1_000, "items": {"type": "string", "minLength": 1_000}}, "minLength 1000"),
    ],
)
def test_an_example_over_the_size_limit_is_refused_naming_the_keyword(
    tmp_path: Path, schema: dict[str, Any], keyword: str
) -> None:
    with pytest.raises(InputError, match=f"exceed {MAX_EXAMPLE_SIZE:,} characters and values \\({keyword}\\)"):
        generate_service(_doc(schema), tmp_path / "svc")


def test_examples_within_the_limit_keep_their_bounds() -> None:
    doc = _doc({})
    assert example(doc, {"type": "string", "minLength": 5_000}) == "string" + "x" * 4_994
    assert len(example(doc, {"type": "array", "minItems": 200, "items": {"type": "integer"}})) == 200


def test_a_multiple_of_that_overflows_gives_a_finite_example() -> None:
    value = example(_doc({}), {"type": "integer", "minimum": 1.0e300, "multipleOf": 1.0e-300})
    assert isinstance(value, int)
