r"""The service descriptor: ``pilotage.yaml`` at the root of a service's git repository.

It says how Pilotage prepares, starts, checks and exercises one service it did not write (issue #17). The shape is
the JSON Schema shipped in the package (``pilotage/fleet/pilotage.schema.json``, :func:`descriptor_schema`),
validated with ``jsonschema``; field names follow Backstage's ``catalog-info.yaml`` where it has them (``owner``,
``providesApis``, ``consumesApis``, ``dependsOn``). The schema's anchored patterns end with ``$(?!\n)``, the end of
the value both in ECMA-262 and in Python's ``re`` (whose ``$`` also matches before a final newline), so no one-line
field takes a newline; a key written twice is refused, naming both lines. Example::

    name: orders
    owner: team-orders
    prepare:
      command: python3 -m venv {prepared}/venv && {prepared}/venv/bin/pip install -r requirements.txt
      inputs: [requirements.txt]
    start: {prepared}/venv/bin/python -m uvicorn app.main:app --host 127.0.0.1 --port {port}
    health: /healthz
    metrics: proxy            # or /metrics
    openapi: openapi.yaml     # or /openapi.json (served)
    test: {prepared}/venv/bin/python -m pytest -q
    traffic: {writes: true}
    providesApis: [orders]    # the API(s) whose document is `openapi`
    consumes:                 # what it calls of other managed services (issue #19)
      - service: payments
        env: PAYMENTS_URL     # gets http://127.0.0.1:<payments' stable port> in every instance Pilotage starts
        operations: [createPayment, "GET /payments/{payment_id}"]

Commands are shell command lines (``/bin/sh -c``), the operator's own configuration of the service; the values
Pilotage substitutes for the placeholders ``{port}``, ``{prepared}`` and ``{python}`` are shell-quoted
(:func:`render_command`). Nothing else in a command is interpreted by Pilotage.
"""

from __future__ import annotations

import functools
import json
import math
import shlex
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pilotage.errors import ConfigError
from pilotage.spec.load import json_path, load_document, parse_document

if TYPE_CHECKING:
    import jsonschema

__all__ = [
    "DESCRIPTOR_FILE",
    "Consumes",
    "Credentials",
    "Prepare",
    "ServiceDescriptor",
    "Traffic",
    "descriptor_schema",
    "load_descriptor",
    "parse_descriptor",
    "parse_descriptor_text",
    "render_command",
    "render_env",
]

#: The descriptor's file name at a repository's root.
DESCRIPTOR_FILE = "pilotage.yaml"
_PLACEHOLDERS = ("port", "prepared", "python", "data")


@dataclass(frozen=True)
class Prepare:
    """The prepare step: ``command`` run once per cache key (the content of ``inputs``, else the commit)."""

    command: str
    inputs: tuple[str, ...] = ()
    timeout_s: float = 600.0


@dataclass(frozen=True)
class Credentials:
    """A request header whose value is read from the operator's environment variable ``env`` (never stored)."""

    header: str
    env: str


@dataclass(frozen=True)
class Consumes:
    """One provider a service calls (issue #19).

    The managed ``service``, the variable ``env`` that receives its stable address (``http://127.0.0.1:PORT``), and
    the ``operations`` called (``operationId`` or ``METHOD /path`` of the provider's OpenAPI document, as written).
    """

    service: str
    env: str
    operations: tuple[str, ...]


@dataclass(frozen=True)
class Traffic:
    """What Pilotage may send during a rollout: writes allowed, explicit ``METHOD /path`` requests, credentials."""

    writes: bool = False
    requests: tuple[str, ...] = ()
    credentials: Credentials | None = None


