"""Feature flags served over the OpenFeature Remote Evaluation Protocol (OFREP), in-process on a thread of their own.

A :class:`FlagServer` holds boolean release flags and answers the OFREP core API, so any OpenFeature SDK with an
OFREP provider (``openfeature-provider-ofrep`` in Python) reads them. The protocol is the OpenAPI document
``service/openapi.yaml`` of github.com/open-feature/protocol (OFREP 0.1.0):

=======================================  ==========================================================================
``POST /ofrep/v1/evaluate/flags/{key}``  body ``{"context": {"targetingKey": ..., ...}}`` → 200
                                         ``{key, value, reason, variant, metadata, cacheable}``; 404
                                         ``{key, errorCode: FLAG_NOT_FOUND, errorDetails}``; 400 ``{key, errorCode:
                                         PARSE_ERROR | INVALID_CONTEXT | TARGETING_KEY_MISSING, errorDetails}``
``POST /ofrep/v1/evaluate/flags``        bulk: 200 ``{flags: [success or failure per flag]}`` with an ``ETag``;
                                         304 when ``If-None-Match`` names the current ETag; 400 ``{errorCode, ...}``
``GET /ofrep/v1/configuration``          extension: ``{name, capabilities: {caching: {enabled: false}, ...}}``
=======================================  ==========================================================================

**Evaluation.** A flag is released to ``percent`` (0–100) of the targeting keys: the key gets ``true`` iff
``bucket(flag_key, targeting_key) < percent``, where :func:`bucket` is ``int(sha256(flag_key + "/" +
targeting_key)[:8 bytes], big-endian) mod 100`` — stable across processes and machines (Python's ``hash()`` is
salted per process), uniform (the modulo bias of a 64-bit integer mod 100 is below 1e-17), and monotone: raising
``percent`` only adds keys, so a growing release never flips a key back to off. Per flag the buckets are
independent, like flagd's ``fractional`` operation (which hashes ``flagKey + targetingKey`` with murmur3).

Reasons (OpenFeature spec, "Flag evaluation: reason"): ``SPLIT`` when 0 < percent < 100 (pseudorandom
assignment, a targeting key is required: without one the answer is 400 ``TARGETING_KEY_MISSING``), ``STATIC``
at 0 or 100 % (the answer does not depend on the context), ``DISABLED`` after :meth:`FlagServer.flag_off` (value
``false``, the code's safe default). Variants are ``"on"`` and ``"off"``. Every success says ``cacheable: false``
(the OFREP field that lets a provider cache an answer): a rollback must reach the next request, not the next
cache expiry.

**Untrusted input.** Bodies over :data:`MAX_BODY_BYTES` answer 413; flag keys over :data:`MAX_KEY_CHARS` or
outside :data:`FLAG_KEY` are not found (404); a targeting key that is not a string or is longer than
:data:`MAX_TARGETING_KEY_CHARS` is an invalid context (400); malformed JSON (including nesting too deep to
decode) is a parse error (400). No input produces a 500 or a traceback.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response

from pilotage.errors import BackendError, InputError
from pilotage.runtime.proxy import EmbeddedServer, bind_local

__all__ = [
    "FLAG_KEY",
    "MAX_BODY_BYTES",
    "MAX_KEY_CHARS",
    "MAX_TARGETING_KEY_CHARS",
    "OFREP_EVALUATE_PATH",
    "FlagServer",
    "FlagState",
    "bucket",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Path of the OFREP evaluation endpoints (bulk; ``/{key}`` appended for one flag).
OFREP_EVALUATE_PATH = "/ofrep/v1/evaluate/flags"
_CONFIGURATION_PATH = "/ofrep/v1/configuration"
#: Largest request body accepted, bytes (an evaluation context is a few hundred bytes).
MAX_BODY_BYTES = 16 * 1024
#: Longest flag key, characters.
MAX_KEY_CHARS = 128
#: Longest targeting key, characters.
MAX_TARGETING_KEY_CHARS = 256
#: What a flag key looks like: no ``/`` (so ``flag_key + "/" + targeting_key`` is unambiguous), no spaces.
FLAG_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def bucket(flag_key: str, targeting_key: str) -> int:
    """Return the bucket 0..99 of ``targeting_key`` for ``flag_key`` (formula in the module docstring)."""
    digest = hashlib.sha256(f"{flag_key}/{targeting_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


@dataclass(frozen=True)
class FlagState:
    """One boolean release flag.

    Attributes:
        key: the flag key (:data:`FLAG_KEY`).
        percent: share of targeting keys that get ``true``, 0..100.
        enabled: False after :meth:`FlagServer.flag_off` (every evaluation is then ``false``, reason DISABLED).
        updated_at: Unix time (s) of the last change.
    """

    key: str
    percent: int
    enabled: bool
    updated_at: float

    @property
    def serving_on(self) -> bool:
        """True when some targeting key gets ``true``."""
        return self.enabled and self.percent > 0


class _Failure(Exception):
    """An OFREP error answer: HTTP ``status`` and the spec's ``errorCode``."""

    def __init__(self, status: int, code: str, details: str) -> None:
        super().__init__(details)
        self.status, self.code, self.details = status, code, details


