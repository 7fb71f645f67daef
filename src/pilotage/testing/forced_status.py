"""Undocumented statuses that HTTP itself forces: gaps of the document, not breaks of the contract (issue 18).

schemathesis' ``status_code_conformance`` fails whenever a response's status is not among the operation's
documented responses. Many real documents declare only their successes (``200``/``201``), so a service that
answers an unknown id with 404 or an invalid body with 400, as HTTP requires, "breaks" that check. Such a finding
is a **document gap**: the document is incomplete, the service does what HTTP says, and the fix is one line in the
document (``declare 404 for GET /items/{id} in the document``). Any other undocumented status — a 2xx/3xx the
document does not list, a 5xx, a 4xx the request does not explain — stays a **contract break**.

This module is the one place that decides which is which (:func:`forced_reason`), from the facts schemathesis
records with every case in its NDJSON report (``Case.meta``, serialised as ``meta``: ``generation.mode``
``"positive"``/``"negative"``, ``components.<location>.mode`` per request part, ``phase.data.scenario`` of the
coverage phase such as ``unspecified_http_method`` or ``unsupported_content_type``: ``schemathesis.generation.meta``)
and from the document (:func:`operation_facts`). The rules, each with its source in RFC 9110 (HTTP Semantics):

* **400 Bad Request / 422 Unprocessable Content** (sections 15.5.1 and 15.5.21: the server cannot or will not
  process a request it perceives as a client error; content it understands but whose instructions it cannot
  process) — forced when schemathesis generated the case as *negative* (``meta.generation.mode`` or any
  ``meta.components.*.mode`` is ``"negative"``: data that does not fit the document, the very cases its
  ``negative_data_rejection`` check expects 400/422 for), when the case is a malformed-content-type probe, or when
  the body is a form whose schema nests objects (OpenAPI's ``style: form`` cannot carry them:
  :func:`pilotage.spec.openapi.form_bodies_nesting_objects`).
* **401 Unauthorized / 403 Forbidden** (sections 15.5.2, 11.6.1 and 15.5.4: a request that lacks valid
  credentials for the target resource; a server that refuses to authorise it) — forced when the operation requires
  credentials (:func:`pilotage.spec.openapi.requires_credentials`) and the request sent none where its security
  schemes put them (:func:`pilotage.testing.credentials.credentials_for`), or sent generated (negative) values in
  the part that carries them. A 401/403 on an operation without security, or on a request that carried the test
  principal's credentials as the document asks, is a break.
* **404 Not Found** (section 15.5.5: no current representation for the target resource) — forced when the path
  template has a parameter: a generated id names no resource the service holds. A 404 on a path without a
  parameter (the route itself is missing) is a break.
* **405 Method Not Allowed** (section 15.5.6) — forced when the request's method is not the operation's (the
  coverage phase's ``unspecified_http_method`` probe).
* **406 Not Acceptable** (sections 15.5.7 and 12.5.1) — forced when the request's ``Accept`` names no media type
  the operation's responses declare.
* **415 Unsupported Media Type** (section 15.5.16) — forced when the request's ``Content-Type`` is not one the
  operation's request body declares, or the case is schemathesis' ``unsupported_content_type`` /
  ``malformed_content_type`` probe.
* **501 Not Implemented** (section 15.6.2: the server does not support the functionality required) — forced: a
  generated service answers it for an operation whose handler the user has not written yet (``app/handlers.py``).

Pure: no I/O; the document is read once by :func:`pilotage.testing.schemathesis_runner.document_facts`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pilotage.spec.openapi import FORM_MEDIA_TYPES, iter_operations, requires_credentials
from pilotage.testing.credentials import credentials_for

__all__ = ["OperationFacts", "forced_reason", "gap_fix", "operation_facts"]

#: Coverage-phase scenarios (``schemathesis.generation.meta.CoverageScenario``) that probe the request's media type.
_CONTENT_TYPE_PROBES = frozenset({"malformed_content_type", "unsupported_content_type"})
#: Where schemathesis records each request part in ``meta.components`` (``ParameterLocation`` values).
_CREDENTIAL_PARTS = {"headers": "header", "query": "query", "cookies": "cookie"}
#: Form media types (``style: form``), lower case.
_FORMS = frozenset(FORM_MEDIA_TYPES)


@dataclass(frozen=True)
class OperationFacts:
    """What the document says of one operation that decides whether a status is forced.

    Attributes:
        method: the operation's method, upper case (``"GET"``).
        path_parameter: the path template names a parameter (``/items/{id}``).
        secured: a security requirement is in force with no anonymous alternative.
        credentials: where its credentials go, ``{"headers"|"query"|"cookies": {lower-case name, ...}}``; None when
            no alternative can be met by the test principal (the request cannot carry them).
        request_media: media types of its request body (lower case; empty: no body).
        response_media: media types its responses declare (lower case; empty: none declared).
        form_nesting: its form body nests objects (:func:`pilotage.spec.openapi.form_bodies_nesting_objects`).
    """

    method: str
    path_parameter: bool = False
    secured: bool = False
    credentials: Mapping[str, frozenset[str]] | None = None
    request_media: frozenset[str] = frozenset()
    response_media: frozenset[str] = frozenset()
    form_nesting: bool = False


def operation_facts(doc: Any, schemes: dict[str, Any], nesting: set[str]) -> dict[str, OperationFacts]:
    """Return :class:`OperationFacts` per operation label (``"GET /items/{id}"``) of the parsed document ``doc``.

    Args:
        doc: the OpenAPI document (``pilotage.spec.load.load_document``).
        schemes: its ``components.securitySchemes`` (:func:`pilotage.spec.openapi.security_schemes`).
        nesting: labels of operations whose form body nests objects.

    Raises:
        InputError: a ``$ref`` does not resolve.
    """
    out = {}
    for op in iter_operations(doc):
        found = credentials_for(op.security, schemes, "probe")
        content = (op.request_body or {}).get("content")
        responses = [r.get("content") for r in op.responses.values()]
        out[op.label] = OperationFacts(
            method=op.method.upper(),
            path_parameter="{" in op.path,
            secured=requires_credentials(op),
            credentials=None if found is None else {part: frozenset(n.lower() for n in found[part]) for part in found},
            request_media=frozenset(str(m).lower() for m in (content if isinstance(content, dict) else {})),
            response_media=frozenset(str(m).lower() for c in responses if isinstance(c, dict) for m in c),
            form_nesting=op.label in nesting,
        )
    return out


def gap_fix(operation: str, status: int) -> str:
    """``"declare 404 for GET /items/{id} in the document"`` (and, for 501, the handler to write instead)."""
    fix = f"declare {status} for {operation} in the document"
    return fix + " (or write its handler in app/handlers.py)" if status == 501 else fix


def _negative_parts(case: dict[str, Any]) -> set[str]:
    """The request parts schemathesis generated as negative (``"body"``, ``"header"`` …).

    ``{"*"}`` when the case is negative (``meta.generation.mode``) but its components do not say which part.
    """
    meta = _meta(case)
    components = meta.get("components")
    parts = {
        str(k)
        for k, v in (components.items() if isinstance(components, dict) else [])
        if isinstance(v, dict) and v.get("mode") == "negative"
    }
    generation = meta.get("generation")
    return parts or ({"*"} if isinstance(generation, dict) and generation.get("mode") == "negative" else set())


def _meta(case: dict[str, Any]) -> dict[str, Any]:
    """The case's ``meta`` (``{}`` when schemathesis recorded none)."""
    meta = case.get("meta")
    return meta if isinstance(meta, dict) else {}


