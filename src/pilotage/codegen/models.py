"""Generate the source of pydantic v2 models for the component schemas of an OpenAPI document.

Each object schema in ``components.schemas`` becomes a ``BaseModel`` subclass (``extra="allow"`` so
undocumented properties survive, as JSON Schema allows them); other component schemas become type aliases of
builtins. Type mapping: string → ``str`` (formats kept as strings so values round-trip unchanged), integer →
``int``, number → ``float``, boolean → ``bool``, array → ``list[T]``, object without a component name →
``dict[str, T]``, ``$ref`` → the referenced class, anything composed (``oneOf``/``anyOf``) → ``Any``;
``nullable``/``type: [..., "null"]`` and optional properties add ``| None``. Property names that are not
safe identifiers (:func:`~pilotage.codegen.quoting.python_name`: not ASCII, a keyword, a builtin, a name of the
module, a class, a ``BaseModel`` attribute) get a safe field name and keep theirs as the alias. Document text
(descriptions, aliases) is written only as :func:`~pilotage.codegen.quoting.py_literal` literals.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from pilotage.codegen.examples import types_of
from pilotage.codegen.quoting import GENERATED_NAMES, check_python, py_docstring, py_literal, python_name
from pilotage.spec.refs import ref_name, resolve_dict

__all__ = ["is_model", "model_names", "models_source"]

#: Names a model field never takes (pydantic's own attributes), besides the module's classes.
_MODEL_ATTRIBUTES = frozenset(dir(BaseModel))


def model_names(doc: dict[str, Any]) -> dict[str, str]:
    """Return component schema name → unique Python name (class or alias) for every component schema."""
    used: set[str] = set()
    schemas = (doc.get("components") or {}).get("schemas") or {}
    return {name: python_name(str(name), "pascal", taken=used) for name in schemas}


def is_model(doc: dict[str, Any], schema: Any) -> bool:
    """True when ``schema`` becomes a ``BaseModel`` class: an object with properties and no composition keyword.

    Every other component schema (unions, scalars, enums, arrays, bare objects) becomes a type alias, which has no
    ``model_validate``: the generated service validates those bodies against the document's schema only.
    """
    resolved = resolve_dict(doc, schema)
    return (
        "object" in types_of(doc, resolved)
        and bool(resolved.get("properties"))
        and not any(k in resolved for k in ("oneOf", "anyOf", "allOf"))
    )


def _annotation(doc: dict[str, Any], schema: Any, names: dict[str, str], models: set[str]) -> str:
    name = ref_name(schema)
    if name is not None:
        target = names.get(name)
        if target is None:
            return "Any"
        nullable = "null" in types_of(doc, schema)
        return f"{target} | None" if nullable and target in models else target
    resolved = resolve_dict(doc, schema)
    if not isinstance(resolved, dict) or any(k in resolved for k in ("oneOf", "anyOf", "not")):
        return "Any"
    if resolved.get("allOf"):
        parts = resolved["allOf"]
        return _annotation(doc, parts[0], names, models) if len(parts) == 1 else "Any"
    kinds = types_of(doc, resolved)
    concrete = [k for k in kinds if k != "null"]
    if len(concrete) != 1:
        return "Any"
    kind = concrete[0]
    if kind == "array":
        base = f"list[{_annotation(doc, resolved.get('items') or {}, names, models)}]"
    elif kind == "object":
        extra = resolved.get("additionalProperties")
        inner = _annotation(doc, extra, names, models) if isinstance(extra, dict) and extra else "Any"
        base = f"dict[str, {inner}]"
    else:
        base = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}.get(kind, "Any")
    return f"{base} | None" if "null" in kinds and base != "Any" else base


def _read_or_write_only(doc: dict[str, Any], schema: Any) -> bool:
    """True for a ``readOnly``/``writeOnly`` property: required in one direction only, so optional in the model.

    The document's schema checks each direction (``app/validation.py``: requests and responses).
    """
    resolved = resolve_dict(doc, schema)
    flags = (schema if isinstance(schema, dict) else {}, resolved if isinstance(resolved, dict) else {})
    return any(bool(f.get("readOnly") or f.get("writeOnly")) for f in flags)


def _field_name(prop: str, taken: set[str], classes: set[str]) -> str:
    reserved = _MODEL_ATTRIBUTES | classes
    name = python_name(prop, "keep", reserved=reserved, taken=set(taken))
    return python_name("field_" + name if name.startswith("model_") else name, "keep", reserved=reserved, taken=taken)


def _class_source(
    doc: dict[str, Any], cls: str, schema: Any, names: dict[str, str], models: set[str], used: set[str]
) -> str:
    """Return the source of one model class; add its field names and ``Any``/``Field`` when needed to ``used``."""
    resolved = resolve_dict(doc, schema)
    description = " ".join(str(resolved.get("description") or f"The {cls} schema.").split())[:110]
    lines = [f"class {cls}(BaseModel):", f"    {py_docstring(description, 4)}", ""]
    lines.append('    model_config = ConfigDict(extra="allow", populate_by_name=True)')
    lines.append("")
    required = set(resolved.get("required") or [])
    taken: set[str] = set()
    for prop, prop_schema in (resolved.get("properties") or {}).items():
        field = _field_name(str(prop), taken, set(names.values()))
        used.add(field)
        annotation = _annotation(doc, prop_schema, names, models)
        alias = f"alias={py_literal(str(prop))}" if field != prop else ""
        if prop in required and not _read_or_write_only(doc, prop_schema):
            default = f" = Field({alias})" if alias else ""
        else:
            if annotation != "Any" and not annotation.endswith("| None"):
                annotation += " | None"
            default = f" = Field(default=None, {alias})" if alias else " = None"
        used.update(n for n, found in (("Any", "Any" in annotation), ("Field", "Field(" in default)) if found)
        lines.append(f"    {field}: {annotation}{default}")
    return "\n".join(lines)


def models_source(doc: dict[str, Any], names: dict[str, str]) -> tuple[str, list[str]]:
    """Return the Python source of ``app/models.py`` and the names of the generated model classes.

    Args:
        doc: the OpenAPI document.
        names: the result of :func:`model_names`.
    """
    schemas = (doc.get("components") or {}).get("schemas") or {}
    models = {names[n] for n, s in schemas.items() if is_model(doc, s)}
    blocks = []
    aliases = []
    used: set[str] = set()
    for name, schema in schemas.items():
        cls = names[name]
        if cls in models:
            blocks.append(_class_source(doc, cls, schema, names, models, used))
        else:
            annotation = _annotation(doc, schema, names, set())
            builtin = annotation if all(x not in annotation for x in names.values()) else "Any"
            aliases.append(f"{cls} = {builtin.replace(' | None', '')}")
            used.update({"Any"} if "Any" in builtin else set())
    header = [
        '"""Pydantic models of the component schemas (generated by Pilotage from openapi.json; do not edit)."""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any",
        "",
        "from pydantic import BaseModel, ConfigDict, Field",
        "",
        "__all__ = " + py_literal(sorted(models) + sorted(a.split(" = ")[0] for a in aliases)),
        "",
    ]
    if aliases:
        header.extend([*aliases, ""])
    body = "\n\n\n".join(blocks)
    rebuild = [f"{cls}.model_rebuild()" for cls in sorted(models)]
    source = "\n".join(header) + ("\n\n" + body + "\n\n\n" if body else "\n") + "\n".join(rebuild) + "\n"
    if "Any" not in used:
        source = source.replace("from typing import Any\n\n", "")
    if "Field" not in used:
        source = source.replace(
            "from pydantic import BaseModel, ConfigDict, Field", "from pydantic import BaseModel, ConfigDict"
        )
    check_python(source, file="app/models.py", allowed=GENERATED_NAMES["app/models.py"] | set(names.values()) | used)
    return source, sorted(models)
