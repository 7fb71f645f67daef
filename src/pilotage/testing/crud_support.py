"""Runtime helpers of the generated CRUD chain tests (:mod:`pilotage.testing.spec_tests`): one request and its checks.

Everything below the ``# --- copied below ---`` marker is copied verbatim into ``test_pilotage_api_crud.py``, so the
repository's tests need schemathesis and hypothesis but not Pilotage. The names above the marker stand for the
generated file's globals (the spec, target and chains) so that this module type-checks on its own.

What every oracle of the file does with one request: it is sent with its credentials and its curl line kept
(:func:`_call`), its status checked, the fields it returns compared with those sent, a failure named by its oracle
(:func:`_fail`); the cases are drawn from the spec; a resource is created (its parents first) and read back, alone
or from the list. The oracles built on these steps (the life cycle and the tests of their own) are
:mod:`pilotage.testing.crud_oracles`', whose part is copied right after this one.

Bodies are sent as JSON when the operation accepts JSON (the life-cycle oracle needs a lossless encoding; the other
encodings stay with schemathesis' checks).
A 409 (a generated value collides with an existing unique one) discards the example; a 501 (an operation the
service does not implement yet) skips the test as ``not implemented: ...``; a 401/403 skips the test
with a note to configure authentication (every request carries the credentials its operation's security asks for,
made from ``PILOTAGE_TEST_PRINCIPAL``: :mod:`pilotage.testing.credentials`); fields are compared only for JSON
bodies (XML and form encodings drop characters). Floats compare with a relative tolerance of 1e-9 (JSON round
trips). Every failure message lists the curl lines of the chain so far.
"""

from __future__ import annotations

from typing import Any

from pilotage.testing.credentials import authenticate

__all__ = ["API_URL", "BASE_URL", "CHAINS", "HEADERS", "PRINCIPAL", "TIMEOUT_S", "schema"]

schema: Any = None
BASE_URL: str | None = None
API_URL: str | None = None  # BASE_URL and the document's servers[0] path: where the API is served
HEADERS: dict[str, str] = {}
PRINCIPAL = ""
TIMEOUT_S = 5.0
CHAINS: dict[str, dict[str, Any]] = {}

# --- copied below ---
import math  # noqa: E402
import sys  # noqa: E402

import jsonschema  # noqa: E402
import pytest  # noqa: E402
from hypothesis import reject  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _call(case: Any, trail: list[str]) -> Any:
    sent = authenticate(case, PRINCIPAL)  # the credentials the operation's security asks for (issue 18)
    response = case.call(base_url=API_URL, headers=HEADERS, timeout=TIMEOUT_S)
    # the curl line masks the credentials sent (PILOTAGE_TEST_PRINCIPAL, PILOTAGE_TEST_HEADERS) and nothing else: a
    # body field named like a secret (``secret_name``, ``password``) shown as ``[Filtered]`` would not reproduce it
    sanitization = case.operation.schema.config.output.sanitization
    sanitization.keys_to_sanitize = tuple(name.lower() for name in [*HEADERS, *sent]) or ("authorization",)
    sanitization.sensitive_markers = ()
    trail.append(case.as_curl_command(headers=HEADERS, base_url=API_URL or "http://127.0.0.1:8000"))
    if response.status_code == 501:  # an operation the service does not implement yet (issue 18): not a failure
        pytest.skip(f"not implemented: {case.method} {case.path} answered 501 (write it in app/handlers.py)")
    return response


#: The step of the running test (set by :func:`_step`): with the helper that failed it names the oracle of a failure.
_STEP = ["create"]


def _step(name: str) -> None:
    _STEP[0] = name


def _fail(message: str, trail: list[str]) -> None:
    """Fail the test: ``[oracle STEP/CHECK] message`` and the curl lines of the test so far.

    ``CHECK`` is the helper that found the failure (``status``, ``compare``, ``delete`` ...), so two failures of one
    test are told apart by what they checked, not only by the test's name (a report groups them; a mutation run
    counts a new oracle failing as a new finding).
    """
    check = sys._getframe(1).f_code.co_name.strip("_")
    raise AssertionError(f"[oracle {_STEP[0]}/{check}] {message}\nReproduce:\n" + "\n".join(trail))


