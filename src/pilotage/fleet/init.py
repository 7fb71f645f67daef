"""``pilotage init``: find what a service repository holds and write a commented ``pilotage.yaml`` (issue #17).

:func:`discover` reads a repository folder without running anything in it:

- the app: the graph ingester's scanner and parser (:mod:`pilotage.graph.ingest.scan`, :func:`parse_module`) give
  each module's name, its imports and its route decorators; a module that imports ``fastapi.FastAPI`` or
  ``flask.Flask`` and assigns ``NAME = FastAPI(...)`` at its top level holds the app (a top-level ``create_app`` /
  ``make_app`` function is taken as a factory when there is no such assignment);
- ``requirements.txt`` / ``pyproject.toml``: a prepare step that builds a virtual environment in ``{prepared}``;
- an OpenAPI 3 document (the ingester's spec scan), else FastAPI's served ``/openapi.json``;
- a test suite (a ``tests/`` folder, test files or a pytest configuration);
- the health and ``/metrics`` routes among the routes found;
- the name from the folder, the owner from ``git config``.

:func:`render_descriptor` writes the descriptor for the user to review: each value carries a comment saying where
it came from, and the optional fields are shown commented out. The text validates with
:func:`pilotage.fleet.descriptor.parse_descriptor_text`.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pilotage.errors import InputError
from pilotage.graph.ingest.parse import ParsedModule, is_test_path, parse_module
from pilotage.graph.ingest.scan import discover as scan_repository
from pilotage.graph.ingest.scan import find_specs, module_name, read_text
from pilotage.names import name_from
from pilotage.spec.load import openapi_version

__all__ = ["HEALTH_PATHS", "discover", "render_descriptor"]

#: Health paths looked for among the routes, in this order of preference.
HEALTH_PATHS = ("/healthz", "/health", "/livez", "/status")
_APP_CLASSES = {
    "fastapi.FastAPI": "fastapi",
    "fastapi.applications.FastAPI": "fastapi",
    "flask.Flask": "flask",
    "flask.app.Flask": "flask",
}
_FACTORIES = ("create_app", "make_app")
_APP_MODULES = ("main", "app", "api", "server", "asgi", "wsgi", "application")
_METRICS_LIBRARIES = ("prometheus_fastapi_instrumentator", "prometheus_flask_exporter")
_DEV_REQUIREMENTS = ("requirements-dev.txt", "requirements-test.txt", "dev-requirements.txt", "test-requirements.txt")
_FRAMEWORK_LABEL = {"fastapi": "FastAPI", "flask": "Flask"}


@dataclass
class _Source:
    """One non-test Python module of the repository, parsed by the graph ingester."""

    rel: str  # path relative to the root, POSIX form
    name: str  # dotted module name
    is_package: bool
    text: str
    parsed: ParsedModule


def _sources(root: Path, files: list[Path], skipped: list[dict[str, str]]) -> list[_Source]:
    """Parse the modules in ``files`` that are not tests (unreadable or unparsable ones go to ``skipped``)."""
    out: list[_Source] = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        parts = rel.split("/")
        if path.name == "conftest.py" or is_test_path(path.name) or {"tests", "test"} & set(parts[:-1]):
            continue
        name, is_package = module_name(path)
        try:
            _, text = read_text(path)
            parsed = parse_module(text, name, is_package=is_package, is_test=False, filename=rel)
        except (OSError, UnicodeDecodeError, InputError) as exc:
            skipped.append({"path": rel, "reason": " ".join(str(exc).split())[:200]})
            continue
        out.append(_Source(rel, name, is_package, text, parsed))
    return out


def _app_classes(parsed: ParsedModule) -> dict[str, str]:
    """Return ``{name as written in the module: framework}`` for the app classes the module imports."""
    out: dict[str, str] = {}
    for local, target in parsed.aliases.items():
        if target in _APP_CLASSES:
            out[local] = _APP_CLASSES[target]
        elif target in ("fastapi", "flask"):
            out[f"{local}.{'FastAPI' if target == 'fastapi' else 'Flask'}"] = target
    return out


def _app_in(source: _Source) -> dict[str, Any] | None:
    """Return the app ``source`` defines (variable or factory), or None."""
    classes = _app_classes(source.parsed)
    if not classes:
        return None
    names = "|".join(re.escape(c) for c in sorted(classes, key=len, reverse=True))
    match = re.search(rf"^([A-Za-z_]\w*)\s*(?::[^=\n]+)?=\s*({names})\s*\(", source.text, re.MULTILINE)
    if match:
        return {"framework": classes[match.group(2)], "variable": match.group(1), "factory": False}
    top = {s.qualname for s in source.parsed.symbols if s.kind == "Function"}
    factory = next((f for f in _FACTORIES if f"{source.name}.{f}" in top), None)
    if factory is None:
        return None
    return {"framework": next(iter(classes.values())), "variable": factory, "factory": True}


def _app_dir(source: _Source) -> str:
    """Return the folder (relative to the root) that must be on ``sys.path`` to import ``source`` ("" = root)."""
    parts = source.rel.split("/")
    depth = len(source.name.split(".")) + (1 if source.is_package else 0)
    return "/".join(parts[: max(len(parts) - depth, 0)])


def _find_app(sources: list[_Source]) -> dict[str, Any] | None:
    """Return the most likely app: a variable over a factory, more routes, shallower, a conventional module name."""
    candidates: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    for source in sources:
        app = _app_in(source)
        if app is None:
            continue
        stem = source.name.rpartition(".")[2]
        rank = (app["factory"], -len(source.parsed.routes), source.rel.count("/"), stem not in _APP_MODULES, source.rel)
        app.update(module=source.name, file=source.rel, app_dir=_app_dir(source))
        app["target"] = f"{source.name}:{app['variable']}"
        candidates.append((rank, app))
    if not candidates:
        return None
    candidates.sort(key=lambda c: c[0])
    best = candidates[0][1]
    best["others"] = [c[1]["target"] for c in candidates[1:]]
    return best


def _requirement_names(lines: list[str]) -> set[str]:
    """Normalised distribution names (PEP 503: lower case, ``-``) of requirement lines."""
    names = set()
    for line in lines:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line.split("#", 1)[0])
        if match and not line.lstrip().startswith("-"):
            names.add(re.sub(r"[-_.]+", "-", match.group(1)).lower())
    return names


def _pyproject(root: Path) -> dict[str, Any]:
    """Return ``pyproject.toml`` decoded ({} when absent or not TOML)."""
    try:
        return tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _dependencies(root: Path, pyproject: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Return ``(runtime dependency names, development dependency names)`` from requirements files and pyproject."""
    runtime: set[str] = set()
    dev: set[str] = set()
    for name, into in [("requirements.txt", runtime), *((d, dev) for d in _DEV_REQUIREMENTS)]:
        try:
            into |= _requirement_names((root / name).read_text(encoding="utf-8").splitlines())
        except (OSError, UnicodeDecodeError):
            continue
    project = pyproject.get("project") or {}
    runtime |= _requirement_names([str(d) for d in project.get("dependencies") or []])
    for group in (project.get("optional-dependencies") or {}).values():
        dev |= _requirement_names([str(d) for d in group])
    poetry = (pyproject.get("tool") or {}).get("poetry") or {}
    runtime |= _requirement_names(list(poetry.get("dependencies") or {}))
    for group in (poetry.get("group") or {}).values():
        dev |= _requirement_names(list((group or {}).get("dependencies") or {}))
    return runtime, dev


