"""Generate a locustfile from an OpenAPI spec: which operations a load test calls, and with what.

Targets (:func:`load_targets`):

* every ``GET`` on a path without template parameters (``/pets``, not ``/pets/{id}``) whose parameters
  (path-level and operation-level) are all optional: it can be called as-is, with weight
  :data:`GET_WEIGHT`;
* every ``POST`` on such a collection path whose JSON request body has an *explicit* example — the media type's
  ``example``, the first of its ``examples``, the schema's ``example``, or an object schema whose every required
  property carries an ``example`` — with weight :data:`POST_WEIGHT`. No body is synthesised from types alone: a
  guessed body that the service rejects would count as a load-test error and skew the error rate the deployment
  risk score reads.

Operations that require authentication (a non-empty ``security`` requirement, the operation's own or the
document's, without the ``{}`` "anonymous allowed" alternative: :func:`pilotage.spec.openapi.requires_credentials`)
are targets when the run's test principal is set (``PILOTAGE_TEST_PRINCIPAL``, issue 18): each of their requests
carries it as the operation's security asks (:func:`pilotage.testing.credentials.credentials_for`, copied into the
file: a bearer or basic ``Authorization`` header, an API key in a header, the query or a cookie); an operation whose
security cannot be met that way (mutual TLS) is left out — every request would be a 401 — unless the service's
``pilotage.yaml`` gives ``traffic.credentials`` (a header and the name of the environment variable holding its value,
the same credentials the rollout's synthetic traffic uses) and that variable is set: then every request carries
the header. The generated file holds only the two *names*; the value reaches the Locust process through its
environment (:func:`pilotage.perf.locust_runner.run_load_test`) and is registered with the secret masker.

Weights 3:1 make reads dominate, the usual shape of API traffic. Requests are named by their path template, so
Locust's statistics have one row per operation (``Type`` = method, ``Name`` = path).

The generated file (:func:`render_locustfile`) is self-contained: it imports only ``locust`` and carries the
targets as JSON, so it runs in a plain ``python -m locust`` subprocess (see :mod:`pilotage.perf.locust_runner`).
Virtual users wait :data:`WAIT_MIN_S`–:data:`WAIT_MAX_S` seconds between requests (a short think time: the test
measures latency under concurrency rather than saturating one CPU with a tight loop).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pilotage.codegen.quoting import py_docstring
from pilotage.errors import InputError
from pilotage.spec.load import to_json_data
from pilotage.spec.openapi import (
    Operation,
    iter_operations,
    requires_credentials,
    security_schemes,
    takes_no_parameters,
)
from pilotage.spec.refs import resolve
from pilotage.testing.credentials import PRINCIPAL_ENV, copied_source, credentials_for

__all__ = [
    "GET_WEIGHT",
    "NO_TARGET",
    "POST_WEIGHT",
    "WAIT_MAX_S",
    "WAIT_MIN_S",
    "LoadTarget",
    "load_targets",
    "render_locustfile",
    "write_locustfile",
]

#: Relative weight of a parameterless GET target.
GET_WEIGHT = 3
#: Relative weight of a POST target (collection create with an example body).
POST_WEIGHT = 1
#: Think time of each virtual user between two requests, in seconds (uniform between the two).
WAIT_MIN_S = 0.01
WAIT_MAX_S = 0.05
#: Seconds between two rewrites of Locust's ``PREFIX_stats.csv`` (Locust's default is 1 s; see the template).
CSV_INTERVAL_S = 0.1
#: Seconds a virtual user waits for a connection or a response before counting a failure.
NETWORK_TIMEOUT_S = 10.0
#: Why a document gives no load-test target (the performance agent skips the load test with it).
NO_TARGET = (
    "no operation the load test can call (a GET without required parameters, or a collection POST with an example "
    "body; a secured one only when its security is a bearer, basic or API-key scheme, or traffic.credentials is set)"
)

_TEMPLATE = """{docstring}

from __future__ import annotations

import json
import os
import urllib.parse

import gevent
import locust.stats
from locust import FastHttpUser, between, events

