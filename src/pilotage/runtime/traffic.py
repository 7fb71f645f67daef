"""Synthetic traffic: a bounded open-loop generator executing a traffic plan, for rollouts of services with no users.

The demo has no users, so a rollout would have nothing to measure. :class:`TrafficGenerator` sends ``rps``
requests per second (open loop: requests are launched on a fixed schedule whether or not earlier ones have
answered, as load generators such as wrk2 do to avoid coordinated omission) to ``base_url``. What it sends is a
**traffic plan** (:func:`pilotage.rollout.traffic_plan.build_traffic_plan`, JSON): requests with a method, a path
template, a weight, a JSON body and how each parameter is filled. Requests are drawn at random in proportion to
their weights (a seeded :class:`random.Random`), not in a fixed cycle: the route in front of the versions splits
by smooth weighted round-robin, and two fixed cycles alias — with five request kinds of equal weight and a 90/10
split, every tenth request, the one the canary gets, was always the same kind, so the canary saw only
``GET /healthz`` and the judge nothing (found delivering the orders example). A path
parameter filled ``from: created`` takes a field (``id``, ``petId`` ...) of an item the traffic itself created: the
answers of the plan's creating requests (``POST /pets``) are kept, at most :data:`POOL_SIZE` per request; when none
is kept yet, the creating request is sent instead (create, then use); a ``DELETE`` uses an item up. A plain list
of paths (``["/notes", "/version"]``, the API before plans) is a plan of GETs of weight 1.

Credentials: a plan's ``credentials`` hold a header name and the name of an environment variable; the value is
read from the control plane's environment when the generator is built, registered with the secret masker
(:func:`pilotage.secrets.register_secrets`) so it never lands in a log, event or report, and sent on every
request. A request whose entry names ``security`` carries the run's test principal (``PILOTAGE_TEST_PRINCIPAL``, read
from the same environment) the way that security asks (:func:`pilotage.testing.credentials.credentials_for`). The
generator is bounded: at most ``max_in_flight`` requests are outstanding (a launch is skipped, and
counted in ``skipped``, when the limit is reached) and it runs until :meth:`TrafficGenerator.stop` or
``duration_s``.

Each request carries a targeting key (header :data:`TARGETING_KEY_HEADER`, ``user-0`` … ``user-<N-1>``, drawn
uniformly from a pool of ``targeting_keys`` users), so a service whose release flag is split by targeting key
(:mod:`pilotage.runtime.flags`) serves a share of synthetic users with the flag on, as it would real ones.

Generators are registered by name (the deployment id) in the data plane's registry
(:mod:`pilotage.runtime.traffic_registry`) so the agent that rolls back or promotes a deployment can stop the traffic
another agent started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import time
import urllib.parse
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from pilotage.errors import InputError
from pilotage.httpclient import async_client
from pilotage.runtime.proxy import PROBE_HEADER, PROBE_TOKEN
from pilotage.secrets import register_secrets
from pilotage.testing.credentials import PRINCIPAL_ENV, credentials_for

__all__ = [
    "POOL_SIZE",
    "TARGETING_KEYS",
    "TARGETING_KEY_HEADER",
    "TrafficGenerator",
    "TrafficStats",
    "has_requests",
]

_log = logging.getLogger(__name__)

#: Default bound on outstanding requests; at 40 rps and the default 2 s timeout it is never reached by a healthy
#: service, and it caps sockets when a backend hangs.
MAX_IN_FLIGHT = 64
#: How often a held generator looks whether it was released (seconds).
HOLD_POLL_S = 0.05
#: Request header naming the synthetic user (the OpenFeature targeting key of generated services).
TARGETING_KEY_HEADER = "x-targeting-key"
#: Default number of synthetic users: at 1,000 keys a 5 % release reaches 50 ± 7 of them (binomial s.d.).
TARGETING_KEYS = 1000
#: Created items kept per creating request (the newest; older ones are forgotten).
POOL_SIZE = 100
#: How many creating requests deep "create, then use" goes (``/a/{x}/b/{y}`` needs two).
MAX_CREATE_DEPTH = 4
#: Fields of a created item's answer kept (scalars only, strings up to 256 characters).
MAX_ANSWER_FIELDS = 64
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_PARAM = re.compile(r"\{([^{}]+)\}")


@dataclass
class TrafficStats:
    """Counts of a generator.

    ``sent`` requests, answers by ``statuses`` (code → count) and by ``by_operation`` (plan operation → code →
    count), transport ``failures`` (no HTTP answer), launches ``skipped`` because ``max_in_flight`` requests were
    outstanding, and ``unfilled`` launches whose parameters no created item could fill (its creator failed).
    """

    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0
    skipped: int = 0
    unfilled: int = 0
    by_operation: dict[str, dict[int, int]] = field(default_factory=dict)

    def record(self, operation: str, status: int) -> None:
        """Count one answer of ``operation`` with ``status``."""
        self.statuses[status] = self.statuses.get(status, 0) + 1
        counts = self.by_operation.setdefault(operation, {})
        counts[status] = counts.get(status, 0) + 1

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrafficStats:
        """The counts :meth:`to_dict` returned (status codes back to integers)."""
        return cls(
            sent=int(data.get("sent", 0)),
            statuses={int(k): int(v) for k, v in (data.get("statuses") or {}).items()},
            failures=int(data.get("failures", 0)),
            skipped=int(data.get("skipped", 0)),
            unfilled=int(data.get("unfilled", 0)),
            by_operation={
                op: {int(k): int(v) for k, v in counts.items()}
                for op, counts in (data.get("by_operation") or {}).items()
            },
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the counts as a JSON-serialisable dict (status codes as strings)."""
        return {
            "sent": self.sent,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "failures": self.failures,
            "skipped": self.skipped,
            "unfilled": self.unfilled,
            "by_operation": {
                op: {str(k): v for k, v in sorted(counts.items())} for op, counts in sorted(self.by_operation.items())
            },
        }