def _same(sent: Any, got: Any) -> bool:
    if isinstance(sent, bool) or isinstance(got, bool):
        return sent is got
    if isinstance(sent, int | float) and isinstance(got, int | float):
        return math.isclose(sent, got, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(sent, dict) and isinstance(got, dict):
        return all(k in got and _same(v, got[k]) for k, v in sent.items())
    if isinstance(sent, list) and isinstance(got, list):
        return len(sent) == len(got) and all(_same(a, b) for a, b in zip(sent, got, strict=True))
    return bool(sent == got)


def _json(response: Any, what: str, trail: list[str]) -> Any:
    try:
        return response.json()
    except ValueError:
        _fail(f"{what} answered {response.status_code} with a body that is not JSON", trail)
    return None


def _skip_unauthorized(response: Any, what: str) -> None:
    """Skip the test with the setting to fix when ``response`` is a 401/403 (no credentials configured)."""
    if response.status_code in (401, 403):
        sent = "with the credentials its security asks for" if PRINCIPAL else "without credentials"
        pytest.skip(
            f"{what} answered {response.status_code} {sent} (set PILOTAGE_TEST_PRINCIPAL, Pilotage's test principal, "
            "or PILOTAGE_TEST_HEADERS: settings.testing_auth_headers)"
        )


def _status(response: Any, what: str, trail: list[str], refusals: tuple[int, ...] = ()) -> None:
    """Fail unless 2xx; 401/403 skip (no credentials), 409 and a documented refusal (``refusals``) draw again."""
    _skip_unauthorized(response, what)
    if response.status_code == 409 or response.status_code in refusals:
        reject()
    if not 200 <= response.status_code < 300:
        _fail(f"{what} answered {response.status_code}, not 2xx", trail)


def _json_body(case: Any) -> Any:
    """The body when it was sent as JSON (XML and form bodies lose characters on the way: no field comparison)."""
    return case.body if "json" in str(getattr(case, "media_type", "") or "") else None


def _compare(sent: Any, got: Any, what: str, trail: list[str]) -> None:
    if not isinstance(sent, dict) or not isinstance(got, dict):
        return
    wrong = sorted(k for k, v in sent.items() if k in got and not _same(v, got[k]))
    if wrong:
        details = ", ".join(f"{k}: sent {sent[k]!r}, got {got[k]!r}" for k in wrong)
        _fail(f"{what} does not return what was sent ({details})", trail)


def _strategy(operation: Any, scope: dict[str, Any] | None) -> Any:
    """Positive cases of ``operation``; JSON bodies only when the operation accepts JSON (a lossless encoding)."""
    strategy = operation.as_strategy(path_parameters=scope)
    if any("json" in str(kind) for kind in operation.get_request_payload_content_types()):
        strategy = strategy.filter(lambda case: "json" in str(getattr(case, "media_type", "") or ""))
    return strategy


def _update_strategy(chain: dict[str, Any], update: dict[str, Any], placeholder: dict[str, Any]) -> Any:
    """Cases of an update; one whose query names properties (``?name=&status=``) sets at least one validly."""
    operation = schema[update["path"]][update["method"]]
    strategy = _strategy(operation, placeholder if update["via"] == "path" else None)
    if any(param.name in chain["scalars"] for param in operation.query):
        scalars = chain["scalars"]
        strategy = strategy.filter(lambda c: any(_valid(v, scalars.get(k)) for k, v in (c.query or {}).items()))
    return strategy


def _placeholder(chain: dict[str, Any]) -> dict[str, Any]:
    """Path parameters to draw an item operation's cases with (the real key is filled in before the call)."""
    return {chain["param"]: 1, **({chain["scope_param"]: 1} if chain["scope_param"] else {})}


def _draw(data: st.DataObject, name: str) -> list[Any]:
    """Draw every request body of the chain before any call, so the draws never depend on the service's state."""
    chain = CHAINS[name]
    cases = _draw(data, chain["parent"]) if chain["parent"] else []
    scope = {chain["scope_param"]: 1} if chain["scope_param"] else None
    cases.append(data.draw(_strategy(schema[chain["collection"]]["POST"], scope)))
    return cases


def _addressable(key: str) -> bool:
    """False for a key the client chooses that one URL path segment cannot carry; the test then draws another.

    Empty, ``.``/``..`` (removed by path normalisation), with ``/`` (servers decode ``%2F`` before routing) or a
    tab/newline (URL parsing drops them, WHATWG URL standard).
    """
    return key not in ("", ".", "..") and not any(c in key for c in "/\t\n\r")


def _create(
    cases: list[Any], name: str, trail: list[str], cleanup: list[tuple[str, dict[str, Any]]]
) -> tuple[Any, dict[str, Any]]:
    chain = CHAINS[name]
    scope: dict[str, Any] = {}
    if chain["parent"]:
        parent, parent_scope = _create(cases, chain["parent"], trail, cleanup)
        scope = {**parent_scope, chain["scope_param"]: parent[CHAINS[chain["parent"]]["key"]]}
    case = cases.pop(0)
    chosen = case.body.get(chain["key"]) if isinstance(case.body, dict) else None
    if isinstance(chosen, str) and not _addressable(chosen):
        reject()
    if scope:
        case.path_parameters = {**(case.path_parameters or {}), **scope}
    response = _call(case, trail)
    what = f"POST {chain['collection']} (a body valid by the spec)"
    _status(response, what, trail, tuple(chain["create_refusals"]))
    created = _json(response, what, trail)
    if not isinstance(created, dict) or chain["key"] not in created:
        _fail(f"{what} returned no {chain['key']!r} field", trail)
    if chain["delete"]:
        cleanup.append((chain["item"], {**scope, chain["param"]: created[chain["key"]]}))
    body = _json_body(case)
    _compare(body, created, what, trail)
    for name, default in chain["defaults"].items():
        if isinstance(body, dict) and name not in body and name in created and not _same(default, created[name]):
            _fail(f"{what} without {name} gave {name}={created[name]!r}, not the declared default {default!r}", trail)
    return created, scope


def _get(chain: dict[str, Any], params: dict[str, Any], trail: list[str]) -> Any:
    return _call(schema[chain["item"]]["GET"].Case(path_parameters=params, headers={}), trail)


def _listed(chain: dict[str, Any], scope: dict[str, Any], key: Any, trail: list[str]) -> Any:
    """``GET`` the collection and return the element whose key is ``key``, None when absent, ``...`` when unknown.

    A page limit declared in the spec (an integer query parameter ``limit``/``size``/``per_page``/``page_size``/
    ``pageSize`` with a ``maximum``) is set to its maximum; a list as long as the limit may be truncated, so a
    missing element is then not evidence (``...``).
    """
    operation = schema[chain["collection"]]["GET"]
    query: dict[str, Any] = {}
    for param in operation.query:
        definition = getattr(param, "definition", None) or {}
        spec = definition.get("schema", definition) if isinstance(definition, dict) else {}
        if param.name in _LIMITS and isinstance(spec, dict) and isinstance(spec.get("maximum"), int):
            query[param.name] = spec["maximum"]
    items = _items(operation.Case(path_parameters=scope, query=query, headers={}), f"GET {chain['collection']}", trail)
    found = [i for i in items if isinstance(i, dict) and _same(i.get(chain["key"]), key)]
    if found:
        return found[0]
    return ... if query and len(items) >= min(query.values()) else None


_LIMITS = ("limit", "size", "per_page", "page_size", "pageSize")


def _valid(value: Any, schema: dict[str, Any] | None) -> bool:
    """True when ``value`` is valid for a property's schema (JSON Schema; False without a schema)."""
    if schema is None:
        return False
    return bool(jsonschema.validators.validator_for(schema)(schema).is_valid(value))


def _fresh(chain: dict[str, Any], params: dict[str, Any], what: str, trail: list[str]) -> Any:
    """The resource as the service has it now: its ``GET``, or its entry in the list when it has no ``GET``."""
    if not chain["has_get"]:
        scope = {k: v for k, v in params.items() if k != chain["param"]}
        listed = _listed(chain, scope, params[chain["param"]], trail)
        if listed is None:
            _fail(f"GET {chain['collection']} does not list the resource {what}", trail)
        return None if listed is ... else listed
    response = _get(chain, params, trail)
    if response.status_code != 200:
        _fail(f"GET {chain['item']} {what} answered {response.status_code}, not 200", trail)
    return _json(response, f"GET {chain['item']}", trail)


def _items(case: Any, what: str, trail: list[str]) -> list[Any]:
    """Send a list request: it must answer 200 with a JSON array, which is returned."""
    response = _call(case, trail)
    if response.status_code != 200:
        _fail(f"{what} answered {response.status_code}, not 200", trail)
    items = _json(response, what, trail)
    if not isinstance(items, list):
        _fail(f"{what} answered {type(items).__name__}, not a list", trail)
    return list(items)
