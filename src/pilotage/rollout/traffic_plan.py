"""The traffic plan: which requests synthetic traffic sends during a rollout, built from the OpenAPI document.

A rollout is judged on requests (:mod:`pilotage.agents.reliability`); a service without users gets them from the
traffic generator (:mod:`pilotage.runtime.traffic`), which executes the plan :func:`build_traffic_plan` returns.
The plan is plain JSON data, carried in ``deploy.requested`` under ``traffic``::

    {"requests": [{"operation": "GET /pet/{petId}", "method": "GET", "path": "/api/v3/pet/{petId}", "weight": 3,
                   "touched": true, "source": "openapi", "secured": true, "in_base": true, "creates": false,
                   "params": [{"name": "petId", "in": "path", "from": "created", "by": "POST /pet",
                               "fields": ["petId", "id"]}],
                   "body": null}],
     "skipped": [{"operation": "DELETE /pet/{petId}", "kind": "writes", "reason": "writes are off: ..."}],
     "credentials": {"header": "api_key", "env": "PETSTORE_API_KEY"},   # names only, never the value
     "writes": false, "touched": ["GET /pet/{petId}"], "summary": "3 requests ..."}

Rules, for each operation of the head version's document (:func:`pilotage.spec.openapi.iter_operations`):

* **touched first**: operations the change touches (:func:`touched_operations`: added by the spec diff, changed,
  or reading a changed component; plus those the caller names, e.g. from changed handlers) come first with weight
  :data:`TOUCHED_WEIGHT`, the others follow with :data:`OTHER_WEIGHT`; the descriptor's explicit
  ``traffic.requests`` (sent as written) between them with :data:`TOUCHED_WEIGHT`;
* **reads always, writes only when allowed**: GET and HEAD are sent; POST, PUT, PATCH and DELETE only with
  ``writes`` (``traffic.writes`` in ``pilotage.yaml``); OPTIONS and TRACE never;
* **security**: an operation that requires credentials (:func:`pilotage.spec.openapi.requires_credentials`) is
  sent with the run's test principal when it can meet its security (issue 18, ``credentials_for`` of
  :mod:`pilotage.testing.credentials`: the entry names its ``security``, the plan the ``schemes``); else only when
  credentials are set (a header whose value the generator reads from the control plane's environment) and one of
  its alternatives can be met by a header (not an API key in the query or a cookie);
* **parameters**: path parameters and required query/header parameters take the document's ``example``,
  ``examples``, ``const``, ``default`` or ``enum`` (values by :func:`pilotage.codegen.examples.example`); a path
  parameter without one is filled from an item the traffic itself created: the ``POST`` to the collection above it
  (``POST /pet`` for ``/pet/{petId}``), when that POST is in the plan and its answer has an id-like field
  (:func:`id_fields`; an undocumented answer is tried at run time). Required cookie parameters and object values
  are not sent;
* **bodies**: JSON request bodies from the media type's ``example``/``examples``, else
  :func:`~pilotage.codegen.examples.example` of its schema (schema-valid, read-only properties left out), at most
  :data:`MAX_BODY_CHARS` characters.

What cannot be sent is listed in ``skipped`` with its reason. When nothing can be sent the summary is exactly
:data:`NOTHING_TO_CALL`. Requests for operations the base version lacks are sent too (``in_base: false``): the
previous version answers them 404, which no error-rate judge counts as an error. Versions that keep separate
data (each generated version has its own SQLite file) may answer 404 for an item the other one created, likewise.

The settings come from the ``traffic`` section of the head version's ``pilotage.yaml`` (:func:`descriptor_traffic`,
the one function here that reads a file).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pilotage.codegen.examples import example
from pilotage.errors import InputError
from pilotage.fleet.descriptor import DESCRIPTOR_FILE, Traffic, load_descriptor
from pilotage.spec.diff import diff_specs
from pilotage.spec.openapi import (
    Operation,
    base_path,
    iter_operations,
    object_properties,
    requires_credentials,
    security_schemes,
)
from pilotage.spec.refs import references, resolve_dict
from pilotage.testing.credentials import credentials_for

__all__ = [
    "MAX_BODY_CHARS",
    "MAX_REQUESTS",
    "NOTHING_TO_CALL",
    "OTHER_WEIGHT",
    "TOUCHED_WEIGHT",
    "build_traffic_plan",
    "descriptor_traffic",
    "id_fields",
    "smoke_paths",
    "touched_operations",
]

#: The plan's summary when no request can be sent (the reliability agent then skips the Inconclusive grace).
NOTHING_TO_CALL = "no operation Pilotage can call: add `traffic` to pilotage.yaml or send real traffic"
#: Weight of an operation the change touches (and of an explicit descriptor request) ...
TOUCHED_WEIGHT = 3
#: ... and of any other operation: the change gets three requests in four when it touches half the operations.
OTHER_WEIGHT = 1
#: Most requests one plan holds (touched ones are kept first); the rest are skipped with kind ``limit``.
MAX_REQUESTS = 64
#: Most skipped operations listed (the summary counts them all).
MAX_SKIPPED = 200
#: Largest request body, characters of compact JSON: the plan travels in an event.
MAX_BODY_CHARS = 8192

_READS = ("get", "head")
_WRITES = ("post", "put", "patch", "delete")
_WRITES_OFF = "writes are off: set traffic.writes: true in pilotage.yaml to send POST/PUT/PATCH/DELETE"
_PARAM = re.compile(r"\{([^{}]+)\}")
_DESCRIBED = re.compile(r"^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) (/\S*)$")


# --- what the change touches ------------------------------------------------------------------------------------


def _refs(node: Any) -> set[str]:
    """Every ``$ref`` string below ``node`` (a JSON value), those inside ``x-`` extensions left out."""
    return {item["$ref"] for item, _ in references(node)}


def _components(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``#/components/<kind>/<name>`` → the component, for every component of ``doc``."""
    out: dict[str, Any] = {}
    for kind, group in (doc.get("components") or {}).items():
        if isinstance(group, dict):
            out.update({f"#/components/{kind}/{name}": node for name, node in group.items()})
    return out


