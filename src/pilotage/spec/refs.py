"""``$ref`` in OpenAPI 3 documents: what a reference names, following it, walking them, schema cycles, other files.

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

Split from :mod:`pilotage.spec.openapi`, the reader of operations and servers, which resolves through this module.
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
from pilotage.spec.load import MAX_DOCUMENT_BYTES, json_path, load_document, to_json_data

__all__ = [
    "FILES_KEY",
    "MAX_REF_FILES",
    "MAX_REF_HOPS",
    "UNFOLLOWED_REF",
    "bundle_refs",
    "first_cycle",
    "ref_name",
    "ref_of",
    "references",
    "resolve",
    "resolve_dict",
    "schema_cycle",
    "unfollowed_extension_refs",
]

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
