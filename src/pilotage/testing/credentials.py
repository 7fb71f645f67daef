"""The test principal and the credentials every request of a run sends with it (issue 18, item 7).

**The principal.** Generated services check credentials against a test principal they read from the environment
variable :data:`PRINCIPAL_ENV` (``PILOTAGE_TEST_PRINCIPAL``). :func:`ensure_principal` makes one when the run's
context is created (:func:`pilotage.app.backends`; a contract-net worker's test run too): ``pilotage:<32 random
URL-safe characters>`` (:func:`secrets.token_urlsafe`), set in the control plane's environment and registered with
the secret masker, so events, logs and reports show ``[masked]`` instead. :func:`pilotage.runtime.sandbox.sandbox_env`
copies it into every process the run starts (service instances, pytest, schemathesis, Locust); nothing else
carries it — not the command lines, not the bus payloads, not the generated files.

**The credentials.** :func:`credentials_for` is the one mapping from an operation's security requirement to what
a request sends, used by the generated CRUD tests (copied into them below the marker, they do not import Pilotage),
the load test (:mod:`pilotage.perf.locustfile`) and the rollout's synthetic traffic
(:mod:`pilotage.runtime.traffic`). schemathesis gets the same values per scheme through its ``[auth.openapi]``
configuration (:func:`schemathesis_auth`):

* ``http`` ``bearer`` (and ``oauth2`` / ``openIdConnect``, whose tokens are bearer tokens):
  ``Authorization: Bearer <principal>``;
* ``apiKey`` in ``header`` / ``query`` / ``cookie``: ``<principal>`` under the scheme's ``name``;
* ``http`` ``basic``: the principal is ``user:password``: ``Authorization: Basic base64(<principal>)``;
* any other scheme (``mutualTLS``, another ``http`` scheme) cannot be met: the next alternative is tried.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Any

from pilotage.secrets import register_secrets

__all__ = [
    "PRINCIPAL_ENV",
    "PRINCIPAL_MIN_CHARS",
    "authenticate",
    "basic_env",
    "copied_source",
    "credentials_for",
    "ensure_principal",
    "principal_env",
    "schemathesis_auth",
]

#: The environment variable holding the run's test principal (instances, test tools and the control plane).
PRINCIPAL_ENV = "PILOTAGE_TEST_PRINCIPAL"
#: A principal shorter than this (characters) found in the environment is replaced by a fresh one.
PRINCIPAL_MIN_CHARS = 16
#: The user part of a generated principal (``user:password`` for HTTP basic).
PRINCIPAL_USER = "pilotage"


def ensure_principal() -> str:
    """Return the run's test principal, making it first when the environment holds none (or one too short).

    Side effects: sets ``os.environ[PILOTAGE_TEST_PRINCIPAL]`` and registers the value with the secret masker.
    """
    principal = os.environ.get(PRINCIPAL_ENV, "")
    if len(principal) < PRINCIPAL_MIN_CHARS:
        principal = f"{PRINCIPAL_USER}:{secrets.token_urlsafe(24)}"
        os.environ[PRINCIPAL_ENV] = principal
    encoded = base64.b64encode(principal.encode()).decode("ascii")  # as an ``Authorization: Basic`` header holds it
    register_secrets([principal, principal.partition(":")[2], encoded])  # the password part goes alone to basic auth
    return principal


def principal_env() -> dict[str, str]:
    """``{PILOTAGE_TEST_PRINCIPAL: value}`` when this process has a principal (long enough), else ``{}``.

    Every instance Pilotage starts gets it (``LocalRuntime.start``) besides its workload's env.
    """
    value = os.environ.get(PRINCIPAL_ENV, "")
    return {PRINCIPAL_ENV: value} if len(value) >= PRINCIPAL_MIN_CHARS else {}


def schemathesis_auth(schemes: object) -> dict[str, dict[str, str]]:
    """Return schemathesis' ``[auth.openapi.<scheme>]`` entries for ``schemes``, values as ``${VAR}`` placeholders.

    Args:
        schemes: the document's ``components.securitySchemes`` (name → resolved Security Scheme Object).

    Returns:
        ``{name: {"bearer": "${PILOTAGE_TEST_PRINCIPAL}"} | {"api_key": ...} | {"username": "${..._USER}",
        "password": "${..._PASSWORD}"}}`` for the schemes :func:`credentials_for` can meet; schemathesis resolves the
        placeholders from its environment (:func:`basic_env` gives the user and password variables).
    """
    out: dict[str, dict[str, str]] = {}
    for name, scheme in (schemes if isinstance(schemes, dict) else {}).items():
        kind = _scheme_kind(scheme if isinstance(scheme, dict) else {})
        if kind == "basic":
            out[str(name)] = {
                "username": "${" + PRINCIPAL_ENV + "_USER}",
                "password": "${" + PRINCIPAL_ENV + "_PASSWORD}",
            }
        elif kind == "bearer":
            out[str(name)] = {"bearer": "${" + PRINCIPAL_ENV + "}"}
        elif kind:
            out[str(name)] = {"api_key": "${" + PRINCIPAL_ENV + "}"}
    return out


def copied_source() -> str:
    """The part of this module below the ``# --- copied below ---`` marker: what generated files hold of it."""
    return Path(__file__).read_text(encoding="utf-8").split("\n# --- copied below ---\n", 1)[1]


