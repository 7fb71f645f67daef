"""The one reader of OpenAPI 3 structure: ``$ref`` resolution, operations with their parameters, the base path.

References (:func:`resolve`) are JSON pointers into the document (``#/components/schemas/Pet``; RFC 6901: the
fragment is percent-decoded, then ``~1`` is ``/`` and ``~0`` is ``~``). A Reference Object that points at another
Reference Object is followed up to :data:`MAX_REF_HOPS` times; a chain that comes back to a reference already
followed is a cycle. Both are an :class:`~pilotage.errors.InputError` naming the ``$ref`` and the field, never a
loop. A recursive *schema* (``Node.children.items: {$ref: Node}``) is not a chain: :func:`resolve` returns
``Node`` and a caller walking the schema lazily meets the reference again one level down.

References to other files (``common.yaml#/components/schemas/Error``, ``paths/pets.yaml``) are relative to the
file that holds them. :func:`bundle_refs` (called by :func:`pilotage.spec.load.load_spec`) reads each such file
once through the bounded loader :func:`~pilotage.spec.load.load_document`, embeds it under the root key
:data:`FILES_KEY` (``x-pilotage-files``, an OpenAPI extension, so the result still validates) and rewrites every
reference into a local pointer, so one document answers every later :func:`resolve` and recursive schemas across
files still work. Only files inside the root document's folder tree are read (symbolic links resolved first);
a URL, an absolute path or a path that leaves the folder is refused, as is more than :data:`MAX_REF_FILES` files
or :data:`~pilotage.spec.load.MAX_DOCUMENT_BYTES` bytes in all.

Operations (:func:`iter_operations`) come in path order as :class:`Operation`, whose parameters merge the
path item's and the operation's (the operation's win on the same ``(name, in)``: OpenAPI 3.1 §4.8.9.1) with
every reference resolved. Example values of schemas are built by :func:`pilotage.codegen.examples.example`
(which resolves through this module); this module only reads what the document says.
"""

from __future__ import annotations

import copy
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilotage.errors import InputError
from pilotage.spec.load import MAX_DOCUMENT_BYTES, json_path, load_document, load_spec, to_json_data

__all__ = [
    "FILES_KEY",
    "HTTP_METHODS",
    "MAX_REF_FILES",
    "MAX_REF_HOPS",
    "UNFOLLOWED_REF",
    "Operation",
    "api_url",
    "base_path",
    "bundle_refs",
    "first_cycle",
    "iter_operations",
    "merged_parameters",
    "object_properties",
    "operation_ids",
    "parameterless_get_paths",
    "parameterless_gets",
    "ref_name",
    "ref_of",
    "references",
    "requires_credentials",
    "security_schemes",
    "resolve",
    "resolve_dict",
    "schema_cycle",
    "takes_no_parameters",
    "unfollowed_extension_refs",
]

#: The operation fields of a Path Item Object, in the specification's order (OpenAPI 3.0/3.1 §4.8.9).
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
#: Most Reference Objects followed from one node before a non-reference node (real documents chain one or two).
MAX_REF_HOPS = 32
#: Most other files one document may reference (directly or through the files it references).
MAX_REF_FILES = 256
#: Root key under which :func:`bundle_refs` embeds the referenced files, by path relative to the root's folder.
FILES_KEY = "x-pilotage-files"

_SCHEMA_PREFIX = re.compile(r"^#(?:/.*)?/components/schemas/([^/]+)$")
_HINT = "fix the $ref so it names a part of the document (a JSON pointer such as #/components/schemas/Pet)"


