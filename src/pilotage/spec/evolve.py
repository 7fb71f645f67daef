"""Evolve an OpenAPI document with a parsed change request, after resolving its names against the document.

:func:`plan_change` resolves a :class:`~pilotage.spec.grammar.ParsedRequest` into a :class:`Change` or refuses it
with one line naming the reason and, where there is one, the closest reading (``did you mean ...``):

* **add-resource** (``DiscountCode``): ``components.schemas.DiscountCode`` (``id``: integer, int64, readOnly, the
  server assigns it; the requested fields, required unless marked optional), ``GET``/``POST /discount-codes``
  (``listDiscountCodes`` 200 array, ``createDiscountCode`` 201/422) and ``GET``/``PUT``/``DELETE
  /discount-codes/{id}`` (200/200/204, 404 for an unknown id, 422 for invalid input). Refused when the schema
  (compared by words: ``Cart_Item`` is ``CartItem``), a path or an operationId exists, or the collection is one
  of :data:`RESERVED_PATHS` (the generated service's own health and metrics endpoints).
* **add-field** (``tags`` on ``orders``): optional properties added to the component schema the TARGET names —
  by schema name (``Order``, ``orders``, ``order items``) or by a collection path (``/orders``: the schema its
  operations read and write). Refused when the schema is not a plain object schema or has the property already.
* **add-operation** (``delete`` on ``orders``): the operation added to the TARGET's collection (``list``,
  ``create``) or item path (``get``, ``update``, ``delete``; ``/orders/{orderId}``, its parameter, security and
  tags as the path's other operations declare them). Refused when the method exists or there is no item path.

:func:`apply_change` returns a new document (the input is not modified) validated with ``openapi-spec-validator``;
:func:`evolve` is both.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from pilotage.errors import InputError
from pilotage.spec.grammar import (
    FIELD_TYPES,
    VERBS,
    ParsedRequest,
    field_request,
    operation_request,
    pluralize,
    singularize,
)
from pilotage.spec.load import validate_spec
from pilotage.spec.openapi import iter_operations, merged_parameters, operation_ids, requires_credentials
from pilotage.spec.refs import ref_name, resolve_dict

__all__ = ["RESERVED_PATHS", "Change", "apply_change", "evolve", "operations", "plan_change"]

#: Paths every generated service serves itself (``/healthz``: health check; ``/metrics``: Prometheus metrics).
RESERVED_PATHS = ("/healthz", "/metrics")
#: VERB → (HTTP method, on the item path).
_METHODS = {"list": ("get", False), "create": ("post", False), "get": ("get", True), "update": ("put", True),
            "delete": ("delete", True)}  # fmt: skip


@dataclass(frozen=True)
class Change:
    """A request resolved against a document.

    Attributes:
        kind: ``add-resource``, ``add-field`` or ``add-operation``.
        schema: the component schema added, changed, or that the resource's operations read and write.
        fields: field → request type added to ``schema`` (``{}`` for an operation).
        required: the added fields that are required (only a new resource has any).
        operations: ``"METHOD /path"`` of every operation added, in document order.
        collection_path: the resource's collection path (``/orders``; ``""`` for a field).
        item_path: its item path (``/orders/{orderId}``), ``""`` when it has none or for a field.
    """

    kind: str
    schema: str
    fields: dict[str, str] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    collection_path: str = ""
    item_path: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the change as JSON-serialisable data (the design agent's decision input)."""
        return dataclasses.asdict(self)


def operations(doc: dict[str, Any]) -> list[str]:
    """Return the operations of ``doc`` as ``"METHOD /path"`` strings, in :func:`iter_operations` order."""
    return [op.label for op in iter_operations(doc)]


# --- names --------------------------------------------------------------------------------------------------------


