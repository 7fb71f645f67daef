"""Read an OpenAPI document into a generation plan: resources, and what each operation does.

A **resource** is found where the document has an *item path*: a path whose last segment is one parameter
(``/pet/{petId}``) under a *collection path* (``/pet``). Its schema is the object that the item ``GET`` returns
(or the collection ``POST``/item ``PUT`` accepts); its **key** is the property named like the parameter, else
``id`` (properties of ``allOf`` members count: :func:`~pilotage.spec.openapi.object_properties`). Parameters
of the collection path (``/carts/{cartId}/items``) make a *scope*: nested items are stored per parent. Each
operation gets a ``kind``:

=============  ==============================================================================
create         ``POST`` collection: store the body; assign the key unless the body owns it
list           ``GET`` collection answering an array: the stored items of the scope
replace_body   ``PUT`` collection with the key in the body (petstore's ``updatePet``)
get            ``GET`` item; 404 when unknown
replace        ``PUT`` item; 404 when unknown
merge          ``PATCH``/``POST`` item: merge the body or the matching query parameters
delete         ``DELETE`` item; 404 when unknown
find           ``GET`` below the collection answering an array of the resource: filter by query
nested         any operation below an item path: 404 when the parent is unknown, else as ``example``
example        everything else: the user's handler in ``app/handlers.py``, 501 until it is written
login/logout   set by :func:`pilotage.codegen.auth.apply_auth` on ``example``/``nested`` operations
=============  ==============================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pilotage.codegen.auth import security_meta
from pilotage.codegen.examples import example, schema_errors, types_of
from pilotage.codegen.models import is_model
from pilotage.codegen.quoting import python_name
from pilotage.spec.evolve import RESERVED_PATHS  # the service's own /healthz and /metrics
from pilotage.spec.openapi import Operation, iter_operations, merged_parameters, object_properties
from pilotage.spec.refs import ref_name, resolve_dict

__all__ = ["OperationPlan", "Resource", "ServicePlan", "make_plan"]

_SEGMENT = re.compile(r"^\{([^{}]+)\}$")


@dataclass
class Resource:
    """A stored resource: ``name`` (table), ``schema`` (the object schema), ``key`` property (or None)."""

    name: str
    collection_path: str
    item_path: str
    item_param: str
    schema: Any
    schema_name: str | None
    key: str | None
    key_kind: str
    key_read_only: bool
    scope_params: list[str] = field(default_factory=list)


@dataclass
class OperationPlan:
    """One operation to generate: ``function`` name, ``kind`` (see module docstring) and its runtime ``meta``."""

    function: str
    kind: str
    resource: Resource | None
    parent: Resource | None
    meta: dict[str, Any]
    model: str | None = None


@dataclass
class ServicePlan:
    """Everything the templates need: the operations, the resources and the routes in match order."""

    title: str
    version: str
    openapi: str
    operations: list[OperationPlan]
    resources: list[Resource]
    routes: list[tuple[str, str, dict[str, str]]]
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _json_media(content: dict[str, Any]) -> str | None:
    for media in content:
        if media.split(";")[0].strip().lower() in ("application/json", "*/*") or media.endswith("+json"):
            return media
    return next(iter(content), None)


def _responses(doc: dict[str, Any], op: Operation, warnings: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code, response in op.responses.items():
        content = response.get("content") or {}
        media = _json_media(content)
        schema = (content.get(media) or {}).get("schema") if media else None
        value = None
        if media is not None and schema is not None:
            value = example(doc, schema)
            if schema_errors(doc, schema, value):
                value = example(doc, schema, use_examples=False)
                if schema_errors(doc, schema, value):
                    warnings.append(f"{op.label} {code}: generated example does not match the schema")
        headers = {}
        for name, header in (response.get("headers") or {}).items():
            header = resolve_dict(doc, header)
            if name.lower() != "content-type" and isinstance(header.get("schema"), dict):
                sample = example(doc, header["schema"])
                headers[name] = str(sample).lower() if isinstance(sample, bool) else str(sample)
        out[code.upper() if "X" in code.upper() else code] = {
            "media": media,
            "schema": schema,
            "example": value,
            "headers": headers,
        }
    return out


def _statuses(responses: dict[str, Any], method: str, kind: str) -> tuple[int, int, int]:
    documented = {int(c) for c in responses if c.isdigit()}
    has_default = "default" in responses or "4XX" in responses
    # no 2xx documented: the documented 3xx (a 304-only GET) rather than an undocumented 200
    success = sorted(c for c in documented if 200 <= c < 300) or sorted(c for c in documented if 300 <= c < 400)
    if kind == "create" and 201 in documented:
        ok = 201
    elif kind == "delete" and 204 in documented:
        ok = 204
    else:
        ok = success[0] if success else 200
    error = next((c for c in (422, 400) if c in documented), 422 if has_default or not documented else 400)
    # an unknown item is 404 even where the document declares only 400: a validation status would misreport it
    return ok, error, 404


def _object_schema(doc: dict[str, Any], schema: Any) -> bool:
    return schema is not None and "object" in types_of(doc, schema)


def _op_schema(doc: dict[str, Any], op: dict[str, Any] | None, where: str) -> Any:
    if not op:
        return None
    if where == "body":
        content = resolve_dict(doc, op.get("requestBody")).get("content") or {}
    else:
        ok = [c for c in (op.get("responses") or {}) if str(c).startswith("2")]
        content = (
            resolve_dict(doc, (op.get("responses") or {}).get(sorted(ok)[0] if ok else "", {})).get("content") or {}
        )
    media = _json_media(content)
    return (content.get(media) or {}).get("schema") if media else None


def _find_resources(doc: dict[str, Any]) -> list[Resource]:
    paths = doc.get("paths") or {}
    found: list[Resource] = []
    for path, raw in paths.items():
        item = resolve_dict(doc, raw)
        segments = path.rstrip("/").split("/")
        last = _SEGMENT.match(segments[-1]) if len(segments) > 1 else None
        if last is None or not item:
            continue
        collection = "/".join(segments[:-1]) or "/"
        parent = resolve_dict(doc, paths.get(collection))
        schema = _op_schema(doc, item.get("get"), "response")
        if not _object_schema(doc, schema):
            schema = _op_schema(doc, parent.get("post"), "body") or _op_schema(doc, item.get("put"), "body")
        if not _object_schema(doc, schema):
            continue
        param = last.group(1)
        props = object_properties(doc, schema)
        key = param if param in props else ("id" if "id" in props else None)
        key_schema = resolve_dict(doc, props.get(key, {})) if key else {}
        key_kind = "integer" if "integer" in types_of(doc, key_schema) else "string"
        if key is None:
            params = merged_parameters(doc, item, item.get("get") or {})
            pschema: Any = next((p.get("schema") for p in params if p["name"] == param), {})
            key_kind = "integer" if "integer" in types_of(doc, pschema) else "string"
        found.append(
            Resource(
                name=python_name("_".join(s for s in collection.split("/") if s and "{" not in s) or "root"),
                collection_path=collection,
                item_path=path,
                item_param=param,
                schema=schema,
                schema_name=ref_name(schema),
                key=key,
                key_kind=key_kind,
                key_read_only=bool(key_schema.get("readOnly")),
                scope_params=re.findall(r"\{([^{}]+)\}", collection),
            )
        )
    return found


def _find_collections(doc: dict[str, Any], found: list[Resource]) -> list[Resource]:
    """Return the resources without an item path: a path whose ``POST`` answers what it accepts (same schema).

    Stored as sent (``/shapes``: POST a shape, GET the shapes); keyed by a server-assigned ``id`` when the schema
    has one.
    """
    taken = {res.collection_path for res in found} | {res.item_path for res in found}
    names = {res.name for res in found}
    out = []
    for path, raw in (doc.get("paths") or {}).items():
        post = resolve_dict(doc, raw).get("post")
        body = _op_schema(doc, post, "body")
        if path in taken or body is None or body != _op_schema(doc, post, "response"):
            continue
        props = object_properties(doc, body)
        key_schema = resolve_dict(doc, props.get("id", {}))
        name = python_name("_".join(s for s in path.split("/") if s and "{" not in s) or "root", taken=names)
        out.append(
            Resource(
                name=name,
                collection_path=path,
                item_path="",
                item_param="",
                schema=body,
                schema_name=ref_name(body),
                key="id" if "id" in props else None,
                key_kind="integer" if "integer" in types_of(doc, key_schema) else "string",
                key_read_only=bool(key_schema.get("readOnly")),
                scope_params=re.findall(r"\{([^{}]+)\}", path),
            )
        )
    return out


def _kind_for(
    doc: dict[str, Any], path: str, method: str, op: dict[str, Any], res: Resource, parent: Resource | None
) -> str | None:
    if path == res.collection_path:
        response = _op_schema(doc, op, "response")
        if method == "post":
            return "create"
        if method == "get" and response is not None and "array" in types_of(doc, response):
            return "list"
        if method == "put" and res.key is not None:
            return "replace_body"
    if path == res.item_path:
        kinds = {"get": "get", "put": "replace", "patch": "merge", "post": "merge", "delete": "delete"}
        return kinds.get(method)
    if path.startswith(res.collection_path.rstrip("/") + "/") and method == "get" and parent is None:
        response = resolve_dict(doc, _op_schema(doc, op, "response"))
        if "array" in types_of(doc, response) and ref_name(response.get("items")) == res.schema_name:
            if res.schema_name is not None and "{" not in path[len(res.collection_path) :]:
                return "find"
    return None


def _classify(
    doc: dict[str, Any], path: str, method: str, op: dict[str, Any], resources: list[Resource]
) -> tuple[str, Resource | None, Resource | None]:
    parent = None
    for res in sorted(resources, key=lambda r: -len(r.item_path)):
        if res.item_path and path.startswith(res.item_path + "/"):
            parent = res
            break
    for res in resources:
        kind = _kind_for(doc, path, method, op, res, parent)
        if kind is not None:
            return kind, res, (None if kind == "find" else parent)
    return ("nested" if parent is not None else "example"), None, parent


def _parameters(op: Operation, aliases: dict[str, str]) -> list[Any]:
    out = []
    for param in op.parameters:
        where, name = param["in"], param["name"]
        schema = param.get("schema")
        if schema is None and isinstance(param.get("content"), dict) and param["content"]:
            schema = next(iter(param["content"].values())).get("schema")
        if where == "header" and name.lower() in ("accept", "content-type", "authorization"):
            continue
        entry = {"name": name, "in": where, "required": bool(param.get("required")) or where == "path"}
        entry["schema"] = schema or {}
        entry["alias"] = aliases.get(name, name)
        if "style" in param:
            entry["style"] = param["style"]
        if "explode" in param:
            entry["explode"] = bool(param["explode"])
        out.append(entry)
    return out


def _route_key(path: str) -> tuple[int, ...]:
    return tuple(1 if "{" in seg else 0 for seg in path.split("/"))


def _aliases(path: str) -> dict[str, str]:
    """Path parameter name → the route's safe alias (``p0``, ``p1`` ...), in path order."""
    return {name: f"p{i}" for i, name in enumerate(re.findall(r"\{([^{}]+)\}", path))}


