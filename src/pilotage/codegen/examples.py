"""Build example values from OpenAPI schemas (the one owner of example generation), and the type reader.

:func:`example` returns a value that the schema accepts: the schema's own ``example``/``examples``/``const``/
``enum``/``default`` when present, otherwise a value built from ``type``, ``format`` and the numeric and length
bounds (``minimum``, ``maxLength``, ``minItems`` ...). :func:`schema_errors` checks it with
``openapi-schema-validator`` (OAS 3.0 or 3.1 dialect), so the generator can prove every canned response valid.

Both run on untrusted documents inside the control plane, so both are bounded (issue #15): an example holds at most
:data:`MAX_EXAMPLE_SIZE` characters and values (``minLength: 50000000`` took 3.2 GB), and a ``pattern`` may take
:data:`PATTERN_TIMEOUT_S` on one value (``^(a|aa)+$`` backtracks exponentially, and Python's ``re`` holds the GIL, so
no timeout or signal could stop it); either limit is an ``InputError`` naming the keyword. References are
resolved by :mod:`pilotage.spec.refs`; an operation's example body is ``example(doc, schema)`` of the schema
of :attr:`~pilotage.spec.openapi.Operation.request_body`'s media type.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Iterator
from typing import Any

import regex

from pilotage.errors import InputError
from pilotage.spec.refs import FILES_KEY, ref_name, resolve_dict

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


def types_of(doc: dict[str, Any], schema: Any, _seen: frozenset[str] = frozenset()) -> list[str]:
    """Return the JSON types ``schema`` admits (``type``, 3.1 type lists, ``nullable``, composed schemas).

    A union that comes back to a schema already being read adds nothing (``_seen``: the names on the way), so even a
    document with such a cycle (refused by :func:`pilotage.spec.load.validate_spec`) cannot overflow the stack.
    """
    name = ref_name(schema)
    if name is not None:
        if name in _seen:
            return []
        _seen = _seen | {name}
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
                found.extend(t for t in types_of(doc, sub, _seen) if t not in found)
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
    root = {"allOf": [schema], "components": doc.get("components", {}), FILES_KEY: doc.get(FILES_KEY, {})}
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


#: Below this depth an example object holds its optional properties too; from it on, only the required ones.
FULL_DEPTH = 4
#: From this depth on an example only holds what the schema forces: required properties, ``minItems`` items,
#: ``allOf`` parts, a branch of a union. A schema met again there nests itself for ever: it has no finite value.
FORCED_DEPTH = 5

_Stack = tuple[tuple[str, int], ...]  # (component schema name, depth at which its expansion began), outermost first


def _refers_to(schema: Any, stack: _Stack) -> bool:
    """True when ``schema`` is, or directly holds (array items, union branches), a reference to a name on ``stack``."""
    names = {name for name, _ in stack}
    parts = [schema]
    if isinstance(schema, dict):
        parts.append(schema.get("items"))
        for key in ("oneOf", "anyOf", "allOf"):
            branches = schema.get(key)
            parts.extend(branches if isinstance(branches, list) else [])
    return any(ref_name(part) in names for part in parts)


def _no_finite_value(name: str, stack: _Stack) -> InputError:
    start = next(i for i, (entry, depth) in enumerate(stack) if entry == name and depth >= FORCED_DEPTH)
    chain = " -> ".join([*(entry for entry, _ in stack[start:]), name])
    return InputError(
        f"schema {name!r} has no finite value: {chain} nests it in itself through required properties, minItems or "
        "union branches that all recurse",
        hint="make one property of the cycle optional or nullable (or minItems 0), or give the schema an example",
        cycle=chain,
    )


def _object(doc: dict[str, Any], schema: dict[str, Any], depth: int, stack: _Stack, use: bool) -> Any:
    out: dict[str, Any] = {}
    required = set(schema.get("required") or [])
    for name, prop in (schema.get("properties") or {}).items():
        if name in required or (depth < FULL_DEPTH and not _refers_to(prop, stack)):
            out[name] = _example(doc, prop, depth + 1, stack, use)
    extra = schema.get("additionalProperties")
    if not out and isinstance(extra, dict) and extra and depth < FULL_DEPTH and not _refers_to(extra, stack):
        out["key"] = _example(doc, extra, depth + 1, stack, use)
    return out


def _array(doc: dict[str, Any], schema: dict[str, Any], depth: int, stack: _Stack, use: bool) -> list[Any]:
    items = schema.get("items") or {}
    least = int(schema.get("minItems", 0))
    count = least if _refers_to(items, stack) else max(least, 1 if depth < FORCED_DEPTH else 0)
    if isinstance(schema.get("maxItems"), int):
        count = min(count, schema["maxItems"])
    _spend(count, f"minItems {count}")
    return [_example(doc, items, depth + 1, stack, use) for _ in range(count)]


def example(doc: dict[str, Any], schema: Any, *, use_examples: bool = True) -> Any:
    """Return an example value for ``schema`` (refs resolved in ``doc``).

    Bounded for recursive schemas (``Node.children.items: {$ref: Node}``, unions and ``additionalProperties``
    that come back to an enclosing schema): an optional property, an item or a union branch that would expand a
    schema being expanded is left out (or the branch that does not recurse, or ``null``, is taken), objects hold
    optional properties only above :data:`FULL_DEPTH` levels and arrays are empty from :data:`FORCED_DEPTH` on.

    Args:
        doc: the OpenAPI document holding ``components``.
        schema: the schema (may be a ``$ref``).
        use_examples: prefer the schema's own ``example``/``default`` values.

    Raises:
        InputError: the example would hold more than :data:`MAX_EXAMPLE_SIZE` characters and values, or the schema
            has no finite value (a required property or ``minItems`` chain that comes back to it; names the cycle).
    """
    token = _BUDGET.set([MAX_EXAMPLE_SIZE])
    try:
        return _example(doc, schema, 0, (), use_examples)
    finally:
        _BUDGET.reset(token)


def _example(doc: dict[str, Any], schema: Any, depth: int, stack: _Stack, use: bool) -> Any:
    _spend(1, "values")
    name = ref_name(schema)
    resolved = resolve_dict(doc, schema)
    if _refers_to(schema, stack) and _admits_null(resolved):
        return None  # a recursive schema that admits null ends the recursion
    if name is not None:
        if depth >= FORCED_DEPTH and any(e == name and d >= FORCED_DEPTH for e, d in stack):
            raise _no_finite_value(name, stack)
        stack = (*stack, (name, depth))
    found, value = _from_keywords(doc, resolved, depth, stack, use)
    if found:
        return value
    types = types_of(doc, resolved)
    kinds = [t for t in types if t != "null"] or (["null"] if types else [])
    kind = kinds[0] if kinds else ("object" if "properties" in resolved else "array" if "items" in resolved else "")
    if kind == "object":
        return _object(doc, resolved, depth, stack, use)
    if kind == "array":
        return _array(doc, resolved, depth, stack, use)
    if kind in ("integer", "number"):
        return _number(resolved, kind == "integer")
    return {"boolean": True, "null": None}.get(kind, _string(resolved) if kind == "string" else "string")


def _admits_null(schema: dict[str, Any]) -> bool:
    """True when ``null`` is valid for ``schema`` by its own ``type``.

    That is ``"null"`` among the types (3.1), or ``nullable: true`` beside a ``type`` and no composition (OpenAPI
    3.0.3 §4.7.24.1: nullable needs ``type``, and an ``allOf`` still applies its parts to null).
    """
    declared = schema.get("type")
    if declared == "null" or (isinstance(declared, list) and "null" in declared):
        return True
    composed = any(k in schema for k in ("allOf", "oneOf", "anyOf"))
    return schema.get("nullable") is True and isinstance(declared, str) and not composed


def _branch(branches: list[Any], stack: _Stack) -> Any:
    """The first union branch that does not come back to a schema being expanded (else the first one)."""
    return next((b for b in branches if not _refers_to(b, stack)), branches[0])


def _given(resolved: dict[str, Any], use: bool) -> tuple[bool, Any]:
    """``(True, value)`` when the schema states its example: ``example``/``const``/``default``/``examples``/``enum``."""
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
    return False, None


def _from_keywords(
    doc: dict[str, Any], resolved: dict[str, Any], depth: int, stack: _Stack, use: bool
) -> tuple[bool, Any]:
    """Return ``(True, value)`` when ``example``/``const``/``enum``/composition keywords decide the example."""
    found, value = _given(resolved, use)
    if found:
        return found, value
    if resolved.get("allOf"):
        merged: Any = None
        for part in resolved["allOf"]:
            value = _example(doc, part, depth, stack, use)
            merged = {**merged, **value} if isinstance(merged, dict) and isinstance(value, dict) else value
        return True, merged
    for key in ("oneOf", "anyOf"):
        if resolved.get(key):
            return True, _example(doc, _branch(resolved[key], stack), depth, stack, use)
    return False, None