def _changed_components(head: Mapping[str, Any], base: Mapping[str, Any]) -> set[str]:
    """Pointers of the head's components that differ from the base's, closed over references between them."""
    new, old = _components(head), _components(base)
    changed = {ref for ref, node in new.items() if _canon(node) != _canon(old.get(ref))}
    uses = {ref: _refs(node) for ref, node in new.items()}
    grew = True
    while grew:
        more = {ref for ref, refs in uses.items() if ref not in changed and refs & changed}
        changed |= more
        grew = bool(more)
    return changed


def _canon(node: Any) -> str:
    return json.dumps(node, sort_keys=True, default=str)


def touched_operations(head: dict[str, Any], base: dict[str, Any] | None) -> list[str]:
    """Return the head's operations (``"GET /pets"``) the change from ``base`` touches, in document order.

    Touched: added (:func:`pilotage.spec.diff.diff_specs`), its operation or path-level parameters changed, or it
    references (directly or through other components) a component that changed. Without ``base`` every operation
    is new, so every one is touched.
    """
    if base is None:
        return [op.label for op in iter_operations(head)]
    added = set(diff_specs(base, head).added)
    changed = _changed_components(head, base)
    old = {op.label: op for op in iter_operations(base)}
    out = []
    for op in iter_operations(head):
        before = old.get(op.label)
        node = {"operation": op.operation, "parameters": op.path_item.get("parameters")}
        if (
            op.label in added
            or before is None
            or _canon(node) != _canon({"operation": before.operation, "parameters": before.path_item.get("parameters")})
            or _refs(node) & changed
        ):
            out.append(op.label)
    return out


# --- one operation ----------------------------------------------------------------------------------------------


