"""Generate a runnable FastAPI service from any OpenAPI 3.0/3.1 document.

Layout of the generated folder (the "Generated-service conventions" of ``docs/events-contract.md``)::

    app/__init__.py
    app/main.py          one handler per operation, the route table, ``app`` (entry point ``app.main:app``)
    app/models.py        pydantic models of ``components.schemas``
    app/runtime.py       ``Operation``: request parsing/validation against the spec, responses, ``ApiError``
    app/codec.py         body codecs (JSON, XML, form, multipart), ``$ref`` resolution, schema errors, coercion
    app/observe.py       ``build_app``: routes, /healthz, /metrics, the release flag (OFREP), fault injection
    app/crud.py          create/list/find/get/replace/merge/delete on the SQLite store
    app/auth.py          credential checks: test principal (env ``PILOTAGE_TEST_PRINCIPAL``), users, tokens
    app/handlers.py      the user's handlers of operations not inferred (501 until written; never overwritten)
    app/store.py         SQLite persistence (env ``PILOTAGE_DB_PATH``, default ``data.db``)
    app/validation.py    discriminators, readOnly/writeOnly (request and response views) on top of JSON Schema
    app/openapi.json     the spec the service implements (also served at ``GET /openapi.json``)
    tests/conftest.py, tests/test_service.py   the service's own pytest tests
    requirements.txt, requirements-dev.txt     pinned ``name==version`` (versions of the generating environment)
    .github/workflows/ci.yml                   GitHub Actions: unit tests + schemathesis
    README.md, .gitignore

The service serves the spec's paths under the path of ``servers[0].url`` (variables set to their defaults:
:func:`pilotage.spec.openapi.base_path`), ``/api/v3/pet`` for ``https://{host}/api/v3`` and ``/pet``; its own
``/healthz``, ``/metrics`` and ``/openapi.json`` stay at the root. Callers add the base path to the root URL.

The document is untrusted: its text reaches the Python files only through :mod:`pilotage.codegen.quoting`
(the templates' ``py``/``ident`` filters; any other ``{{ }}`` output makes rendering fail), and every Python file
is checked with :func:`~pilotage.codegen.quoting.check_python` before anything is written.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import re
import shutil
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml

from pilotage.codegen.auth import apply_auth
from pilotage.codegen.examples import example, schema_errors
from pilotage.codegen.models import model_names, models_source
from pilotage.codegen.plan import OperationPlan, Resource, ServicePlan, make_plan
from pilotage.codegen.quoting import (
    GENERATED_NAMES,
    IDENTIFIER,
    Source,
    check_python,
    py_docstring,
    py_literal,
    require_json_data,
)
from pilotage.errors import InputError
from pilotage.names import check_name
from pilotage.spec.load import load_spec, spec_digest, to_json_data, validate_spec
from pilotage.spec.openapi import base_path, object_properties
from pilotage.spec.refs import resolve_dict

__all__ = [
    "RUNTIME_PACKAGES",
    "SERVICE_FILES",
    "TEST_PACKAGES",
    "GeneratedService",
    "generate_service",
    "read_requirements",
]

#: Distributions the generated service imports at run time (pinned to the generating environment's versions).
RUNTIME_PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "prometheus-client",
    "openapi-schema-validator",
    "jsonschema",  # app/validation.py extends openapi-schema-validator's validators with its keywords
    "openfeature-sdk",  # the release flag (env PILOTAGE_OFREP_URL): OpenFeature SDK + its OFREP provider
    "openfeature-provider-ofrep",
)
#: Distributions its tests need.
TEST_PACKAGES = ("pytest", "httpx")
#: Every file the generator writes, relative to the service folder.
SERVICE_FILES = (
    ".github/workflows/ci.yml",
    ".gitignore",
    "README.md",
    "app/__init__.py",
    "app/auth.py",
    "app/codec.py",
    "app/crud.py",
    "app/handlers.py",
    "app/main.py",
    "app/models.py",
    "app/observe.py",
    "app/openapi.json",
    "app/runtime.py",
    "app/store.py",
    "app/validation.py",
    "pilotage.yaml",
    "requirements-dev.txt",
    "requirements.txt",
    "tests/conftest.py",
    "tests/test_service.py",
)
_TEMPLATES = Path(__file__).parent / "templates"
#: The ``app/crud.py`` function each resource kind's handler calls.
_CRUD_CALLS = {
    kind: Source(f"crud.{kind if kind != 'list' else 'list_items'}")
    for kind in ("create", "replace", "replace_body", "merge", "list", "get", "delete", "find")
}
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|!~&#])")
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._\-]*)\s*(?:==\s*([^\s;#]+))?")


@dataclass
class GeneratedService:
    """What :func:`generate_service` wrote.

    Attributes:
        root: the service folder.
        files: written files, relative POSIX paths, sorted.
        dependencies: runtime requirements ``[{"name", "version"}]`` (from ``requirements.txt``).
        resources: ``[{"name", "collection", "item", "key"}]`` persisted in SQLite.
        operations: ``[{"operation", "function", "kind"}]`` one per generated handler.
        models: the generated pydantic class names.
        skipped: paths not generated, with the reason.
        warnings: spec problems the generator worked around.
        digest: SHA-256 of the spec.
        flagged: the operations behind the release flag (``"METHOD /path"``), in plan order.
    """

    root: Path
    files: list[str]
    dependencies: list[dict[str, str]]
    resources: list[dict[str, Any]]
    operations: list[dict[str, str]]
    models: list[str]
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    digest: str = ""
    flagged: list[str] = field(default_factory=list)


def read_requirements(path: str | Path) -> list[dict[str, str]]:
    """Parse a pip requirements file into ``[{"name", "version"}]`` (version "" when not pinned with ==).

    Raises:
        InputError: the file does not exist.
    """
    file = Path(path)
    if not file.is_file():
        raise InputError(f"requirements file {file} not found", hint="generate the service first", path=str(file))
    out = []
    for line in file.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        match = _REQUIREMENT.match(line) if line and not line.startswith("-") else None
        if match:
            out.append({"name": match[1].lower().replace("_", "-"), "version": match[2] or ""})
    return out


@functools.cache
def _pins(names: tuple[str, ...]) -> str:
    lines = []
    for name in names:
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(name)
    return "\n".join(lines) + "\n"


def _resource_meta(res: Resource) -> dict[str, Any]:
    return {
        "name": res.name,
        "key": res.key,
        "key_kind": res.key_kind,
        "key_read_only": res.key_read_only,
        "item_param": res.item_param,
        "scope_params": res.scope_params,
        "schema": res.schema,
    }


def _under(prefix: str, path: str) -> str:
    """``path`` served under the base path ``prefix`` (``""`` or ``/api/v3``): ``/`` alone becomes ``prefix``."""
    return prefix + path if path != "/" or not prefix else prefix


def _serve_under(plan: ServicePlan, prefix: str) -> None:
    """Put the routes of ``plan`` under the base path ``prefix``; their metric labels stay the document's paths.

    The document's ``/`` under a base path is served at ``prefix + "/"`` (OpenAPI: the server URL and the path
    concatenated; what schemathesis requests) and at ``prefix`` alone: the generated service redirects no trailing
    slash, so both spellings answer the same operation.
    """
    routes = []
    for route, template, handlers in plan.routes:
        if route == "/" and prefix:
            routes.append((prefix + "/", template, handlers))
        routes.append((_under(prefix, route), template, handlers))
    plan.routes = routes


def _writable(doc: dict[str, Any], schema: Any, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` without the top-level ``readOnly`` properties of ``schema`` (the service ignores them on input)."""
    props = object_properties(doc, schema)
    return {k: v for k, v in body.items() if not resolve_dict(doc, props.get(k)).get("readOnly")}