@dataclass(frozen=True)
class ServiceDescriptor:
    """A validated ``pilotage.yaml``.

    Attributes:
        name: the service's name (:data:`pilotage.names.NAME_PATTERN`).
        start: the command line that serves a commit on ``127.0.0.1:{port}``.
        path: the descriptor file it was read from ("" when parsed from memory).
        health: path answering 200 when ready (default ``/healthz``).
        metrics: the service's Prometheus path (``/metrics``) or ``proxy`` (SLIs from the proxy; the default).
        openapi: a repository file, or a served path when it starts with ``/``; None when the service has none.
        slo, test, owner, description: as in the schema; None when absent.
        env: extra environment of every command (no secrets); values may name ``{data}``, ``{prepared}``,
            ``{python}`` (:func:`render_env`).
        scratch_env: environment over ``env`` of the instances started to test or load-test a commit (a test
            database), so that Pilotage's tests never write production data.
        ready_timeout_s: seconds the service may take to answer ``health`` after start; None = the setting.
        prepare, traffic: see :class:`Prepare`, :class:`Traffic`.
        provides_apis, consumes_apis, depends_on: Backstage relations (``dependsOn`` entity refs as written).
        consumes: the managed services this one calls (:class:`Consumes`, issue #19).
    """

    name: str
    start: str
    path: str = ""
    health: str = "/healthz"
    metrics: str = "proxy"
    openapi: str | None = None
    slo: str | None = None
    test: str | None = None
    owner: str | None = None
    description: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    scratch_env: dict[str, str] = field(default_factory=dict)
    ready_timeout_s: float | None = None
    prepare: Prepare | None = None
    traffic: Traffic = field(default_factory=Traffic)
    provides_apis: tuple[str, ...] = ()
    consumes_apis: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    consumes: tuple[Consumes, ...] = ()

    @property
    def dependencies(self) -> tuple[str, ...]:
        """The services this one depends on, in order, without repeats.

        Each ``consumes`` provider, then the ``dependsOn`` refs that name a component (``payments``,
        ``component:payments``, ``component:default/payments``); other kinds (``resource:orders-db``) are not
        services.
        """
        names = [c.service for c in self.consumes] + [_component(ref) for ref in self.depends_on]
        return tuple(dict.fromkeys(n for n in names if n))

    @property
    def apis(self) -> tuple[str, ...]:
        """The API names whose document is ``openapi``: ``providesApis``, else the service's name (none without one)."""
        if not self.openapi:
            return ()
        return self.provides_apis or (self.name,)

    @property
    def openapi_served(self) -> bool:
        """True when ``openapi`` is a path the running service serves (``/openapi.json``), not a file."""
        return bool(self.openapi and self.openapi.startswith("/"))

    @property
    def proxy_metrics(self) -> bool:
        """True when the service is judged on what its proxy sees (no Prometheus endpoint of its own)."""
        return self.metrics == "proxy"

    def to_dict(self) -> dict[str, Any]:
        """Return the descriptor in the file's own shape (schema field names), JSON-serialisable."""
        out: dict[str, Any] = {"name": self.name, "start": self.start, "health": self.health, "metrics": self.metrics}
        for key in ("openapi", "slo", "test", "owner", "description", "ready_timeout_s"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.env:
            out["env"] = dict(self.env)
        if self.scratch_env:
            out["scratch_env"] = dict(self.scratch_env)
        if self.prepare:
            out["prepare"] = {"command": self.prepare.command, "inputs": list(self.prepare.inputs)}
            out["prepare"]["timeout_s"] = self.prepare.timeout_s
        traffic: dict[str, Any] = {"writes": self.traffic.writes, "requests": list(self.traffic.requests)}
        if self.traffic.credentials:
            traffic["credentials"] = {"header": self.traffic.credentials.header, "env": self.traffic.credentials.env}
        out["traffic"] = traffic
        for key, value in (
            ("providesApis", self.provides_apis),
            ("consumesApis", self.consumes_apis),
            ("dependsOn", self.depends_on),
        ):
            if value:
                out[key] = list(value)
        if self.consumes:
            out["consumes"] = [
                {"service": c.service, "env": c.env, "operations": list(c.operations)} for c in self.consumes
            ]
        return out


@functools.cache
def descriptor_schema() -> dict[str, Any]:
    """Return the descriptor's JSON Schema (draft 2020-12), the file shipped in the package."""
    text = resources.files("pilotage.fleet").joinpath("pilotage.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _schema_error(path: str, error: jsonschema.ValidationError) -> ConfigError:
    where = json_path(error.absolute_path).removeprefix("$").lstrip(".") or "(top level)"
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known)) if isinstance(error.instance, dict) else []
        what = f"unknown key {extra[0]!r}" if extra else error.message
        hint = f"known keys here: {', '.join(known)}"
    elif error.validator == "required":
        what, hint = error.message, "add it (see `pilotage init` for a commented example)"
    elif error.validator == "pattern" and error.absolute_path and error.absolute_path[-1] == "start":
        what, hint = "the start command has no {port} placeholder", "serve on 127.0.0.1:{port}"
    elif error.validator == "pattern" and where.startswith("consumes["):
        what, hint = _consumes_pattern(where, error.instance)
    elif error.validator == "pattern":
        what, hint = _pattern_problem(where, error.instance)
    elif error.validator in ("maxItems", "maxLength"):  # the value itself would swamp the line
        unit = "items" if error.validator == "maxItems" else "characters"
        what = f"has {len(error.instance)} {unit}, more than {error.validator_value}"
        hint = "see the descriptor's JSON Schema: pilotage init --schema"
    else:
        what, hint = " ".join(error.message.split())[:200], "see the descriptor's JSON Schema: pilotage init --schema"
    return ConfigError(f"{path}: {where}: {what}", hint=hint, path=path, field=where)


