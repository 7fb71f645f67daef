"""The one way OpenAPI document text becomes Python source (issue #15, finding 1).

An OpenAPI document is untrusted input, and the code generated from it runs as the control-plane user. Three
rules keep the document's text data:

* **Values** reach generated code only through :func:`py_literal`: JSON data (``str``, ``int``, finite
  ``float``, ``bool``, ``None``, lists and string-keyed dicts of them) rendered with ``repr`` (via ``pprint``),
  never inside a hand-quoted string. Anything else (NaN, infinity, bytes, sets, cycles) is refused;
  :func:`require_json_data` refuses it first with an :class:`~pilotage.errors.InputError` naming the field.
  Docstrings use :func:`py_docstring`: triple quotes only around text that cannot end or escape them.
* **Identifiers** come only from :func:`python_name`: ASCII ``[A-Za-z_][A-Za-z0-9_]*``, never a keyword, soft
  keyword, builtin or a name the generated modules define or import (:data:`MODULE_NAMES`).
* **Check**: :func:`check_python` parses each generated file with :mod:`ast` (from the bytes that will be on
  disk, so a coding cookie would count) and refuses it unless every identifier in it is one the file's template
  uses (its vocabulary in :data:`GENERATED_NAMES`) or one :func:`python_name` produced for this document. Text
  that escaped a string literal would show up as a statement made of names outside both sets.
"""

from __future__ import annotations

import ast
import builtins
import functools
import keyword
import math
import pprint
import re
from collections.abc import Collection, Iterable
from typing import Any

from pilotage.errors import InputError

__all__ = [
    "GENERATED_NAMES",
    "IDENTIFIER",
    "MODULE_NAMES",
    "RESERVED",
    "Source",
    "check_python",
    "identifiers_of",
    "py_docstring",
    "py_literal",
    "python_name",
    "require_json_data",
]

#: What :func:`python_name` returns, and nothing else.
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Integers longer than this many bits are refused (``repr`` of a 5,000-digit int raises in Python 3.11).
MAX_INT_BITS = 1024

#: Every identifier each generated Python file uses besides the ones :func:`python_name` produced for the document
#: (the template's vocabulary). A template change that adds a name must add it here: ``check_python`` refuses
#: the generated file otherwise, and the generator's tests say which name.
GENERATED_NAMES: dict[str, frozenset[str]] = {
    "app/__init__.py": frozenset(),
    "app/main.py": frozenset(
        "__future__ annotations typing Any starlette requests Request responses Response app crud models runtime "
        "observe ApiError Operation build_app store Store STORE RESOURCES OPS dict str request op parse params body "
        "model require_parent create replace replace_body merge list_items get delete find respond success_status "
        "exc status detail error handlers auth AUTH login_answer configure meta logout delegate headers".split()
    ),
    "app/handlers.py": frozenset(
        "__future__ annotations typing Any starlette requests Request responses Response app runtime Operation "
        "request op params dict str body principal not_implemented".split()
    ),
    "app/models.py": frozenset(
        "__future__ annotations typing Any pydantic BaseModel ConfigDict Field __all__ model_config extra "
        "populate_by_name alias default model_rebuild str int float bool list dict".split()
    ),
    "tests/conftest.py": frozenset(
        "__future__ annotations os sys tempfile pathlib Path environ str mkdtemp prefix pop path insert __file__ "
        "resolve parent".split()
    ),
    "tests/test_service.py": frozenset(
        "__future__ annotations typing Any pytest fastapi testclient TestClient app main STORE ROUND_TRIPS "
        "SAFE_GETS SECURED_GETS list dict str fixture client monkeypatch MonkeyPatch setenv db _db execute "
        "test_healthz response get status_code json test_metrics_count_requests_by_route path text "
        "test_openapi_document_is_served mark parametrize test_get_without_parameters_is_not_a_server_error "
        "ids c case test_resource_round_trip created post key item replace fetched name value items delete "
        "test_invalid_body_is_rejected_with_4xx content headers test_unknown_item_is_not_found "
        "test_missing_credentials_are_refused status".split()
    ),
}
#: Module-level names the generated modules define or import (a handler, class or field must not shadow them).
MODULE_NAMES = frozenset(
    "annotations Any Request Response crud models ApiError Operation build_app Store STORE RESOURCES OPS app "
    "BaseModel ConfigDict Field __all__ pytest TestClient ROUND_TRIPS SAFE_GETS SECURED_GETS client os sys "
    "tempfile Path runtime store main handlers auth AUTH login_answer".split()
)
#: Names a sanitised identifier never takes: keywords, soft keywords, builtins and the generated modules' names.
RESERVED: frozenset[str] = frozenset({*keyword.kwlist, *keyword.softkwlist, "type", *dir(builtins), *MODULE_NAMES})
_SURROGATE = re.compile("[\ud800-\udfff]")
_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z]|[0-9]|\b|_)|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


