"""What one Python file contributes to the graph, read with :mod:`ast` (no import, no execution).

:func:`parse_module` turns a file's source into a :class:`ParsedModule`: its classes and functions (qualified
names ``pkg.mod.Class.method``), test functions, import statements resolved to absolute module names, the calls
made inside each function, and HTTP route decorators (FastAPI ``@app.get("/p")`` / ``@router.post``, Flask
``@app.route("/p", methods=[...])``).

Calls are **approximate** (static, no type inference): a call is recorded by the dotted name written at the call
site (``f()``, ``mod.f()``, ``self.m()``, ``Class()``) and is later resolved against the names the repository defines
and imports; calls through variables, ``getattr`` or other objects' methods are not seen.

HTTP client calls (issue #19, :class:`HttpCall`): ``x.get(URL)`` … ``x.delete(URL)`` (httpx, requests, their
clients and sessions: any receiver) and ``x.request("METHOD", URL)`` / ``x.stream("METHOD", URL)``, whose URL (first
argument or ``url=``) is a string literal, an f-string or ``base + "/literal"``. The path is the URL from its first
``/`` after a scheme and host or after a leading ``{…}`` (the base address, e.g. ``f"{PAYMENTS_URL}/payments"``);
each other ``{…}`` of an f-string becomes ``{}``. A URL without such a path (``d.get("key")``) is no HTTP call.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from pilotage.errors import InputError

__all__ = ["HTTP_METHODS", "HttpCall", "ParsedModule", "Route", "Symbol", "parse_module", "is_test_path"]

HTTP_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
_FLASK_PARAM = re.compile(r"<(?:[a-zA-Z_]+:)?([a-zA-Z_][a-zA-Z0-9_]*)>")
#: A URL's scheme and host (``http://127.0.0.1:8000``), dropped before its path.
_ORIGIN = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*")
#: Client methods whose first argument is the HTTP method and second the URL.
_METHOD_FIRST = ("request", "stream")


@dataclass(frozen=True)
class Symbol:
    """A class, function or test defined in a module: ``kind`` is ``Class``, ``Function`` or ``Test``."""

    kind: str
    qualname: str
    line: int
    end_line: int


@dataclass(frozen=True)
class Route:
    """An HTTP route declared by a decorator: ``method`` upper-case, ``path`` in OpenAPI form (``/pets/{id}``)."""

    method: str
    path: str
    handler: str
    line: int


@dataclass(frozen=True)
class HttpCall:
    """An HTTP client call found in the code.

    ``method`` upper-case, ``path`` as written with ``{}`` for each interpolated part (``/payments/{}``), the calling
    function's qualname (the module's name at top level), its line.
    """

    method: str
    path: str
    caller: str
    line: int


@dataclass
class ParsedModule:
    """Everything :func:`parse_module` extracts from one file.

    Attributes:
        imports: ``(absolute module name, line)`` for every ``import``/``from … import`` (external ones included);
            for ``from a import b`` both ``a.b`` and ``a`` are candidates, the ingester keeps the one it knows.
        aliases: local name → dotted target it was imported as (``{"Client": "httpx._client.Client"}``).
        calls: ``(caller qualname, callee as written and alias-expanded, line)``.
        http_calls: the HTTP client calls with a literal path (:class:`HttpCall`).
    """

    name: str
    is_package: bool
    is_test: bool
    symbols: list[Symbol] = field(default_factory=list)
    imports: list[tuple[str, int]] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[str, str, int]] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    http_calls: list[HttpCall] = field(default_factory=list)
    lines: int = 0


def is_test_path(name: str) -> bool:
    """Return True for pytest's default test files: ``test_*.py`` or ``*_test.py`` (``name`` is the file name)."""
    return name.startswith("test_") or name.endswith("_test.py")


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([target] if target else [])])


def _route(decorator: ast.expr, handler: str) -> list[Route]:
    """Routes declared by one decorator: ``@x.get("/p")`` (FastAPI) or ``@x.route("/p", methods=[...])`` (Flask)."""
    if not (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute) and decorator.args):
        return []
    first = decorator.args[0]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        return []
    attr = decorator.func.attr.lower()
    path = _FLASK_PARAM.sub(r"{\1}", first.value)
    if attr in HTTP_METHODS:
        return [Route(attr.upper(), path, handler, decorator.lineno)]
    if attr != "route":
        return []
    methods = ["GET"]
    for kw in decorator.keywords:
        if kw.arg == "methods" and isinstance(kw.value, (ast.List, ast.Tuple)):
            methods = [str(e.value).upper() for e in kw.value.elts if isinstance(e, ast.Constant)]
    return [Route(m, path, handler, decorator.lineno) for m in methods]