def _body_meta(op: Operation) -> dict[str, Any] | None:
    """``{"required", "content": {media type: schema}}`` of the operation's request body, or None."""
    body = op.request_body
    if body is None:
        return None
    content = {
        m.split(";")[0].strip().lower(): (c or {}).get("schema") or {} for m, c in (body.get("content") or {}).items()
    }
    return {"required": bool(body.get("required")), "content": content}


def _server_assigns_key(doc: dict[str, Any], res: Resource, body_meta: dict[str, Any] | None) -> bool:
    """True when the create body's schemas (every media type) declare no ``res.key``: the server assigns it.

    ``POST /pets`` takes a ``NewPet`` without ``id`` and answers a ``Pet`` with it: the key is the server's,
    whatever the body carries (an undeclared ``id`` sent as a string would otherwise become an integer key).
    """
    schemas = (body_meta or {}).get("content", {}).values()
    return res.key is not None and not any(res.key in object_properties(doc, schema) for schema in schemas)


def _plan_operation(
    doc: dict[str, Any], op: Operation, plan: ServicePlan, used: set[str], model_names: dict[str, str]
) -> str:
    """Add the :class:`OperationPlan` of ``op`` to ``plan`` (``used``: function names taken); return its name."""
    kind, res, parent = _classify(doc, op.path, op.method, op.operation, plan.resources)
    responses = _responses(doc, op, plan.warnings)
    ok, error, missing = _statuses(responses, op.method, kind)
    function = python_name(str(op.operation.get("operationId") or f"{op.method}_{op.path}"), taken=used)
    body_meta = _body_meta(op)
    meta = {
        "operation_id": op.operation.get("operationId") or function,
        "method": op.method.upper(),
        "path": op.path,
        "summary": " ".join(str(op.operation.get("summary") or op.operation.get("description") or op.label).split())[
            :150
        ],
        "parameters": _parameters(op, _aliases(op.path)),
        "body": body_meta,
        "responses": responses,
        "success_status": ok,
        "error_status": error,
        "not_found_status": missing,
        "documents_415": "415" in responses or "default" in responses or "4XX" in responses,
        "security": security_meta(doc, op),
        # PUT /pet with the key in the body: the key stays even when it is readOnly (other readOnly input is ignored)
        "keep_read_only": [res.key] if kind == "replace_body" and res is not None and res.key else [],
        "assign_key": kind == "create" and res is not None and _server_assigns_key(doc, res, body_meta),
    }
    body_schema = (body_meta or {}).get("content", {}).get("application/json")
    body_ref = ref_name(body_schema)
    # only a generated BaseModel class validates a body; an alias (union, scalar, enum, array) is not a class
    model = model_names.get(body_ref) if body_ref and is_model(doc, body_schema) else None
    plan.operations.append(OperationPlan(function, kind, res, parent, meta, model))
    return function