@dataclass(frozen=True)
class _Planned:
    """One request of a plan, checked: ``operation`` label, method, path template, weight, body, parameters."""

    operation: str
    method: str
    path: str
    weight: int
    body: Any = None
    params: tuple[dict[str, Any], ...] = ()
    creates: bool = False
    security: Any = None


@dataclass(frozen=True)
class _Call:
    """One request ready to send."""

    planned: _Planned
    path: str
    query: dict[str, Any]
    headers: dict[str, str]
    values: dict[str, Any]


def _planned(item: Any, index: int) -> _Planned:
    """Check one entry of a plan's ``requests``.

    Raises:
        InputError: not a mapping with a known method, a ``/path`` and a positive integer weight.
    """
    ok = isinstance(item, Mapping) and str(item.get("method", "")).upper() in _METHODS
    ok = ok and isinstance(item.get("path"), str) and str(item["path"]).startswith("/")
    weight = item.get("weight", 1) if isinstance(item, Mapping) else 0
    if not ok or not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
        raise InputError(
            f"traffic plan request {index} {str(item)[:120]} is not a request",
            hint="build the plan with pilotage.rollout.traffic_plan.build_traffic_plan",
        )
    assert isinstance(item, Mapping)  # for the type checker: ``ok`` checked it
    params = tuple(dict(p) for p in item.get("params") or () if isinstance(p, Mapping))
    method = str(item["method"]).upper()
    return _Planned(
        str(item.get("operation") or f"{method} {item['path']}"),
        method,
        str(item["path"]),
        weight,
        item.get("body"),
        params,
        bool(item.get("creates")),
        item.get("security"),
    )


def _plan_requests(traffic: list[str] | Mapping[str, Any]) -> list[_Planned]:
    """The requests of a plan, or of a list of GET paths.

    Raises:
        InputError: no request, a path not starting with ``/``, or a malformed plan entry.
    """
    if isinstance(traffic, Mapping):
        raw = traffic.get("requests")
        requests = [_planned(item, i) for i, item in enumerate(raw if isinstance(raw, list) else [])]
    else:
        if not traffic or any(not isinstance(p, str) or not p.startswith("/") for p in traffic):
            raise InputError(
                f"traffic paths {traffic!r} must be a non-empty list of /paths", hint="pass e.g. ['/items']"
            )
        requests = [_Planned(f"GET {p}", "GET", p, 1) for p in traffic]
    if not requests:
        raise InputError(
            "the traffic plan has no request", hint="pass a plan with requests, or paths such as ['/items']"
        )
    return requests


def has_requests(traffic: list[str] | Mapping[str, Any] | None) -> bool:
    """True when ``traffic`` (a plan, or a list of paths) has something to send."""
    if isinstance(traffic, Mapping):
        return bool(traffic.get("requests"))
    return bool(traffic)