def _url_text(node: ast.expr) -> str | None:
    """The URL of a call argument as text, ``{}`` for each interpolated part; None when it is not literal enough."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.replace("{", "{{").replace("}", "}}")
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                parts.append(value.value.replace("{", "{{").replace("}", "}}"))
            else:
                parts.append("{}")
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        right = _url_text(node.right)
        return None if right is None else "{}" + right  # base + "/path": the left side is the base address
    return None


def http_path(url: str) -> str | None:
    """The path of a URL as written by :func:`_url_text`, or None when it has none.

    From its first ``/`` after an origin or a leading ``{}``; ``{}`` for interpolated parts, ``{{``/``}}`` back to
    literal braces; no query or fragment.
    """
    text = _ORIGIN.sub("", url)
    if text.startswith("{}"):
        text = text[2:]
    if not text.startswith("/") or text.startswith("//"):
        return None
    path = text.split("?", 1)[0].split("#", 1)[0]
    return re.sub(r"\{\{|\}\}", lambda m: m.group(0)[0], path)


def _http_call(node: ast.Call) -> tuple[str, str] | None:
    """``(METHOD, path)`` of an HTTP client call (module docstring), or None."""
    func = node.func
    if not isinstance(func, ast.Attribute):
        return None
    attr = func.attr.lower()
    args = list(node.args)
    url_kw = next((kw.value for kw in node.keywords if kw.arg == "url"), None)
    if attr in _METHOD_FIRST and args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
        method, args = args[0].value.upper(), args[1:]
    elif attr in HTTP_METHODS:
        method = attr.upper()
    else:
        return None
    target = args[0] if args else url_kw
    url = _url_text(target) if target is not None else None
    path = http_path(url) if url is not None else None
    return (method, path) if path is not None and method.lower() in HTTP_METHODS else None


_LEAVES = (ast.Name, ast.Constant, ast.expr_context, ast.operator, ast.boolop, ast.cmpop, ast.unaryop, ast.alias)


class _Visitor:
    """One pass over the tree, faster than ``ast.NodeVisitor``.

    No per-node method lookup, and leaves (names, constants, contexts, operators) are not descended into.
    """

    def __init__(self, out: ParsedModule) -> None:
        self.out = out
        self.scope: list[str] = []  # qualname parts below the module
        self.classes: list[str] = []  # qualnames of enclosing classes
        self.function: str | None = None

    def _qual(self, name: str) -> str:
        return ".".join([self.out.name, *self.scope, name])

    def visit(self, node: ast.AST) -> None:
        kind = type(node)
        if kind is ast.Call:
            self.call(node)  # type: ignore[arg-type]
        elif kind is ast.FunctionDef or kind is ast.AsyncFunctionDef:
            self.function_def(node)  # type: ignore[arg-type]
            return
        elif kind is ast.ClassDef:
            self.class_def(node)  # type: ignore[arg-type]
            return
        elif kind is ast.Import:
            self.import_(node)  # type: ignore[arg-type]
            return
        elif kind is ast.ImportFrom:
            self.import_from(node)  # type: ignore[arg-type]
            return
        for field_name in node._fields:
            value = getattr(node, field_name, None)
            if type(value) is list:
                for item in value:
                    if isinstance(item, ast.AST) and not isinstance(item, _LEAVES):
                        self.visit(item)
            elif isinstance(value, ast.AST) and not isinstance(value, _LEAVES):
                self.visit(value)

    def import_(self, node: ast.Import) -> None:
        for alias in node.names:
            self.out.imports.append((alias.name, node.lineno))
            if self.function is None:
                local = alias.asname or alias.name.split(".")[0]
                self.out.aliases[local] = alias.name if alias.asname else alias.name.split(".")[0]

    def import_from(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            base = _resolve_relative(self.out.name, self.out.is_package, node.level, node.module)
        for alias in node.names:
            if alias.name == "*":
                self.out.imports.append((base, node.lineno))
                continue
            target = f"{base}.{alias.name}" if base else alias.name
            self.out.imports.append((target, node.lineno))
            if base:
                self.out.imports.append((base, node.lineno))
            if self.function is None:
                self.out.aliases[alias.asname or alias.name] = target

    def class_def(self, node: ast.ClassDef) -> None:
        qual = self._qual(node.name)
        self.out.symbols.append(Symbol("Class", qual, node.lineno, node.end_lineno or node.lineno))
        self.scope.append(node.name)
        self.classes.append(qual)
        for child in node.body:
            self.visit(child)
        self.classes.pop()
        self.scope.pop()

    def function_def(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        qual = self._qual(node.name)
        test = self.out.is_test and node.name.startswith("test") and self.function is None
        kind = "Test" if test else "Function"
        self.out.symbols.append(Symbol(kind, qual, node.lineno, node.end_lineno or node.lineno))
        for decorator in node.decorator_list:
            self.out.routes.extend(_route(decorator, qual))
        outer, self.function = self.function, qual
        self.scope.append(node.name)
        for child in node.body:
            self.visit(child)
        self.scope.pop()
        self.function = outer

    def call(self, node: ast.Call) -> None:
        found = _http_call(node)
        if found is not None:
            caller = self.function or self.out.name
            self.out.http_calls.append(HttpCall(found[0], found[1], caller, node.lineno))
        if self.function is None:
            return
        written = _dotted(node.func)
        if written is not None:
            head, _, rest = written.partition(".")
            if head in ("self", "cls") and self.classes and rest:
                target = f"{self.classes[-1]}.{rest}"
            else:
                target = written  # resolved against aliases and definitions by the ingester
            self.out.calls.append((self.function, target, node.lineno))


def parse_module(source: str, name: str, *, is_package: bool, is_test: bool, filename: str) -> ParsedModule:
    """Extract symbols, imports, calls, routes and HTTP client calls from ``source`` (the text of module ``name``).

    Args:
        source: the file's text (already decoded).
        name: dotted module name (``pkg.sub.mod``; a package's ``__init__`` is ``pkg.sub``).
        is_package: the file is an ``__init__.py`` (relative imports resolve from the package itself).
        is_test: the file is a test file (its top-level ``test*`` functions become ``Test`` symbols).
        filename: shown in errors.

    Raises:
        InputError: the source does not parse (``path`` and ``line`` attributes set).
    """
    try:
        tree = ast.parse(source, filename=filename)
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes
        line = getattr(exc, "lineno", None)
        where = f" line {line}" if line else ""
        raise InputError(
            f"{filename}:{where} syntax error: {getattr(exc, 'msg', exc)}", path=filename, line=line
        ) from exc
    out = ParsedModule(name=name, is_package=is_package, is_test=is_test, lines=source.count("\n") + 1)
    _Visitor(out).visit(tree)
    return out