def _tests(root: Path, files: list[Path], pyproject: dict[str, Any]) -> str | None:
    """Return why the repository has a pytest suite (a folder, files or configuration), or None."""
    for folder in ("tests", "test"):
        if (root / folder).is_dir():
            return f"found the {folder}/ folder"
    if "ini_options" in ((pyproject.get("tool") or {}).get("pytest") or {}):
        return "found [tool.pytest.ini_options] in pyproject.toml"
    for name, marker in (("pytest.ini", ""), ("setup.cfg", "[tool:pytest]"), ("tox.ini", "[pytest]")):
        try:
            if marker in (root / name).read_text(encoding="utf-8"):
                return f"found pytest configuration in {name}"
        except (OSError, UnicodeDecodeError):
            continue
    test_files = [p for p in files if is_test_path(p.name)]
    return f"found test files ({test_files[0].relative_to(root).as_posix()})" if test_files else None


def _prepare(
    root: Path, pyproject: dict[str, Any], deps: set[str], app: dict[str, Any] | None, tests: bool
) -> dict[str, Any] | None:
    """Return the prepare field (a virtual environment in ``{prepared}/venv``) or None without dependency files.

    ``deps`` are every dependency name the repository lists; uvicorn (FastAPI) and pytest (tests) are added to the
    install when missing from it.
    """
    extra = []
    if app and app["framework"] == "fastapi" and "uvicorn" not in deps:
        extra.append("uvicorn")
    if tests and "pytest" not in deps:
        extra.append("pytest")
    base = "python3 -m venv {prepared}/venv && {prepared}/venv/bin/pip install -q"
    if (root / "requirements.txt").is_file():
        files = ["requirements.txt"] + [d for d in _DEV_REQUIREMENTS if tests and (root / d).is_file()]
        command = " ".join([base, *(f"-r {shlex.quote(f)}" for f in files), *extra])
        source = f"found {', '.join(files)}"
    elif (root / "pyproject.toml").is_file():
        groups = (pyproject.get("project") or {}).get("optional-dependencies") or {}
        group = next((g for g in ("test", "tests", "dev") if tests and g in groups), None)
        files = ["pyproject.toml"]
        command = " ".join([base, shlex.quote(f".[{group}]") if group else ".", *extra])
        source = "found pyproject.toml" + (f" (extra [{group}] for the tests)" if group else "")
    else:
        return None
    if extra:
        source += f"; added {' and '.join(extra)}, which no dependency file lists"
    return {"value": {"command": command, "inputs": files}, "source": source}


