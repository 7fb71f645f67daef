"""Load and validate OpenAPI 3.0 / 3.1 documents.

:func:`load_spec` reads a YAML or JSON file (JSON is a subset of YAML, so one parser serves both), checks that
it declares ``openapi: 3.x`` and validates it with ``openapi-spec-validator`` (the OpenAPI Initiative's JSON
schemas for 3.0 and 3.1). Every failure is an :class:`~pilotage.errors.InputError` naming the file and the
place (line/column for syntax errors, a JSON path such as ``$.paths['/pets'].get.responses`` for schema
errors) and how to fix it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from pilotage.errors import InputError

__all__ = [
    "dump_spec",
    "json_path",
    "load_spec",
    "openapi_version",
    "spec_digest",
    "spec_key",
    "to_json_data",
    "validate_spec",
]

_HINT = "pass an existing OpenAPI 3 file with --spec"


def json_path(parts: Any) -> str:
    """Return a JSONPath string (``$.paths['/pets'].get``) for a sequence of keys and indexes."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{str(part)!r}]"
    return out


def openapi_version(doc: Any) -> str:
    """Return the ``openapi`` version string ("3.0.3", "3.1.0" ...) of a decoded document, or "" if absent."""
    if isinstance(doc, dict):
        version = doc.get("openapi")
        if isinstance(version, str):
            return version
    return ""


def validate_spec(doc: dict[str, Any], *, path: str | Path = "<memory>") -> None:
    """Validate a decoded OpenAPI 3.0/3.1 document.

    Args:
        doc: the decoded document.
        path: file name used in error messages.

    Raises:
        InputError: the document is not OpenAPI 3.0/3.1 or breaks its schema; the message names the JSON path.
    """
    from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator

    version = openapi_version(doc)
    if version.startswith("3.0"):
        validator_cls: Any = OpenAPIV30SpecValidator
    elif version.startswith("3.1"):
        validator_cls = OpenAPIV31SpecValidator
    else:
        raise InputError(
            f"spec file {path} is not OpenAPI 3.0/3.1 (openapi: {version or 'missing'!s})",
            hint="use a document with a top-level `openapi: 3.0.x` or `openapi: 3.1.x` key",
            path=str(path),
        )
    try:
        errors = list(validator_cls(doc).iter_errors())
    except Exception as exc:  # the validator raises on unresolvable $refs and similar structural problems
        raise InputError(
            f"spec file {path} is not a valid OpenAPI {version} document: {exc}",
            hint="fix the document so openapi-spec-validator accepts it",
            path=str(path),
        ) from exc
    if errors:
        first = min(errors, key=lambda e: len(list(e.absolute_path)))
        where = json_path(first.absolute_path)
        message = " ".join(str(first.message).split())[:300]
        raise InputError(
            f"spec file {path} is not a valid OpenAPI {version} document: at {where}: {message}"
            + (f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""),
            hint=f"correct {where} in {path}",
            path=str(path),
            json_path=where,
        )


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read, parse and validate an OpenAPI 3.0/3.1 file (YAML or JSON).

    Args:
        path: the file.

    Returns:
        The decoded document (a plain dict, keys in file order).

    Raises:
        InputError: the file is missing or unreadable, is not YAML/JSON (line and column given), is not an
            OpenAPI 3.x document, or fails validation (JSON path given).
    """
    file = Path(path)
    if file.is_dir():
        raise InputError(f"spec path {file} is a folder, not a file", hint=_HINT, path=str(file))
    if not file.is_file():
        raise InputError(f"spec file {file} not found", hint=_HINT, path=str(file))
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"spec file {file} cannot be read: {exc}", hint=_HINT, path=str(file)) from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(
            f"spec file {file} is not valid YAML/JSON{where}: {problem}",
            hint=f"fix the syntax{where} of {file}",
            path=str(file),
        ) from exc
    if isinstance(doc, dict) and "swagger" in doc and "openapi" not in doc:
        raise InputError(
            f"spec file {file} is Swagger {doc.get('swagger')}, not OpenAPI 3",
            hint="convert it to OpenAPI 3 first (e.g. with swagger2openapi or the Swagger Editor)",
            path=str(file),
        )
    if not isinstance(doc, dict) or not openapi_version(doc).startswith("3."):
        found = openapi_version(doc) or "missing"
        raise InputError(
            f"spec file {file} is not an OpenAPI 3 document (openapi: {found})",
            hint="pass a file with a top-level `openapi: 3.0.x` or `3.1.x` key (Swagger 2.0 is not supported)",
            path=str(file),
        )
    data: dict[str, Any] = to_json_data(doc)
    external = _first_external_ref(data)
    if external is not None:
        raise InputError(
            f"spec file {file} uses an external $ref ({external}), which Pilotage does not resolve",
            hint="bundle the spec into one file first (e.g. `redocly bundle` or `swagger-cli bundle`)",
            path=str(file),
        )
    validate_spec(data, path=file)
    return data


def _first_external_ref(value: Any) -> str | None:
    """Return the first ``$ref`` that points outside the document (not ``#/...``), or None."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and not ref.startswith("#"):
                return ref
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


def to_json_data(value: Any) -> Any:
    """Return ``value`` in the JSON data model.

    Mapping keys become strings (YAML reads ``200:`` as an int), dates and datetimes ISO 8601 strings, tuples lists.
    """
    if isinstance(value, dict):
        return {str(key): to_json_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_data(item) for item in value]
    if isinstance(value, datetime.date | datetime.datetime):
        return value.isoformat()
    return value


def dump_spec(doc: dict[str, Any], path: str | Path) -> Path:
    """Write ``doc`` as YAML (``.yaml``/``.yml``) or JSON (any other suffix), keys in insertion order.

    Returns:
        The written path.
    """
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    if file.suffix in {".yaml", ".yml"}:
        text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)
    else:
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    file.write_text(text, encoding="utf-8")
    return file


def spec_digest(doc: dict[str, Any]) -> str:
    """Return the SHA-256 (hex) of the canonical JSON of ``doc`` (sorted keys): a content version of the spec."""
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def spec_key(service: str, doc: dict[str, Any]) -> str:
    """Return the graph key of a spec version: ``"<service>@<first 12 hex digits of spec_digest(doc)>"``."""
    return f"{service}@{spec_digest(doc)[:12]}"