def _evaluate(state: FlagState, context: dict[str, Any]) -> dict[str, Any]:
    """Return the OFREP success body of ``state`` for the evaluation ``context`` (see the module docstring).

    Raises:
        _Failure: TARGETING_KEY_MISSING, a split flag evaluated without a targeting key.
    """
    metadata: dict[str, Any] = {"percent": state.percent if state.enabled else 0}
    if not state.enabled:
        value, reason = False, "DISABLED"
    elif state.percent in (0, 100):
        value, reason = state.percent == 100, "STATIC"
    else:
        targeting_key = context.get("targetingKey")
        if not targeting_key:
            raise _Failure(400, "TARGETING_KEY_MISSING", f"flag {state.key!r} is split by targetingKey")
        metadata["bucket"] = bucket(state.key, targeting_key)
        value, reason = metadata["bucket"] < state.percent, "SPLIT"
    variant = "on" if value else "off"
    return {"key": state.key, "value": value, "reason": reason, "variant": variant, "metadata": metadata}


def _context(raw: bytes) -> dict[str, Any]:
    """Return the evaluation context of an OFREP request body (``{}`` for an empty body).

    Raises:
        _Failure: PARSE_ERROR (not a JSON object) or INVALID_CONTEXT (context or targetingKey malformed).
    """
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise _Failure(400, "PARSE_ERROR", f"request body is not JSON: {str(exc)[:100]}") from None
    if not isinstance(body, dict):
        raise _Failure(400, "PARSE_ERROR", "request body must be a JSON object {context}")
    context = body.get("context", {})
    if not isinstance(context, dict):
        raise _Failure(400, "INVALID_CONTEXT", "context must be a JSON object")
    targeting_key = context.get("targetingKey")
    if targeting_key is not None and not isinstance(targeting_key, str):
        raise _Failure(400, "INVALID_CONTEXT", "context.targetingKey must be a string")
    if targeting_key is not None and len(targeting_key) > MAX_TARGETING_KEY_CHARS:
        raise _Failure(400, "INVALID_CONTEXT", f"context.targetingKey is over {MAX_TARGETING_KEY_CHARS} characters")
    return context


async def _read_body(receive: Receive) -> bytes:
    """Read a request body of at most :data:`MAX_BODY_BYTES`.

    Raises:
        _Failure: 413 when the body is larger.
    """
    body = bytearray()
    while True:
        message = await receive()
        body.extend(message.get("body", b""))
        if len(body) > MAX_BODY_BYTES:
            raise _Failure(413, "GENERAL", f"request body is over {MAX_BODY_BYTES} bytes")
        if not message.get("more_body", False):
            return bytes(body)


def _etag(payload: dict[str, Any]) -> str:
    """Strong entity tag of a bulk answer: the first 128 bits of the SHA-256 of its canonical JSON."""
    return '"' + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32] + '"'


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return ""