def _start(app: dict[str, Any] | None, runtime: set[str], prepared: bool) -> dict[str, Any]:
    """Return the start field: uvicorn for FastAPI, gunicorn (when required) or ``flask run`` for Flask."""
    python = "{prepared}/venv/bin/python" if prepared else "{python}"
    if app is None:
        return {
            "value": 'echo "pilotage.yaml: set start to the command serving 127.0.0.1:{port}" >&2; exit 1',
            "source": "CHECK: no FastAPI or Flask app found; write the command that serves on 127.0.0.1:{port}",
        }
    target, label = app["target"], _FRAMEWORK_LABEL[app["framework"]]
    how = f"found {target}{'()' if app['factory'] else ''} ({label}) by graph ingest in {app['file']}"
    if app["framework"] == "fastapi":
        factory = " --factory" if app["factory"] else ""
        command = f"{python} -m uvicorn {target}{factory} --host 127.0.0.1 --port {{port}}"
    elif "gunicorn" in runtime:
        target = shlex.quote(target + ("()" if app["factory"] else ""))
        command, how = f"{python} -m gunicorn --bind 127.0.0.1:{{port}} {target}", how + "; gunicorn is a dependency"
    else:
        target = shlex.quote(target + ("()" if app["factory"] else ""))
        command = f"{python} -m flask --app {target} run --host 127.0.0.1 --port {{port}}"
    if app["others"]:
        how += f" (also: {', '.join(app['others'][:3])})"
    return {"value": command, "source": how}


