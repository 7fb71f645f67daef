"""Compare two OpenAPI documents and classify the change as breaking or not.

A change is **breaking** when a client written for the old document can fail against the new one
(the rules of oasdiff / openapi-diff, reduced to what Pilotage generates):

* an operation was removed;
* a component schema was removed;
* a property of a component schema was removed, or changed ``type``, or became required;
* an operation gained a required parameter.

Added operations, schemas and optional properties are **non-breaking**.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pilotage.spec.evolve import operations
from pilotage.spec.openapi import Operation, iter_operations, ref_of

__all__ = ["SpecDiff", "diff_specs"]


@dataclass
class SpecDiff:
    """The difference between two documents.

    Attributes:
        added: operations only in the new document (``"GET /discount-codes"``).
        removed: operations only in the old document.
        breaking: one line per breaking change.
        non_breaking: one line per compatible change.
        classification: ``"breaking"`` when ``breaking`` is not empty, else ``"non-breaking"``.
    """

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    breaking: list[str] = field(default_factory=list)
    non_breaking: list[str] = field(default_factory=list)

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


def _required_params(op: Operation) -> set[tuple[str, str]]:
    """``(in, name)`` of the operation's required parameters, path-level ones included."""
    return {(p["in"], p["name"]) for p in op.parameters if p.get("required")}


def diff_specs(old: dict[str, Any], new: dict[str, Any]) -> SpecDiff:
    """Compare ``old`` with ``new`` (decoded OpenAPI 3 documents).

    Returns:
        A :class:`SpecDiff`; operations are listed in path order (:func:`~pilotage.spec.openapi.iter_operations`).
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
    old_by_label = {op.label: op for op in iter_operations(old)}
    for op in iter_operations(new):
        if op.label in old_by_label:
            for where, pname in sorted(_required_params(op) - _required_params(old_by_label[op.label])):
                out.breaking.append(f"operation {op.label}: new required {where} parameter {pname!r}")
    return out
