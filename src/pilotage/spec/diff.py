"""Compare two OpenAPI documents and classify the change as breaking or not.

A change is **breaking** when a client written for the old document can fail against the new one. Two views:

* **Document lines** (``breaking``, ``non_breaking``): an operation removed; a component schema removed; a property
  of a component schema removed, changed ``type`` or became required; an operation gained a required parameter.
  Added operations, schemas and optional properties are non-breaking.
* **Per operation** (``changes``, issue #19): each :class:`BreakingChange` names the operation of the *old*
  document a client calls, so the change can be mapped to the consumers that call it. The classes and their ids are
  oasdiff's (https://github.com/oasdiff/oasdiff, ``checker`` package; ERR level):

  ======================================  =========================================================================
  ``api-removed-without-deprecation``     the operation is gone
  ``new-required-request-parameter``      a parameter the old document did not have is required
  ``request-parameter-became-required``   an optional parameter became required
  ``request-parameter-type-changed``      a parameter no longer accepts a type it accepted
  ``request-parameter-enum-value-removed``  a parameter's enum lost a value (``…-became-enum``: gained an enum)
  ``new-required-request-property``       the request body requires a property the old body did not have
  ``request-property-became-required``    an optional request property became required
  ``request-property-type-changed``       a request property no longer accepts a type it accepted
  ``request-property-enum-value-removed`` a request property's enum lost a value (``…-became-enum``: gained one)
  ``response-success-status-removed``     a 2xx response the old document had is gone
  ``response-required-property-removed``  a property of a success response is gone (``optional`` when it was)
  ``response-property-became-optional``   a required response property is no longer required
  ``response-property-type-changed``      a response property may now have a type it could not have
  ======================================  =========================================================================

  Types are compared as sets (``type`` lists, ``nullable``, ``anyOf``/``oneOf`` of typed members, ``integer`` ⊂
  ``number``): a request type may widen, a response type may narrow. Schemas are compared through ``$ref``
  (resolved), ``allOf`` (properties and ``required`` merged), object properties and array ``items``, to
  :data:`MAX_SCHEMA_DEPTH` levels; a recursive schema is compared once per pair of schemas. The request body and
  responses are read from ``application/json`` (else the first media type with a schema).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pilotage.spec.evolve import operations
from pilotage.spec.openapi import Operation, iter_operations
from pilotage.spec.refs import ref_of, resolve_dict

__all__ = ["MAX_SCHEMA_DEPTH", "REMOVED", "BreakingChange", "SpecDiff", "diff_specs", "operation_changes"]

#: Nesting levels of a request or response schema that :func:`diff_specs` compares (deeper ones are not read).
MAX_SCHEMA_DEPTH = 16


@dataclass(frozen=True)
class BreakingChange:
    """One breaking change of one operation, as a client of the old document sees it.

    Attributes:
        rule: oasdiff's check id (module docstring), e.g. ``response-required-property-removed``.
        operation: ``"METHOD /path"`` of the old document.
        operation_id: its ``operationId`` in the old document ("" when it has none).
        detail: one line, e.g. ``response 200 property 'amount' removed``.
    """

    rule: str
    operation: str
    operation_id: str
    detail: str

    @property
    def line(self) -> str:
        """``operation GET /x: <detail> (<rule>)``."""
        return f"operation {self.operation}: {self.detail} ({self.rule})"


@dataclass
class SpecDiff:
    """The difference between two documents.

    Attributes:
        added: operations only in the new document (``"GET /discount-codes"``).
        removed: operations only in the old document.
        breaking: one line per breaking change (document lines, then :attr:`BreakingChange.line` of the
            per-operation changes other than removed operations).
        non_breaking: one line per compatible change.
        changes: the breaking changes per operation of the old document (:class:`BreakingChange`).
        classification: ``"breaking"`` when ``breaking`` is not empty, else ``"non-breaking"``.
    """

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    breaking: list[str] = field(default_factory=list)
    non_breaking: list[str] = field(default_factory=list)
    changes: list[BreakingChange] = field(default_factory=list)

    @property
    def classification(self) -> str:
        """``"breaking"`` or ``"non-breaking"``."""
        return "breaking" if self.breaking else "non-breaking"

    def to_dict(self) -> dict[str, Any]:
        """Return the diff as JSON-serialisable data (with ``classification``)."""
        return {**asdict(self), "classification": self.classification}


def _type_of(schema: Any) -> Any:
    """The ``$ref`` of a reference (a change of target is a change of type), else the schema's ``type``."""
    if not isinstance(schema, dict):
        return None
    return ref_of(schema) or schema.get("type")


