"""Authentication of generated services: what the runtime needs to check credentials (issue #18, item 5).

Generation side. For each operation, :func:`security_meta` turns the security requirements in force (the
operation's ``security``, else the document's; ``security: []`` or an empty alternative: none) into the runtime's
shape, one list per alternative (all schemes of an alternative must pass)::

    [[{"scheme": "petstore_auth", "type": "bearer"|"basic"|"apiKey", "in": "header"|"query"|"cookie", "name": str}]]

``bearer`` covers ``http``/``bearer``, ``oauth2`` and ``openIdConnect`` (a token in ``Authorization: Bearer``);
``apiKey`` reads the named header, query parameter or cookie; ``basic`` decodes ``Authorization: Basic``.

Credentials are checked by ``app/auth.py`` against state the service keeps:

* the **test principal**: the value of env ``PILOTAGE_TEST_PRINCIPAL`` (at least ``PRINCIPAL_MIN_CHARS``
  characters; no default, nothing hard-coded). Pilotage makes a random one per run
  (:func:`pilotage.testing.credentials.ensure_principal`) and gives it to every instance it starts and to its own
  tests, which send it as :func:`pilotage.testing.credentials.credentials_for` says;
* **users** created through the service's own operations, when the document has a user resource (a stored
  resource whose schema has a ``password`` property and a ``username``/``email``/``login`` one,
  :func:`users_meta`) and a login operation (:func:`login_meta`): basic credentials are checked against the
  stored users; the login answers a random token (bearer or API key) kept in the store, or 401.

The document is untrusted: scheme names, header names and property names reach the generated code only as data
(``py_literal`` of the returned dicts).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pilotage.spec.openapi import Operation
from pilotage.spec.refs import resolve_dict
from pilotage.testing.credentials import PRINCIPAL_ENV

if TYPE_CHECKING:  # the plan imports this module
    from pilotage.codegen.plan import OperationPlan, Resource, ServicePlan

__all__ = [
    "PRINCIPAL_ENV",
    "apply_auth",
    "login_meta",
    "security_meta",
    "users_meta",
]

_USER_FIELDS = ("username", "email", "login", "user_name", "userName")
_PASSWORD_FIELDS = ("password", "pass", "passwd")
_TOKEN_FIELDS = ("token", "access_token", "accessToken", "jwt", "api_key", "apiKey")
_LOGIN = re.compile(r"(log_?in|sign_?in|authenticate|session|token)", re.IGNORECASE)
_LOGOUT = re.compile(r"(log_?out|sign_?out)", re.IGNORECASE)


def _scheme(name: str, scheme: dict[str, Any]) -> dict[str, str]:
    kind = str(scheme.get("type", ""))
    if kind == "apiKey":
        where = str(scheme.get("in", "header"))
        return {"scheme": name, "type": "apiKey", "in": where if where in ("query", "cookie") else "header",
                "name": str(scheme.get("name", ""))}  # fmt: skip
    if kind == "http" and str(scheme.get("scheme", "")).lower() == "basic":
        return {"scheme": name, "type": "basic", "in": "header", "name": "Authorization"}
    return {"scheme": name, "type": "bearer", "in": "header", "name": "Authorization"}


def security_meta(doc: dict[str, Any], op: Operation) -> list[list[dict[str, str]]]:
    """The alternatives of credentials ``op`` requires (shape in the module docstring); ``[]``: none.

    An empty alternative (``{}``: anonymous access allowed) makes the whole requirement optional: ``[]``.
    """
    schemes = (doc.get("components") or {}).get("securitySchemes") or {}
    out = []
    for requirement in op.security:
        if not isinstance(requirement, dict) or not requirement:
            return []
        out.append([_scheme(str(name), resolve_dict(doc, schemes.get(name, {}))) for name in requirement])
    return out


def _field(props: dict[str, Any], names: tuple[str, ...]) -> str | None:
    lowered = {str(p).lower(): str(p) for p in props}
    return next((lowered[n.lower()] for n in names if n.lower() in lowered), None)


def users_meta(doc: dict[str, Any], resources: list[Resource]) -> dict[str, str] | None:
    """``{"resource", "username", "password"}`` of the first top-level resource that holds users, or None."""
    for res in resources:
        props = resolve_dict(doc, res.schema).get("properties") or {}
        user, password = _field(props, _USER_FIELDS), _field(props, _PASSWORD_FIELDS)
        if user and password and not res.scope_params:
            return {"resource": res.name, "username": user, "password": password}
    return None


def _body_fields(doc: dict[str, Any], schema: Any) -> tuple[list[str], dict[str, Any]]:
    """Return where a body schema holds credentials: the property path (``[]``, ``["user"]``) and its properties."""
    props = resolve_dict(doc, schema).get("properties") or {}
    if _field(props, _PASSWORD_FIELDS):
        return [], props
    for name, sub in props.items():
        inner = resolve_dict(doc, sub).get("properties") or {}
        if _field(inner, _PASSWORD_FIELDS):
            return [str(name)], inner
    return [], {}


def _token_path(doc: dict[str, Any], schema: Any) -> list[str] | None:
    """Return where a login answer's token goes.

    Returns:
        ``[]`` for a string answer, a property path (``["token"]``, ``["user", "token"]``), or None when the
        response has no recognisable place for it.
    """
    resolved = resolve_dict(doc, schema)
    if resolved.get("type") == "string":
        return []
    props = resolved.get("properties") or {}
    found = _field(props, _TOKEN_FIELDS)
    if found:
        return [found]
    for name, sub in props.items():
        inner = _field(resolve_dict(doc, sub).get("properties") or {}, _TOKEN_FIELDS)
        if inner:
            return [str(name), inner]
    return None


def login_meta(doc: dict[str, Any], op: OperationPlan) -> dict[str, Any] | None:
    """Return what the runtime needs to serve ``op`` as a login, or None.

    Returns:
        ``{"in": "query"|"body", "path": [..], "username", "password", "token": [..]}``, or None when ``op`` is not
        recognisably a login (name, credential fields and a place for the token).
    """
    if not _LOGIN.search(f"{op.meta['path']} {op.meta['operation_id']}"):
        return None
    ok = op.meta["responses"].get(str(op.meta["success_status"])) or {}
    token = _token_path(doc, ok.get("schema") or {})
    if token is None:
        return None
    query = {p["name"]: p for p in op.meta["parameters"] if p["in"] == "query"}
    user, password = _field(query, _USER_FIELDS), _field(query, _PASSWORD_FIELDS)
    if user and password:
        return {"in": "query", "path": [], "username": user, "password": password, "token": token}
    path, props = _body_fields(doc, ((op.meta["body"] or {}).get("content") or {}).get("application/json"))
    user, password = _field(props, _USER_FIELDS), _field(props, _PASSWORD_FIELDS)
    if user and password:
        return {"in": "body", "path": path, "username": user, "password": password, "token": token}
    return None


def apply_auth(doc: dict[str, Any], plan: ServicePlan) -> dict[str, str] | None:
    """Mark the login and logout operations of ``plan``; return :func:`users_meta` (None: no users).

    Among the operations whose behaviour was not inferred (``example``/``nested``), when the document has a user
    resource: a login gets kind ``login`` and ``meta["login"]`` (:func:`login_meta`), a logout kind ``logout``.
    """
    users = users_meta(doc, plan.resources)
    for op in plan.operations:
        if users is None or op.kind not in ("example", "nested"):
            continue
        login = login_meta(doc, op)
        if login is not None:
            op.kind, op.meta["login"] = "login", login
        elif _LOGOUT.search(f"{op.meta['path']} {op.meta['operation_id']}"):
            op.kind = "logout"
    return users