def basic_env(principal: str) -> dict[str, str]:
    """``{PILOTAGE_TEST_PRINCIPAL_USER, PILOTAGE_TEST_PRINCIPAL_PASSWORD}``: the principal split at its first ``:``."""
    user, _, password = principal.partition(":")
    return {f"{PRINCIPAL_ENV}_USER": user, f"{PRINCIPAL_ENV}_PASSWORD": password}


# --- copied below ---


def _scheme_kind(scheme: dict[str, Any]) -> str:
    """``"bearer"``, ``"basic"``, ``"header"``/``"query"``/``"cookie"`` (an API key), or ``""`` (cannot be met)."""
    kind = str(scheme.get("type", ""))
    if kind == "apiKey" and scheme.get("in", "header") in ("header", "query", "cookie") and scheme.get("name"):
        return str(scheme.get("in", "header"))
    if kind == "http":
        return {"bearer": "bearer", "basic": "basic"}.get(str(scheme.get("scheme", "")).lower(), "")
    return "bearer" if kind in ("oauth2", "openIdConnect") else ""


def credentials_for(security: Any, schemes: Any, principal: str) -> dict[str, dict[str, str]] | None:
    """Return what a request of an operation sends to authenticate as ``principal``.

    Args:
        security: the operation's security requirements in force (the operation's ``security``, else the
            document's): a list of alternatives, each ``{scheme name: [scopes]}``; ``[]`` or ``None``: none.
        schemes: the document's ``components.securitySchemes`` (name → Security Scheme Object, ``$ref`` resolved).
        principal: the run's test principal (``PILOTAGE_TEST_PRINCIPAL``).

    Returns:
        ``{"headers": {name: value}, "query": {name: value}, "cookies": {name: value}}`` for the first alternative
        whose every scheme can be met (empty maps when nothing is required, or an anonymous ``{}`` alternative comes
        first); None when credentials are required and no alternative can be met (or no principal is set).
    """
    out: dict[str, dict[str, str]] = {"headers": {}, "query": {}, "cookies": {}}
    table = {n: s for n, s in (schemes if isinstance(schemes, dict) else {}).items() if isinstance(s, dict)}
    alternatives = [a for a in (security if isinstance(security, list) else []) if isinstance(a, dict)]
    if not alternatives:
        return out
    for alternative in alternatives:
        if not alternative:
            return out  # anonymous access allowed
        found = [(_scheme_kind(table.get(n, {})), table.get(n, {})) for n in alternative]
        if not principal or not all(kind for kind, _ in found):
            continue
        for kind, scheme in found:
            if kind == "bearer":
                out["headers"]["Authorization"] = f"Bearer {principal}"
            elif kind == "basic":
                out["headers"]["Authorization"] = "Basic " + base64.b64encode(principal.encode()).decode("ascii")
            else:
                where = {"header": "headers", "query": "query", "cookie": "cookies"}[kind]
                out[where][str(scheme["name"])] = principal
        return out
    return None


def authenticate(case: Any, principal: str) -> list[str]:
    """Add to a schemathesis ``case`` the credentials its operation's security asks for (:func:`credentials_for`).

    Returns:
        The names the credentials were sent under (headers, query parameters, cookies), to be masked in reports.
    """
    raw = case.operation.schema.raw_schema
    security = case.operation.definition.raw.get("security", raw.get("security"))
    found = credentials_for(security, (raw.get("components") or {}).get("securitySchemes"), principal)
    if not found:
        return []
    case.headers = {**(case.headers or {}), **found["headers"]}
    case.query = {**(case.query or {}), **found["query"]}
    case.cookies = {**(case.cookies or {}), **found["cookies"]}
    return [name for part in found.values() for name in part]