def _health(routes: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Return the health field: the first of :data:`HEALTH_PATHS` served by a GET route, else the default."""
    gets = {path: handler for method, path, handler in routes if method == "GET"}
    for path in HEALTH_PATHS:
        if path in gets:
            return {"value": path, "source": f"found route GET {path} ({gets[path]}) by graph ingest"}
    return {
        "value": "/healthz",
        "source": f"CHECK: no GET {', '.join(HEALTH_PATHS)} route found; this path must answer 200 once ready",
    }


def _metrics(routes: list[tuple[str, str, str]], sources: list[_Source]) -> dict[str, Any]:
    """Return the metrics field: ``/metrics`` when a route or an exporter library serves it, else ``proxy``."""
    handler = next((h for m, p, h in routes if m == "GET" and p == "/metrics"), None)
    if handler:
        return {"value": "/metrics", "source": f"found route GET /metrics ({handler}) by graph ingest"}
    for source in sources:
        library = next((t for t in source.parsed.aliases.values() if t.split(".")[0] in _METRICS_LIBRARIES), None)
        if library:
            return {"value": "/metrics", "source": f"found {library.split('.')[0]} in {source.rel} (serves /metrics)"}
    return {"value": "proxy", "source": "no /metrics route found: SLIs come from what Pilotage's proxy sees"}


def _spec_rank(rel: str) -> tuple[int, int, int, str]:
    name = rel.rpartition("/")[2]
    kind = 0 if name.startswith("openapi.") else 1 if ".openapi." in name else 2
    under_tests = int(bool({"tests", "test", "fixtures"} & set(rel.split("/")[:-1])))
    return under_tests, kind, rel.count("/"), rel


def _openapi(root: Path, candidates: list[Path], app: dict[str, Any] | None) -> dict[str, Any] | None:
    """Return the openapi field: the best OpenAPI 3 file (the ingester's spec scan), else FastAPI's served path."""
    specs, _ = find_specs(candidates, [])
    found = {p.relative_to(root).as_posix(): openapi_version(d) for p, d in specs if openapi_version(d)[:2] == "3."}
    if found:
        ordered = sorted(found, key=_spec_rank)
        source = f"found an OpenAPI {found[ordered[0]]} document by graph ingest"
        if len(ordered) > 1:
            source += f" (also: {', '.join(ordered[1:4])})"
        return {"value": ordered[0], "source": source}
    if app and app["framework"] == "fastapi":
        return {"value": "/openapi.json", "source": "no OpenAPI file; FastAPI serves its document here"}
    return None


def _owner(root: Path) -> dict[str, Any] | None:
    """Return the owner field from ``git config user.email`` (else ``user.name``) in ``root``, or None."""
    for key in ("user.email", "user.name"):
        try:
            done = subprocess.run(
                ["git", "-C", str(root), "config", key], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        value = " ".join(done.stdout.split())[:200]
        if done.returncode == 0 and value:
            return {"value": value, "source": f"from git config {key}; CHECK: the owning team's name is better"}
    return None


def discover(path: str | Path) -> dict[str, Any]:
    """Find what a service repository holds, without running any of its code.

    Args:
        path: the repository folder.

    Returns:
        ``{"root": absolute folder, "app": {"framework", "target" ("module:variable"), "file", "module",
        "variable", "factory", "app_dir", "others"} or None, "routes": ["GET /healthz", ...], "skipped":
        [{"path", "reason"}], "fields": {descriptor field: {"value", "source"}}}``; ``fields`` always holds
        ``name``, ``start``, ``health``, ``metrics`` and ``traffic``, the others when found. A ``source`` starting
        with ``CHECK:`` is a guess the user must confirm.

    Raises:
        InputError: ``path`` is not a folder.
    """
    root = Path(path).resolve()
    if not root.is_dir():
        raise InputError(f"{path} is not a folder", hint="give the service repository's folder", path=str(path))
    files, spec_candidates, skips = scan_repository(root)
    skipped = [{"path": s.path, "reason": s.reason} for s in skips]
    sources = _sources(root, files, skipped)
    app = _find_app(sources)
    routes = [(r.method, r.path, r.handler) for s in sources for r in s.parsed.routes]
    pyproject = _pyproject(root)
    tests = _tests(root, files, pyproject)
    runtime, dev = _dependencies(root, pyproject)
    prepare = _prepare(root, pyproject, runtime | dev, app, tests is not None)
    fields: dict[str, Any] = {"name": {"value": name_from(root.name), "source": f"from the folder name {root.name}"}}
    optional: dict[str, dict[str, Any] | None] = {
        "owner": _owner(root),
        "env": _env(app),
        "prepare": prepare,
        "start": _start(app, runtime, prepare is not None),
        "health": _health(routes),
        "metrics": _metrics(routes, sources),
        "openapi": _openapi(root, spec_candidates, app),
        "slo": _slo(root),
        "test": _test(tests, prepare is not None),
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    fields["traffic"] = {"value": {"writes": False}, "source": "the default: no POST/PUT/PATCH/DELETE in rollouts"}
    return {
        "root": str(root),
        "app": app,
        "routes": sorted({f"{m} {p}" for m, p, _ in routes}),
        "skipped": skipped,
        "fields": fields,
    }


def _env(app: dict[str, Any] | None) -> dict[str, Any] | None:
    if not app or not app["app_dir"]:
        return None
    return {"value": {"PYTHONPATH": app["app_dir"]}, "source": f"{app['module']} is imported from {app['app_dir']}/"}


def _slo(root: Path) -> dict[str, Any] | None:
    name = next((n for n in ("slo.yaml", "slo.yml") if (root / n).is_file()), None)
    return {"value": name, "source": f"found {name}"} if name else None


def _test(tests: str | None, prepared: bool) -> dict[str, Any] | None:
    if tests is None:
        return None
    python = "{prepared}/venv/bin/python" if prepared else "{python}"
    return {"value": f"{python} -m pytest -q", "source": tests}


# --- rendering ---------------------------------------------------------------------------------------------------

_HEADER = """\
# pilotage.yaml: how Pilotage prepares, starts, checks and exercises this service (issue #17).
# Written by `pilotage init` from what it found in the repository: review every value (lines marked CHECK first),
# then commit it. The schema: `pilotage init --schema`. Commands run with /bin/sh in the commit's checkout, with
# none of the operator's secrets in their environment; placeholders: {port} (start only: the port to listen on,
# on 127.0.0.1), {prepared} (the commit's cached preparation folder), {python} (the interpreter running Pilotage).
"""

_TRAFFIC = """\
traffic:
  # What Pilotage may send during a rollout. writes: false = no POST/PUT/PATCH/DELETE, only reads; set it true
  # only when the service's writes are safe to repeat here (a test database, never production data).
  writes: {writes}
  # requests: ["GET /status/200"]    # requests to send besides those of the OpenAPI document
  # credentials: {{header: Authorization, env: ORDERS_TOKEN}}    # header value read from the operator's env var
"""

_FOOTER = """\
# ready_timeout_s: 30        # seconds the service may take to answer health after start
# Backstage relations, for the fleet (entity names as in catalog-info.yaml):
# providesApis: [orders-api]          # the API name(s) of the openapi document
# consumesApis: [payments-api]
# dependsOn: [resource:orders-db]
# What this service calls of other managed services: Pilotage sets env to the provider's stable address in every
# instance it starts, and checks the operations against the provider's OpenAPI document:
# consumes:
#   - service: payments
#     env: PAYMENTS_URL
#     operations: [createPayment, "GET /payments/{payment_id}"]
"""

_COMMENTED = {
    "owner": "# owner: team-name        # the owning team or person (Backstage spec.owner)",
    "prepare": "# prepare: {command: ..., inputs: [requirements.txt]}    # no dependency file found",
    "openapi": "# openapi: openapi.yaml    # no OpenAPI 3 document found: a repository file or a served /path",
    "slo": "# slo: slo.yaml            # an SLO file in the repository",
    "test": "# test: {prepared}/venv/bin/python -m pytest -q    # no test suite found",
}


def _scalar(value: Any) -> str:
    """Return ``value`` as a YAML scalar: plain when it reads back the same, else JSON-quoted (valid YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if not re.search(r"[\n,\[\]{}#]|^\s|\s$", text):
        try:
            if yaml.safe_load(text) == text:
                return text
        except yaml.YAMLError:
            pass
    return json.dumps(text, ensure_ascii=False)


def _line(prefix: str, value: str, comment: str, indent: str = "") -> list[str]:
    """Return ``prefix value  # comment``, the comment above the line when both do not fit in 118 columns."""
    text = f"{indent}{prefix}{value}"
    note = " ".join(comment.split())
    if len(text) + len(note) + 4 <= 118:
        return [f"{text}  # {note}"]
    return [f"{indent}# {note}", text]


def _field_lines(key: str, entry: dict[str, Any]) -> list[str]:
    value, source = entry["value"], entry["source"]
    if key == "prepare":
        inputs = ", ".join(_scalar(i) for i in value["inputs"])
        return [
            "prepare:  # run before start and test, once per content of inputs (the cache key)",
            *_line("command: ", _scalar(value["command"]), source, "  "),
            f"  inputs: [{inputs}]",
        ]
    if key == "env":
        return [f"env:  # no secrets here; {source}"] + [f"  {k}: {_scalar(v)}" for k, v in value.items()]
    return _line(f"{key}: ", _scalar(value), source)


def render_descriptor(found: dict[str, Any]) -> str:
    """Return the commented ``pilotage.yaml`` text for what :func:`discover` found.

    Every value carries a comment saying where it came from; fields nothing was found for are shown commented out
    with an example. The text validates with :func:`pilotage.fleet.descriptor.parse_descriptor_text`.
    """
    fields = found["fields"]
    lines = [_HEADER.rstrip("\n")]
    for key in ("name", "owner", "env", "prepare", "start", "health", "metrics", "openapi", "slo", "test"):
        if key in fields:
            lines.extend(_field_lines(key, fields[key]))
        elif key in _COMMENTED:
            lines.append(_COMMENTED[key])
    writes = _scalar(bool((fields.get("traffic") or {}).get("value", {}).get("writes", False)))
    lines.append(_TRAFFIC.format(writes=writes).rstrip("\n"))
    lines.append(_FOOTER.rstrip("\n"))
    return "\n".join(lines) + "\n"