def _compare_schema(name: str, old: Any, new: Any, out: SpecDiff) -> None:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return
    if _type_of(old) != _type_of(new):
        out.breaking.append(f"schema {name}: type changed from {_type_of(old)} to {_type_of(new)}")
        return
    old_props = old.get("properties") or {}
    new_props = new.get("properties") or {}
    for prop in old_props:
        if prop not in new_props:
            out.breaking.append(f"schema {name}: property {prop!r} removed")
        elif _type_of(old_props[prop]) != _type_of(new_props[prop]):
            out.breaking.append(
                f"schema {name}: property {prop!r} type changed from {_type_of(old_props[prop])}"
                f" to {_type_of(new_props[prop])}"
            )
    for prop in new_props:
        if prop not in old_props:
            out.non_breaking.append(f"schema {name}: property {prop!r} added")
    for prop in set(new.get("required") or []) - set(old.get("required") or []):
        out.breaking.append(f"schema {name}: property {prop!r} became required")


def diff_specs(old: dict[str, Any], new: dict[str, Any]) -> SpecDiff:
    """Compare ``old`` with ``new`` (decoded, bundled OpenAPI 3 documents).

    Returns:
        A :class:`SpecDiff`; operations are listed in path order (:func:`~pilotage.spec.openapi.iter_operations`).

    Raises:
        InputError: a ``$ref`` of either document does not resolve (:func:`~pilotage.spec.refs.resolve`).
    """
    out = SpecDiff()
    old_ops, new_ops = operations(old), operations(new)
    out.added = [op for op in new_ops if op not in old_ops]
    out.removed = [op for op in old_ops if op not in new_ops]
    out.breaking.extend(f"operation {op} removed" for op in out.removed)
    out.non_breaking.extend(f"operation {op} added" for op in out.added)
    old_schemas = (old.get("components") or {}).get("schemas") or {}
    new_schemas = (new.get("components") or {}).get("schemas") or {}
    for name in old_schemas:
        if name not in new_schemas:
            out.breaking.append(f"schema {name} removed")
        else:
            _compare_schema(name, old_schemas[name], new_schemas[name], out)
    out.non_breaking.extend(f"schema {name} added" for name in new_schemas if name not in old_schemas)
    out.changes = operation_changes(old, new)
    out.breaking.extend(c.line for c in out.changes if c.rule != REMOVED)
    return out


#: The rule of a removed operation (oasdiff: ``api-removed-without-deprecation``).
REMOVED = "api-removed-without-deprecation"


def operation_changes(old: dict[str, Any], new: dict[str, Any]) -> list[BreakingChange]:
    """Return the breaking changes of every operation of ``old`` (module docstring), in ``old``'s order.

    Raises:
        InputError: a ``$ref`` does not resolve.
    """
    new_by_label = {op.label: op for op in iter_operations(new)}
    changes: list[BreakingChange] = []
    for op in iter_operations(old):
        walk = _Walk(op, changes)
        if op.label not in new_by_label:
            walk.add(REMOVED, "operation removed")
            continue
        walk.operation(new_by_label[op.label])
    return changes


def _enum_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _schema_types(doc: dict[str, Any], node: Any) -> frozenset[str] | None:
    """The JSON types a schema allows, or None when it does not say (no ``type``, or untyped members)."""
    schema = resolve_dict(doc, node)
    declared = schema.get("type")
    types: set[str] = set()
    if isinstance(declared, str):
        types.add(declared)
    elif isinstance(declared, list):
        types.update(t for t in declared if isinstance(t, str))
    else:
        members = schema.get("anyOf") or schema.get("oneOf")
        if not isinstance(members, list) or not members:
            return None
        for member in members:
            member_types = resolve_dict(doc, member).get("type")
            if not isinstance(member_types, str):
                return None
            types.add(member_types)
    if schema.get("nullable") is True:
        types.add("null")
    return frozenset(types)