def ref_of(node: Any) -> str | None:
    """Return the ``$ref`` string of a Reference Object (``{"$ref": "..."}``), else None."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            return ref
    return None


def _unescape(segment: str) -> str:
    """One JSON-pointer segment of a URI fragment: percent-decoded, then ``~1`` → ``/`` and ``~0`` → ``~``."""
    return urllib.parse.unquote(segment).replace("~1", "/").replace("~0", "~")


def _escape(segment: str) -> str:
    """The inverse of :func:`_unescape` for one key."""
    return urllib.parse.quote(segment.replace("~", "~0").replace("/", "~1"), safe="")


def ref_name(node: Any) -> str | None:
    """Return ``X`` for a reference to a component schema (``#/components/schemas/X``, also in an embedded file).

    ``~0``/``~1`` and percent escapes are decoded; any other node gives None.
    """
    match = _SCHEMA_PREFIX.match(ref_of(node) or "")
    return _unescape(match.group(1)) if match else None


def _pointer(doc: Any, ref: str, where: str) -> Any:
    """Return the node ``ref`` (a local ``#/...`` pointer) names in ``doc``.

    Raises:
        InputError: ``ref`` is not a local JSON pointer, or a segment does not exist; names ``ref`` and ``where``.
    """
    if not ref.startswith("#") or (len(ref) > 1 and ref[1] != "/"):
        raise InputError(
            f"$ref {ref!r} at {where} is not a JSON pointer into this document",
            hint="load the document with load_spec (it resolves relative files) or use #/components/... pointers",
        )
    node = doc
    for raw in ref[2:].split("/") if len(ref) > 1 else []:
        key = _unescape(raw)
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            raise InputError(f"$ref {ref!r} at {where} does not resolve: no {key!r} there", hint=_HINT)
    return node


def resolve(doc: dict[str, Any], node: Any, *, where: str = "a $ref") -> Any:
    """Follow ``node`` while it is a Reference Object; return the first node that is not (``node`` itself if none).

    Args:
        doc: the (bundled) OpenAPI document the pointers refer into.
        node: any node of it.
        where: the field holding ``node``, for messages (``$.paths['/pets'].get.requestBody``).

    Raises:
        InputError: a reference does not resolve, is not local (bundle with :func:`bundle_refs` first), comes back
            to one already followed (a cycle) or the chain is longer than :data:`MAX_REF_HOPS`; names the ref.
    """
    followed: list[str] = []
    while (ref := ref_of(node)) is not None:
        if ref in followed:
            chain = " -> ".join([*followed, ref])
            raise InputError(f"$ref {ref!r} at {where} is a cycle of references ({chain})", hint=_HINT)
        if len(followed) >= MAX_REF_HOPS:
            raise InputError(
                f"$ref {followed[0]!r} at {where} chains more than {MAX_REF_HOPS} references",
                hint="point the $ref at the schema itself, not at another reference",
            )
        followed.append(ref)
        node = _pointer(doc, ref, where if len(followed) == 1 else followed[-2])
    return node


def resolve_dict(doc: dict[str, Any], node: Any, *, where: str = "a $ref") -> dict[str, Any]:
    """:func:`resolve`, then ``{}`` for anything that is not a mapping (a missing or malformed object)."""
    found = resolve(doc, node, where=where)
    return found if isinstance(found, dict) else {}


def object_properties(doc: dict[str, Any], node: Any, *, where: str = "a schema") -> dict[str, Any]:
    """Return ``{name: property schema}`` of an object schema, its ``allOf`` members' properties merged in.

    ``Pet: {allOf: [{$ref: NewPet}, {properties: {id: ...}}]}`` has ``NewPet``'s properties and ``id``. The schema's
    own properties come first, then each member's in order (members' ``allOf`` too, :data:`MAX_REF_HOPS` levels
    deep); a name already seen keeps its first schema; a schema met again (``A: {allOf: [$ref A, $ref A]}``) is not
    walked again, so a hostile cycle costs one visit per schema. ``{}`` for a node that is not a mapping.

    Raises:
        InputError: a reference does not resolve (:func:`resolve`).
    """
    found: dict[str, Any] = {}
    seen: set[int] = set()  # ids of the document's schema objects already walked
    todo: list[tuple[Any, int]] = [(node, 0)]
    while todo:  # depth first: a member's own allOf before the next member
        part, depth = todo.pop()
        schema = resolve_dict(doc, part, where=where)
        if id(schema) in seen:
            continue
        seen.add(id(schema))
        props = schema.get("properties")
        for name, prop in (props if isinstance(props, dict) else {}).items():
            found.setdefault(name, prop)
        members = schema.get("allOf")
        if isinstance(members, list) and depth < MAX_REF_HOPS:
            todo += [(member, depth + 1) for member in reversed(members)]
    return found


# --- walking references and schema cycles ----------------------------------------------------------------------

#: Fields whose keys are names the document chooses (a property, a schema, a media type ...): there a key starting
#: with ``x-`` is a name, everywhere else it is a Specification Extension (OpenAPI 3.1 §4.9).
_NAMED_MAPS = frozenset("properties patternProperties schemas parameters examples requestBodies headers links "
                        "securitySchemes callbacks pathItems content encoding variables webhooks $defs definitions "
                        "dependentSchemas".split())  # fmt: skip
#: Keywords that apply a subschema to the *same* value (JSON Schema 2020-12 §10.2 in-place applicators).
_IN_PLACE = ("allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas")


def _extension(parts: tuple[Any, ...], key: Any) -> bool:
    """True when ``key`` under the node at ``parts`` is a Specification Extension (``x-...``, not a chosen name)."""
    if not isinstance(key, str) or not key.startswith("x-") or (not parts and key == FILES_KEY):
        return False
    named = parts == (FILES_KEY,) or (parts and parts[-1] in _NAMED_MAPS) or parts[-2:-1] == ("components",)
    return not named


def _mappings(node: Any) -> Iterator[tuple[dict[str, Any], tuple[Any, ...], bool]]:
    """Every mapping below ``node`` (iteratively) with its path and whether it lies inside an ``x-`` extension.

    A mapping's children are taken after it is yielded, so the caller may change it (its ``$ref`` is not walked).
    """
    stack: list[tuple[Any, tuple[Any, ...], bool]] = [(node, (), False)]
    while stack:
        item, parts, inside = stack.pop()
        if isinstance(item, list):
            stack.extend((child, (*parts, i), inside) for i, child in enumerate(item))
        elif isinstance(item, dict):
            yield item, parts, inside
            stack.extend((c, (*parts, k), inside or _extension(parts, k)) for k, c in item.items() if k != "$ref")


def references(node: Any) -> Iterator[tuple[dict[str, Any], tuple[Any, ...]]]:
    """Yield every Reference Object below ``node`` with its path (keys and indexes).

    ``$ref`` values inside Specification Extensions (``x-...`` fields) are tool data, not references of the
    document: they are not yielded (so they are not bundled, followed or validated). The caller may change an
    object's ``$ref`` before asking for the next one.
    """
    for item, parts, inside in _mappings(node):
        if not inside and ref_of(item) is not None:
            yield item, parts


#: What :func:`unfollowed_extension_refs` renames ``$ref`` to inside extensions.
UNFOLLOWED_REF = "x-unfollowed-ref"


def unfollowed_extension_refs(doc: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``doc`` with every ``$ref`` key inside an ``x-`` extension renamed :data:`UNFOLLOWED_REF`.

    Pilotage never follows those (:func:`references`), but tools it runs on the document resolve every ``$ref``
    they meet (schemathesis refused ``x-codegen: {$ref: https://...}`` inside a schema as unresolvable).
    """
    out = copy.deepcopy(doc)
    for item, _, inside in _mappings(out):
        if inside and "$ref" in item:
            item[UNFOLLOWED_REF] = item.pop("$ref")
    return out


def _in_place_refs(doc: dict[str, Any], ref: str) -> list[str]:
    """The local references the schema at ``ref`` applies to its own value (through :data:`_IN_PLACE` and ``$ref``)."""
    try:
        schema = _pointer(doc, ref, ref)
    except InputError:
        return []  # openapi-spec-validator names a reference that does not resolve
    out: list[str] = []
    stack = [schema]
    while stack:
        item = stack.pop()
        if not isinstance(item, dict):
            continue
        target = ref_of(item)
        if target is not None and target.startswith("#"):
            out.append(target)
        for key in _IN_PLACE:
            part = item.get(key)
            if isinstance(part, dict) and key == "dependentSchemas":
                stack.extend(part.values())
            else:
                stack.extend(part if isinstance(part, list) else [part])
    return out


def schema_cycle(doc: dict[str, Any]) -> list[str] | None:
    """Return a cycle of schemas that apply to their own value, as the references followed, or None.

    ``A: {allOf: [{$ref: B}]}`` with ``B: {oneOf: [{$ref: A}, ...]}`` validates a value against A by validating the
    same value against B, then A again, for ever: no validator can finish, so no request or answer can be checked.
    A cycle through ``properties``, ``items`` or ``additionalProperties`` (a tree) is fine: each step goes one level
    into the value, and a value is finite. Iterative depth-first search over every local reference of the document.
    """
    edges: dict[str, list[str]] = {}
    roots = dict.fromkeys(item["$ref"] for item, _ in references(doc) if item["$ref"].startswith("#"))
    return first_cycle(roots, lambda ref: edges.setdefault(ref, _in_place_refs(doc, ref)))


def first_cycle(roots: Iterable[str], successors: Callable[[str], Iterable[str]]) -> list[str] | None:
    """Return the first cycle of a directed graph reached from ``roots``, as ``[a, b, …, a]``, or None.

    Iterative depth-first search (white/grey/black), roots and successors in the order given, so the same graph
    always gives the same cycle; ``successors(node)`` is called once per node reached. Also the fleet's dependency
    cycles (:func:`pilotage.fleet.deps.find_cycle`).
    """
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in roots:
        if root in state:
            continue
        path, pending = [root], [iter(successors(root))]
        state[root] = 1
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                pending.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                pending.append(iter(successors(nxt)))
    return None


# --- relative files ---------------------------------------------------------------------------------------------


@dataclass
class _Bundle:
    """The state of one :func:`bundle_refs` call: the root folder, the files read and the bytes they hold."""

    root_file: Path
    files: dict[str, Any] = field(default_factory=dict)
    total_bytes: int = 0

    @property
    def root_dir(self) -> Path:
        return self.root_file.parent


def _refuse(ref: str, where: str, why: str) -> InputError:
    return InputError(
        f"$ref {ref!r} at {where} {why}",
        hint="reference only files beside the document or in its sub-folders, by relative path (common.yaml#/X)",
    )


def _target_file(bundle: _Bundle, ref: str, holder: Path, where: str) -> Path:
    """Return the file a relative ``ref`` names, resolved against the file ``holder`` that contains it.

    Raises:
        InputError: a URL, an absolute path, or a file outside the root document's folder tree.
    """
    parts = urllib.parse.urlsplit(ref)
    if parts.scheme or parts.netloc or ref.startswith("//"):
        raise _refuse(ref, where, "is a URL; Pilotage reads no document from the network")
    name = urllib.parse.unquote(parts.path)
    if Path(name).is_absolute() or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise _refuse(ref, where, "is an absolute path")
    target = (holder.parent / name).resolve()
    if not target.is_relative_to(bundle.root_dir):
        raise _refuse(ref, where, f"leaves the folder of the document ({bundle.root_dir})")
    return target


def _read_file(bundle: _Bundle, target: Path, ref: str, where: str) -> str:
    """Read ``target`` into ``bundle`` (once); return its key (path relative to the root folder, ``/``-separated).

    Raises:
        InputError: too many files or bytes in all, or the file does not load (:func:`load_document`).
    """
    key = target.relative_to(bundle.root_dir).as_posix()
    if key in bundle.files:
        return key
    if len(bundle.files) >= MAX_REF_FILES:
        raise _refuse(ref, where, f"needs more than {MAX_REF_FILES} files")
    size = target.stat().st_size if target.is_file() else 0
    if bundle.total_bytes + size > MAX_DOCUMENT_BYTES:
        raise _refuse(ref, where, f"brings the referenced files over {MAX_DOCUMENT_BYTES:,} bytes in all")
    bundle.total_bytes += size
    hint = f"the $ref {ref!r} at {where} names this file"
    bundle.files[key] = to_json_data(load_document(target, hint=hint))
    return key


def _local_ref(bundle: _Bundle, ref: str, holder: Path, where: str) -> tuple[str, str | None]:
    """Return ``(local pointer, key of a newly read file or None)`` for ``ref`` found in file ``holder``."""
    path, _, fragment = ref.partition("#")
    if fragment and not fragment.startswith("/"):
        raise _refuse(ref, where, "names an anchor; only JSON pointers (#/...) are resolved")
    target = (_target_file(bundle, ref, holder, where) if path else holder).resolve()
    if target == bundle.root_file:
        return "#" + fragment, None
    known = target.relative_to(bundle.root_dir).as_posix() in bundle.files
    key = _read_file(bundle, target, ref, where)
    return f"#/{FILES_KEY}/{_escape(key)}{fragment}", None if known else key


def _rewrite(bundle: _Bundle, node: Any, holder: Path, label: str) -> list[str]:
    """Rewrite every ``$ref`` below ``node`` (read from file ``holder``) in place; return the keys of new files."""
    new: list[str] = []
    for item, parts in references(node):
        ref = item["$ref"]
        if holder != bundle.root_file or not ref.startswith("#"):
            item["$ref"], key = _local_ref(bundle, ref, holder, f"{label}{json_path(parts)}")
            new.extend([key] if key else [])
    return new


def _has_file_ref(node: Any) -> bool:
    return any(not item["$ref"].startswith("#") for item, _ in references(node))


def bundle_refs(doc: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """Return ``doc`` with its references to other files made local (see the module docstring).

    Args:
        doc: the decoded root document (JSON data model), read from ``path``.
        path: the root document's file: relative references resolve against it.

    Returns:
        ``doc`` itself when it references no other file; else a copy with the files under :data:`FILES_KEY`.

    Raises:
        InputError: a reference is a URL, an absolute path, leaves the document's folder, names an anchor, or
            its file is missing, unreadable or over a limit (:func:`load_document`), or there are more than
            :data:`MAX_REF_FILES` files or :data:`MAX_DOCUMENT_BYTES` bytes; names the ref and the field.
    """
    if not _has_file_ref(doc):
        return doc
    if FILES_KEY in doc:
        raise InputError(f"spec file {path} uses the reserved key {FILES_KEY}", hint=f"rename {FILES_KEY}")
    root = Path(path).resolve()
    bundle = _Bundle(root_file=root)
    out = copy.deepcopy(doc)
    pending = [(key, root.parent / key) for key in _rewrite(bundle, out, root, f"{path} ")]
    while pending:
        key, file = pending.pop()
        pending.extend((new, root.parent / new) for new in _rewrite(bundle, bundle.files[key], file, f"{key} "))
    out[FILES_KEY] = bundle.files
    return out


# --- operations -------------------------------------------------------------------------------------------------


def _parameter_list(doc: dict[str, Any], group: Any, where: str) -> list[dict[str, Any]]:
    """The resolved Parameter Objects of one ``parameters`` field.

    Raises:
        InputError: the field is not a list, or an entry is not a mapping with string ``name`` and ``in``.
    """
    if group is None:
        return []
    if not isinstance(group, list):
        raise InputError(f"{where}.parameters is not a list", hint="give parameters as a list of Parameter Objects")
    out = []
    for i, raw in enumerate(group):
        param = resolve(doc, raw, where=f"{where}.parameters[{i}]")
        if (
            not isinstance(param, dict)
            or not isinstance(param.get("name"), str)
            or not isinstance(param.get("in"), str)
        ):
            raise InputError(
                f"{where}.parameters[{i}] is not a Parameter Object (a mapping with name and in)",
                hint="give each parameter a name and an in (path, query, header, cookie)",
            )
        out.append(param)
    return out


def merged_parameters(
    doc: dict[str, Any], path_item: dict[str, Any], operation: dict[str, Any], *, where: str = "$"
) -> list[dict[str, Any]]:
    """Return an operation's parameters: the path item's, then the operation's, each ``$ref`` resolved.

    An operation parameter with the same ``(name, in)`` as a path-level one replaces it in place (OpenAPI 3.1
    §4.8.9.1 "Path Item Object", field ``parameters``).

    Raises:
        InputError: a ``parameters`` field is not a list of Parameter Objects, or a reference fails (:func:`resolve`).
    """
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for param in _parameter_list(doc, path_item.get("parameters"), where):
        merged[(param["name"], param["in"])] = param
    for param in _parameter_list(doc, operation.get("parameters"), where):
        merged[(param["name"], param["in"])] = param
    return list(merged.values())


@dataclass(frozen=True)
class Operation:
    """One operation of a document, its references resolved on access.

    Attributes:
        doc: the document (pointers resolve in it).
        path: the path template (``/pets/{petId}``).
        method: lower-case HTTP method (``get``).
        path_item: the resolved Path Item Object.
        operation: the Operation Object.
    """

    doc: dict[str, Any] = field(repr=False)
    path: str
    method: str
    path_item: dict[str, Any] = field(repr=False)
    operation: dict[str, Any] = field(repr=False)

    @property
    def label(self) -> str:
        """``"GET /pets"``."""
        return f"{self.method.upper()} {self.path}"

    @property
    def where(self) -> str:
        """The operation's JSON path, for messages (``$.paths['/pets'].get``)."""
        return json_path(["paths", self.path, self.method])

    @property
    def parameters(self) -> list[dict[str, Any]]:
        """The merged parameters (:func:`merged_parameters`); raises InputError on a malformed list."""
        return merged_parameters(self.doc, self.path_item, self.operation, where=self.where)

    @property
    def request_body(self) -> dict[str, Any] | None:
        """The resolved Request Body Object, or None when the operation has none."""
        body = self.operation.get("requestBody")
        return None if body is None else resolve_dict(self.doc, body, where=f"{self.where}.requestBody")

    @property
    def responses(self) -> dict[str, dict[str, Any]]:
        """Status code (a string: ``"200"``, ``"4XX"``, ``"default"``) → resolved Response Object, in order."""
        raw = self.operation.get("responses")
        return {
            str(code): resolve_dict(self.doc, response, where=f"{self.where}.responses[{str(code)!r}]")
            for code, response in (raw.items() if isinstance(raw, dict) else [])
        }

    @property
    def security(self) -> list[Any]:
        """The security requirements in force: the operation's ``security``, else the document's (``[]``: none)."""
        requirements = self.operation.get("security", self.doc.get("security"))
        return requirements if isinstance(requirements, list) else []


def iter_operations(doc: Any) -> Iterator[Operation]:
    """Yield the operations of ``doc``: paths in document order, each path's methods in :data:`HTTP_METHODS` order.

    Path items and operations that are not mappings are passed over (an unvalidated document may hold them).

    Raises:
        InputError: a path item's ``$ref`` does not resolve (:func:`resolve`).
    """
    paths = doc.get("paths") if isinstance(doc, dict) else None
    for path, raw in (paths if isinstance(paths, dict) else {}).items():
        item = resolve(doc, raw, where=json_path(["paths", path]))
        if not isinstance(path, str) or not isinstance(item, dict):
            continue
        for method in HTTP_METHODS:
            operation = item.get(method)
            if isinstance(operation, dict):
                yield Operation(doc, path, method, item, operation)


def security_schemes(doc: Any) -> dict[str, dict[str, Any]]:
    """Return the document's ``components.securitySchemes``, name → Security Scheme Object with its ``$ref`` resolved.

    Raises:
        InputError: a ``$ref`` does not resolve (:func:`resolve`).
    """
    if not isinstance(doc, dict):
        return {}
    schemes = resolve_dict(doc, (doc.get("components") or {}).get("securitySchemes"))
    return {str(name): resolve_dict(doc, scheme) for name, scheme in schemes.items()}


#: Request media types whose ``style: form`` serialisation carries primitives and arrays of primitives only.
FORM_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _nests_objects(doc: dict[str, Any], schema: Any) -> bool:
    """Whether a form body's schema has a property that is an object, or an array of objects (one level)."""
    for prop in resolve_dict(doc, schema).get("properties", {}).values():
        found = resolve_dict(doc, prop)
        if found.get("type") == "array":
            found = resolve_dict(doc, found.get("items"))
        if found.get("type") == "object" or "properties" in found:
            return True
    return False


def form_bodies_nesting_objects(doc: Any) -> set[str]:
    """Labels (``"POST /pet"``) of operations with a form request body whose schema nests objects.

    OpenAPI 3's ``style: form`` (the default encoding of ``application/x-www-form-urlencoded`` and the parts of
    ``multipart/form-data``) defines how primitives and arrays of primitives are written; an object inside the body
    (Petstore's ``tags: [Tag]``) has no defined serialisation, so a client's encoding of one is not the valid data.

    Raises:
        InputError: a ``$ref`` does not resolve.
    """
    if not isinstance(doc, dict):
        return set()
    out = set()
    for op in iter_operations(doc):
        content = (op.request_body or {}).get("content") or {}
        media = [m for m in FORM_MEDIA_TYPES if isinstance(content.get(m), dict)]
        if any(_nests_objects(doc, content[m].get("schema")) for m in media):
            out.add(op.label)
    return out


def requires_credentials(op: Operation) -> bool:
    """True when ``op`` needs credentials: a security requirement in force and no ``{}`` (anonymous) alternative.

    OpenAPI 3 "Security Requirement Object": ``security: [{}]`` or an empty requirement among the alternatives
    makes security optional; ``security: []`` on the operation removes the document's requirement.
    """
    return bool(op.security) and not any(isinstance(req, dict) and not req for req in op.security)


def operation_ids(doc: Any) -> list[str]:
    """Return the ``operationId`` values of ``doc``'s operations (those that have one), sorted."""
    return sorted(str(op.operation["operationId"]) for op in iter_operations(doc) if op.operation.get("operationId"))


def takes_no_parameters(op: Operation) -> bool:
    """True when ``op`` can be called as it is: no ``{param}`` in its path and no required parameter.

    A path parameter counts as required (OpenAPI requires ``required: true`` on them); so does a malformed
    ``parameters`` list (the operation is not known to be callable).
    """
    if "{" in op.path:
        return False
    try:
        params = op.parameters
    except InputError:
        return False
    return not any(p.get("required") or p["in"] == "path" for p in params)


def parameterless_gets(doc: Any) -> Iterator[str]:
    """Yield the paths whose ``GET`` :func:`takes_no_parameters`, in document order."""
    for op in iter_operations(doc):
        if op.method == "get" and takes_no_parameters(op):
            yield op.path


def parameterless_get_paths(doc: Any) -> list[str]:
    """Return the paths whose ``GET`` takes no parameter (:func:`takes_no_parameters`), sorted.

    Raises:
        InputError: ``doc`` is not a mapping with a ``paths`` mapping.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("paths"), dict):
        raise InputError("the OpenAPI document has no paths object", hint="give an OpenAPI 3 document")
    return sorted(parameterless_gets(doc))


# --- servers ----------------------------------------------------------------------------------------------------


#: A base path a service can be served under (``/``-separated segments; clients percent-encode the rest): no control
#: or separator characters but the space, no ``%``-escapes (served decoded), no ``\\`` (some clients read ``/``), no
#: braces (a route's parameters).
_BASE_PATH = re.compile(r"(/[^/\x00-\x1f\x7f-\x9f\u2028\u2029%\\{}]+)*")


def base_path(doc: Any) -> str:
    """Return the path of ``servers[0].url`` with its variables set to their defaults, without a trailing ``/``.

    ``https://{host}/v{major}`` with ``major`` defaulting to ``1`` gives ``/v1``; ``/api/`` gives ``/api``; no
    ``servers``, no path or ``/`` give ``""`` (OpenAPI's default server is ``/``: §4.8.1, field ``servers``).

    Raises:
        InputError: the URL uses a variable that ``servers[0].variables`` does not give a string default, or its path
            is not one a service can be served under (an unparsable URL, ``.``/``..`` segments, control characters,
            ``%``, backslash, braces: :data:`_BASE_PATH`); ``json_path`` names the URL.
    """
    servers = doc.get("servers") if isinstance(doc, dict) else None
    server = servers[0] if isinstance(servers, list) and servers and isinstance(servers[0], dict) else {}
    url, variables = server.get("url"), server.get("variables")
    if not isinstance(url, str):
        return ""
    variables = variables if isinstance(variables, dict) else {}

    def default(match: re.Match[str]) -> str:
        variable = variables.get(match.group(1))
        value = variable.get("default") if isinstance(variable, dict) else None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise InputError(
                f"servers[0].url {url[:200]!r} uses the variable {match.group(1)[:80]!r}, which has no default",
                hint=f"add servers[0].variables.{match.group(1)[:80]}.default",
                json_path="$.servers[0].url",
            )
        return str(value)

    try:
        path = urllib.parse.urlsplit(re.sub(r"\{([^{}]+)\}", default, url)).path.rstrip("/")
    except ValueError as exc:
        message = f"servers[0].url {url[:200]!r} is not a URL ({exc})"
        raise InputError(message, hint="fix servers[0].url", json_path="$.servers[0].url") from exc
    path = "/" + path.lstrip("/") if path else ""
    if not _BASE_PATH.fullmatch(path) or any(seg in (".", "..") for seg in path.split("/")):
        raise InputError(
            f"servers[0].url {url[:200]!r} gives the base path {path[:200]!r}, which a service cannot be served under",
            hint="give servers[0].url a plain path (e.g. /api/v3): no control characters, %, \\ or braces",
            json_path="$.servers[0].url",
        )
    return path


def api_url(root_url: str, spec_path: str | Path) -> str:
    """Return where a service at ``root_url`` (``http://127.0.0.1:PORT``) serves the API of ``spec_path``.

    That is ``root_url`` and the document's :func:`base_path` (``http://127.0.0.1:PORT/api/v3``).

    Raises:
        InputError: the document does not load, or its ``servers[0].url`` has a variable without a default.
    """
    return root_url.rstrip("/") + base_path(load_spec(spec_path))