#: The characters of a URL path (RFC 3986 pchar, '/' and '?'): what ``health``, ``metrics`` and requests may hold.
_PATH_CHARACTERS = "letters, digits and -._~!$&'()*+,;=:@%/?"


#: Free-text fields that are one line of printable characters (the schema's ``^[^\x00-\x1f\x7f]*$(?!\n)``).
_ONE_LINE_FIELDS = frozenset({"openapi", "owner", "slo", "providesApis", "consumesApis", "dependsOn"})


def _pattern_problem(where: str, value: Any) -> tuple[str, str]:
    """Message and hint of a one-line field whose value breaks its pattern (a newline, a control character ...)."""
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    field = where.rpartition(".")[2]
    if where == "name":
        return f"{shown} is not a service name", "letters, digits, '.', '_', '-' on one line (at most 63, no '..')"
    if where in ("env", "scratch_env", "traffic.credentials.env"):
        return f"{shown} is not an environment variable name", "letters, digits and '_' on one line, no leading digit"
    if where in ("health", "metrics"):
        example = "/healthz" if where == "health" else "/metrics, or proxy"
        return f"{shown} is not a URL path", f"one line starting with '/' of {_PATH_CHARACTERS}, e.g. {example}"
    if where.startswith("traffic.requests["):
        return f"{shown} is not 'METHOD /path'", f"e.g. 'GET /status/200': a path of {_PATH_CHARACTERS} on one line"
    if field == "header":
        return f"{shown} is not a header name", "letters, digits and '-' on one line, e.g. Authorization"
    if where in _ONE_LINE_FIELDS or where.partition("[")[0] in _ONE_LINE_FIELDS:
        return f"{shown} holds a line break or a control character", "write it on one line of printable characters"
    return f"{shown} does not fit its pattern", "see the descriptor's JSON Schema: pilotage init --schema"


def _consumes_pattern(where: str, value: Any) -> tuple[str, str]:
    """Message and hint of a ``consumes`` value that breaks its pattern (a name, a variable, an operation)."""
    if where.endswith(".service"):
        return f"{value!r} is not a service name", "name a managed service (letters, digits, '.', '_', '-')"
    if where.endswith(".env") and str(value).startswith("PILOTAGE_"):
        return f"{value!r} is reserved (PILOTAGE_* variables are Pilotage's own)", "name another variable"
    if where.endswith(".env"):
        return f"{value!r} is not an environment variable name", "letters, digits and '_', not starting with a digit"
    return "an operation holds a control character", "write operationId or 'METHOD /path' on one line"


def parse_descriptor(data: Any, *, path: str = DESCRIPTOR_FILE) -> ServiceDescriptor:
    """Validate parsed YAML against the schema and return the :class:`ServiceDescriptor`.

    Raises:
        ConfigError: the data breaks the schema (unknown key, wrong type, no ``start``, ...) or a command names an
            unknown placeholder; the message names the file and the field (``pilotage.yaml: traffic.writes: ...``).
    """
    import jsonschema  # here, not at import: its format checkers build a grammar (~1 CPU s) every CLI start paid

    validator = jsonschema.Draft202012Validator(descriptor_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), list(map(str, e.path))))
    if errors:
        raise _schema_error(path, errors[0])
    for key in ("start", "test"):
        if key in data:
            _check_placeholders(path, key, data[key])
    if "prepare" in data:
        _check_placeholders(path, "prepare.command", data["prepare"]["command"])
    _check_text_and_numbers(path, data)
    for block in ("env", "scratch_env"):
        for key, value in (data.get(block) or {}).items():
            try:
                render_env({key: value})
            except ConfigError as exc:
                where = f"{block}.{key}"
                raise ConfigError(f"{path}: {where}: {exc.message}", hint=exc.hint, path=path, field=where) from exc
    _check_consumes(path, data)
    _check_depends_on(path, data)
    return _build(data, path)


def _component(ref: str) -> str:
    """The service a ``dependsOn`` ref names (``payments``, ``component:[default/]payments``); "" for other kinds."""
    kind, _, rest = ref.rpartition(":")
    return rest.rpartition("/")[2] if kind in ("", "component") else ""