def _round_trips(doc: dict[str, Any], plan: ServicePlan, prefix: str) -> list[dict[str, Any]]:
    cases = []
    for res in plan.resources:
        ops = {op.kind: op for op in plan.operations if op.resource is res and op.parent is None}
        if res.scope_params or "create" not in ops or "get" not in ops:
            continue
        body_schema = (ops["create"].meta["body"] or {}).get("content", {}).get("application/json")
        if body_schema is None:
            continue
        body = example(doc, body_schema)
        if not isinstance(body, dict) or schema_errors(doc, body_schema, body):
            continue
        body = _writable(doc, body_schema, body)
        if res.key is not None and (res.key_read_only or res.key in body):
            body.pop(res.key, None)
        id_param = next(p for p in ops["get"].meta["parameters"] if p["name"] == res.item_param)
        unknown = 987654321 if res.key_kind == "integer" else "no-such-item"
        if schema_errors(doc, id_param["schema"], unknown):
            continue
        cases.append(
            {
                "name": res.name,
                "collection": _under(prefix, res.collection_path),
                "item": _under(prefix, res.item_path),
                "param": res.item_param,
                "key": res.key,
                "body": body,
                "create_status": ops["create"].meta["success_status"],
                "delete_status": ops["delete"].meta["success_status"] if "delete" in ops else 0,
                "not_found_status": ops["get"].meta["not_found_status"],
                "unknown_key": unknown,
            }
        )
    return cases


