"""The quoting module: literals evaluate to the data, identifiers are safe, the ast check catches escaped text."""

from __future__ import annotations

import ast
import builtins
import keyword
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilotage.codegen.quoting import (
    IDENTIFIER,
    MODULE_NAMES,
    check_python,
    py_docstring,
    py_literal,
    python_name,
    require_json_data,
)
from pilotage.errors import InputError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON, indent=st.integers(0, 12))
def test_a_literal_evaluates_to_the_value(value: Any, indent: int) -> None:
    text = py_literal(value, indent)
    assert ast.literal_eval(text) == value or (isinstance(value, float) and math.isnan(value))


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_a_docstring_is_one_string_literal_holding_the_text(text: str) -> None:
    tree = ast.parse(f"def f():\n    {py_docstring(text, 4)}\n")
    assert ast.get_docstring(tree.body[0], clean=False) == text  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(text=st.text(), style=st.sampled_from(["snake", "pascal", "keep"]))
def test_an_identifier_is_ascii_and_shadows_nothing(text: str, style: str) -> None:
    taken: set[str] = {"pet"}
    name = python_name(text, style, taken=taken)
    assert IDENTIFIER.fullmatch(name) and name.isascii()
    assert not keyword.iskeyword(name) and not keyword.issoftkeyword(name)
    assert name not in dir(builtins) and name not in MODULE_NAMES and name != "pet"
    assert name in taken


@pytest.mark.parametrize(
    ("text", "style", "expected"),
    [("getPetById", "snake", "get_pet_by_id"), ("str", "keep", "str_"), ("Field", "pascal", "Field_"),
     ("build_app", "snake", "build_app_"), ("crud", "keep", "crud_"), ("class", "snake", "class_"),
     ("photoUrls", "keep", "photoUrls"), ("٣", "snake", "op"), ("_private", "keep", "private")],
)  # fmt: skip
def test_named_identifiers(text: str, style: str, expected: str) -> None:
    assert python_name(text, style) == expected


@pytest.mark.parametrize(
    ("value", "where"),
    [({"a": [1, float("inf")]}, "$.a[1]"), ({"b": {"c": float("nan")}}, "$.b.c"), ({"d": b"x"}, "$.d"),
     ({"e": {1: "x"}}, "$.e"), ({"f": "\ud800"}, "$.f"), ({"g": 2**2000}, "$.g")],
)  # fmt: skip
def test_values_that_are_not_json_data_are_refused_naming_the_field(value: Any, where: str) -> None:
    with pytest.raises(InputError) as raised:
        require_json_data(value, path="spec.yaml")
    assert raised.value.json_path == where and where in str(raised.value) and "spec.yaml" in str(raised.value)
    with pytest.raises(ValueError):
        py_literal(value)


def test_a_recursive_value_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(InputError, match="contains itself"):
        require_json_data({"x": loop})


def test_the_check_refuses_text_that_escaped_a_literal() -> None:
    good = 'x = 1\ny = "open(1)"\n'
    check_python(good, file="app/main.py", allowed={"x", "y"})
    with pytest.raises(InputError) as raised:
        check_python('x = 1\n__import__("os").system("id")\n', file="app/main.py", allowed={"x"})
    assert raised.value.identifier == "__import__" and "line 2" in str(raised.value)
    with pytest.raises(InputError, match="not valid Python"):
        check_python('"""a"""b"""\n', file="app/main.py", allowed=set())
    with pytest.raises(InputError, match="'getattr'"):
        check_python("x = getattr(x, 'y')\n", file="app/main.py", allowed={"x"})