def _check_depends_on(path: str, data: dict[str, Any]) -> None:
    """No ``dependsOn`` ref names the service itself (as :func:`_check_consumes` refuses for ``consumes``).

    Raises:
        ConfigError: naming the file and the field (``dependsOn[0]``).
    """
    for i, ref in enumerate(data.get("dependsOn") or []):
        if _component(ref) == data["name"]:
            where = f"dependsOn[{i}]"
            raise ConfigError(
                f"{path}: {where}: {ref!r} is this service itself",
                hint="a service does not depend on itself: remove it",
                path=path,
                field=where,
            )


def _check_consumes(path: str, data: dict[str, Any]) -> None:
    """One entry per provider, one variable per entry, none the service itself or a variable ``env`` sets.

    Raises:
        ConfigError: naming the file and the field (``consumes[1].env``).
    """
    seen_services: dict[str, int] = {}
    seen_envs: dict[str, int] = {}
    own_env = set(data.get("env") or {}) | set(data.get("scratch_env") or {})
    for i, entry in enumerate(data.get("consumes") or []):
        service, env = entry["service"], entry["env"]
        problem = None
        if service == data["name"]:
            problem = ("service", f"{service!r} is this service itself", "a service does not consume itself")
        elif service in seen_services:
            problem = ("service", f"{service!r} is listed twice (also consumes[{seen_services[service]}])",
                       "list every operation of one provider in one entry")  # fmt: skip
        elif env in seen_envs:
            problem = ("env", f"{env} is also the variable of consumes[{seen_envs[env]}]", "one variable per provider")
        elif env in own_env:
            problem = ("env", f"{env} is also set in env/scratch_env", "Pilotage sets it: remove it from env")
        if problem:
            where = f"consumes[{i}].{problem[0]}"
            raise ConfigError(f"{path}: {where}: {problem[1]}", hint=problem[2], path=path, field=where)
        seen_services[service], seen_envs[env] = i, i


def _check_text_and_numbers(path: str, data: dict[str, Any]) -> None:
    """Refuse control characters in commands and env values, and timeouts that are not finite numbers.

    Raises:
        ConfigError: naming the file and the field.
    """
    texts = {key: data.get(key) for key in ("start", "test")}
    texts["prepare.command"] = (data.get("prepare") or {}).get("command")
    for block in ("env", "scratch_env"):
        texts.update({f"{block}.{k}": v for k, v in (data.get(block) or {}).items()})
    for where, text in texts.items():
        if isinstance(text, str) and any(ord(c) < 32 and c not in "\t\n" for c in text):
            raise ConfigError(f"{path}: {where}: holds a control character", hint="remove it", path=path, field=where)
    numbers = {
        "ready_timeout_s": data.get("ready_timeout_s"),
        "prepare.timeout_s": (data.get("prepare") or {}).get("timeout_s"),
    }
    for where, number in numbers.items():
        if number is not None and not math.isfinite(float(number)):
            raise ConfigError(
                f"{path}: {where}: {number} is not a finite number of seconds", hint="e.g. 60", path=path, field=where
            )


def _check_placeholders(path: str, where: str, command: str) -> None:
    try:  # {port} is the start command's only: prepare and test run before/without a listening port
        render_command(command, port=0 if where == "start" else None, prepared="", python="")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {where}: {exc.message}", hint=exc.hint, path=path, field=where) from exc


def _build(data: dict[str, Any], path: str) -> ServiceDescriptor:
    prepare = data.get("prepare")
    traffic = data.get("traffic") or {}
    creds = traffic.get("credentials")
    return ServiceDescriptor(
        name=data["name"],
        start=data["start"],
        path=path,
        health=data.get("health", "/healthz"),
        metrics=data.get("metrics", "proxy"),
        openapi=data.get("openapi"),
        slo=data.get("slo"),
        test=data.get("test"),
        owner=data.get("owner"),
        description=data.get("description"),
        env=dict(data.get("env") or {}),
        scratch_env=dict(data.get("scratch_env") or {}),
        ready_timeout_s=data.get("ready_timeout_s"),
        prepare=Prepare(prepare["command"], tuple(prepare.get("inputs") or ()), float(prepare.get("timeout_s", 600.0)))
        if prepare
        else None,
        traffic=Traffic(
            writes=bool(traffic.get("writes", False)),
            requests=tuple(traffic.get("requests") or ()),
            credentials=Credentials(creds["header"], creds["env"]) if creds else None,
        ),
        provides_apis=tuple(data.get("providesApis") or ()),
        consumes_apis=tuple(data.get("consumesApis") or ()),
        depends_on=tuple(data.get("dependsOn") or ()),
        consumes=tuple(Consumes(c["service"], c["env"], tuple(c["operations"])) for c in data.get("consumes") or ()),
    )