def _accepts(wide: frozenset[str], narrow: frozenset[str]) -> bool:
    """Every type of ``narrow`` is one of ``wide`` (an ``integer`` is a ``number``)."""
    return all(t in wide or (t == "integer" and "number" in wide) for t in narrow)


def _merged(doc: dict[str, Any], node: Any) -> tuple[dict[str, Any], set[str], dict[str, Any]]:
    """``(properties, required, schema)`` of a resolved schema, ``allOf`` members' properties merged in."""
    schema = resolve_dict(doc, node)
    props = dict(schema.get("properties") or {}) if isinstance(schema.get("properties"), dict) else {}
    required = {r for r in schema.get("required") or [] if isinstance(r, str)}
    for member in schema.get("allOf") or []:
        part = resolve_dict(doc, member)
        if isinstance(part.get("properties"), dict):
            props.update(part["properties"])
        required |= {r for r in part.get("required") or [] if isinstance(r, str)}
    return props, required, schema


def _json_schema(doc: dict[str, Any], holder: dict[str, Any]) -> Any:
    """The schema of a request body's or response's ``application/json`` (else first) media type, or None."""
    content = holder.get("content")
    if not isinstance(content, dict):
        return None
    media = content.get("application/json")
    if not isinstance(media, dict):
        media = next((m for m in content.values() if isinstance(m, dict) and "schema" in m), None)
    return media.get("schema") if isinstance(media, dict) else None


def _success(code: str) -> bool:
    return code.startswith("2") and len(code) == 3


