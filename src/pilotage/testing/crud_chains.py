"""Inferred CRUD chains of an OpenAPI document: what :mod:`pilotage.testing.spec_tests` turns into tests.

A CRUD resource is a collection path ``C`` with ``POST`` and an item path ``C/{param}`` with ``GET`` (or with only
``DELETE`` when ``C``'s ``GET`` lists the items); its key is the
property of the create response named like ``param``, else ``id`` when ``param`` ends with ``Id``/``_id`` (the
convention of the generated services and of most hand-written APIs). A nested collection (``/carts/{cartId}/items``)
gets its parent (``/carts``) created first. Besides the life cycle, each chain lists the oracles the spec allows:
updates, searches, paging, declared defaults, integer query ranges, operations below an item, unknown keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pilotage.codegen.quoting import python_name
from pilotage.spec.openapi import Operation, iter_operations
from pilotage.spec.refs import resolve, resolve_dict
from pilotage.testing.schemathesis_results import documented_rejection

__all__ = ["CrudChain", "infer_crud_chains"]

_METHODS = ("get", "put", "post", "delete", "patch")


@dataclass
class CrudChain:
    """One CRUD resource of a spec.

    Attributes:
        name: test name part (``carts_items``).
        collection: collection path (``/carts/{cartId}/items``).
        item: item path (``/carts/{cartId}/items/{itemId}``).
        param: the item path parameter (``itemId``).
        key: the response property holding the id (``id``).
        updates: the update operations ``{"method", "path", "via", "not_found"}``: ``via`` is ``"path"`` (item
            ``PUT``/``PATCH``, or an item ``POST`` whose query or body names resource properties, e.g. Petstore's
            ``POST /pet/{petId}?name=&status=``) or ``"body"`` (a collection ``PUT`` with the key in the body,
            ``PUT /pet``); ``not_found`` is True when the operation declares 404 (then it must answer 404 once the
            resource is deleted).
        has_get: True when the item path has ``GET``; else the resource is read from the list (an item path with
            only ``DELETE``, e.g. ``/carts/{cartId}/items/{itemId}``).
        create_not_found: True when a nested collection's ``POST`` declares 404 (under a deleted parent it must
            answer 404).
        create_refusals: the 4xx statuses the collection's ``POST`` documents (402 payment declined, 409, 422 a
            business rule...; every one with ``4XX``): a spec-valid body answered with one is refused by the
            contract, not a finding — the test draws another body. The same rule as for schemathesis' findings
            (:func:`~pilotage.testing.schemathesis_results.documented_rejection`).
        delete: True when the item path has ``DELETE``.
        delete_not_found: True when that ``DELETE`` declares 404 (a second delete must answer 404).
        has_list: True when the collection has ``GET`` returning an array.
        parent: name of the parent chain for a nested collection (its id fills the scope parameter), or None.
        scope_param: the collection's path parameter filled with the parent's id, or None.
        fields: the resource's properties (of the create response).
        scalars: the scalar properties' schemas (``$ref``-free): an update's query value counts as sent only when
            it is valid for the property (a service may ignore an invalid one).
        searches: ``GET`` operations on the collection or below it (not the item path) returning an array, with
            query parameters named like scalar resource properties: ``{"path", "params", "exact", "limit"}`` —
            ``exact`` maps the enum/boolean parameters (every result must match them) to their values, ``limit``
            is a page-size parameter set to its maximum (``[name, maximum]`` or None).
        page: the collection ``GET``'s page-size parameter with a declared default, ``{"param", "default",
            "maximum"}``, or None: the paging test creates ``default + 1`` resources and checks the page sizes.
        defaults: scalar properties of the create body with a declared ``default``: a create that omits one must
            come back with the default.
        below: operations on paths below the item (``/pet/{petId}/uploadImage``, same path parameters) that
            declare 404, shaped as ``updates`` (``{"method", "path", "via", "not_found"}``): once the resource is
            deleted they must answer 404.
        defaulted: ``GET`` operations on the collection, the item path or below it with optional query parameters
            that declare a scalar default, ``{"path", "params": {name: default}}``: without them the answer must
            be the one with the defaults given explicitly.
        probes: ``GET``/``DELETE`` operations on the item path and below it whose path parameters are all
            integers, ``{"method", "path"}``: asked for keys at integer boundaries (0, -1, 2³¹, 2⁵³ + 1, 2⁶³ − 1,
            2⁶³, 2⁶⁴ ...) that no resource has, they must not answer a server error (5xx).
        bounded: integer query parameters with a declared range on the collection's, the item's and below-item
            ``GET``s, ``{"path", "param", "valid": [lowest, highest], "invalid": [below, above]}``: with the
            resource created, each valid bound must be accepted (2xx) and each value just outside rejected (4xx).
    """

    name: str
    collection: str
    item: str
    param: str
    key: str
    updates: list[dict[str, Any]] = field(default_factory=list)
    has_get: bool = True
    create_not_found: bool = False
    create_refusals: list[int] = field(default_factory=list)
    delete: bool = False
    delete_not_found: bool = False
    has_list: bool = False
    parent: str | None = None
    scope_param: str | None = None
    fields: list[str] = field(default_factory=list)
    scalars: dict[str, dict[str, Any]] = field(default_factory=dict)
    searches: list[dict[str, Any]] = field(default_factory=list)
    page: dict[str, Any] | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    below: list[dict[str, Any]] = field(default_factory=list)
    defaulted: list[dict[str, Any]] = field(default_factory=list)
    probes: list[dict[str, str]] = field(default_factory=list)
    bounded: list[dict[str, Any]] = field(default_factory=list)


def _json_schema(doc: dict[str, Any], holder: Any) -> dict[str, Any]:
    content = (resolve(doc, holder) or {}).get("content") or {}
    media: Any = content.get("application/json") or next(iter(content.values()), {}) if content else {}
    schema = resolve(doc, (media or {}).get("schema") or {})
    return schema if isinstance(schema, dict) else {}


def _success(doc: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    responses = operation.get("responses") or {}
    for code in sorted(str(c) for c in responses):
        if code.startswith("2"):
            return _json_schema(doc, responses.get(code) if code in responses else responses.get(int(code)))
    return {}


def _key_for(param: str, props: dict[str, Any]) -> str | None:
    if param in props:
        return param
    if re.search(r"(Id|_id|ID)$", param) and "id" in props:
        return "id"
    return None


def _declares_404(operation: dict[str, Any]) -> bool:
    return "404" in {str(code) for code in (operation.get("responses") or {})}


def _refusals(operation: dict[str, Any]) -> list[int]:
    """The 4xx statuses that refuse a valid create by the document (:func:`documented_rejection`, one rule)."""
    documented = frozenset(str(code) for code in operation.get("responses") or {})
    return [status for status in range(400, 500) if documented_rejection(status, documented)]


def _params(op: Operation, where: str) -> list[dict[str, Any]]:
    """The operation's parameters ``in`` ``where`` (``query``, ``path`` ...), path-level ones merged in.

    See :attr:`pilotage.spec.openapi.Operation.parameters`.
    """
    return [p for p in op.parameters if p["in"] == where]


def _operation(doc: dict[str, Any], path: str, method: str) -> Operation | None:
    """The operation ``method`` (lower case) of ``path``, or None."""
    return next((op for op in iter_operations(doc) if op.path == path and op.method == method), None)


def _nonnull(doc: dict[str, Any], schema: Any) -> dict[str, Any]:
    """The schema itself, or its one non-null member of an ``anyOf``/``oneOf`` (FastAPI's ``bool | None``)."""
    schema = resolve(doc, schema)
    if not isinstance(schema, dict):
        return {}
    members = [resolve(doc, m) for m in schema.get("anyOf") or schema.get("oneOf") or []]
    members = [m for m in members if isinstance(m, dict) and m.get("type") != "null"]
    return members[0] if len(members) == 1 else schema


def _scalar(schema: dict[str, Any]) -> bool:
    return schema.get("type") in ("string", "integer", "number", "boolean")


def _updates(doc: dict[str, Any], collection: str, item: str, key: str, props: dict[str, Any]) -> list[dict[str, Any]]:
    """The update operations of a resource (:class:`CrudChain` ``updates``), item path first."""
    found = []
    for method in ("put", "patch", "post"):
        op = _operation(doc, item, method)
        if op is None:
            continue
        if method == "post":  # an item POST is an update only when it names resource properties
            named = {p["name"] for p in _params(op, "query")}
            named |= set(_json_schema(doc, op.request_body).get("properties") or {})
            if not named & set(props):
                continue
        found.append({"method": method.upper(), "path": item, "via": "path", "not_found": _declares_404(op.operation)})
    op = _operation(doc, collection, "put")
    if op is not None and key in (_json_schema(doc, op.request_body).get("properties") or {}):
        found.append({"method": "PUT", "path": collection, "via": "body", "not_found": _declares_404(op.operation)})
    return found


def _body_defaults(doc: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    """Scalar properties of an operation's JSON request body that declare a default: ``{name: default}``."""
    props = _json_schema(doc, operation.get("requestBody")).get("properties") or {}
    found = {}
    for name, prop in props.items():
        prop = _nonnull(doc, prop)
        if _scalar(prop) and "default" in prop and prop["default"] is not None:
            found[name] = prop["default"]
    return found


def _below(doc: dict[str, Any], item: str) -> list[dict[str, Any]]:
    """Operations below the item path with no other path parameter that declare 404 (:class:`CrudChain`)."""
    found = []
    for op in iter_operations(doc):
        if not op.path.startswith(item + "/") or "{" in op.path[len(item) :] or op.method not in _METHODS:
            continue
        if _declares_404(op.operation):
            found.append({"method": op.method.upper(), "path": op.path, "via": "path", "not_found": True})
    return found


def _reads(doc: dict[str, Any], collection: str, item: str) -> list[Operation]:
    """The ``GET``s the chain can make with the resource's own keys.

    On the collection, the item and below it (no other path parameter), requiring no query parameter.
    """
    found = []
    for op in iter_operations(doc):
        on_item = op.path == item or (op.path.startswith(item + "/") and "{" not in op.path[len(item) :])
        if (on_item or op.path == collection) and op.method == "get" and not _required_query(op):
            found.append(op)
    return found


def _defaulted(doc: dict[str, Any], collection: str, item: str) -> list[dict[str, Any]]:
    """``GET`` operations with optional scalar query defaults: collection, item and below (:class:`CrudChain`)."""
    found = []
    for op in _reads(doc, collection, item):
        params = {}
        for param in _params(op, "query"):
            schema = _nonnull(doc, param.get("schema"))
            if _scalar(schema) and schema.get("default") is not None:
                params[param["name"]] = schema["default"]
        if params:
            found.append({"path": op.path, "params": params})
    return found


def _bounded(doc: dict[str, Any], collection: str, item: str) -> list[dict[str, Any]]:
    """Integer query parameters with a declared range on the collection's, the item's and below-item ``GET``s.

    ``{"path", "param", "valid": [lowest, highest], "invalid": [below, above]}`` (a bound the spec leaves open is
    None): ``minimum``/``maximum``, OpenAPI 3.1's numeric ``exclusiveMinimum``/``exclusiveMaximum`` and 3.0's boolean
    form. Operations that require a query parameter are left out (the test sends one parameter at a time).
    """
    found = []
    for op in _reads(doc, collection, item):
        for param in _params(op, "query"):
            schema = _nonnull(doc, param.get("schema"))
            if schema.get("type") != "integer":
                continue
            low, high = _range(schema)
            if low is not None or high is not None:
                outside = [None if low is None else low - 1, None if high is None else high + 1]
                found.append({"path": op.path, "param": param["name"], "valid": [low, high], "invalid": outside})
    return found


def _range(schema: dict[str, Any]) -> tuple[int | None, int | None]:
    """The lowest and highest valid integer of an integer schema (None where it is open)."""

    def number(key: str) -> int | None:  # an integer, not a bool (JSON Schema's 3.0 flag form)
        value = schema.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    low, high = number("minimum"), number("maximum")
    exclusive_low, exclusive_high = number("exclusiveMinimum"), number("exclusiveMaximum")
    if schema.get("exclusiveMinimum") is True and low is not None:  # OpenAPI 3.0: a flag on minimum
        low += 1
    elif exclusive_low is not None:  # 3.1: the bound itself
        low = exclusive_low + 1 if low is None else max(low, exclusive_low + 1)
    if schema.get("exclusiveMaximum") is True and high is not None:
        high -= 1
    elif exclusive_high is not None:
        high = exclusive_high - 1 if high is None else min(high, exclusive_high - 1)
    return low, high


def _probes(doc: dict[str, Any], item: str) -> list[dict[str, str]]:
    """Item operations the unknown-keys test sends boundary integers to (:class:`CrudChain` ``probes``).

    ``GET`` (without required query parameters) and ``DELETE`` on the item path and below it, when every path
    parameter of the path is an integer.
    """
    found = []
    for op in iter_operations(doc):
        if not (op.path == item or op.path.startswith(item + "/")) or "{" in op.path[len(item) :]:
            continue
        if op.method not in ("get", "delete") or (op.method == "get" and _required_query(op)):
            continue
        params = _params(op, "path")
        if params and all(_nonnull(doc, p.get("schema")).get("type") == "integer" for p in params):
            found.append({"method": op.method.upper(), "path": op.path})
    return found


def _required_query(op: Operation) -> bool:
    """True when the operation requires a query parameter (the generated searches and list calls send none)."""
    return any(p.get("required") for p in _params(op, "query"))


def _limit(op: Operation) -> dict[str, Any] | None:
    """The page-size query parameter ``{"param", "maximum", "default"}`` of ``op``, or None."""
    for param in _params(op, "query"):
        schema = resolve_dict(op.doc, param.get("schema"))
        if param.get("name") in _LIMITS and schema.get("type") == "integer" and isinstance(schema.get("maximum"), int):
            return {"param": param["name"], "maximum": schema["maximum"], "default": schema.get("default")}
    return None


def _page(doc: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The page-size parameter of a path's ``GET`` when it declares a default of at most 100, else None."""
    op = _operation(doc, path, "get")
    limit = _limit(op) if op is not None else None
    if op is None or _required_query(op) or limit is None or not isinstance(limit["default"], int):
        return None
    if not 1 <= limit["default"] <= 100:
        return None
    return limit


def _searches(doc: dict[str, Any], collection: str, item: str, props: dict[str, Any]) -> list[dict[str, Any]]:
    """``GET`` searches over the resource (:class:`CrudChain` ``searches``)."""
    found = []
    base = collection.rstrip("/")
    for op in iter_operations(doc):
        if op.path == item or op.method != "get" or "{" in op.path[len(base) :]:
            continue
        if op.path != collection and not op.path.startswith(base + "/"):
            continue
        if _success(doc, op.operation).get("type") != "array":
            continue
        params, exact = [], {}
        if _required_query(op):
            continue  # a search that needs a query parameter the chain cannot fill
        for param in _params(op, "query"):
            schema, prop = _nonnull(doc, param.get("schema")), _nonnull(doc, props.get(param["name"]))
            if param["name"] in _LIMITS or not _scalar(schema) or not _scalar(prop):
                continue
            params.append(param["name"])
            if schema.get("type") == "boolean" or isinstance(schema.get("enum"), list):
                exact[param["name"]] = [True, False] if schema.get("type") == "boolean" else list(schema["enum"])
        if params:
            limit = _limit(op)
            found.append({"path": op.path, "params": params, "exact": exact,
                          "limit": [limit["param"], limit["maximum"]] if limit else None})  # fmt: skip
    return found


#: Query parameter names read as a page size.
_LIMITS = ("limit", "size", "per_page", "page_size", "pageSize")


def infer_crud_chains(doc: dict[str, Any]) -> list[CrudChain]:
    """Find the CRUD resources of an OpenAPI document (rules in the module docstring).

    Args:
        doc: the OpenAPI 3 document as a dict (references to other files made local:
            :func:`pilotage.spec.refs.bundle_refs`).

    Returns:
        The chains, parents before their nested collections, in path order.
    """
    paths = {path: resolve(doc, item) for path, item in (doc.get("paths") or {}).items()}
    chains: dict[str, CrudChain] = {}
    for collection in sorted(paths, key=lambda p: (p.count("/"), p)):
        ops = paths[collection] or {}
        if "post" not in ops:
            continue
        for item, item_ops in paths.items():
            match = re.fullmatch(re.escape(collection.rstrip("/")) + r"/\{([^}/]+)\}", item)
            listed = _success(doc, ops["get"]).get("type") == "array" if "get" in ops else False
            if not match or not ("get" in (item_ops or {}) or ("delete" in (item_ops or {}) and listed)):
                continue  # a resource needs a read: the item's GET, or the list when the item has only DELETE
            props = resolve(doc, _success(doc, ops["post"]).get("properties")) or {}
            key = _key_for(match.group(1), props)
            if key is None:
                continue
            scope = re.findall(r"\{([^}/]+)\}", collection)
            parent = None
            if scope:
                parent_item = collection.rsplit("/", 1)[0]
                parent = next((c.name for c in chains.values() if c.item == parent_item), None)
                if parent is None or len(scope) != 1:
                    continue  # a nested collection whose parent cannot be created here
            list_schema = _success(doc, ops["get"]) if "get" in ops else {}
            slug = re.sub(r"\W+", "_", re.sub(r"\{[^}]*\}", "", collection), flags=re.ASCII).strip("_").lower()
            name = python_name(slug or "root", "keep", taken=set(chains))
            chains[name] = CrudChain(
                name=name,
                collection=collection,
                item=item,
                param=match.group(1),
                key=key,
                updates=_updates(doc, collection, item, key, props),
                has_get="get" in item_ops,
                create_not_found=bool(scope) and _declares_404(ops["post"]),
                create_refusals=_refusals(ops["post"]),
                delete="delete" in item_ops,
                delete_not_found="delete" in item_ops and _declares_404(item_ops["delete"]),
                has_list=list_schema.get("type") == "array",
                parent=parent,
                scope_param=scope[0] if scope else None,
                fields=sorted(props),
                scalars={k: _nonnull(doc, v) for k, v in sorted(props.items()) if _scalar(_nonnull(doc, v))},
                searches=_searches(doc, collection, item, props),
                defaults=_body_defaults(doc, ops["post"]),
                below=_below(doc, item),
                defaulted=_defaulted(doc, collection, item),
                probes=_probes(doc, item),
                bounded=_bounded(doc, collection, item),
                page=_page(doc, collection) if list_schema.get("type") == "array" else None,
            )
            break
    return list(chains.values())