def make_plan(doc: dict[str, Any], model_names: dict[str, str]) -> ServicePlan:
    """Build the :class:`ServicePlan` of a validated OpenAPI 3.0/3.1 document.

    Args:
        doc: the document (JSON data model).
        model_names: component schema name → generated pydantic class name.
    """
    info = doc.get("info") or {}
    plan = ServicePlan(str(info.get("title", "API")), str(info.get("version", "0")), str(doc["openapi"]), [], [], [])
    plan.resources = _find_resources(doc)
    plan.resources += _find_collections(doc, plan.resources)
    used: set[str] = set()
    handlers: dict[str, dict[str, str]] = {}
    for op in iter_operations(doc):
        if op.path in RESERVED_PATHS:
            skipped = f"{op.path}: reserved for the service's own health/metrics endpoint"
            plan.skipped.extend([] if skipped in plan.skipped else [skipped])
            continue
        handlers.setdefault(op.path, {})[op.method.upper()] = _plan_operation(doc, op, plan, used, model_names)
    for path, by_method in handlers.items():
        route = path
        for name, alias in _aliases(path).items():
            route = route.replace("{" + name + "}", "{" + alias + "}")
        plan.routes.append((route, path, by_method))
    plan.routes.sort(key=lambda r: _route_key(r[1]))
    _mark_create_or_replace(plan)
    return plan


def _mark_create_or_replace(plan: ServicePlan) -> None:
    """Mark the item ``PUT`` of a resource that no ``POST`` creates as create-or-replace (``meta.create_or_replace``).

    Such a resource could never exist otherwise (every ``GET`` would answer 404): its ``PUT`` stores the body under
    the path's key, answering ``meta.created_status`` (201 when the ``PUT`` documents it) for a new item.
    """
    created = {id(op.resource) for op in plan.operations if op.kind in ("create", "replace_body")}
    for op in plan.operations:
        if op.kind == "replace" and id(op.resource) not in created:
            op.meta["create_or_replace"] = True
            op.meta["created_status"] = 201 if "201" in op.meta["responses"] else op.meta["success_status"]