class _Skip(Exception):
    """An operation the plan cannot send: ``kind`` (writes, credentials, parameters, body, method) and reason."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


def _documented_value(doc: dict[str, Any], param: dict[str, Any]) -> tuple[str, Any] | None:
    """``(from, value)`` of a parameter's own example, else its schema's example/const/default/examples/enum."""
    if param.get("example") is not None:
        return "example", param["example"]
    for named in (param.get("examples") or {}).values() if isinstance(param.get("examples"), dict) else ():
        value = resolve_dict(doc, named).get("value")
        if value is not None:
            return "example", value
    schema = resolve_dict(doc, param.get("schema"))
    for key, source in (("example", "example"), ("const", "example"), ("default", "default")):
        if schema.get(key) is not None:
            return source, example(doc, param["schema"])
    for key, source in (("examples", "example"), ("enum", "enum")):
        if isinstance(schema.get(key), list) and any(v is not None for v in schema[key]):
            return source, example(doc, param["schema"])
    return None


def _scalar(value: Any, allow_list: bool) -> bool:
    if isinstance(value, str | int | float | bool):
        return True
    return allow_list and isinstance(value, list) and all(isinstance(v, str | int | float | bool) for v in value)


def _fill_param(
    doc: dict[str, Any], param: dict[str, Any], credentials: Mapping[str, str] | None
) -> dict[str, Any] | None:
    """How one parameter is filled: ``{name, in, from, value}``, ``{..., from: "created"}`` (resolved later) or None.

    Raises:
        _Skip: a required parameter that cannot be filled.
    """
    name, where = str(param["name"]), str(param["in"])
    if where == "header" and credentials and name.lower() == credentials["header"].lower():
        return None  # the credential header itself
    if where != "path" and not param.get("required"):
        return None
    if where == "cookie":
        raise _Skip("parameters", f"required cookie parameter {name!r} is not sent by synthetic traffic")
    documented = _documented_value(doc, param)
    if documented is not None and _scalar(documented[1], allow_list=where == "query"):
        return {"name": name, "in": where, "from": documented[0], "value": documented[1]}
    if documented is not None:
        raise _Skip("parameters", f"{where} parameter {name!r}: its example is an object, not sent")
    if where == "path":
        return {"name": name, "in": where, "from": "created"}
    raise _Skip("parameters", f"required {where} parameter {name!r} has no example, enum or default")


def _header_capable(doc: dict[str, Any], requirement: Any) -> bool:
    """True when every scheme of one security alternative can be met with a request header."""
    schemes = resolve_dict(doc, (doc.get("components") or {}).get("securitySchemes"))
    for name in requirement if isinstance(requirement, dict) else ():
        scheme = resolve_dict(doc, schemes.get(name))
        kind = scheme.get("type")
        if kind == "mutualTLS" or (kind == "apiKey" and scheme.get("in") != "header"):
            return False
    return True


def _principal_meets(doc: dict[str, Any], op: Operation) -> bool:
    """True when the run's test principal can meet one of ``op``'s security alternatives (issue 18)."""
    return credentials_for(op.security, security_schemes(doc), "principal") is not None


def _check_security(
    doc: dict[str, Any], op: Operation, credentials: Mapping[str, str] | None, principal: bool = False
) -> bool:
    """Return whether ``op`` is secured.

    Raises:
        _Skip: it needs credentials and none are set (nor can the run's test principal meet its security), or no
            alternative can be met with a header.
    """
    if not requires_credentials(op):
        return False
    names = sorted({str(n) for req in op.security if isinstance(req, dict) for n in req})
    if principal and _principal_meets(doc, op):
        return True
    if credentials is None:
        raise _Skip(
            "credentials",
            f"needs credentials ({' or '.join(names)}): set traffic.credentials in pilotage.yaml and its environment "
            "variable",
        )
    if not any(_header_capable(doc, req) for req in op.security):
        raise _Skip("credentials", f"its security ({' or '.join(names)}) is not a header; traffic credentials are")
    return True


def _json_media(content: Mapping[str, Any]) -> str | None:
    for media_type in content:
        base = str(media_type).split(";")[0].strip().lower()
        if base == "application/json" or base.endswith("+json"):
            return str(media_type)
    return None


def _drop_read_only(doc: dict[str, Any], schema: Any, value: Any) -> Any:
    """``value`` without the top-level properties the schema marks ``readOnly`` (the server sets those)."""
    if not isinstance(value, dict):
        return value
    props = object_properties(doc, schema)
    return {k: v for k, v in value.items() if not resolve_dict(doc, props.get(k)).get("readOnly")}


def _body(doc: dict[str, Any], op: Operation) -> Any:
    """The JSON body of ``op`` (None without a body).

    Raises:
        _Skip: a required body that is not JSON, an example too large or impossible to build.
    """
    request_body = op.request_body
    if request_body is None:
        return None
    content = resolve_dict(doc, request_body.get("content"))
    media_type = _json_media(content)
    if media_type is None:
        if request_body.get("required"):
            raise _Skip("body", f"request body is {', '.join(map(str, content)) or 'empty'}; traffic sends JSON")
        return None
    media = resolve_dict(doc, content[media_type])
    try:
        if "example" in media:
            value = media["example"]
        elif isinstance(media.get("examples"), dict) and media["examples"]:
            value = resolve_dict(doc, next(iter(media["examples"].values()))).get("value")
        else:
            value = _drop_read_only(doc, media.get("schema"), example(doc, media.get("schema") or {}))
    except InputError as exc:
        raise _Skip("body", f"no example body: {exc.message}") from None
    if len(json.dumps(value, separators=(",", ":"), default=str)) > MAX_BODY_CHARS:
        raise _Skip("body", f"its example body is over {MAX_BODY_CHARS} characters of JSON")
    return value


def _entry(
    doc: dict[str, Any], op: Operation, prefix: str, writes: bool, credentials: Mapping[str, str] | None,
    principal: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """The request of one operation, its ``created`` parameters not yet linked to a creator.

    Raises:
        _Skip: the operation cannot be sent (method, writes, credentials, parameters, body).
    """
    if op.method not in _READS + _WRITES:
        raise _Skip("method", f"{op.method.upper()} is not sent by synthetic traffic")
    if op.method in _WRITES and not writes:
        raise _Skip("writes", _WRITES_OFF)
    secured = _check_security(doc, op, credentials, principal)
    try:
        params = [p for p in (_fill_param(doc, raw, credentials) for raw in op.parameters) if p is not None]
    except InputError as exc:
        raise _Skip("parameters", exc.message) from None
    declared = {p["name"] for p in params if p["in"] == "path"}
    missing = [name for name in _PARAM.findall(op.path) if name not in declared]
    params += [{"name": name, "in": "path", "from": "created"} for name in missing]
    entry = _request(op.label, op.method.upper(), prefix + op.path, "openapi", secured, params, _body(doc, op))
    return entry | ({"security": op.security} if secured and principal and _principal_meets(doc, op) else {})


def _request(
    label: str, method: str, path: str, source: str, secured: bool, params: list[dict[str, Any]], body: Any
) -> dict[str, Any]:
    """One entry of a plan's ``requests`` (weight, touched and in_base are set when the plan is assembled)."""
    return {"operation": label, "method": method, "path": path, "weight": OTHER_WEIGHT, "touched": False,
            "source": source, "secured": secured, "in_base": True, "creates": False, "params": params,
            "body": body}  # fmt: skip


# --- created items ----------------------------------------------------------------------------------------------


def id_fields(param: str, schema_fields: Iterable[str] = ()) -> list[str]:
    """Fields of a created item's answer that may hold the value of path parameter ``param``, best first.

    ``param`` itself, ``id``, then any of ``schema_fields`` ending in ``id`` (``petId`` → ``["petId", "id"]``).
    """
    out = list(dict.fromkeys([param, "id"]))
    for name in schema_fields:
        if name.lower().endswith("id") and name not in out:
            out.append(name)
    return out


def _answer_fields(doc: dict[str, Any], op: Operation) -> list[str] | None:
    """Property names of ``op``'s first documented 2xx JSON answer (allOf merged), or None when undocumented."""
    for code, response in op.responses.items():
        if not code.startswith("2"):
            continue
        content = resolve_dict(doc, response.get("content"))
        media_type = _json_media(content)
        if media_type is None:
            continue
        schema = resolve_dict(doc, resolve_dict(doc, content[media_type]).get("schema"))
        if not schema:
            return None
        return [str(name) for name in object_properties(doc, schema)]
    return None


def _collection(path: str, name: str) -> str:
    """The path above the segment holding ``{name}``: ``/pet`` for ``/pet/{petId}``, ``/a/{x}/b`` for its items."""
    head = path.split("{" + name + "}", 1)[0].rstrip("/")
    return head or "/"


def _link(
    doc: dict[str, Any], label: str, found: dict[str, dict[str, Any] | _Skip], ops: dict[str, Operation], depth: int
) -> None:
    """Link each ``created`` path parameter of ``found[label]`` to its creator, or make it a skip (in place)."""
    entry = found[label]
    if isinstance(entry, _Skip):
        return
    for param in (p for p in entry["params"] if p["from"] == "created" and "by" not in p):
        op = ops[label]
        creator = f"POST {_collection(op.path, param['name'])}"
        why = f"path parameter {param['name']!r} has no example, enum or default"
        if creator not in found:
            found[label] = _Skip("parameters", f"{why}, and no {creator} creates one")
            return
        if depth < 8:
            _link(doc, creator, found, ops, depth + 1)
        made = found[creator]
        if isinstance(made, _Skip):
            found[label] = _Skip(made.kind, f"{why}; {creator}, which would create one, is skipped: {made.reason}")
            return
        fields = _answer_fields(doc, ops[creator])
        candidates = id_fields(param["name"], fields or ())
        if fields is not None and not set(candidates) & set(fields):
            found[label] = _Skip("parameters", f"{why}, and the answer of {creator} has no id-like field")
            return
        param.update({"by": creator, "fields": candidates})
        made["creates"] = True


# --- the plan ---------------------------------------------------------------------------------------------------


def _described(line: str, writes: bool) -> dict[str, Any] | _Skip:
    match = _DESCRIBED.match(line.strip())
    if match is None:
        return _Skip("method", f"{line!r} is not 'METHOD /path'")
    method, path = match.groups()
    if method.lower() in _WRITES and not writes:
        return _Skip("writes", _WRITES_OFF)
    if method == "OPTIONS":
        return _Skip("method", "OPTIONS is not sent by synthetic traffic")
    return {**_request(f"{method} {path}", method, path, "descriptor", False, [], None), "weight": TOUCHED_WEIGHT}


def _summary(requests: list[dict[str, Any]], skipped: list[dict[str, Any]], skipped_total: int) -> str:
    if not requests:
        return NOTHING_TO_CALL
    touched = [r["operation"] for r in requests if r["touched"]]
    text = f"{len(requests)} request{'s' if len(requests) != 1 else ''}"
    if touched:
        shown = ", ".join(touched[:3]) + (f" and {len(touched) - 3} more" if len(touched) > 3 else "")
        text += f", {len(touched)} touched by the change ({shown})"
    if skipped_total:
        kinds: dict[str, int] = {}
        for item in skipped:
            kinds[item["kind"]] = kinds.get(item["kind"], 0) + 1
        detail = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
        text += f"; {skipped_total} operation{'s' if skipped_total != 1 else ''} skipped ({detail})"
    return text


def _normalise(labels: Iterable[str]) -> set[str]:
    out = set()
    for label in labels:
        method, _, path = str(label).strip().partition(" ")
        out.add(f"{method.upper()} {path.strip()}")
    return out


def build_traffic_plan(
    head: dict[str, Any],
    base: dict[str, Any] | None = None,
    *,
    touched: Iterable[str] = (),
    writes: bool = False,
    requests: Iterable[str] = (),
    credentials: Mapping[str, str] | None = None,
    credentials_set: bool = True,
    path_prefix: str | None = None,
    principal: bool = False,
) -> dict[str, Any]:
    """Return the traffic plan of the head version (see the module docstring; pure, JSON-serialisable).

    Args:
        head: the head version's decoded OpenAPI document (bundled: :func:`pilotage.spec.load.load_spec`).
        base: the base version's document; operations it lacks get ``in_base: false``, and the change's touched
            operations are computed from the two (:func:`touched_operations`). None: every operation is new.
        touched: more touched operations (``"METHOD /path"``), e.g. from changed handlers.
        writes: POST/PUT/PATCH/DELETE allowed (``traffic.writes``; default False).
        requests: explicit ``"METHOD /path"`` requests (``traffic.requests``), sent as written.
        credentials: ``{"header", "env"}`` (``traffic.credentials``): names only; the generator reads the value.
        credentials_set: False when the environment variable ``credentials["env"]`` is unset: secured operations
            are then skipped, saying so.
        path_prefix: put before every document path; None: the document's ``servers[0]`` path
            (:func:`pilotage.spec.openapi.base_path`). Generated services serve the paths as written (``""``).
        principal: the run's test principal is set (``PILOTAGE_TEST_PRINCIPAL``): secured operations whose security
            it can meet are sent (``security`` in the entry, ``schemes`` in the plan; credentials made at send time).

    Returns:
        ``{"requests", "skipped", "credentials", "writes", "touched", "summary"}``.

    Raises:
        InputError: the head document's structure cannot be read (a ``$ref`` that does not resolve).
    """
    usable = dict(credentials) if credentials and credentials_set else None
    change = _normalise(touched) | (set(touched_operations(head, base)) if base is not None else set())
    in_base = {op.label for op in iter_operations(base)} if base is not None else None
    prefix = base_path(head) if path_prefix is None else path_prefix.rstrip("/")
    ops = {op.label: op for op in iter_operations(head)}
    found: dict[str, dict[str, Any] | _Skip] = {}
    for label, op in ops.items():
        try:
            found[label] = _entry(head, op, prefix, writes, usable, principal)
        except _Skip as skip:
            found[label] = skip
        except InputError as exc:  # a malformed part of the document: this operation only
            found[label] = _Skip("document", exc.message)
    if credentials and not credentials_set:
        for label, item in found.items():
            if isinstance(item, _Skip) and item.kind == "credentials":
                unset = f"environment variable {credentials['env']} (traffic.credentials.env) is not set"
                found[label] = _Skip("credentials", f"needs credentials: {unset}")
    for label in ops:
        _link(head, label, found, ops, 0)
    plan = _assemble(found, change, in_base, writes, requests, usable)
    if any("security" in r for r in plan["requests"]):
        plan["schemes"] = security_schemes(head)
    return plan


def _assemble(
    found: dict[str, dict[str, Any] | _Skip],
    change: set[str],
    in_base: set[str] | None,
    writes: bool,
    requests: Iterable[str],
    credentials: dict[str, str] | None,
) -> dict[str, Any]:
    """Order, weigh and cap the requests; list the skips; add the summary."""
    chosen: list[dict[str, Any]] = []
    skipped = [
        {"operation": label, "kind": s.kind, "reason": s.reason} for label, s in found.items() if isinstance(s, _Skip)
    ]
    for label, entry in found.items():
        if isinstance(entry, dict):
            entry["touched"] = label in change
            entry["weight"] = TOUCHED_WEIGHT if entry["touched"] else OTHER_WEIGHT
            entry["in_base"] = in_base is None or label in in_base
            chosen.append(entry)
    known = {f"{r['method']} {r['path']}": r for r in chosen if not r["params"]}
    described: list[dict[str, Any]] = []
    for line in requests:
        item = _described(line, writes)
        if isinstance(item, _Skip):
            skipped.append({"operation": line.strip(), "kind": item.kind, "reason": item.reason})
        elif item["operation"] in known:  # the document has it already: the operator's wish raises its weight
            known[item["operation"]]["weight"] = TOUCHED_WEIGHT
        else:
            described.append(item)
            known[item["operation"]] = item
    ordered = [r for r in chosen if r["touched"]] + described + [r for r in chosen if not r["touched"]]
    for extra in ordered[MAX_REQUESTS:]:
        skipped.append(
            {"operation": extra["operation"], "kind": "limit", "reason": f"a plan holds {MAX_REQUESTS} requests"}
        )
    kept = _keep_creators(ordered[:MAX_REQUESTS], skipped)
    return {
        "requests": kept,
        "skipped": skipped[:MAX_SKIPPED],
        "credentials": credentials,
        "writes": writes,
        "touched": sorted(change),
        "summary": _summary(kept, skipped, len(skipped)),
    }


def _keep_creators(kept: list[dict[str, Any]], skipped: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop requests whose creator fell to the cap (their parameters could never be filled); list them skipped."""
    while True:
        present = {r["operation"] for r in kept}
        orphans = [r for r in kept if any(p.get("by") and p["by"] not in present for p in r["params"])]
        if not orphans:
            return kept
        for orphan in orphans:
            skipped.append({"operation": orphan["operation"], "kind": "limit", "reason": "its creator fell to the cap"})
        kept = [r for r in kept if r not in orphans]


def descriptor_traffic(repo_dir: str | Path) -> Traffic:
    """Return the ``traffic`` settings of ``repo_dir/pilotage.yaml``; the defaults when there is no such file.

    Generated services have no descriptor: writes off, no explicit request, no credentials
    (:class:`pilotage.fleet.descriptor.Traffic`).

    Raises:
        ConfigError: the descriptor exists but is malformed (names the file and the field).
    """
    if not repo_dir or not (Path(repo_dir) / DESCRIPTOR_FILE).is_file():
        return Traffic()
    return load_descriptor(repo_dir).traffic


def smoke_paths(plan: Mapping[str, Any]) -> list[str]:
    """Return the plan's GET requests that need nothing filled (concrete paths), in plan order.

    The blue-green preview smoke-checks them (:func:`pilotage.agents.reliability.smoke_check`); ``deploy.requested``
    carries them as ``traffic_paths``.
    """
    return [
        str(r["path"])
        for r in plan.get("requests") or []
        if r.get("method") == "GET" and not r.get("params") and not _PARAM.search(str(r.get("path", "")))
    ]
