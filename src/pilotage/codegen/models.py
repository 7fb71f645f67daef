"""Generate the source of pydantic v2 models for the component schemas of an OpenAPI document.

Each object schema in ``components.schemas`` becomes a ``BaseModel`` subclass (``extra="allow"`` so
undocumented properties survive, as JSON Schema allows them); other component schemas become type aliases of
builtins. Type mapping: string → ``str`` (formats kept as strings so values round-trip unchanged), integer →
``int``, number → ``float``, boolean → ``bool``, array → ``list[T]``, object without a component name →
``dict[str, T]``, ``$ref`` → the referenced class, anything composed (``oneOf``/``anyOf``) → ``Any``;
``nullable``/``type: [..., "null"]`` and optional properties add ``| None``. Property names that are not
Python identifiers (or clash with ``BaseModel``) get a safe field name and keep theirs as the alias.
"""

from __future__ import annotations

import keyword
from typing import Any

from pydantic import BaseModel

from pilotage.codegen.examples import deref, ref_name, types_of
from pilotage.codegen.plan import python_name

__all__ = ["model_names", "models_source"]

_TAKEN = {"BaseModel", "ConfigDict", "Field", "Any", "annotations"}


def model_names(doc: dict[str, Any]) -> dict[str, str]:
    """Return component schema name → unique Python name (class or alias) for every component schema."""
    out: dict[str, str] = {}
    used = set(_TAKEN)
    for name in (doc.get("components") or {}).get("schemas") or {}:
        candidate = python_name(name, "pascal")
        while candidate in used:
            candidate += "_"
        used.add(candidate)
        out[name] = candidate
    return out


def _is_model(doc: dict[str, Any], schema: Any) -> bool:
    resolved = deref(doc, schema)
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
    resolved = deref(doc, schema)
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


def _field_name(prop: str, taken: set[str]) -> str:
    name = prop
    reserved = set(dir(BaseModel))
    if (
        not name.isidentifier()
        or keyword.iskeyword(name)
        or name.startswith("_")
        or name in reserved
        or (name.startswith("model_"))
    ):
        name = python_name(prop) + "_"
        if not name.isidentifier() or name.startswith("_"):
            name = "field_" + str(len(taken))
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def _class_source(doc: dict[str, Any], cls: str, schema: Any, names: dict[str, str], models: set[str]) -> str:
    resolved = deref(doc, schema)
    description = " ".join(str(resolved.get("description") or f"The {cls} schema.").split())[:110]
    lines = [f"class {cls}(BaseModel):", f'    """{description.replace(chr(34), chr(39))}"""', ""]
    lines.append('    model_config = ConfigDict(extra="allow", populate_by_name=True)')
    lines.append("")
    required = set(resolved.get("required") or [])
    taken: set[str] = set()
    for prop, prop_schema in (resolved.get("properties") or {}).items():
        field = _field_name(str(prop), taken)
        annotation = _annotation(doc, prop_schema, names, models)
        alias = f"alias={str(prop)!r}" if field != prop else ""
        if prop in required:
            default = f" = Field({alias})" if alias else ""
        else:
            if annotation != "Any" and not annotation.endswith("| None"):
                annotation += " | None"
            default = f" = Field(default=None, {alias})" if alias else " = None"
        lines.append(f"    {field}: {annotation}{default}")
    return "\n".join(lines)


def models_source(doc: dict[str, Any], names: dict[str, str]) -> tuple[str, list[str]]:
    """Return the Python source of ``app/models.py`` and the names of the generated model classes.

    Args:
        doc: the OpenAPI document.
        names: the result of :func:`model_names`.
    """
    schemas = (doc.get("components") or {}).get("schemas") or {}
    models = {names[n] for n, s in schemas.items() if _is_model(doc, s)}
    blocks = []
    aliases = []
    for name, schema in schemas.items():
        cls = names[name]
        if cls in models:
            blocks.append(_class_source(doc, cls, schema, names, models))
        else:
            annotation = _annotation(doc, schema, names, set())
            builtin = annotation if all(x not in annotation for x in names.values()) else "Any"
            aliases.append(f"{cls} = {builtin.replace(' | None', '')}")
    header = [
        '"""Pydantic models of the component schemas (generated by Pilotage from openapi.json; do not edit)."""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any",
        "",
        "from pydantic import BaseModel, ConfigDict, Field",
        "",
        "__all__ = " + repr(sorted(models) + sorted(a.split(" = ")[0] for a in aliases)).replace("'", '"'),
        "",
    ]
    if aliases:
        header.extend([*aliases, ""])
    body = "\n\n\n".join(blocks)
    rebuild = [f"{cls}.model_rebuild()" for cls in sorted(models)]
    source = "\n".join(header) + ("\n\n" + body + "\n\n\n" if body else "\n") + "\n".join(rebuild) + "\n"
    if "Any" not in body and not any(a.endswith("Any") or "Any]" in a for a in aliases):
        source = source.replace("from typing import Any\n\n", "")
    if "Field(" not in body:
        source = source.replace(
            "from pydantic import BaseModel, ConfigDict, Field", "from pydantic import BaseModel, ConfigDict"
        )
    return source, sorted(models)