def _safe_gets(plan: ServicePlan, secured: bool, prefix: str) -> list[str]:
    return [
        _under(prefix, op.meta["path"])
        for op in plan.operations
        if op.meta["method"] == "GET"
        and not any(p["required"] for p in op.meta["parameters"])
        and bool(op.meta["security"]) is secured
    ]


def _render(env: jinja2.Environment, name: str, **values: Any) -> str:
    return env.get_template(name).render(**values).rstrip() + "\n"


def _only_source(value: Any) -> Any:
    """Jinja ``finalize`` of the Python templates: every ``{{ }}`` must go through a quoting filter."""
    if not isinstance(value, Source):
        raise TypeError(f"template output {str(value)[:40]!r} did not go through the py/ident filters")
    return value


def _ident(value: Any) -> Source:
    if not isinstance(value, Source) or not IDENTIFIER.fullmatch(value):
        raise TypeError(f"{str(value)[:40]!r} is not an identifier made by python_name")
    return value


def _hexdigest(value: Any) -> Source:
    if not re.fullmatch(r"[0-9a-f]{64}", str(value)):
        raise TypeError(f"{str(value)[:40]!r} is not a SHA-256 hex digest")
    return Source(value)


def _handler_doc(op: OperationPlan) -> Source:
    return py_docstring(f"{op.meta['method']} {op.meta['path']}: {op.meta['summary']} ({op.kind}).", 4)