def _scenario(case: dict[str, Any]) -> str:
    """The coverage phase's scenario of the case (``"unspecified_http_method"`` …), or ``""``."""
    meta = _meta(case)
    return str(((meta.get("phase") or {}).get("data") or {}).get("scenario") or "")


def _header(request: dict[str, Any], name: str) -> str | None:
    """The first value of request header ``name`` (case-insensitive), or None."""
    for key, value in (request.get("headers") or {}).items():
        if str(key).lower() == name:
            return str(value[0] if isinstance(value, list) and value else value)
    return None


def _media(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


def _sent_credentials(request: dict[str, Any], carriers: Mapping[str, frozenset[str]]) -> bool:
    """Whether the request carried a value under every name its credentials go (headers, query, cookies)."""
    query = {k.lower() for k, _ in parse_qsl(urlsplit(str(request.get("uri", ""))).query, keep_blank_values=True)}
    cookie = _header(request, "cookie") or ""
    cookies = {c.split("=", 1)[0].strip().lower() for c in cookie.split(";") if "=" in c}
    sent = {"headers": lambda n: _header(request, n) is not None, "query": query.__contains__,
            "cookies": cookies.__contains__}  # fmt: skip
    return all(sent[part](name) for part, names in carriers.items() for name in names)


def _acceptable(accept: str, declared: frozenset[str]) -> bool:
    """Whether an ``Accept`` value admits one of the ``declared`` media types (``*/*`` and ``type/*`` ranges)."""
    for item in accept.split(","):
        wanted = _media(item)
        if wanted in ("", "*/*") or wanted in declared:
            return True
        if wanted.endswith("/*") and any(m.startswith(wanted[:-1]) for m in declared):
            return True
    return False


def _invalid(status: int, case: dict[str, Any], request: dict[str, Any], facts: OperationFacts) -> str | None:
    """400/422: a negative case, a malformed Content-Type probe, or a form that cannot carry the body."""
    negative = _negative_parts(case)
    if negative:
        section = "15.5.1" if status == 400 else "15.5.21"
        return f"the request was generated invalid ({', '.join(sorted(negative))}): RFC 9110 {section}"
    if _scenario(case) == "malformed_content_type":
        return "the request's Content-Type is malformed: RFC 9110 15.5.1"
    if facts.form_nesting and _media(_header(request, "content-type")) in _FORMS:
        return "a form cannot carry the body's nested objects: RFC 9110 15.5.1"
    return None


def _unauthorised(status: int, case: dict[str, Any], request: dict[str, Any], facts: OperationFacts) -> str | None:
    """401/403 on a secured operation: no credentials sent where its schemes put them, or generated ones."""
    if not facts.secured:
        return None
    section = "15.5.2" if status == 401 else "15.5.4"
    if facts.credentials is None or not _sent_credentials(request, facts.credentials):
        return f"the request carried no credentials for a secured operation: RFC 9110 {section}"
    parts = {_CREDENTIAL_PARTS[p] for p, names in facts.credentials.items() if names}
    if _negative_parts(case) & (parts | {"*"}):
        return f"the request's credentials were generated invalid: RFC 9110 {section}"
    return None


def _not_found(status: int, case: dict[str, Any], request: dict[str, Any], facts: OperationFacts) -> str | None:
    """404 on a path template with a parameter: the id names nothing the service holds."""
    return "the path parameter names no resource the service holds: RFC 9110 15.5.5" if facts.path_parameter else None


def _wrong_method(status: int, case: dict[str, Any], request: dict[str, Any], facts: OperationFacts) -> str | None:
    """405: the request's method is not the operation's (schemathesis' ``unspecified_http_method`` probe)."""
    method = str(request.get("method", "")).upper()
    if _scenario(case) == "unspecified_http_method" or method != facts.method:
        return f"{method or 'the method'} is not a method of the operation: RFC 9110 15.5.6"
    return None


def _not_acceptable(status: int, case: dict[str, Any], request: dict[str, Any], facts: OperationFacts) -> str | None:
    """406: the request's ``Accept`` admits none of the media types the responses declare."""
    accept = _header(request, "accept")
    if accept is not None and facts.response_media and not _acceptable(accept, facts.response_media):
        return f"Accept {accept!r} names no media type the responses declare: RFC 9110 15.5.7"
    return None


def _unsupported(status: int, case: dict[str, Any], request: dict[str, Any], facts: OperationFacts) -> str | None:
    """415: a Content-Type the request body does not declare, or schemathesis' content-type probes."""
    sent = _media(_header(request, "content-type"))
    if _scenario(case) in _CONTENT_TYPE_PROBES or (sent and sent not in facts.request_media):
        return f"Content-Type {sent or '(none)'!r} is not one the request body declares: RFC 9110 15.5.16"
    return None


def _unwritten(status: int, case: dict[str, Any], request: dict[str, Any], facts: OperationFacts) -> str | None:
    """501: a generated service's operation whose handler is not written yet."""
    return "the operation's handler is not written yet: RFC 9110 15.6.2"


_Rule = Callable[[int, dict[str, Any], dict[str, Any], OperationFacts], "str | None"]
#: Status → the rule that says whether HTTP forces it for a request (module docstring: sources).
_RULES: dict[int, _Rule] = {
    400: _invalid, 422: _invalid, 401: _unauthorised, 403: _unauthorised, 404: _not_found, 405: _wrong_method,
    406: _not_acceptable, 415: _unsupported, 501: _unwritten,
}  # fmt: skip


def forced_reason(
    status: int, case: dict[str, Any], request: dict[str, Any], facts: OperationFacts | None
) -> str | None:
    """Why HTTP forces ``status`` for this request (a document gap), or None (a contract break).

    Args:
        status: the response's status code.
        case: the NDJSON case (``{"method", "path", "meta": {...}, ...}``).
        request: the NDJSON interaction's request (``{"method", "uri", "headers": {name: [values]}, ...}``).
        facts: the operation's :class:`OperationFacts`; None (an operation the document does not have) → None.

    Returns:
        A short reason naming the RFC 9110 section, e.g. ``"the request was generated invalid (body): RFC 9110
        15.5.1"``; None for a status no rule covers (2xx, 3xx, 5xx other than 501, any other 4xx).
    """
    rule = _RULES.get(status)
    return None if rule is None or facts is None else rule(status, case, request, facts)