class Source(str):
    """Text known to be safe Python source: a :func:`py_literal` rendering or a :func:`python_name`."""

    __slots__ = ()


def python_name(
    text: str, style: str = "snake", *, reserved: Collection[str] = (), taken: set[str] | None = None
) -> Source:
    """Return a safe Python identifier for ``text`` (the one identifier sanitiser of generated code).

    Args:
        text: any text from the document (an ``operationId``, a schema or property name, a path).
        style: ``snake`` (``get_pet_by_id``), ``pascal`` (``PetById``), or ``keep`` (``text`` itself when it is
            already a safe ASCII identifier, else ``snake``).
        reserved: names to avoid besides :data:`RESERVED`.
        taken: names already used in the same namespace; the result is added to it.

    Returns:
        A name matching ``[A-Za-z_][A-Za-z0-9_]*`` that is not a keyword, soft keyword, builtin, a name of a generated
        module, in ``reserved`` or in ``taken`` (``_`` is appended until it is none of them).
    """
    if style == "keep" and IDENTIFIER.fullmatch(text) and not text.startswith("_"):
        name = text
    else:
        words = _WORDS.findall(text)
        if style == "pascal":
            name = "".join(w[:1].upper() + w[1:] for w in words) or "Model"
        else:
            name = "_".join(w.lower() for w in words) or "op"
        if name[0].isdigit():
            name = ("M" if style == "pascal" else "op_") + name
    used = taken if taken is not None else set()
    while name in RESERVED or name in reserved or name in used:
        name += "_"
    assert IDENTIFIER.fullmatch(name), name
    used.add(name)
    return Source(name)


def require_json_data(value: Any, where: str = "$", *, path: str = "<memory>") -> None:
    """Refuse what :func:`py_literal` cannot render: non-finite floats, huge ints, non-JSON types, cycles.

    Args:
        value: decoded document data.
        where: JSON path of ``value`` (``$`` for the document).
        path: the document's file name, for the message.

    Raises:
        InputError: names the JSON path of the first bad value (``$.components.schemas.Pet.default``).
    """
    from pilotage.spec.load import json_path

    stack: list[tuple[Any, tuple[Any, ...], frozenset[int]]] = [(value, (), frozenset())]
    while stack:
        node, parts, seen = stack.pop()
        problem = _problem(node, seen)
        if problem is not None:
            place = json_path(parts) if where == "$" else where + json_path(parts)[1:]
            raise InputError(
                f"{path}: {place} {problem}",
                hint=f"replace the value at {place} with JSON data (finite numbers, strings, lists, objects)",
                path=str(path),
                json_path=place,
            )
        if isinstance(node, dict):
            inner = seen | {id(node)}
            stack.extend((item, (*parts, key), inner) for key, item in reversed(node.items()))
        elif isinstance(node, list):
            inner = seen | {id(node)}
            stack.extend((item, (*parts, i), inner) for i, item in reversed(list(enumerate(node))))


def _problem(node: Any, seen: frozenset[int]) -> str | None:
    if isinstance(node, str):
        return "holds a lone surrogate code point, which UTF-8 cannot encode" if _SURROGATE.search(node) else None
    if node is None or isinstance(node, bool):
        return None
    if isinstance(node, int):
        huge = node.bit_length() > MAX_INT_BITS
        return f"is an integer of {node.bit_length()} bits (at most {MAX_INT_BITS})" if huge else None
    if isinstance(node, float):
        return None if math.isfinite(node) else f"is {node!r}, which JSON has no number for"
    if isinstance(node, dict | list):
        if id(node) in seen:
            return "contains itself (a recursive YAML alias)"
        if isinstance(node, dict) and not all(isinstance(k, str) and not _SURROGATE.search(k) for k in node):
            return "has a key that is not a string of UTF-8 encodable text"
        return None
    return f"is a {type(node).__name__}, not JSON data"


