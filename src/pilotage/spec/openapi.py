"""The one reader of OpenAPI 3 structure: operations with their parameters, object properties, the base path.

Operations (:func:`iter_operations`) come in path order as :class:`Operation`, whose parameters merge the
path item's and the operation's (the operation's win on the same ``(name, in)``: OpenAPI 3.1 §4.8.9.1) with
every reference resolved. Example values of schemas are built by :func:`pilotage.codegen.examples.example`
(which resolves through :mod:`pilotage.spec.refs`); this module only reads what the document says.

References (``$ref``: resolution, walking, schema cycles, other files bundled) are :mod:`pilotage.spec.refs`'.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pilotage.errors import InputError
from pilotage.spec.load import json_path, load_spec
from pilotage.spec.refs import MAX_REF_HOPS, resolve, resolve_dict

__all__ = [
    "FORM_MEDIA_TYPES",
    "HTTP_METHODS",
    "Operation",
    "api_url",
    "base_path",
    "form_bodies_nesting_objects",
    "iter_operations",
    "merged_parameters",
    "object_properties",
    "operation_ids",
    "parameterless_get_paths",
    "parameterless_gets",
    "requires_credentials",
    "security_schemes",
    "takes_no_parameters",
]

#: The operation fields of a Path Item Object, in the specification's order (OpenAPI 3.0/3.1 §4.8.9).
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


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