def _markdown(value: Any) -> str:
    """Jinja ``finalize`` of README.md: one line, Markdown markup characters escaped."""
    text = " ".join("".join(c if c.isprintable() else " " for c in str(value)).split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


@functools.cache
def _environments() -> tuple[jinja2.Environment, jinja2.Environment]:
    """Return the Jinja environments of the Python templates (quoting filters enforced) and of README.md."""
    loader = jinja2.FileSystemLoader(str(_TEMPLATES))
    python = jinja2.Environment(loader=loader, keep_trailing_newline=True, autoescape=False, finalize=_only_source)
    python.filters.update(
        py=lambda value, indent=0: py_literal(value, indent),
        ident=_ident,
        hexdigest=_hexdigest,
        handler_doc=_handler_doc,
        crud_call=_CRUD_CALLS.__getitem__,
    )
    markdown = jinja2.Environment(loader=loader, keep_trailing_newline=True, autoescape=False, finalize=_markdown)
    return python, markdown


def _check_sources(files: dict[str, str], plan: ServicePlan, models: dict[str, str], kept: Collection[str]) -> None:
    """Run :func:`~pilotage.codegen.quoting.check_python` on every document-derived Python file."""
    made = {op.function for op in plan.operations} | set(models.values())
    for rel in ("app/__init__.py", "app/main.py", "tests/conftest.py", "tests/test_service.py", "app/handlers.py"):
        if rel != "app/handlers.py" or rel not in kept:
            check_python(files[rel], file=rel, allowed=GENERATED_NAMES[rel] | made)


#: The first line of every generated Python file (``app/handlers.py`` excepted: it is the user's).
GENERATED_HEADER = (
    "# Generated by Pilotage: do not edit (regenerated from app/openapi.json; your code: app/handlers.py)\n"
)


def _user_handlers(root: Path, plan: ServicePlan, env: jinja2.Environment, files: dict[str, str]) -> set[str]:
    """Put ``app/handlers.py`` in ``files``; return ``{"app/handlers.py"}`` when it is the user's, else ``set()``.

    The user's file when ``root`` has one (kept as it is; a handler it lacks is reported in ``plan.warnings``: that
    operation answers 501), else stubs of the operations not inferred.
    """
    own = [op for op in plan.operations if op.kind in ("example", "nested")]
    existing = root / "app" / "handlers.py"
    if not existing.is_file():
        files["app/handlers.py"] = _render(env, "handlers.py.j2", operations=own)
        return set()
    text = existing.read_text(encoding="utf-8")
    files["app/handlers.py"] = text
    defined = set(re.findall(r"^(?:async\s+)?def\s+([A-Za-z_][A-Za-z0-9_]*)", text, re.MULTILINE))
    missing = [op.function for op in own if op.function not in defined]
    if missing:
        names = ", ".join(missing[:10])
        plan.warnings.append(f"app/handlers.py (kept) has no handler {names}: 501 until you add it")
    return {"app/handlers.py"}


def _operation_summary(op: OperationPlan) -> dict[str, str]:
    return {"operation": f"{op.meta['method']} {op.meta['path']}", "function": op.function, "kind": op.kind}


def _flag_operations(plan: ServicePlan, flagged: Collection[str]) -> None:
    """Mark the operations named in ``flagged`` (``"METHOD /path"``) as behind the release flag (``meta.flagged``).

    Names the plan does not generate (a reserved path) are reported in ``plan.warnings``.
    """
    wanted = {" ".join(str(name).split()) for name in flagged}
    for op in plan.operations:
        label = f"{op.meta['method']} {op.meta['path']}"
        op.meta["flagged"] = label in wanted
        wanted.discard(label)
    plan.warnings.extend(f"flagged operation {name[:200]!r} is not generated: no flag gate" for name in sorted(wanted))


#: How Pilotage starts, checks and tests a service it generated: ``pilotage.yaml`` (issue #17), so a generated
#: service is a managed service like any other (``pilotage service show``, ``pilotage deliver``). ``{python}`` is
#: the control plane's interpreter, which has the generated service's runtime packages; production's SQLite file
#: lives in its data folder, kept across deliveries (tests and load tests get a fresh one).
_DESCRIPTOR_FIELDS: dict[str, Any] = {
    "owner": "pilotage",
    "start": "{python} -m uvicorn app.main:app --host 127.0.0.1 --port {port}",
    "env": {"PILOTAGE_DB_PATH": "{data}/service.db"},
    "health": "/healthz",
    "metrics": "/metrics",
    "openapi": "app/openapi.json",
    "test": "{python} -m pytest -q -p no:cacheprovider tests",
}


def descriptor_text(name: str, title: str) -> str:
    """The ``pilotage.yaml`` of a generated service named ``name`` (a safe name, :mod:`pilotage.names`).

    ``title`` (the document's ``info.title``, untrusted) is data in the YAML, quoted by the YAML emitter.
    """
    printable = _CONTROL_CHARACTERS.sub(" ", title)[:200]
    fields = {"name": name, "description": f"Generated by Pilotage from {printable}", **_DESCRIPTOR_FIELDS}
    header = "# Generated by Pilotage with the service (regenerated with it); schema: `pilotage init --schema`.\n"
    return header + yaml.safe_dump(fields, sort_keys=False, allow_unicode=True, width=1000)


def generate_service(
    spec: dict[str, Any] | str | Path,
    out_dir: str | Path,
    *,
    flagged: Collection[str] = (),
    name: str = "service",
) -> GeneratedService:
    """Generate the service for ``spec`` into ``out_dir`` (``app/`` and ``tests/`` are replaced).

    Args:
        spec: a decoded OpenAPI 3.0/3.1 document, or the path of one.
        out_dir: the service folder (created if missing; other files in it are kept).
        flagged: operations (``"GET /discount-codes"``, as ``spec.proposed``'s ``operations_added``) put behind
            the release flag: they answer 404 to requests whose flag is off (env ``PILOTAGE_OFREP_URL``,
            ``docs/events-contract.md``).
        name: the service's name in its ``pilotage.yaml`` (:func:`descriptor_text`; a safe name).

    Returns:
        What was written.

    Raises:
        InputError: the spec does not load or validate, holds values that are not JSON data (NaN, infinity; the
            message names the field), or a generated Python file fails the quoting check (nothing is written then).
    """
    doc = load_spec(spec) if isinstance(spec, str | Path) else to_json_data(spec)
    require_json_data(doc, path=str(spec) if isinstance(spec, str | Path) else "<memory>")
    if isinstance(spec, dict):
        validate_spec(doc)
    root = Path(out_dir)
    names = model_names(doc)
    plan = make_plan(doc, names)
    _flag_operations(plan, flagged)
    users = apply_auth(doc, plan)
    prefix = base_path(doc)
    _serve_under(plan, prefix)
    digest = spec_digest(doc)
    models_py, model_classes = models_source(doc, names)
    env, markdown = _environments()
    resources = {res.name: _resource_meta(res) for res in plan.resources}
    files: dict[str, str] = {
        "app/__init__.py": '"""The generated service package."""\n',
        "app/main.py": _render(env, "main.py.j2", plan=plan, digest=digest, resources=resources, users=users),
        "app/auth.py": (_TEMPLATES / "auth.py.tmpl").read_text(encoding="utf-8"),
        "app/models.py": models_py,
        "app/runtime.py": (_TEMPLATES / "runtime.py.tmpl").read_text(encoding="utf-8"),
        "app/codec.py": (_TEMPLATES / "codec.py.tmpl").read_text(encoding="utf-8"),
        "app/observe.py": (_TEMPLATES / "observe.py.tmpl").read_text(encoding="utf-8"),
        "app/crud.py": (_TEMPLATES / "crud.py.tmpl").read_text(encoding="utf-8"),
        "app/store.py": (_TEMPLATES / "store.py.tmpl").read_text(encoding="utf-8"),
        "app/validation.py": (_TEMPLATES / "validation.py.tmpl").read_text(encoding="utf-8"),
        "app/openapi.json": json.dumps(doc, indent=2, ensure_ascii=False) + "\n",
        "tests/conftest.py": _render(env, "conftest.py.j2"),
        "tests/test_service.py": _render(
            env,
            "test_service.py.j2",
            round_trips=_round_trips(doc, plan, prefix),
            safe_gets=_safe_gets(plan, False, prefix),
            secured_gets=_safe_gets(plan, True, prefix),
            openapi=plan.openapi,
        ),
        "pilotage.yaml": descriptor_text(check_name(name, "service name"), str(plan.title)),
        "requirements.txt": _pins(RUNTIME_PACKAGES),
        "requirements-dev.txt": _pins(TEST_PACKAGES) + "schemathesis\n",
        ".github/workflows/ci.yml": _render(env, "ci.yml.j2"),
        ".gitignore": (_TEMPLATES / "gitignore.tmpl").read_text(encoding="utf-8"),
        "README.md": _render(
            markdown,
            "README.md.j2",
            title=plan.title,
            openapi=plan.openapi,
            digest=digest,
            resources=plan.resources,
            operations=plan.operations,
        ),
    }
    kept = _user_handlers(root, plan, env, files)
    assert sorted(files) == sorted(SERVICE_FILES), "SERVICE_FILES is out of date"
    _check_sources(files, plan, names, kept)
    for rel, text in files.items():
        if rel.endswith(".py") and rel != "app/handlers.py":
            files[rel] = GENERATED_HEADER + text
    for folder in ("app", "tests"):
        shutil.rmtree(root / folder, ignore_errors=True)
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return GeneratedService(
        root=root,
        files=sorted(files),
        dependencies=read_requirements(root / "requirements.txt"),
        resources=[
            {"name": r.name, "collection": r.collection_path, "item": r.item_path, "key": r.key} for r in plan.resources
        ],
        operations=[_operation_summary(op) for op in plan.operations],
        models=model_classes,
        skipped=plan.skipped,
        warnings=plan.warnings,
        digest=digest,
        flagged=[f"{op.meta['method']} {op.meta['path']}" for op in plan.operations if op.meta["flagged"]],
    )