class FlagServer:
    """A flag store with an OFREP server, run on the caller's asyncio loop (embedded uvicorn, 127.0.0.1).

    Flag changes (:meth:`set_rollout`, :meth:`flag_off`) take effect on the next evaluation: nothing is cached
    here, and answers tell providers not to cache either. Flags change on the caller's thread and are evaluated on
    the server's own thread: a change replaces a flag's :class:`FlagState` whole (one dict assignment), so an
    evaluation sees the old or the new state, never a mix.

    Args:
        name: used in task names and messages.
    """

    def __init__(self, name: str = "flags") -> None:
        self.name = name
        self.port = 0
        self._flags: dict[str, FlagState] = {}
        self._evaluations: Counter[tuple[str, str]] = Counter()
        self._server: EmbeddedServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL an OFREP provider is given (``http://127.0.0.1:PORT``); valid after :meth:`start`."""
        return f"http://127.0.0.1:{self.port}"

    def set_rollout(self, key: str, percent: int) -> FlagState:
        """Release flag ``key`` (created if new) to ``percent`` % of targeting keys; return its new state.

        Raises:
            InputError: ``key`` is not a flag key (:data:`FLAG_KEY`, at most :data:`MAX_KEY_CHARS`) or ``percent``
                is not an integer in 0..100.
        """
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise InputError(f"flag rollout percent {percent!r} for {key!r}", hint="give an integer 0..100")
        return self._put(key, percent, enabled=True)

    def flag_off(self, key: str) -> FlagState:
        """Turn flag ``key`` off for every targeting key (the rollback; an unknown key is created off).

        Raises:
            InputError: ``key`` is not a flag key.
        """
        current = self._flags.get(key)
        return self._put(key, current.percent if current else 0, enabled=False)

    def get(self, key: str) -> FlagState:
        """Return the state of flag ``key``.

        Raises:
            InputError: no such flag.
        """
        state = self._flags.get(key)
        if state is None:
            raise InputError(f"no feature flag {key!r}", hint=f"set_rollout() it first; flags: {sorted(self._flags)}")
        return state

    def flags(self) -> dict[str, FlagState]:
        """Return every flag, key → state."""
        return dict(self._flags)

    def evaluations(self) -> dict[tuple[str, str], int]:
        """Return the successful evaluations served, ``(flag key, variant "on"/"off")`` → count."""
        return dict(self._evaluations)

    def _put(self, key: str, percent: int, *, enabled: bool) -> FlagState:
        if not isinstance(key, str) or len(key) > MAX_KEY_CHARS or not FLAG_KEY.fullmatch(key):
            raise InputError(
                f"feature flag key {str(key)[:40]!r} is not valid",
                hint=f"use letters, digits, '.', '_' or '-', at most {MAX_KEY_CHARS} characters",
            )
        state = FlagState(key, percent, enabled, time.time())
        self._flags[key] = state
        return state

    async def start(self, port: int = 0, ready_timeout_s: float = 10.0) -> str:
        """Bind 127.0.0.1:``port`` (0 = a free port), start serving on a thread of its own and return the URL.

        The server gets its own thread and event loop: a flag is read on every request of a flagged service, so a
        control plane busy with its own work (policy evaluation, writing an incident) must not delay it — a
        rollback's flag-off reaches the service's next request, not the next free moment of the control plane.

        Raises:
            ConfigError: the port is in use.
            BackendError: the server did not start within ``ready_timeout_s``.
        """
        sock = bind_local(port)
        self.port = sock.getsockname()[1]
        server = EmbeddedServer(self, f"flag server {self.name!r}")
        thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])), name=f"flag server {self.name}", daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread
        deadline = time.monotonic() + ready_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                await self.stop()
                raise BackendError(
                    f"flag server on port {self.port} did not start within {ready_timeout_s} s",
                    hint="check that nothing else grabbed the port and retry",
                    port=self.port,
                )
            await asyncio.sleep(0.01)
        return self.url

    async def stop(self) -> None:
        """Stop serving (flag values are kept; a new :meth:`start` serves them again). Idempotent."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is None or thread is None:
            return
        server.should_exit = True
        await asyncio.to_thread(thread.join, 5.0)
        if thread.is_alive():
            server.force_exit = True
            await asyncio.to_thread(thread.join, 5.0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point: route one request to the OFREP endpoints; every failure is an OFREP error body."""
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        key = path[len(OFREP_EVALUATE_PATH) + 1 :] if path.startswith(OFREP_EVALUATE_PATH + "/") else None
        try:
            if path == _CONFIGURATION_PATH and method == "GET":
                response = self._configuration()
            elif method != "POST" or (path != OFREP_EVALUATE_PATH and key is None):
                response = self._no_route(path, method)
            else:
                context = _context(await _read_body(receive))
                response = self._single(key, context) if key is not None else self._bulk(scope, context)
        except _Failure as failure:
            body = {"errorCode": failure.code, "errorDetails": failure.details}
            response = JSONResponse(body if key is None else {"key": key[:MAX_KEY_CHARS], **body}, failure.status)
        await response(scope, receive, send)

    def _single(self, key: str, context: dict[str, Any]) -> Response:
        state = self._flags.get(key)
        if state is None:
            details = f"no flag {key[:MAX_KEY_CHARS]!r} on this server"
            return JSONResponse(
                {"key": key[:MAX_KEY_CHARS], "errorCode": "FLAG_NOT_FOUND", "errorDetails": details}, 404
            )
        answer = _evaluate(state, context)
        self._evaluations[key, answer["variant"]] += 1
        return JSONResponse({**answer, "cacheable": False})

    def _bulk(self, scope: Scope, context: dict[str, Any]) -> Response:
        flags: list[dict[str, Any]] = []
        for key in sorted(self._flags):
            try:
                flags.append(_evaluate(self._flags[key], context))
            except _Failure as failure:
                flags.append({"key": key, "errorCode": failure.code, "errorDetails": failure.details})
        payload = {"flags": flags}
        etag = _etag(payload)
        if etag in [tag.strip() for tag in _header(scope, b"if-none-match").split(",")]:
            return Response(status_code=304, headers={"ETag": etag})
        for answer in flags:
            if "variant" in answer:
                self._evaluations[answer["key"], answer["variant"]] += 1
        return JSONResponse(payload, headers={"ETag": etag})

    @staticmethod
    def _configuration() -> Response:
        capabilities = {
            "caching": {"enabled": False},
            "cacheInvalidation": {"polling": {"enabled": False}},
            "flagEvaluation": {"supportedTypes": ["boolean"]},
        }
        return JSONResponse({"name": "pilotage", "capabilities": capabilities})

    @staticmethod
    def _no_route(path: str, method: str) -> Response:
        if path == OFREP_EVALUATE_PATH or path.startswith(OFREP_EVALUATE_PATH + "/"):
            return JSONResponse(
                {"errorCode": "GENERAL", "errorDetails": f"{method} is not allowed; use POST"}, 405, {"Allow": "POST"}
            )
        return JSONResponse({"errorCode": "GENERAL", "errorDetails": f"no OFREP endpoint at {path[:100]!r}"}, 404)
