"""Build example values from OpenAPI schemas (the one owner of example generation), and the type reader.

:func:`example` returns a value that the schema accepts: the schema's own ``example``/``examples``/``const``/
``enum``/``default`` when present, otherwise a value built from ``type``, ``format`` and the numeric and length
bounds (``minimum``, ``maxLength``, ``minItems`` ...). :func:`schema_errors` checks it with
``openapi-schema-validator`` (OAS 3.0 or 3.1 dialect), so the generator can prove every canned response valid.

Both run on untrusted documents inside the control plane, so both are bounded (issue #15): an example holds at most
:data:`MAX_EXAMPLE_SIZE` characters and values (``minLength: 50000000`` took 3.2 GB), and a ``pattern`` may take
:data:`PATTERN_TIMEOUT_S` on one value (``^(a|aa)+$`` backtracks exponentially, and Python's ``re`` holds the GIL, so
no timeout or signal could stop it); either limit is an ``InputError`` naming the keyword. References are
resolved by :mod:`pilotage.spec.openapi`; an operation's example body is ``example(doc, schema)`` of the schema
of :attr:`~pilotage.spec.openapi.Operation.request_body`'s media type.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Iterator
from typing import Any

import regex

from pilotage.errors import InputError
from pilotage.spec.openapi import ref_name, resolve_dict

__all__ = ["MAX_EXAMPLE_SIZE", "PATTERN_TIMEOUT_S", "example", "schema_errors", "types_of"]

#: Characters (of strings) plus values (items, properties) one example may hold.
MAX_EXAMPLE_SIZE = 100_000
#: Seconds one ``pattern`` may take on one value (the ``regex`` module's timeout; it may overshoot by about 1 s).
PATTERN_TIMEOUT_S = 0.5
_BUDGET: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("example_budget", default=None)

_FORMATS: dict[str, Any] = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "12:00:00Z",
    "email": "user@example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "byte": "ZXhhbXBsZQ==",
    "binary": "",
    "password": "secret",
}


def types_of(doc: dict[str, Any], schema: Any) -> list[str]:
    """Return the JSON types ``schema`` admits (``type``, 3.1 type lists, ``nullable``, composed schemas)."""
    resolved = resolve_dict(doc, schema)
    declared = resolved.get("type")
    if isinstance(declared, str):
        found = [declared]
    elif isinstance(declared, list):
        found = [t for t in declared if isinstance(t, str)]
    else:
        found = []
        for key in ("allOf", "oneOf", "anyOf"):
            for sub in resolved.get(key) or []:
                found.extend(t for t in types_of(doc, sub) if t not in found)
        if not found and "properties" in resolved:
            found = ["object"]
    if resolved.get("nullable") and "null" not in found:
        found.append("null")
    return found


def _bounded_pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """The ``pattern`` keyword of jsonschema with a time bound (``regex`` instead of ``re``).

    Raises:
        InputError: the pattern takes longer than :data:`PATTERN_TIMEOUT_S` on ``instance``.
    """
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "string") or not isinstance(pattern, str):
        return
    try:
        found = regex.search(pattern, instance, timeout=PATTERN_TIMEOUT_S)
    except TimeoutError:
        raise InputError(
            f"pattern {pattern[:80]!r} takes over {PATTERN_TIMEOUT_S} s on a value of {len(instance)} characters "
            "(catastrophic backtracking)",
            hint="rewrite the pattern without nested or overlapping quantifiers such as (a+)+ or (a|aa)+",
        ) from None
    except regex.error:
        return  # a pattern the regex module cannot read: openapi-spec-validator judged the document already
    if found is None:
        yield ValidationError(f"{instance[:80]!r} does not match {pattern[:80]!r}")


@functools.cache
def _validator_classes() -> tuple[Any, Any]:
    from jsonschema import validators
    from openapi_schema_validator import OAS30Validator, OAS31Validator

    bounded = {"pattern": _bounded_pattern}
    return validators.extend(OAS30Validator, bounded), validators.extend(OAS31Validator, bounded)


def schema_errors(doc: dict[str, Any], schema: Any, value: Any) -> list[str]:
    """Validate ``value`` against ``schema`` (refs resolved in ``doc``); return the error messages (≤ 3).

    Raises:
        InputError: a ``pattern`` takes longer than :data:`PATTERN_TIMEOUT_S` on a value.
    """
    from openapi_schema_validator import oas30_format_checker, oas31_format_checker

    oas30, oas31 = _validator_classes()
    root = {"allOf": [schema], "components": doc.get("components", {})}
    if str(doc.get("openapi", "")).startswith("3.1"):
        validator: Any = oas31(root, format_checker=oas31_format_checker)
    else:
        validator = oas30(root, format_checker=oas30_format_checker)
    out = []
    for error in validator.iter_errors(value):
        out.append(error.message)
        if len(out) >= 3:
            break
    return out


def _spend(amount: int, what: str) -> None:
    """Charge ``amount`` to the example being built.

    Raises:
        InputError: the example would exceed :data:`MAX_EXAMPLE_SIZE`; names ``what`` (the keyword and value).
    """
    budget = _BUDGET.get()
    if budget is None:
        return
    budget[0] -= amount
    if budget[0] < 0:
        raise InputError(
            f"an example of a schema would exceed {MAX_EXAMPLE_SIZE:,} characters and values ({what})",
            hint="lower minLength/minItems in the document, or give the schema an example",
        )


def _string(schema: dict[str, Any]) -> str:
    text = str(_FORMATS.get(str(schema.get("format", "")), "string"))
    low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
    _spend(max(low, len(text)), f"minLength {low}")
    if len(text) < low:
        text = text + "x" * (low - len(text))
    if isinstance(high, int) and len(text) > high:
        text = text[:high]
    return text


def _number(schema: dict[str, Any], integer: bool) -> int | float:
    low, high = schema.get("minimum"), schema.get("maximum")
    value: float = 1 if integer else 1.5
    if isinstance(low, int | float) and not isinstance(low, bool):
        value = max(value, low + (1 if schema.get("exclusiveMinimum") is True else 0))
    if isinstance(schema.get("exclusiveMinimum"), int | float) and not isinstance(schema["exclusiveMinimum"], bool):
        value = max(value, schema["exclusiveMinimum"] + 1)
    if isinstance(high, int | float) and not isinstance(high, bool):
        value = min(value, high - (1 if schema.get("exclusiveMaximum") is True else 0))
    if isinstance(schema.get("exclusiveMaximum"), int | float) and not isinstance(schema["exclusiveMaximum"], bool):
        value = min(value, schema["exclusiveMaximum"] - 1)
    step = schema.get("multipleOf")
    if isinstance(step, int | float) and step > 0:
        try:
            value = (int(value // step) or 1) * step
        except (OverflowError, ValueError):  # 1e300 // 1e-300 is inf: keep the bound; the check reports it
            pass
    try:
        return int(value) if integer else float(value)
    except (OverflowError, ValueError):
        return 1 if integer else 1.5


def _object(doc: dict[str, Any], schema: dict[str, Any], depth: int, stack: tuple[str, ...], use: bool) -> Any:
    out: dict[str, Any] = {}
    required = set(schema.get("required") or [])
    for name, prop in (schema.get("properties") or {}).items():
        name_ref = ref_name(prop)
        recursive = name_ref is not None and name_ref in stack
        if name in required or (depth < 4 and not recursive):
            if recursive and depth >= 4:
                continue
            out[name] = example(doc, prop, depth=depth + 1, stack=stack, use_examples=use)
    extra = schema.get("additionalProperties")
    if not out and isinstance(extra, dict) and extra and depth < 4:
        out["key"] = example(doc, extra, depth=depth + 1, stack=stack, use_examples=use)
    return out


def example(
    doc: dict[str, Any], schema: Any, *, depth: int = 0, stack: tuple[str, ...] = (), use_examples: bool = True
) -> Any:
    """Return an example value for ``schema`` (refs resolved in ``doc``).

    Args:
        doc: the OpenAPI document holding ``components``.
        schema: the schema (may be a ``$ref``).
        depth: nesting depth reached (objects stop adding optional properties at depth 4).
        stack: the component names being expanded (stops recursive schemas).
        use_examples: prefer the schema's own ``example``/``default`` values.

    Raises:
        InputError: the example would hold more than :data:`MAX_EXAMPLE_SIZE` characters and values.
    """
    if _BUDGET.get() is None:  # the outermost call: one budget for the whole example
        token = _BUDGET.set([MAX_EXAMPLE_SIZE])
        try:
            return example(doc, schema, depth=depth, stack=stack, use_examples=use_examples)
        finally:
            _BUDGET.reset(token)
    _spend(1, "values")
    name = ref_name(schema)
    if name is not None:
        stack = (*stack, name)
    resolved = resolve_dict(doc, schema)
    found, value = _from_keywords(doc, resolved, depth, stack, use_examples)
    if found:
        return value
    kinds = [t for t in types_of(doc, resolved) if t != "null"] or (["null"] if types_of(doc, resolved) else [])
    kind = kinds[0] if kinds else ("object" if "properties" in resolved else "array" if "items" in resolved else "")
    if kind == "object":
        return _object(doc, resolved, depth, stack, use_examples)
    if kind == "array":
        count = max(int(resolved.get("minItems", 0)), 1 if depth < 5 else 0)
        if isinstance(resolved.get("maxItems"), int):
            count = min(count, resolved["maxItems"])
        _spend(count, f"minItems {count}")
        items = resolved.get("items") or {}
        return [example(doc, items, depth=depth + 1, stack=stack, use_examples=use_examples) for _ in range(count)]
    if kind in ("integer", "number"):
        return _number(resolved, kind == "integer")
    return {"boolean": True, "null": None}.get(kind, _string(resolved) if kind == "string" else "string")


def _from_keywords(
    doc: dict[str, Any], resolved: dict[str, Any], depth: int, stack: tuple[str, ...], use: bool
) -> tuple[bool, Any]:
    """Return ``(True, value)`` when ``example``/``const``/``enum``/composition keywords decide the example."""
    if use:
        for key in ("example", "const", "default"):
            if key in resolved:
                return True, resolved[key]
        if isinstance(resolved.get("examples"), list) and resolved["examples"]:
            return True, resolved["examples"][0]
    if "const" in resolved:
        return True, resolved["const"]
    if isinstance(resolved.get("enum"), list) and resolved["enum"]:
        return True, next((v for v in resolved["enum"] if v is not None), resolved["enum"][0])
    if resolved.get("allOf"):
        merged: Any = None
        for part in resolved["allOf"]:
            value = example(doc, part, depth=depth, stack=stack, use_examples=use)
            merged = {**merged, **value} if isinstance(merged, dict) and isinstance(value, dict) else value
        return True, merged
    for key in ("oneOf", "anyOf"):
        if resolved.get(key):
            return True, example(doc, resolved[key][0], depth=depth, stack=stack, use_examples=use)
    return False, None