# Locust rewrites PREFIX_stats.csv every CSV_STATS_INTERVAL_SEC (1 s) and not once more at the end, so the last
# second of a run would be missing. Write every 0.1 s, and let the writer run once after the users stopped.
locust.stats.CSV_STATS_INTERVAL_SEC = {csv_interval}


@events.test_stop.add_listener
def _final_csv_write(**_kwargs):
    gevent.sleep(2.5 * locust.stats.CSV_STATS_INTERVAL_SEC)


TARGETS = json.loads({targets!r})
# Credentials: the header's name and the environment variable holding its value (never the value itself).
CREDENTIALS = json.loads({credentials!r})
HEADERS = {{}}
if CREDENTIALS and os.environ.get(CREDENTIALS["env"]):
    HEADERS[CREDENTIALS["header"]] = os.environ[CREDENTIALS["env"]]
# The run's test principal, sent the way each operation's security asks (credentials_for, below)
SCHEMES = json.loads({schemes!r})
PRINCIPAL = os.environ.get("PILOTAGE_TEST_PRINCIPAL", "")
{copied}

def _task(target):
    none = {{"headers": {{}}, "query": {{}}, "cookies": {{}}}}
    found = credentials_for(target["security"], SCHEMES, PRINCIPAL) or none
    headers = {{**found["headers"], **HEADERS}}
    if found["cookies"]:
        headers["Cookie"] = "; ".join(f"{{k}}={{v}}" for k, v in found["cookies"].items())
    url = target["path"] + ("?" + urllib.parse.urlencode(found["query"]) if found["query"] else "")
    kwargs = {{"name": target["path"], "headers": headers}}
    if target["body"] is not None:
        kwargs["json"] = target["body"]

    def call(user):
        with user.client.request(target["method"], url, catch_response=True, **kwargs) as response:
            if response.status_code == 501:  # not implemented yet (a generated app/handlers.py stub): no failure
                response.success()

    call.__name__ = target["method"].lower() + "_" + (target["path"].strip("/").replace("/", "_") or "root")
    return call


class ServiceUser(FastHttpUser):
    wait_time = between({wait_min}, {wait_max})
    network_timeout = {timeout}
    connection_timeout = {timeout}
    tasks = {{_task(t): t["weight"] for t in TARGETS}}
"""


@dataclass(frozen=True)
class LoadTarget:
    """One operation the load test calls.

    Attributes:
        method: ``GET`` or ``POST``.
        path: the path (no template parameters), also the request name in Locust's statistics.
        weight: relative frequency among the targets.
        body: JSON request body (POST), or None.
        security: the operation's security requirements when it needs credentials (the locustfile sends the run's
            test principal as :func:`pilotage.testing.credentials.credentials_for` says), else None.
    """

    method: str
    path: str
    weight: int
    body: Any = None
    security: Any = None

    @property
    def operation(self) -> str:
        """``"GET /pets"``."""
        return f"{self.method} {self.path}"


def _schema_example(doc: dict[str, Any], schema: Any) -> Any:
    """Return the schema's ``example``, or an object built from its properties' examples (every required one)."""
    schema = resolve(doc, schema)
    if not isinstance(schema, dict):
        return None
    if "example" in schema:
        return schema["example"]
    props = schema.get("properties") or {}
    if schema.get("type") != "object" or not props:
        return None
    out: dict[str, Any] = {}
    for name, prop in props.items():
        prop = resolve(doc, prop)
        if isinstance(prop, dict) and "example" in prop and not prop.get("readOnly"):
            out[name] = prop["example"]
    if not out or any(name not in out for name in schema.get("required") or []):
        return None
    return out


def _example_body(doc: dict[str, Any], op: Operation) -> Any:
    """Return the explicit example JSON body of ``op``'s request, or None when there is none."""
    body = op.request_body
    media = resolve(doc, (body.get("content") or {}).get("application/json")) if isinstance(body, dict) else None
    if not isinstance(media, dict):
        return None
    if "example" in media:
        return media["example"]
    examples = media.get("examples")
    if isinstance(examples, dict):
        for example in examples.values():
            example = resolve(doc, example)
            if isinstance(example, dict) and "value" in example:
                return example["value"]
    return _schema_example(doc, media.get("schema"))