def _credential_headers(traffic: Any, environ: Mapping[str, str] | None) -> dict[str, str]:
    """``{header: value}`` of a plan's credentials, the value read from ``environ`` and registered as a secret."""
    creds = traffic.get("credentials") if isinstance(traffic, Mapping) else None
    if not isinstance(creds, Mapping) or not creds.get("header") or not creds.get("env"):
        return {}
    value = (os.environ if environ is None else environ).get(str(creds["env"]), "")
    if not value:
        _log.warning("traffic credentials: environment variable %s is not set; requests go without them", creds["env"])
        return {}
    register_secrets([value])
    return {str(creds["header"]): value}


def _text(value: Any) -> str:
    """A parameter value as sent: JSON spelling for booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class TrafficGenerator:
    """Open-loop traffic at a fixed rate, executing a traffic plan (or GETs of a list of paths).

    Args:
        base_url: where to send requests (a proxy URL, ``http://127.0.0.1:PORT``).
        traffic: a traffic plan (``{"requests": [...], "credentials": ...}``, see the module docstring) or request
            paths sent in turn, e.g. ``["/orders", "/discount-codes"]``.
        rps: requests per second (> 0).
        duration_s: stop by itself after this many seconds (None: run until :meth:`stop`).
        timeout_s: per-request timeout, seconds.
        max_in_flight: bound on outstanding requests.
        targeting_keys: size of the pool of synthetic users the requests' targeting keys are drawn from.
        seed: seed of the draws (None: a different sequence each run).
        environ: where the credential's environment variable is read (default ``os.environ``).
        probe: mark every request as a probe (:data:`~pilotage.runtime.proxy.PROBE_HEADER`): a route of this
            process splits them evenly among its live versions (what the traffic registry's generators send).

    Raises:
        InputError: no request, a path does not start with ``/``, a malformed plan, ``rps`` is not positive or
            ``targeting_keys`` is below 1.
    """

    def __init__(
        self,
        base_url: str,
        traffic: list[str] | Mapping[str, Any],
        rps: float,
        *,
        duration_s: float | None = None,
        timeout_s: float = 2.0,
        max_in_flight: int = MAX_IN_FLIGHT,
        targeting_keys: int = TARGETING_KEYS,
        seed: int | None = None,
        environ: Mapping[str, str] | None = None,
        probe: bool = False,
    ) -> None:
        self.requests = _plan_requests(traffic)
        self.traffic = (
            traffic  # the plan as given (:func:`~pilotage.runtime.traffic_registry.restart_traffic` compares it)
        )
        if rps <= 0:
            raise InputError(f"traffic rate {rps} rps must be positive", hint="set synthetic_traffic_rps > 0")
        if targeting_keys < 1:
            raise InputError(f"traffic targeting_keys {targeting_keys} must be at least 1", hint="e.g. 1000 users")
        self.targeting_keys = targeting_keys
        self._random = random.Random(seed)
        self.base_url = base_url.rstrip("/")
        self.rps = rps
        self.duration_s = duration_s
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.stats = TrafficStats()
        self._environ = environ
        self._headers = _credential_headers(traffic, environ)
        self.probe = probe
        self._probe = {PROBE_HEADER: PROBE_TOKEN} if probe else {}
        self._principal = (os.environ if environ is None else environ).get(PRINCIPAL_ENV, "")
        self._schemes = traffic.get("schemes") if isinstance(traffic, Mapping) else None
        self._weights = [r.weight for r in self.requests]
        self._by_operation = {r.operation: r for r in self.requests}
        self._pools: dict[str, deque[dict[str, Any]]] = {}
        self._wanted: dict[str, set[str]] = {}
        for request in self.requests:
            for param in request.params:
                if param.get("from") == "created" and param.get("by"):
                    self._wanted.setdefault(str(param["by"]), set()).update(map(str, param.get("fields") or ["id"]))
        self._task: asyncio.Task[None] | None = None
        self._scheduled = False  # start() is queued on another thread's loop (start_on)
        self._owner: asyncio.AbstractEventLoop | None = None  # the loop that started it there: it ends with it
        self._pending: set[asyncio.Task[None]] = set()
        #: True: launch nothing until it is False again (``hold_traffic``; set from any thread).
        self.held = False
        #: Operations (``"GET /x"``) the service answered 501 (unwritten handlers): no longer sent.
        self.unwritten: set[str] = set()

    def with_traffic(self, traffic: list[str] | Mapping[str, Any]) -> TrafficGenerator:
        """A new generator (not started) sending ``traffic`` at this one's address, rate, bounds and environment.

        What :func:`~pilotage.runtime.traffic_registry.restart_traffic` starts in its place.

        Raises:
            InputError: ``traffic`` is not a valid plan.
        """
        return TrafficGenerator(
            self.base_url, traffic, self.rps, duration_s=self.duration_s, timeout_s=self.timeout_s,
            max_in_flight=self.max_in_flight, targeting_keys=self.targeting_keys, environ=self._environ,
            probe=self.probe,
        )  # fmt: skip

    @property
    def paths(self) -> list[str]:
        """The path templates of the requests, in plan order."""
        return [r.path for r in self.requests]

    @property
    def running(self) -> bool:
        """True while the generator launches requests (or is about to: :meth:`start_on`)."""
        task = self._task
        return ((task is None and self._scheduled) or (task is not None and not task.done())) and not self._orphan()

    def _orphan(self) -> bool:
        """Started from a loop that is closed now (:meth:`start_on`): nobody will stop it, so it stops itself."""
        return self._owner is not None and self._owner.is_closed()

    def start(self) -> TrafficGenerator:
        """Start sending on the running loop; return self. Calling it twice does nothing."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"traffic-{self.base_url}")
        return self

    def start_on(self, loop: asyncio.AbstractEventLoop) -> TrafficGenerator:
        """Start sending on ``loop``, another thread's (:meth:`start` queued there); running from now on.

        It stops by itself once the loop it was started from is closed (as it did when it ran on that loop).
        """
        with contextlib.suppress(RuntimeError):  # no running loop: nothing owns it
            self._owner = asyncio.get_running_loop()
        self._scheduled = True
        loop.call_soon_threadsafe(self.start)
        return self

    async def stop(self) -> TrafficStats:
        """Stop launching, wait for outstanding requests (at most ``timeout_s``) and return the counts. Idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self.stats

    async def _run(self) -> None:
        interval = 1.0 / self.rps
        started = timeline = time.monotonic()
        async with async_client(timeout=self.timeout_s) as client:
            try:
                index = 0
                while (self.duration_s is None or time.monotonic() - started < self.duration_s) and not self._orphan():
                    if self.held:  # no request while held; on release a fresh timeline (no catch-up burst)
                        await asyncio.sleep(HOLD_POLL_S)
                        timeline, index = time.monotonic(), 0
                        continue
                    self._launch(client)
                    index += 1
                    # schedule on the ideal timeline (no drift from slow iterations)
                    delay = timeline + index * interval - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
            finally:
                if self._pending:
                    await asyncio.wait(set(self._pending), timeout=self.timeout_s)
                for task in list(self._pending):
                    task.cancel()

    async def burst(self, count: int) -> TrafficStats:
        """Send ``count`` requests of the plan now, one after another (closed loop); return the counts.

        What a rollout's warm-up sends (:meth:`pilotage.rollout.controller.RolloutController.warm_up`): the same
        draws, "create, then use", credentials and targeting keys as the open-loop traffic, but each request waits
        for the previous answer, so a cold process is not flooded and a created item exists before it is used.
        Stops early once ``duration_s`` (when set) has passed. Never raises for the service's behaviour: a request
        without an answer counts in ``failures``, one whose parameters cannot be filled in ``unfilled``.
        """
        started = time.monotonic()
        async with async_client(timeout=self.timeout_s) as client:
            for _ in range(count):
                if self.duration_s is not None and time.monotonic() - started >= self.duration_s:
                    break
                call = self._next_call()
                if call is not None:
                    await self._one(client, call)
        return self.stats

    def _next_call(self) -> _Call | None:
        """The next request of the plan (or its creator), drawn by weight; None (counted ``unfilled``) if unfillable."""
        call = self._fill(self._random.choices(self.requests, weights=self._weights)[0], 0)
        if call is None:
            self.stats.unfilled += 1
        return call

    def _launch(self, client: httpx.AsyncClient) -> None:
        """Launch the next request of the plan (or its creator), unless ``max_in_flight`` are outstanding."""
        if len(self._pending) >= self.max_in_flight:
            self.stats.skipped += 1
            return
        call = self._next_call()
        if call is None:
            return
        task = asyncio.create_task(self._one(client, call))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _created(self, param: dict[str, Any], values: dict[str, Any], consume: bool) -> bool | _Planned:
        """Fill ``param`` from a created item into ``values`` (``consume``: use the item up, a DELETE).

        Returns True when filled, the creating request when no item exists yet, False when no item can fill it.
        """
        pool = self._pools.get(str(param.get("by")))
        if not pool:
            return self._by_operation.get(str(param.get("by"))) or False
        entry = pool.pop() if consume else self._random.choice(pool)
        value = next((entry["answer"][f] for f in param.get("fields") or ["id"] if f in entry["answer"]), None)
        if value is None:
            return False
        values[str(param["name"])] = value
        for name, known in entry["values"].items():
            values.setdefault(name, known)
        return True

    def _fill(self, request: _Planned, depth: int) -> _Call | None:
        """The call for ``request``: created items first (deepest path parameter first), then the static values.

        Returns its creator's call when an item it needs is not created yet, None when nothing can fill it.
        """
        values: dict[str, Any] = {}
        created = [p for p in request.params if p.get("from") == "created"]
        for param in reversed(created):
            if str(param.get("name")) in values:
                continue
            found = self._created(param, values, consume=request.method == "DELETE" and param is created[-1])
            if found is False:
                return None
            if isinstance(found, _Planned):
                return self._fill(found, depth + 1) if depth < MAX_CREATE_DEPTH else None
        query: dict[str, Any] = {}
        headers = self._auth(request, query)
        for param in request.params:
            where, name = param.get("in"), str(param.get("name"))
            if param.get("from") == "created" or "value" not in param:
                continue
            if where == "path":
                values[name] = param["value"]
            elif where == "query":
                value = param["value"]
                query[name] = [_text(v) for v in value] if isinstance(value, list) else _text(value)
            elif where == "header":
                headers[name] = _text(param["value"])
        if any(name not in values for name in _PARAM.findall(request.path)):
            return None
        path = _PARAM.sub(lambda m: urllib.parse.quote(_text(values[m.group(1)]), safe=""), request.path)
        return _Call(request, path, query, headers, values)

    def _auth(self, request: _Planned, query: dict[str, Any]) -> dict[str, str]:
        """The headers of ``request``'s credentials (the plan's, and the run's test principal).

        The principal goes where the request's ``security`` asks
        (:func:`~pilotage.testing.credentials.credentials_for`); API keys in the query are added to ``query``.
        """
        found = credentials_for(request.security, self._schemes, self._principal) if request.security else None
        if not found:
            return dict(self._headers)
        query.update(found["query"])
        cookies = "; ".join(f"{k}={v}" for k, v in found["cookies"].items())
        return {**found["headers"], **({"Cookie": cookies} if cookies else {}), **self._headers}

    async def _one(self, client: httpx.AsyncClient, call: _Call) -> None:
        self.stats.sent += 1
        planned = call.planned
        headers = {
            **call.headers,
            TARGETING_KEY_HEADER: f"user-{self._random.randrange(self.targeting_keys)}",
            **self._probe,
        }
        options: dict[str, Any] = {"headers": headers}
        if call.query:
            options["params"] = call.query
        if planned.body is not None:
            options["json"] = planned.body
        try:
            response = await client.request(planned.method, self.base_url + call.path, **options)
        except httpx.HTTPError:
            self.stats.failures += 1
            return
        self.stats.record(planned.operation, response.status_code)
        if response.status_code == 501:
            self._unwritten(planned)
        if planned.creates and 200 <= response.status_code < 300:
            self._keep(planned, call, response)

    def skip_unwritten(self, operations: Iterable[str]) -> None:
        """Stop sending ``operations`` (``"GET /x"``) as if they had answered 501 here (see :meth:`_unwritten`).

        What a generator taking over from another one at the same version learned (blue-green's switch: the
        preview's generator learned green's unwritten operations); operations not in the plan are ignored.
        """
        skipped = set(operations)
        for planned in [r for r in self.requests if r.operation in skipped]:
            self._unwritten(planned)

    def _unwritten(self, planned: _Planned) -> None:
        """Stop sending an operation the service answered 501, unless it is the last one with weight.

        501 declares the operation unwritten (a generated service's ``app/handlers.py`` stub): not a rollout error.
        The operation is remembered in :attr:`unwritten`.
        """
        self.unwritten.add(planned.operation)
        weights = [0 if r is planned else w for r, w in zip(self.requests, self._weights, strict=True)]
        if any(weights):
            self._weights = weights

    def _keep(self, planned: _Planned, call: _Call, response: httpx.Response) -> None:
        """Keep the item a creating request answered with (scalar fields), if it has a field a user wants."""
        try:
            answer = response.json()
        except ValueError:
            return
        if not isinstance(answer, dict):
            return
        fields = {
            str(k): v
            for k, v in list(answer.items())[:MAX_ANSWER_FIELDS]
            if isinstance(v, int | float | bool) or (isinstance(v, str) and len(v) <= 256)
        }
        if not set(fields) & self._wanted.get(planned.operation, set()):
            return
        entry = {"values": dict(call.values), "answer": fields}
        self._pools.setdefault(planned.operation, deque(maxlen=POOL_SIZE)).append(entry)