def py_literal(value: Any, indent: int = 0, width: int = 116, *, sort_dicts: bool = False) -> Source:
    """Render JSON data as a Python expression that evaluates to an equal value.

    Args:
        value: ``str``/``int``/finite ``float``/``bool``/``None``, or lists and string-keyed dicts of them.
        indent: columns the expression starts at (continuation lines are indented as much).
        width: line width to fit in.
        sort_dicts: write dict keys sorted (else in insertion order).

    Raises:
        ValueError: ``value`` is not JSON data (see :func:`require_json_data`, which names the field).
    """
    stack: list[tuple[Any, frozenset[int]]] = [(value, frozenset())]
    while stack:
        node, seen = stack.pop()
        problem = _problem(node, seen)
        if problem is not None:
            raise ValueError(f"cannot render as a Python literal: the value {problem}")
        if isinstance(node, dict | list):
            inner = seen | {id(node)}
            stack.extend((item, inner) for item in (node.values() if isinstance(node, dict) else node))
    text = pprint.pformat(value, width=max(width - indent, 40), sort_dicts=sort_dicts)
    return Source(text.replace("\n", "\n" + " " * indent))


#: AST node fields that hold identifiers (a str, a dotted str, or a list of str); Python 3.11's grammar.
_IDENTIFIER_FIELDS = ("id", "attr", "name", "arg", "asname", "module", "names", "rest", "kwd_attrs")


@functools.cache
def _fields_of(kind: str) -> tuple[str, ...]:
    return tuple(f for f in getattr(ast, kind)._fields if f in _IDENTIFIER_FIELDS)


def py_docstring(text: str, indent: int = 0) -> Source:
    """Render ``text`` as a docstring literal.

    Triple double quotes when ``text`` holds only printable characters and neither a double quote nor a backslash
    (nothing in it can end or escape the literal), else :func:`py_literal` (``'...'`` with escapes).
    """
    if text.isprintable() and '"' not in text and "\\" not in text:
        return Source(f'"""{text}"""')
    return py_literal(text, indent)


def identifiers_of(tree: ast.AST) -> Iterable[tuple[str, int]]:
    """Yield ``(identifier, line)`` for every name an AST binds, reads, imports or passes as a keyword."""
    line = 0
    for node in ast.walk(tree):
        fields = _fields_of(type(node).__name__)
        if not fields:
            continue
        line = getattr(node, "lineno", line)
        for field in fields:
            value = getattr(node, field)
            for text in value if isinstance(value, list) else (value,):
                if isinstance(text, str):
                    yield from ((part, line) for part in text.split("."))


def check_python(source: str, *, file: str, allowed: Collection[str]) -> None:
    """Refuse a generated Python file unless it parses and uses only ``allowed`` identifiers.

    Args:
        source: the file's text (checked as the UTF-8 bytes Python will read).
        file: its path in the service folder, for the message.
        allowed: the template's vocabulary plus the names :func:`python_name` produced for this document.

    Raises:
        InputError: the file does not parse, or document text reached it outside a string literal (names the
            identifier and its line).
    """
    try:
        tree = ast.parse(source.encode("utf-8"), filename=file)
    except (SyntaxError, ValueError) as exc:
        raise InputError(
            f"generated {file} is not valid Python ({exc}): the document's text broke out of a literal",
            hint="report this as a Pilotage bug with the document; meanwhile simplify the names and texts it uses",
            path=file,
        ) from exc
    unknown = sorted((line, name) for name, line in identifiers_of(tree) if name not in allowed)
    if unknown:
        line, name = unknown[0]
        raise InputError(
            f"generated {file} line {line} uses the name {name!r}, which neither its template nor the "
            "identifier sanitiser produced: document text reached the code outside a string literal",
            hint="report this as a Pilotage bug with the document; meanwhile simplify the names and texts it uses",
            path=file,
            identifier=name,
        )