def load_targets(
    doc: dict[str, Any], *, include_post: bool = True, credentials: bool = False, principal: bool = False
) -> list[LoadTarget]:
    """Return the load-test targets of a decoded OpenAPI document, in path order (see the module docstring).

    Args:
        doc: the decoded OpenAPI 3 document.
        include_post: also target collection ``POST`` operations that have an example body.
        credentials: the requests carry the descriptor's credentials, so operations that require them are targets.
        principal: the run's test principal is set (``PILOTAGE_TEST_PRINCIPAL``): operations whose security
            :func:`~pilotage.testing.credentials.credentials_for` can meet are targets, sent with it.
    """
    targets: list[LoadTarget] = []
    schemes = security_schemes(doc)
    for op in iter_operations(doc):
        secured = requires_credentials(op)
        met = principal and credentials_for(op.security, schemes, PRINCIPAL_ENV) is not None
        if not takes_no_parameters(op) or (secured and not credentials and not met):
            continue
        security = op.security if secured and met else None
        if op.method == "get":
            targets.append(LoadTarget("GET", op.path, GET_WEIGHT, security=security))
        elif op.method == "post" and include_post:
            body = _example_body(doc, op)
            if body is not None:
                targets.append(LoadTarget("POST", op.path, POST_WEIGHT, body, security))
    return targets


def render_locustfile(
    targets: list[LoadTarget],
    *,
    source: str = "an OpenAPI spec",
    credentials: Mapping[str, str] | None = None,
    schemes: Mapping[str, Any] | None = None,
) -> str:
    """Return the text of a locustfile that calls ``targets`` (weights as relative task frequencies).

    Args:
        targets: what to call.
        source: the document's name, for the file's docstring and messages.
        credentials: ``{"header", "env"}``: every request carries ``header``, its value read from the environment
            variable ``env`` when Locust starts (names only in the file).
        schemes: the document's security schemes, for the targets that carry ``security``.

    Raises:
        InputError: ``targets`` is empty (nothing the load test can call).
    """
    if not targets:
        raise InputError(
            f"{source} has no operation a load test can call (a GET without required parameters)",
            hint="add a collection GET (e.g. GET /items) to the spec, or traffic.credentials to pilotage.yaml",
        )
    names = {"header": str(credentials["header"]), "env": str(credentials["env"])} if credentials else None
    payload = json.dumps([asdict(t) for t in targets], separators=(",", ":"), sort_keys=True)
    return _TEMPLATE.format(
        docstring=py_docstring(
            f"Locustfile generated by pilotage.perf.locustfile from {source}; regenerated each run."
        ),
        targets=payload,
        credentials=json.dumps(names, separators=(",", ":"), sort_keys=True),
        schemes=json.dumps(to_json_data(dict(schemes or {})), separators=(",", ":"), sort_keys=True),
        copied=copied_source(),
        wait_min=WAIT_MIN_S,
        wait_max=WAIT_MAX_S,
        timeout=NETWORK_TIMEOUT_S,
        csv_interval=CSV_INTERVAL_S,
    )


def write_locustfile(
    spec_path: Path, out_path: Path, *, include_post: bool = True, credentials: Mapping[str, str] | None = None
) -> list[LoadTarget]:
    """Load ``spec_path``, write the locustfile for its targets to ``out_path`` and return the targets.

    ``credentials`` (``{"header", "env"}``, the variable set) make secured operations targets
    (:func:`render_locustfile`).

    Raises:
        InputError: the spec does not load or validate (names the file), or it has no load-test target.
    """
    from pilotage.spec.load import load_spec

    doc = load_spec(spec_path)
    principal = bool(os.environ.get(PRINCIPAL_ENV))
    targets = load_targets(doc, include_post=include_post, credentials=credentials is not None, principal=principal)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    text = render_locustfile(targets, source=str(spec_path), credentials=credentials, schemes=security_schemes(doc))
    out_path.write_text(text, encoding="utf-8")
    return targets
