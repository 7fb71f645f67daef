"""Load and validate OpenAPI 3.0 / 3.1 documents.

:func:`load_spec` reads a YAML or JSON file (JSON is a subset of YAML, so one parser serves both), checks that
it declares ``openapi: 3.x`` and validates it with ``openapi-spec-validator`` (the OpenAPI Initiative's JSON
schemas for 3.0 and 3.1). Every failure is an :class:`~pilotage.errors.InputError` naming the file and the
place (line/column for syntax errors, a JSON path such as ``$.paths['/pets'].get.responses`` for schema
errors) and how to fix it.

Every untrusted YAML/JSON document Pilotage reads (OpenAPI documents, ``slo.yaml``, specs found by the graph
ingester) goes through :func:`parse_document` / :func:`load_document`, which bound the work a document can cause
(issue #15, finding 8): its size (:data:`MAX_DOCUMENT_BYTES`), its nesting depth (:data:`MAX_DEPTH`, counted
after YAML aliases are expanded), the YAML aliases it uses and the nodes they expand to (:data:`MAX_ALIASES`,
:data:`MAX_NODES`: a "billion laughs" document of 2 KB is refused before it is expanded) and the length of its
numbers (:data:`MAX_NUMBER_CHARS`). Each refusal is one :class:`~pilotage.errors.InputError` naming the file,
the place and the limit (CLI exit 2). With ``unique_keys=True`` (configuration Pilotage acts on, such as the
service descriptor) a mapping that writes one key twice is refused too, naming the key and its lines: YAML and
JSON parsers otherwise keep the last value silently.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from pilotage.errors import InputError

__all__ = [
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_NODES",
    "MAX_NUMBER_CHARS",
    "dump_spec",
    "json_path",
    "load_document",
    "load_spec",
    "openapi_version",
    "parse_document",
    "spec_digest",
    "spec_key",
    "to_json_data",
    "validate_spec",
]

_HINT = "pass an existing OpenAPI 3 file with --spec"

#: Largest document read (bytes): 16 MiB, above the largest public API descriptions (GitHub's REST one is ~11 MB).
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
#: Deepest nesting of mappings and sequences, aliases expanded (deep JSON Schemas in real specs stay under 40).
MAX_DEPTH = 100
#: Most YAML aliases (``*name``) in one document.
MAX_ALIASES = 1_000
#: Most nodes (mappings, sequences, scalars) in one document once its aliases are expanded.
MAX_NODES = 2_000_000
#: Longest number (characters); Python refuses ints over 4,300 digits, and no API needs more than 100.
MAX_NUMBER_CHARS = 100

_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def _too_much(kind: str, file: str | Path, what: str, limit: str | None, mark: Any = None) -> InputError:
    """Return the one-line InputError of a document over one of the limits (``limit`` None: no limit to name)."""
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return InputError(
        f"{kind} {file} {what}{where}" + (f" (the limit is {limit})" if limit else ""),
        hint=f"make {file} smaller or flatter: documents over these limits are refused before they are expanded",
        path=str(file),
    )


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader that refuses deep nesting, many aliases and long numbers while it composes."""

    def __init__(self, text: str, kind: str, file: str | Path) -> None:
        super().__init__(text)
        self.kind, self.file = kind, file
        self.depth = self.aliases = 0

    def refuse_duplicate_keys(self, root: yaml.Node) -> None:
        """Refuse a mapping of the composed ``root`` that writes one key twice (each mapping checked once).

        Keys are compared as constructed (``1`` and ``0x1`` are one key); the keys written beside a merge
        (``<<: *base``) override it on purpose and are not duplicates.

        Raises:
            InputError: naming the key's place (``traffic.writes``) and both lines (:func:`_duplicate_key`).
        """
        done: set[int] = set()
        stack: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, ())]
        while stack:
            node, place = stack.pop()
            if id(node) in done:
                continue
            done.add(id(node))
            if isinstance(node, yaml.SequenceNode):
                stack.extend((child, (*place, i)) for i, child in enumerate(node.value))
            if not isinstance(node, yaml.MappingNode):
                continue
            seen: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue  # an unhashable key: the constructor refuses it
                if first is not key_node.start_mark:
                    raise _duplicate_key(self.kind, self.file, (*place, key), first, key_node.start_mark)
                stack.append((value_node, (*place, key)))

    def _mark(self) -> Any:
        return self.peek_event().start_mark  # type: ignore[no-untyped-call]

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Compose one node (see ``yaml.composer.Composer``), counting depth and aliases."""
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self._mark()
                raise _too_much(self.kind, self.file, "uses too many YAML aliases", f"{MAX_ALIASES}", mark)
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            mark = self._mark()
            raise _too_much(self.kind, self.file, "nests too deep", f"{MAX_DEPTH} levels", mark)
        try:
            node: Any = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        if node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
            raise _too_much(
                self.kind, self.file, "holds a number too long", f"{MAX_NUMBER_CHARS} characters", node.start_mark
            )
        return node


def _duplicate_key(kind: str, file: str | Path, place: tuple[Any, ...], first: Any, again: Any) -> InputError:
    """Return the one-line InputError of a mapping that writes a key twice.

    ``place``: the keys and indexes down to the key (only the key from JSON); ``first``/``again``: the YAML marks of
    both (None from JSON: the fast JSON path then falls back to YAML, which knows them).
    """
    field = json_path(place).removeprefix("$").lstrip(".")
    where = ""
    if first is not None and again is not None and first.line == again.line:
        where = f" at line {again.line + 1}, columns {first.column + 1} and {again.column + 1}"
    elif first is not None and again is not None:
        where = f" at lines {first.line + 1} and {again.line + 1}"
    return InputError(
        f"{kind} {file} writes the key {field} twice{where}",
        hint=f"keep one {field} in {file}: YAML and JSON parsers silently keep only the last",
        path=str(file),
        field=field,
        line=again.line + 1 if again is not None else None,
    )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node, kind: str, file: str | Path) -> None:
    """Refuse a node graph whose alias expansion is recursive, deeper than MAX_DEPTH or over MAX_NODES nodes.

    One post-order walk over the composed graph (each shared node visited once), so a billion-laughs document is
    measured in microseconds instead of being expanded.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            children = _children(node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_NODES:
                raise _too_much(kind, file, "expands its YAML aliases too far", f"{MAX_NODES:,} nodes", node.start_mark)
            if depth[key] > MAX_DEPTH:
                raise _too_much(kind, file, "nests too deep through aliases", f"{MAX_DEPTH} levels", node.start_mark)
            continue
        if key in size:
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise _too_much(kind, file, "holds a recursive YAML alias", None, child.start_mark)
            if id(child) not in size:
                stack.append((child, False))


def _parse_yaml(text: str, kind: str, file: str | Path, unique_keys: bool = False) -> Any:
    loader = _LimitedLoader(text, kind, file)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, kind, file)
        if unique_keys:
            loader.refuse_duplicate_keys(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _checked_number(kind: str, file: str | Path, convert: Any) -> Any:
    def parse(text: str) -> Any:
        if len(text) > MAX_NUMBER_CHARS:
            raise _too_much(kind, file, "holds a number too long", f"{MAX_NUMBER_CHARS} characters")
        return convert(text)

    return parse


def _json_depth(value: Any) -> int:
    """Return the nesting depth of decoded JSON (iterative: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _unique_pairs(kind: str, file: str | Path) -> Any:
    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise _duplicate_key(kind, file, (key,), None, None)
            out[key] = value
        return out

    return build


def _parse_json(text: str, kind: str, file: str | Path, unique_keys: bool = False) -> Any:
    try:
        doc = json.loads(
            text,
            parse_int=_checked_number(kind, file, int),
            parse_float=_checked_number(kind, file, float),
            object_pairs_hook=_unique_pairs(kind, file) if unique_keys else None,
        )
    except RecursionError as exc:
        raise _too_much(kind, file, "nests too deep", f"{MAX_DEPTH} levels") from exc
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{kind} {file} is not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            hint=f"fix the syntax at line {exc.lineno} of {file}",
            path=str(file),
        ) from exc
    if _json_depth(doc) > MAX_DEPTH:
        raise _too_much(kind, file, "nests too deep", f"{MAX_DEPTH} levels")
    return doc


def parse_document(
    text: str,
    *,
    path: str | Path = "<memory>",
    kind: str = "spec file",
    syntax: str = "yaml",
    unique_keys: bool = False,
) -> Any:
    """Parse YAML (or JSON, a subset of YAML) text within the document limits of this module.

    Args:
        text: the document.
        path: its file name, for messages.
        kind: what it is, for messages ("spec file", "SLO file").
        syntax: ``yaml`` (YAML 1.1 with JSON as a subset: PyYAML's safe types) or ``json`` (strict JSON, for
            ``.json`` files where YAML's extras must not apply).
        unique_keys: refuse a mapping that writes a key twice (YAML: naming both lines).

    Returns:
        The decoded document (YAML's safe types only).

    Raises:
        InputError: over a limit (size, depth, aliases, expanded nodes, number length), not valid YAML/JSON
            (line and column given), or a key written twice with ``unique_keys``; names ``path``.
    """
    if len(text) > MAX_DOCUMENT_BYTES or len(text.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise _too_much(kind, path, "is too large", f"{MAX_DOCUMENT_BYTES:,} bytes")
    if syntax == "json":
        return _parse_json(text, kind, path, unique_keys)
    if text.lstrip()[:1] in ("{", "["):  # JSON text (YAML's subset): the C JSON parser, not PyYAML's pure Python one
        with contextlib.suppress(InputError):  # flow-style YAML (`{a: 1}`) is not JSON, and YAML names the
            return _parse_json(text, kind, path, unique_keys)  # lines of a duplicate key: parsed as YAML below
    try:
        return _parse_yaml(text, kind, path, unique_keys)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(
            f"{kind} {path} is not valid YAML/JSON{where}: {problem}",
            hint=f"fix the syntax{where} of {path}",
            path=str(path),
        ) from exc
    except (ValueError, RecursionError) as exc:  # e.g. a date that does not exist (2024-02-30)
        raise InputError(
            f"{kind} {path} holds a value YAML cannot represent: {' '.join(str(exc).split())[:200]}",
            hint=f"fix the value in {path}",
            path=str(path),
        ) from exc


def load_document(
    path: str | Path, *, kind: str = "spec file", hint: str = _HINT, syntax: str = "yaml", unique_keys: bool = False
) -> Any:
    """Read a YAML/JSON file and parse it with :func:`parse_document` (the size is checked before reading).

    Raises:
        InputError: missing, a folder, unreadable, not UTF-8, over a limit, not YAML/JSON, or a key written twice
            with ``unique_keys``; names the file.
    """
    file = Path(path)
    if file.is_dir():
        raise InputError(f"{kind} {file} is a folder, not a file", hint=hint, path=str(file))
    if not file.is_file():
        raise InputError(f"{kind} {file} not found", hint=hint, path=str(file))
    try:
        size = file.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise _too_much(kind, file, f"is too large ({size:,} bytes)", f"{MAX_DOCUMENT_BYTES:,} bytes")
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{kind} {file} cannot be read: {exc}", hint=hint, path=str(file)) from exc
    return parse_document(text, path=file, kind=kind, syntax=syntax, unique_keys=unique_keys)


def json_path(parts: Any) -> str:
    """Return a JSONPath string (``$.paths['/pets'].get``) for a sequence of keys and indexes."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{str(part)!r}]"
    return out


def openapi_version(doc: Any) -> str:
    """Return the ``openapi`` version string ("3.0.3", "3.1.0" ...) of a decoded document, or "" if absent."""
    if isinstance(doc, dict):
        version = doc.get("openapi")
        if isinstance(version, str):
            return version
    return ""


def _refuse_schema_cycles(doc: dict[str, Any], path: str | Path) -> None:
    """Refuse a document with a :func:`pilotage.spec.refs.schema_cycle`, naming it.

    Raises:
        InputError: ``spec file PATH has schemas that apply to themselves: A -> B -> A ...`` (context ``cycle``).
    """
    from pilotage.spec.refs import ref_name, schema_cycle  # spec.refs imports this module

    cycle = schema_cycle(doc)
    if cycle is not None:
        chain = " -> ".join(ref_name({"$ref": ref}) or ref for ref in cycle)
        raise InputError(
            f"spec file {path} has schemas that apply to themselves: {chain} (through allOf/anyOf/oneOf/not/$ref, "
            "never reaching a property or an item), so no value can ever be validated against them",
            hint="break the cycle: one of these schemas must describe a property or an array item of the value "
            "(properties, items), not the value itself",
            path=str(path),
            cycle=chain,
        )


def validate_spec(doc: dict[str, Any], *, path: str | Path = "<memory>") -> None:
    """Validate a decoded OpenAPI 3.0/3.1 document.

    Args:
        doc: the decoded document.
        path: file name used in error messages.

    Raises:
        InputError: the document is not OpenAPI 3.0/3.1, has schemas that apply to themselves in a cycle
            (:func:`pilotage.spec.refs.schema_cycle`, named), or breaks its schema; the message names the JSON
            path.
    """
    from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator

    version = openapi_version(doc)
    if version.startswith("3.0"):
        validator_cls: Any = OpenAPIV30SpecValidator
    elif version.startswith("3.1"):
        validator_cls = OpenAPIV31SpecValidator
    else:
        raise InputError(
            f"spec file {path} is not OpenAPI 3.0/3.1 (openapi: {version or 'missing'!s})",
            hint="use a document with a top-level `openapi: 3.0.x` or `openapi: 3.1.x` key",
            path=str(path),
        )
    _refuse_schema_cycles(doc, path)  # openapi-spec-validator would recurse for ever on such a cycle
    try:
        errors = list(validator_cls(doc).iter_errors())
    except Exception as exc:  # the validator raises on unresolvable $refs and similar structural problems
        raise InputError(
            # the validator's message may quote the whole document (a dangling $ref names what it searched)
            f"spec file {path} is not a valid OpenAPI {version} document: {' '.join(str(exc).split())[:300]}",
            hint="fix the document so openapi-spec-validator accepts it",
            path=str(path),
        ) from exc
    if errors:
        first = min(errors, key=lambda e: len(list(e.absolute_path)))
        where = json_path(first.absolute_path)
        message = " ".join(str(first.message).split())[:300]
        raise InputError(
            f"spec file {path} is not a valid OpenAPI {version} document: at {where}: {message}"
            + (f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""),
            hint=f"correct {where} in {path}",
            path=str(path),
            json_path=where,
        )


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read, parse and validate an OpenAPI 3.0/3.1 file (YAML or JSON).

    Args:
        path: the file.

    Returns:
        The decoded document (a plain dict, keys in file order), with the files its ``$ref`` values name embedded
        and the references made local (:func:`pilotage.spec.refs.bundle_refs`).

    Raises:
        InputError: the file is missing or unreadable, is over a document limit (:func:`parse_document`), is not
            YAML/JSON (line and column given), is not an OpenAPI 3.x document, has a ``$ref`` to a URL, an absolute
            path or a file outside its folder (:func:`pilotage.spec.refs.bundle_refs`), or fails validation.
    """
    file = Path(path)
    if file.is_dir():
        raise InputError(f"spec path {file} is a folder, not a file", hint=_HINT, path=str(file))
    doc = load_document(file)
    if isinstance(doc, dict) and "swagger" in doc and "openapi" not in doc:
        raise InputError(
            f"spec file {file} is Swagger {doc.get('swagger')}, not OpenAPI 3",
            hint="convert it to OpenAPI 3 first (e.g. with swagger2openapi or the Swagger Editor)",
            path=str(file),
        )
    if not isinstance(doc, dict) or not openapi_version(doc).startswith("3."):
        found = openapi_version(doc) or "missing"
        raise InputError(
            f"spec file {file} is not an OpenAPI 3 document (openapi: {found})",
            hint="pass a file with a top-level `openapi: 3.0.x` or `3.1.x` key (Swagger 2.0 is not supported)",
            path=str(file),
        )
    from pilotage.spec.refs import bundle_refs  # spec.refs reads the referenced files with load_document

    data: dict[str, Any] = bundle_refs(to_json_data(doc), file)
    validate_spec(data, path=file)
    return data


def to_json_data(value: Any) -> Any:
    """Return ``value`` in the JSON data model.

    Mapping keys become strings (YAML reads ``200:`` as an int), dates and datetimes ISO 8601 strings, tuples lists.
    """
    if isinstance(value, dict):
        return {str(key): to_json_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_data(item) for item in value]
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    return value


def dump_spec(doc: dict[str, Any], path: str | Path) -> Path:
    """Write ``doc`` as YAML (``.yaml``/``.yml``) or JSON (any other suffix), keys in insertion order.

    Returns:
        The written path.
    """
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    if file.suffix in {".yaml", ".yml"}:
        text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)
    else:
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    file.write_text(text, encoding="utf-8")
    return file


def spec_digest(doc: dict[str, Any]) -> str:
    """Return the SHA-256 (hex) of the canonical JSON of ``doc`` (sorted keys): a content version of the spec."""
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def spec_key(service: str, doc: dict[str, Any]) -> str:
    """Return the graph key of a spec version: ``"<service>@<first 12 hex digits of spec_digest(doc)>"``."""
    return f"{service}@{spec_digest(doc)[:12]}"