class _Walk:
    """Compares one operation of the old document with the same operation of the new one."""

    def __init__(self, op: Operation, out: list[BreakingChange]) -> None:
        self.op, self.out = op, out
        self.old_doc = op.doc
        self.new_doc: dict[str, Any] = {}
        self.seen: set[tuple[str, str, str]] = set()

    def add(self, rule: str, detail: str) -> None:
        op_id = self.op.operation.get("operationId")
        self.out.append(BreakingChange(rule, self.op.label, str(op_id) if op_id else "", detail))

    def operation(self, new: Operation) -> None:
        self.new_doc = new.doc
        self.parameters(new)
        old_body, new_body = self.op.request_body, new.request_body
        if old_body is not None and new_body is not None:
            self.schema(_json_schema(self.old_doc, old_body), _json_schema(self.new_doc, new_body), "", "request")
        new_responses = new.responses
        for code, response in self.op.responses.items():
            if not _success(code):
                continue
            if code not in new_responses:
                self.add("response-success-status-removed", f"success response {code} removed")
                continue
            old_schema, new_schema = (
                _json_schema(self.old_doc, response),
                _json_schema(self.new_doc, new_responses[code]),
            )
            self.schema(old_schema, new_schema, "", f"response {code}")

    def parameters(self, new: Operation) -> None:
        old_params = {(p["in"], p["name"]): p for p in self.op.parameters}
        for key, param in {(p["in"], p["name"]): p for p in new.parameters}.items():
            where, name = key
            before = old_params.get(key)
            if param.get("required") and not (before and before.get("required")):
                rule = "request-parameter-became-required" if before else "new-required-request-parameter"
                self.add(rule, f"new required {where} parameter {name!r}")
            if before is not None:
                self.scalar(before.get("schema"), param.get("schema"), f"{where} parameter {name!r}", "parameter")

    def scalar(self, old: Any, new: Any, what: str, kind: str) -> None:
        """Type and enum of a request value (``kind`` ``parameter`` or ``property``)."""
        if old is None or new is None:
            return
        old_types, new_types = _schema_types(self.old_doc, old), _schema_types(self.new_doc, new)
        if old_types and new_types is not None and not _accepts(new_types, old_types):
            self.add(
                f"request-{kind}-type-changed", f"{what} type changed from {_show(old_types)} to {_show(new_types)}"
            )
        old_enum = resolve_dict(self.old_doc, old).get("enum")
        new_enum = resolve_dict(self.new_doc, new).get("enum")
        if not isinstance(new_enum, list):
            return
        if not isinstance(old_enum, list):
            self.add(f"request-{kind}-became-enum", f"{what} now only accepts {len(new_enum)} enum value(s)")
            return
        gone = [v for v in old_enum if _enum_key(v) not in {_enum_key(n) for n in new_enum}]
        if gone:
            shown = ", ".join(_enum_key(v) for v in gone[:5])
            self.add(f"request-{kind}-enum-value-removed", f"{what} no longer accepts enum value(s) {shown}")

    def schema(self, old: Any, new: Any, path: str, where: str, depth: int = 0) -> None:
        """Compare two schemas of a request (``where`` = ``request``) or a response (``response 200``)."""
        if old is None or new is None or depth > MAX_SCHEMA_DEPTH:
            return
        mark = (str(ref_of(old)), str(ref_of(new)), where)
        if ref_of(old) and ref_of(new):  # recursion goes through references: each pair is compared once
            if mark in self.seen:
                return
            self.seen.add(mark)
        if where == "request":
            self.request_types(old, new, path)
        else:
            self.response_types(old, new, path, where)
        old_props, old_req, old_schema = _merged(self.old_doc, old)
        new_props, new_req, new_schema = _merged(self.new_doc, new)
        if where == "request":
            self.request_properties(old_props, old_req, new_props, new_req, path)
        else:
            self.response_properties(old_props, old_req, new_props, new_req, path, where)
        for name in set(old_props) & set(new_props):
            self.schema(old_props[name], new_props[name], _join(path, name), where, depth + 1)
        if "items" in old_schema and "items" in new_schema:
            self.schema(old_schema["items"], new_schema["items"], _join(path, "items"), where, depth + 1)

    def request_types(self, old: Any, new: Any, path: str) -> None:
        if path:  # a property: type and enum; the body itself: its type only
            self.scalar(old, new, f"request property {path!r}", "property")
            return
        old_types, new_types = _schema_types(self.old_doc, old), _schema_types(self.new_doc, new)
        if old_types and new_types is not None and not _accepts(new_types, old_types):
            self.add(
                "request-body-type-changed", f"request body type changed from {_show(old_types)} to {_show(new_types)}"
            )

    def response_types(self, old: Any, new: Any, path: str, where: str) -> None:
        old_types, new_types = _schema_types(self.old_doc, old), _schema_types(self.new_doc, new)
        if new_types and old_types is not None and not _accepts(old_types, new_types):
            what = f"property {path!r}" if path else "body"
            rule = "response-property-type-changed" if path else "response-body-type-changed"
            self.add(rule, f"{where} {what} type changed from {_show(old_types)} to {_show(new_types)}")

    def request_properties(
        self, old_props: dict[str, Any], old_req: set[str], new_props: dict[str, Any], new_req: set[str], path: str
    ) -> None:
        for name in sorted(new_req - old_req):
            if name in old_props:
                self.add("request-property-became-required", f"request property {_join(path, name)!r} became required")
            else:
                self.add("new-required-request-property", f"new required request property {_join(path, name)!r}")

    def response_properties(
        self,
        old_props: dict[str, Any],
        old_req: set[str],
        new_props: dict[str, Any],
        new_req: set[str],
        path: str,
        where: str,
    ) -> None:
        for name in old_props:
            if name not in new_props:
                rule = f"response-{'required' if name in old_req else 'optional'}-property-removed"
                self.add(rule, f"{where} property {_join(path, name)!r} removed")
            elif name in old_req and name not in new_req:
                self.add("response-property-became-optional", f"{where} property {_join(path, name)!r} became optional")


def _join(path: str, name: str) -> str:
    return f"{path}/{name}" if path else name


def _show(types: frozenset[str]) -> str:
    return "|".join(sorted(types)) or "(any)"
