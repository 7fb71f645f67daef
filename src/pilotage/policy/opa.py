"""``http://`` / ``https://``: policies evaluated by an OPA server through its REST Data API.

The server holds the policies (e.g. ``opa run --server src/pilotage/policy/bundled policies/``); Pilotage only
asks. For ``action`` it sends, per OPA's documented Data API (https://www.openpolicyagent.org/docs/rest-api,
"Get a Document (with Input)"):

``POST {url}/v1/data/pilotage/<action>/deny`` with body ``{"input": <input>}`` → ``200 {"result": [...]}``

and the same for the optional ``needs_approval`` set. OPA answers ``200 {}`` (no ``result``) for an undefined
document: for ``deny`` that is a deny ("undefined"), for ``needs_approval`` it means the package asks for no
approval. Sets come back as JSON arrays.

``data`` given to the engine (the licence allow-list) is written once, before the first evaluation, with
``PUT {url}/v1/data/<key>`` (OPA's "Create or Overwrite a Document"); a server that refuses the write (its data
comes from a bundle) keeps its own data, which is safe: a missing allow-list denies every licence.

Fail closed: a refused connection, a timeout (``timeout_s``, default 5 s per request), a non-200 status, a body
that is not JSON or a ``result`` that is not a list each give a deny whose reason names the URL and the cause.
A real OPA binary is not available where Pilotage's tests run; they use a stand-in that implements this API with
OPA's own evaluator (``tests/fixtures/opa_standin.py``, PyPI ``opa-golib-python-bindings``), so this backend is
tested against OPA's semantics, which differ from regopy's on missing and mistyped values
(``tests/unit/test_policy_differential.py``).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pilotage.errors import BackendUnavailable, ConfigError
from pilotage.policy.base import DEFAULT_TIMEOUT_S, PolicyEngine, Verdict, encode_input, make_verdict, no_verdict

__all__ = ["OPAPolicyEngine"]


class _Unanswered(Exception):
    """The server gave no usable answer; the message is the deny reason."""


class OPAPolicyEngine(PolicyEngine):
    """Ask an OPA server (``http://host:8181``) for verdicts over its REST Data API.

    Args:
        url: the server's base URL, ``http://`` or ``https://`` (a trailing ``/`` is ignored).
        policy_dirs: accepted for the common constructor signature and ignored: the server loads its own policies.
        data: documents to write below ``data`` on the server before the first evaluation (see module doc).
        timeout_s: seconds each HTTP request may take.

    The constructor does no I/O. Thread-safe (one request at a time per call; the data write happens once).

    Raises:
        ConfigError: ``url`` is missing or not an ``http(s)://`` URL with a host.
    """

    def __init__(
        self,
        url: str | None = None,
        policy_dirs: Sequence[Path] | None = None,
        data: Mapping[str, Any] | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if url is None:
            raise ConfigError(
                "the OPA policy engine needs its server URL",
                hint="build it with pilotage.policy.open_engine(settings) or OPAPolicyEngine(settings.policy_url, ...)",
            )
        scheme, _, rest = url.partition("://")
        if scheme.lower() not in {"http", "https"} or not rest.strip("/"):
            raise ConfigError(f"not an OPA server URL: {url!r}", hint="use http://HOST:PORT, e.g. http://opa:8181")
        self.url = url.rstrip("/")
        self.data = dict(data or {})
        self.timeout_s = timeout_s
        self._data_written = False
        self._lock = threading.Lock()

    # -- HTTP ------------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        """Send one request; return (status, decoded JSON body or None).

        Raises:
            _Unanswered: connection refused/reset, timeout, or a body that is not JSON.
        """
        request = urllib.request.Request(
            self.url + path, data=body, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - http(s) only
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except TimeoutError as exc:
            raise _Unanswered(f"policy engine timeout: {self.url} gave no answer within {self.timeout_s:g} s") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError) or "timed out" in str(reason):
                raise _Unanswered(
                    f"policy engine timeout: {self.url} gave no answer within {self.timeout_s:g} s"
                ) from exc
            raise _Unanswered(f"policy engine unreachable: {self.url}: {reason}") from exc
        if not raw:
            return status, None
        try:
            return status, json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _Unanswered(f"policy engine error: {self.url}{path} answered HTTP {status} with non-JSON") from exc

    def _write_data(self) -> None:
        with self._lock:
            if self._data_written:
                return
            for key, value in self.data.items():
                try:
                    self._request("PUT", f"/v1/data/{key}", json.dumps(value, allow_nan=False).encode())
                except _Unanswered:
                    return  # retried before the next evaluation; the evaluation itself reports the outage
            self._data_written = True

    def _query(self, action: str, rule: str, input_json: str, *, optional: bool) -> list[Any]:
        path = f"/v1/data/pilotage/{action.replace('.', '/')}/{rule}"
        status, body = self._request("POST", path, b'{"input": ' + input_json.encode() + b"}")
        if status != 200:
            message = body.get("message") if isinstance(body, dict) else None
            message = message or "no message"
            raise _Unanswered(f"policy engine error: {self.url}{path} answered HTTP {status}: {message}")
        if not isinstance(body, dict) or "result" not in body:
            if optional:
                return []
            raise _Unanswered(f"no policy defines data.pilotage.{action}.{rule} (OPA answered undefined)")
        result = body["result"]
        if not isinstance(result, list):
            raise _Unanswered(
                f"policy engine error: data.pilotage.{action}.{rule} is not a set "
                f"(use: {rule} contains msg if {{ ... }})"
            )
        return result

    # -- contract ----------------------------------------------------------------------------------------------

    def evaluate(self, action: str, input: dict[str, Any]) -> Verdict:
        """Ask the server for ``deny`` and ``needs_approval`` of ``action`` (fail closed, see module doc).

        Raises:
            InputError: ``input`` is not JSON-serialisable or not an object.
        """
        package = f"data.pilotage.{action}"
        text = encode_input(action, input)
        policies = [package, self.url]
        if not action.replace(".", "").replace("_", "").isalnum():
            reason = f"no policy defines {package} (not a valid package name)"
            return no_verdict(action, reason, policies=policies, engine=self.url)
        self._write_data()
        try:
            denied = self._query(action, "deny", text, optional=False)
            pending = self._query(action, "needs_approval", text, optional=True)
        except _Unanswered as exc:
            return no_verdict(action, str(exc), policies=policies, engine=self.url)
        return make_verdict(action, denied, pending, input, policies=policies, engine=self.url)

    def check(self) -> None:
        """Reach the server: ``GET /health`` must answer 200 (OPA's health API).

        Raises:
            BackendUnavailable: the server cannot be reached or is not healthy.
        """
        try:
            status, body = self._request("GET", "/health")
        except _Unanswered as exc:
            raise BackendUnavailable(str(exc), hint=f"start the OPA server at {self.url}", url=self.url) from exc
        if status != 200:
            raise BackendUnavailable(
                f"OPA server {self.url} is not healthy: HTTP {status} {body!r}",
                hint="check the server's logs (opa run --server)",
                url=self.url,
            )