def _key(name: str) -> str:
    """Compare key of a name: lower-case words, the last one singular, joined (CartItem, "cart items": cartitem)."""
    words = [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", name)]
    if not words:
        return name.lower()
    words[-1] = singularize(words[-1])
    return "".join(words)


def _pascal(name: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in re.findall(r"[A-Za-z0-9]+", name)) or "Item"


def _schemas(doc: dict[str, Any]) -> dict[str, Any]:
    found = (doc.get("components") or {}).get("schemas")
    return found if isinstance(found, dict) else {}


def _final(doc: dict[str, Any], name: str) -> str:
    """The component schema ``name`` is, or refers to through a chain of plain references."""
    seen = {name}
    while (nxt := ref_name(_schemas(doc).get(name))) is not None and nxt in _schemas(doc) and nxt not in seen:
        name = nxt
        seen.add(name)
    return name


def _json_schema(doc: dict[str, Any], holder: Any) -> Any:
    content = resolve_dict(doc, holder).get("content")
    media = resolve_dict(doc, (content or {}).get("application/json")) if isinstance(content, dict) else {}
    return media.get("schema")


def _answer(op: dict[str, Any]) -> Any:
    """The Response Object of an operation's first documented 2xx status, or None."""
    raw = op.get("responses")
    responses: dict[str, Any] = raw if isinstance(raw, dict) else {}
    ok = sorted(str(code) for code in responses if str(code).startswith("2"))
    return responses[ok[0]] if ok else None


def _held_schema(doc: dict[str, Any], collection: str, item: str) -> str | None:
    """The component schema a resource's operations read and write (item GET answer, POST/PUT body, list items)."""
    paths = doc.get("paths") or {}
    coll, one = resolve_dict(doc, paths.get(collection)), resolve_dict(doc, paths.get(item)) if item else {}
    candidates = []
    if isinstance(one.get("get"), dict):
        candidates.append(_json_schema(doc, _answer(one["get"])))
    for op in (coll.get("post"), one.get("put")):
        if isinstance(op, dict):
            candidates.append(_json_schema(doc, op.get("requestBody")))
    if isinstance(coll.get("get"), dict):
        candidates.append(resolve_dict(doc, _json_schema(doc, _answer(coll["get"]))).get("items"))
    names = [ref_name(c) for c in candidates]
    return next((_final(doc, n) for n in names if n is not None and n in _schemas(doc)), None)


@dataclass(frozen=True)
class _Collection:
    path: str
    item: str  # "" when the document has no item path below it
    schema: str | None


def _collections(doc: dict[str, Any]) -> list[_Collection]:
    """Every path whose last segment is not a parameter, with its item path (``path/{param}``) and schema."""
    paths = [p for p in (doc.get("paths") or {}) if isinstance(p, str)]
    out = []
    for path in paths:
        last = path.rstrip("/").rsplit("/", 1)[-1]
        if not last or "{" in last or path.rstrip("/") in RESERVED_PATHS:
            continue
        item = next((p for p in paths if re.fullmatch(re.escape(path.rstrip("/")) + r"/\{[^{}/]+\}", p)), "")
        out.append(_Collection(path, item, _held_schema(doc, path, item)))
    return out


def _find_collection(doc: dict[str, Any], target: str) -> _Collection | None:
    """The collection TARGET names: the path itself, else the shortest whose last segment or schema matches."""
    found = _collections(doc)
    if target.startswith("/"):
        return next((c for c in found if c.path.rstrip("/") == target.rstrip("/")), None)
    wanted = _key(target)
    by_segment = [c for c in found if _key(c.path.rstrip("/").rsplit("/", 1)[-1]) == wanted]
    by_schema = [c for c in found if c.schema is not None and _key(c.schema) == wanted]
    ranked = sorted(by_segment or by_schema, key=lambda c: (not c.item, c.path.count("{"), len(c.path)))
    return ranked[0] if ranked else None


def _find_schema(doc: dict[str, Any], target: str) -> str | None:
    """The component schema TARGET names, by name (``orders`` → ``Order``) or through its collection."""
    if not target.startswith("/"):
        wanted = _key(target)
        named = [n for n in _schemas(doc) if _key(n) == wanted]
        if named:
            return _final(doc, next((n for n in named if n.lower() == target.replace(" ", "")), named[0]))
    collection = _find_collection(doc, target)
    return collection.schema if collection else None


# --- refusals -----------------------------------------------------------------------------------------------------


def _refuse(req: ParsedRequest, path: str, why: str, rule: str, closest: str | None = None) -> InputError:
    """The one-line refusal of a request that parses but does not apply to the document at ``path``."""
    shown = req.text if len(req.text) <= 120 else req.text[:117] + "..."
    meant = f"; did you mean {closest!r}?" if closest else ""
    hints = {
        "reserved-path": "name the resource otherwise: the generated service serves /healthz and /metrics itself",
        "unresolved-name": "name a schema or a collection path of the document",
        "not-an-object": "add the field to a plain object schema (an object part of the allOf)",
        "no-item-path": "ask for a list or create operation, or add the item path to the document first",
    }
    return InputError(
        f"request {shown!r} cannot be applied to spec file {path}: {why}{meant}",
        hint=hints.get(rule, "ask for something the document does not have yet"),
        path=path,
        rule=rule,
        why=f"{why}{meant}",
        closest=closest,
    )


def _unknown(doc: dict[str, Any], req: ParsedRequest, path: str) -> InputError:
    """Refuse an unresolved TARGET, with the nearest schema or collection name as the closest reading."""
    names = [*_schemas(doc), *(c.path.rstrip("/").rsplit("/", 1)[-1] for c in _collections(doc))]
    near = difflib.get_close_matches(req.target.lower(), [n.lower() for n in names], 1, 0.6)
    closest = None
    if near:
        closest = field_request(req.fields, near[0]) if req.kind == "field" else operation_request(req.verb, near[0])
    known = ", ".join(sorted(set(names))[:10]) or "none"
    why = f"it names no schema or collection {req.target!r} (the document has: {known})"
    if set(req.target.split()) & {"service", "api", "app", "application"}:
        why += "; the request applies to the --spec document, whose schemas and paths TARGET names"
    return _refuse(req, path, why, "unresolved-name", closest)


# --- planning -----------------------------------------------------------------------------------------------------


def _crud_ids(schema: str) -> dict[str, str]:
    """VERB → the operationId a new operation gets (``listDiscountCodes``, ``createDiscountCode`` ...)."""
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", _pascal(schema)) or [schema]
    plural = "".join(words[:-1]) + _pascal(pluralize(words[-1].lower()))
    return {"list": f"list{plural}", **{verb: f"{verb}{_pascal(schema)}" for verb in VERBS if verb != "list"}}


def _plan_resource(doc: dict[str, Any], req: ParsedRequest, path: str) -> Change:
    reserved = {req.collection_path, f"/{req.slug}"} & set(RESERVED_PATHS)  # /metrics: "metric" and "metrics"
    if reserved:
        why = f"its name is {min(reserved)}, the generated service's own endpoint"
        raise _refuse(req, path, why, "reserved-path")
    existing = next((n for n in _schemas(doc) if _key(n) == _key(req.resource)), None)
    taken = [p for p in (req.collection_path, req.item_path) if p in (doc.get("paths") or {})]
    if existing is not None or taken:
        what = f"the schema {existing}" if existing is not None else f"the path {taken[0]}"
        collection = _find_collection(doc, " ".join(req.words))
        new = {n: t for n, t in req.fields.items() if existing is None or n not in _props(doc, existing)}
        closest = field_request(new, _target_name(collection)) if collection and collection.schema and new else None
        raise _refuse(req, path, f"the document already has {what}", "no-overwrite", closest)
    ids = set(_crud_ids(req.resource).values()) & set(operation_ids(doc))
    if ids:
        raise _refuse(req, path, f"the document already uses the operationId {sorted(ids)[0]!r}", "no-overwrite")
    ops = [f"{m.upper()} {req.collection_path}" for m in ("get", "post")]
    ops += [f"{m.upper()} {req.item_path}" for m in ("get", "put", "delete")]
    return Change(
        "add-resource", req.resource, dict(req.fields), list(req.required), ops, req.collection_path, req.item_path
    )


def _target_name(collection: _Collection | None) -> str:
    return collection.path.rstrip("/").rsplit("/", 1)[-1] if collection else ""


def _props(doc: dict[str, Any], schema: str) -> dict[str, Any]:
    props = resolve_dict(doc, _schemas(doc).get(schema)).get("properties")
    return props if isinstance(props, dict) else {}


def _plan_field(doc: dict[str, Any], req: ParsedRequest, path: str) -> Change:
    name = _find_schema(doc, req.target)
    if name is None:
        raise _unknown(doc, req, path)
    schema = resolve_dict(doc, _schemas(doc)[name])
    parts = [ref_name(p) for p in schema.get("allOf") or [] if ref_name(p)]
    if any(k in schema for k in ("allOf", "oneOf", "anyOf")) or "object" not in _object_types(schema):
        why = f"the schema {name} is not a plain object schema (it is {_described(schema)})"
        closest = field_request(req.fields, str(parts[-1])) if parts else None
        raise _refuse(req, path, why, "not-an-object", closest)
    present = [f for f in req.fields if f in _props(doc, name)]
    if present:
        rest = {f: t for f, t in req.fields.items() if f not in present}
        closest = field_request(rest, req.target) if rest else None
        raise _refuse(req, path, f"the schema {name} already has the property {present[0]!r}", "no-overwrite", closest)
    return Change("add-field", name, dict(req.fields))


def _object_types(schema: dict[str, Any]) -> list[str]:
    declared = schema.get("type")
    types = [declared] if isinstance(declared, str) else list(declared) if isinstance(declared, list) else []
    return types or (["object"] if "properties" in schema or not schema else [])


def _described(schema: dict[str, Any]) -> str:
    composed = next((k for k in ("allOf", "oneOf", "anyOf") if k in schema), None)
    return f"composed with {composed}" if composed else f"of type {schema.get('type')}"


def _plan_operation(doc: dict[str, Any], req: ParsedRequest, path: str) -> Change:
    collection = _find_collection(doc, req.target)
    if collection is None:
        raise _unknown(doc, req, path)
    method, on_item = _METHODS[req.verb]
    where = collection.item if on_item else collection.path
    if not where:
        why = f"{collection.path} has no item path ({collection.path.rstrip('/')}/{{id}}) for a {req.verb} operation"
        raise _refuse(req, path, why, "no-item-path")
    raw = (doc.get("paths") or {}).get(where)
    if isinstance(raw, dict) and "$ref" in raw:
        raise _refuse(req, path, f"the path item {where} is a $ref: add the operation where it points", "no-overwrite")
    if method in resolve_dict(doc, raw):
        missing = _missing_verbs(doc, collection)
        closest = operation_request(missing[0], req.target) if missing else None
        raise _refuse(req, path, f"the document already has {method.upper()} {where}", "no-overwrite", closest)
    if collection.schema is None:
        why = f"no operation of {collection.path} names the schema it holds (a $ref to components.schemas)"
        raise _refuse(req, path, why, "unresolved-name")
    op_id = _crud_ids(collection.schema)[req.verb]
    if op_id in operation_ids(doc):
        raise _refuse(req, path, f"the document already uses the operationId {op_id!r}", "no-overwrite")
    return Change("add-operation", collection.schema, {}, [], [f"{method.upper()} {where}"], collection.path,
                  collection.item)  # fmt: skip


def _missing_verbs(doc: dict[str, Any], collection: _Collection) -> list[str]:
    """The VERBs a collection could still get (its item verbs only when it has an item path)."""
    paths = doc.get("paths") or {}
    out = []
    for verb in VERBS:
        method, on_item = _METHODS[verb]
        where = collection.item if on_item else collection.path
        if where and method not in resolve_dict(doc, paths.get(where)):
            out.append(verb)
    return out


def plan_change(doc: dict[str, Any], req: ParsedRequest, *, path: str = "<spec>") -> Change:
    """Resolve ``req``'s names against ``doc`` (see the module docstring).

    Raises:
        InputError: the request does not apply to ``doc``; one line with the reason and the closest reading. Its
            context holds ``rule`` (``no-overwrite``, ``reserved-path``, ``unresolved-name``, ``not-an-object``,
            ``no-item-path``), ``why`` and ``closest`` for the design agent's recorded decision.
    """
    if req.kind == "field":
        return _plan_field(doc, req, path)
    if req.kind == "operation":
        return _plan_operation(doc, req, path)
    return _plan_resource(doc, req, path)


# --- applying -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Names:
    """What a new operation is written with: the schema, its words, tags and the item path's parameters."""

    schema: str
    label: str
    tags: list[str]
    parameters: list[dict[str, Any]]
    security: Any = None


def _operation(verb: str, n: _Names) -> dict[str, Any]:
    """The Operation Object of VERB on a resource (Pilotage's CRUD conventions)."""
    ref = {"$ref": f"#/components/schemas/{n.schema}"}
    answer = {"content": {"application/json": {"schema": ref}}}
    invalid = {"description": "Validation error: the input does not match the schema"}
    missing = {"description": f"No {n.label} with this id"}
    body = {"required": True, "content": {"application/json": {"schema": ref}}}
    plural = pluralize(n.label.split(" ")[-1])
    shapes: dict[str, dict[str, Any]] = {
        "list": {"summary": f"List {plural}", "responses": {"200": {"description": f"Every {n.label}", "content": {
            "application/json": {"schema": {"type": "array", "items": ref}}}}}},
        "create": {"summary": f"Create a {n.label}", "requestBody": body,
                   "responses": {"201": {"description": f"The created {n.label}", **answer}, "422": invalid}},
        "get": {"summary": f"Get a {n.label}",
                "responses": {"200": {"description": f"The {n.label}", **answer}, "404": missing, "422": invalid}},
        "update": {"summary": f"Replace a {n.label}", "requestBody": body, "responses": {
            "200": {"description": f"The updated {n.label}", **answer}, "404": missing, "422": invalid}},
        "delete": {"summary": f"Delete a {n.label}",
                   "responses": {"204": {"description": "Deleted"}, "404": missing, "422": invalid}},
    }  # fmt: skip
    op: dict[str, Any] = {
        "tags": list(n.tags),
        "summary": shapes[verb]["summary"],
        "operationId": _crud_ids(n.schema)[verb],
    }
    if n.parameters and _METHODS[verb][1]:
        op["parameters"] = copy.deepcopy(n.parameters)
    op.update({k: v for k, v in shapes[verb].items() if k != "summary"})
    if n.security is not None:
        op["security"] = copy.deepcopy(n.security)
    return op


def _add_resource(doc: dict[str, Any], req: ParsedRequest) -> None:
    properties: dict[str, Any] = {"id": {"type": "integer", "format": "int64", "readOnly": True, "example": 1}}
    properties.update({name: dict(FIELD_TYPES[type_]) for name, type_ in req.fields.items()})
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if req.required:
        schema["required"] = list(req.required)
    doc.setdefault("components", {}).setdefault("schemas", {})[req.resource] = schema
    label = " ".join(req.words)
    id_param = {"name": "id", "in": "path", "required": True, "description": f"Id of the {label}",
                "schema": {"type": "integer", "format": "int64"}}  # fmt: skip
    names = _Names(req.resource, label, [req.slug], [id_param])
    paths = doc.setdefault("paths", {})
    paths[req.collection_path] = {m: _operation(v, names) for m, v in (("get", "list"), ("post", "create"))}
    paths[req.item_path] = {
        m: _operation(v, names) for m, v in (("get", "get"), ("put", "update"), ("delete", "delete"))
    }
    tags = doc.get("tags")
    if isinstance(tags, list) and not any(isinstance(t, dict) and t.get("name") == req.slug for t in tags):
        tags.append({"name": req.slug, "description": f"Operations on {label} resources"})


def _path_parameters(doc: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """Parameter Objects for the ``{params}`` of ``where`` that its path item does not declare (from its siblings)."""
    item = resolve_dict(doc, (doc.get("paths") or {}).get(where))
    declared = {p["name"] for p in merged_parameters(doc, item, {}) if p["in"] == "path"}
    known: dict[str, dict[str, Any]] = {}
    for op in iter_operations(doc):
        if op.path.startswith(where.split("{")[0]):
            for param in op.parameters:
                if param["in"] == "path":
                    known.setdefault(param["name"], param)
    return [
        copy.deepcopy(known.get(name) or {"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
        for name in re.findall(r"\{([^{}]+)\}", where)
        if name not in declared
    ]


def _add_operation(doc: dict[str, Any], req: ParsedRequest, change: Change) -> None:
    method, on_item = _METHODS[req.verb]
    where = change.item_path if on_item else change.collection_path
    item = doc["paths"][where]
    siblings = [op for op in iter_operations(doc) if op.path in (change.collection_path, change.item_path)]
    secured = next((op.operation["security"] for op in siblings if "security" in op.operation), None)
    tags: list[str] = next((op.operation["tags"] for op in siblings if isinstance(op.operation.get("tags"), list)), [])
    label = " ".join(re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", _pascal(change.schema))).lower()
    names = _Names(change.schema, label, tags, _path_parameters(doc, where), secured)
    item[method] = _operation(req.verb, names)


def _declare_unauthorized(new: dict[str, Any], old: dict[str, Any]) -> None:
    """Give a ``401`` response to every operation of ``new`` that ``old`` lacks and that needs credentials.

    Its own ``security`` or the document's: the generated service answers 401 when credentials are missing or invalid.
    """
    before = {(op.path, op.method) for op in iter_operations(old)}
    for op in iter_operations(new):
        if (op.path, op.method) not in before and requires_credentials(op):
            op.operation.setdefault("responses", {}).setdefault(
                "401", {"description": "Missing or invalid credentials"}
            )


def apply_change(doc: dict[str, Any], req: ParsedRequest, change: Change, *, path: str = "<spec>") -> dict[str, Any]:
    """Return a copy of ``doc`` with ``change`` (from :func:`plan_change` of ``req``) applied, validated.

    Raises:
        InputError: the result does not validate (names ``path`` and the JSON path).
    """
    new = copy.deepcopy(doc)
    if change.kind == "add-field":
        schema = resolve_dict(new, new["components"]["schemas"][change.schema])  # the object itself, in ``new``
        properties = schema.setdefault("properties", {})
        properties.update({name: dict(FIELD_TYPES[type_]) for name, type_ in change.fields.items()})
    elif change.kind == "add-operation":
        _add_operation(new, req, change)
    else:
        _add_resource(new, req)
    _declare_unauthorized(new, doc)
    validate_spec(new, path=f"{path} (evolved)")
    return new


def evolve(doc: dict[str, Any], req: ParsedRequest, *, path: str = "<spec>") -> dict[str, Any]:
    """Return a copy of ``doc`` with ``req`` applied: :func:`apply_change` of :func:`plan_change`.

    Args:
        doc: a valid OpenAPI 3.0/3.1 document (not modified).
        req: the parsed change request.
        path: the spec file name, for error messages.

    Raises:
        InputError: the request does not apply to ``doc`` (:func:`plan_change`), or the result does not validate.
    """
    return apply_change(doc, req, plan_change(doc, req, path=path), path=path)