def load_descriptor(repo_dir: str | Path) -> ServiceDescriptor:
    """Read and validate ``repo_dir/pilotage.yaml`` (bounded YAML loader of :mod:`pilotage.spec.load`).

    Raises:
        ConfigError: no descriptor in ``repo_dir`` (hint: ``pilotage init``), not YAML, or it breaks the schema; the
            message names the file and the field.
    """
    file = Path(repo_dir) / DESCRIPTOR_FILE
    if not file.is_file():
        raise ConfigError(
            f"{file}: no service descriptor", hint=f"run `pilotage init {repo_dir}` and commit it", path=str(file)
        )
    try:
        data = load_document(file, kind="service descriptor", hint=f"fix {file}", unique_keys=True)
    except Exception as exc:  # InputError of the loader: a descriptor is configuration (exit 3)
        raise _config_error(exc, str(file)) from exc
    return parse_descriptor(data, path=str(file))


def parse_descriptor_text(text: str, *, path: str = DESCRIPTOR_FILE) -> ServiceDescriptor:
    """Parse descriptor YAML text (e.g. ``git show REV:pilotage.yaml``) and validate it.

    Raises:
        ConfigError: as :func:`load_descriptor`.
    """
    try:
        data = parse_document(text, path=path, kind="service descriptor", unique_keys=True)
    except Exception as exc:
        raise _config_error(exc, path) from exc
    return parse_descriptor(data, path=path)


def _config_error(exc: Exception, path: str) -> ConfigError:
    """The loader's InputError as a ConfigError (a descriptor is configuration: exit 3), keeping its field."""
    field = getattr(exc, "field", None)
    extra = {"field": field} if field else {}
    return ConfigError(getattr(exc, "message", str(exc)), hint=getattr(exc, "hint", None), path=path, **extra)


def render_env(env: dict[str, str], *, prepared: str | Path = "", data: str | Path = "") -> dict[str, str]:
    """Return ``env`` with ``{data}``, ``{prepared}`` and ``{python}`` replaced in its values.

    The values are not shell-quoted: an environment value is no command line.

    Raises:
        ConfigError: a value names another placeholder (``{port}`` included).
    """
    out = {}
    for key, value in env.items():
        rendered = _render(value, {"prepared": str(prepared), "python": sys.executable, "data": str(data)}, quote=False)
        out[key] = rendered
    return out


def render_command(
    command: str, *, port: int | None = None, prepared: str | Path = "", python: str = "", data: str | Path = ""
) -> str:
    """Return ``command`` with ``{port}``, ``{prepared}``, ``{python}`` and ``{data}`` replaced by shell-quoted values.

    ``python`` defaults to the interpreter running Pilotage (``sys.executable``); ``{{``/``}}`` are literal braces.

    Raises:
        ConfigError: the command names another placeholder, or ``{port}`` where no port is given.
    """
    values = {"prepared": str(prepared), "python": python or sys.executable, "data": str(data)}
    if port is not None:
        values["port"] = str(port)
    return _render(command, values, quote=True)


def _render(command: str, values: dict[str, str], *, quote: bool) -> str:
    """Replace the ``{name}`` placeholders of ``values`` in ``command`` (shell-quoted when ``quote``).

    Raises:
        ConfigError: another placeholder, or ``{port}`` where it is not given.
    """
    port = values.get("port")
    out, i = [], 0
    while i < len(command):
        char = command[i]
        if command.startswith("{{", i) or command.startswith("}}", i):
            out.append(char)
            i += 2
            continue
        if char == "{":
            end = command.find("}", i)
            name = command[i + 1 : end] if end > 0 else command[i + 1 :]
            if end < 0 or name not in _PLACEHOLDERS or (name == "port" and port is None):
                allowed = ", ".join("{" + p + "}" for p in _PLACEHOLDERS if p != "port" or port is not None)
                what = f"unknown placeholder {{{name}}}"
                if name == "port" and end > 0:
                    what = "{port} is known to the start command only"
                hint = f"use only {allowed}; write {{{{ and }}}} for literal braces"
                raise ConfigError(f"{what} in {command!r}", hint=hint)
            out.append(values[name] if not quote else shlex.quote(values[name]) if values[name] else "''")
            i = end + 1
            continue
        out.append(char)
        i += 1
    return "".join(out)
