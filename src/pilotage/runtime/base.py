"""The execution-runtime contract: run versions of a service and split traffic between them.

A *workload* is one version of one service (a directory holding a generated service). The runtime starts it as
an :class:`Instance` reachable over HTTP (:class:`InstanceRuntime`), and a :class:`Route` sends each request to one
instance chosen by integer weights that sum to 100 (:class:`RouteRuntime`). :class:`Runtime` is both, plus
:meth:`Runtime.close`; a backend is chosen by URL (``local:`` today, see :mod:`pilotage.registry`).

Everything that crosses the contract is plain data (dataclasses of str, int, float, dict, Path), never a process
handle or a proxy object, so a runtime that manages remote pods can return the same values. Every runtime must pass
``tests/contract/test_runtime.py``.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "Instance",
    "InstanceHealth",
    "InstanceRuntime",
    "Route",
    "RouteRuntime",
    "RouteStats",
    "Runtime",
    "VersionStats",
    "Waker",
    "Workload",
    "scratch_instance",
    "scratch_workload",
]


@dataclass(frozen=True)
class Workload:
    """What to run.

    Attributes:
        service: service name (``checkout``).
        version: version label, unique per service (``v1``, a commit sha ...).
        path: directory of the service (holds ``app/main.py`` for generated services).
        env: extra environment variables (e.g. ``PILOTAGE_FAULT_ERROR_RATE=0.3``).
        port: TCP port on 127.0.0.1; 0 lets the runtime choose a free one.
        command: the start command line of a service's descriptor (``pilotage.yaml`` ``start``, with ``{port}``,
            ``{prepared}`` and ``{python}`` placeholders, run by ``/bin/sh`` in ``path``); "" runs a generated
            service (``python -m uvicorn app.main:app``).
        prepared: the commit's prepared folder (``{prepared}``, :mod:`pilotage.fleet.prepare`); "" when none.
        health_path: the path that answers 200 once the instance is ready.
        data_dir: the instance's data folder (``{data}`` of the descriptor's start command and env; created before
            the start); "" when none.
    """

    service: str
    version: str
    path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    command: str = ""
    prepared: str = ""
    health_path: str = "/healthz"
    data_dir: str = ""


@dataclass
class Instance:
    """A running workload: ``url`` is ``http://HOST:PORT``; ``pid`` its OS process id (0 if none)."""

    workload: Workload
    url: str
    port: int
    pid: int = 0
    log_path: Path | None = None


@dataclass(frozen=True)
class InstanceHealth:
    """What :meth:`InstanceRuntime.health` saw.

    Attributes:
        running: the instance's process (container) is alive.
        ready: it answered ``GET /healthz`` with 200 just now (implies ``running``).
        exit_code: its exit status once it ended (negative: killed by that signal), None while running or unknown.
    """

    running: bool
    ready: bool
    exit_code: int | None = None


#: What a cold route calls on its first request: an async callable without argument that brings a backend up
#: (start an instance, then :meth:`RouteRuntime.set_weights` with ``backends``).
Waker = Callable[[], Awaitable[None]]


@dataclass
class Route:
    """A traffic split: ``url`` of the stable entry point, ``weights`` version → percent (sum 100).

    A route whose ``backends`` and ``weights`` are both empty is *cold*: see :meth:`RouteRuntime.create_route`.
    ``metrics_url`` is where the route's own per-version request metrics are served in Prometheus text
    (``http_requests_total{version, method, status}``, ``http_request_duration_seconds{version, method}``), on a
    listener apart from ``url`` so every path of ``url`` reaches the service; "" when the runtime serves none.
    """

    name: str
    url: str
    port: int
    backends: dict[str, Instance] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)
    metrics_url: str = ""


@dataclass(frozen=True)
class VersionStats:
    """Request statistics of one version behind a route.

    Attributes:
        requests: requests sent to this version since the route was created.
        errors: of those, answers with status ≥ 500 and requests that failed to reach it (connection errors).
        mean_latency_ms, p95_latency_ms: over the last ``latency_window`` requests, from the route's forwarding a
            request to its receiving the version's full answer (or the failure), ms; None before the first request.
            p95 is the nearest-rank percentile (the smallest sample ≥ 95 % of the window).
        latency_window: how many recent requests the latency figures cover (bounded by the runtime).
        last_request_at: Unix time (s) of the last request, None before the first.
    """

    requests: int = 0
    errors: int = 0
    mean_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    latency_window: int = 0
    last_request_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the statistics as a JSON-serialisable dict (the attribute names as keys)."""
        return asdict(self)


@dataclass(frozen=True)
class RouteStats:
    """A snapshot of a route's statistics: ``versions`` version → :class:`VersionStats`; times in Unix s.

    ``versions`` keeps every version the route ever had a backend for (counters are never reset). ``wakes`` counts
    the cold route's wake-ups; ``last_wake_s`` is the last one's duration, from the first request held to the route
    having a backend again, seconds (None before the first wake-up).
    """

    name: str
    started_at: float
    last_request_at: float | None
    versions: dict[str, VersionStats] = field(default_factory=dict)
    wakes: int = 0
    last_wake_s: float | None = None

    @property
    def requests(self) -> int:
        """Requests sent to any version."""
        return sum(v.requests for v in self.versions.values())

    def idle_s(self, now: float | None = None) -> float:
        """Seconds from the last request (from the route's creation when it has had none) to ``now`` (Unix s)."""
        now = time.time() if now is None else now
        return max(0.0, now - (self.last_request_at if self.last_request_at is not None else self.started_at))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RouteStats:
        """The snapshot :meth:`to_dict` returned (``requests`` is derived again, not read)."""
        return cls(
            name=str(data["name"]),
            started_at=float(data["started_at"]),
            last_request_at=data.get("last_request_at"),
            versions={version: VersionStats(**stats) for version, stats in (data.get("versions") or {}).items()},
            wakes=int(data.get("wakes", 0)),
            last_wake_s=data.get("last_wake_s"),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"name", "started_at", "last_request_at", "requests", "versions": {v: {...}}, "wakes", ...}``.

        Keys are the attribute names plus ``requests``; ``versions`` maps each version to its statistics' dict.
        """
        return {
            "name": self.name,
            "started_at": self.started_at,
            "last_request_at": self.last_request_at,
            "requests": self.requests,
            "versions": {version: stats.to_dict() for version, stats in self.versions.items()},
            "wakes": self.wakes,
            "last_wake_s": self.last_wake_s,
        }


class InstanceRuntime(ABC):
    """Start, watch and stop instances of workloads (async: every call may do I/O)."""

    @abstractmethod
    async def start(self, workload: Workload, *, ready_timeout_s: float = 30.0) -> Instance:
        """Start ``workload`` and wait until it answers ``GET <workload.health_path>`` with 200.

        Raises:
            InputError: the workload cannot be run (e.g. its folder holds no service).
            ConfigError: the requested port is already in use (the message names the port); a descriptor's start
                command exited, never opened its port or its health path never answered 200 (names the field).
            BackendError: a generated service exited or was not ready within ``ready_timeout_s``; the message
                quotes its log.
        """

    @abstractmethod
    async def stop(self, instance: Instance) -> None:
        """Stop ``instance`` (gracefully, then forcibly). Idempotent; an instance of another runtime is ignored."""

    @abstractmethod
    async def health(self, instance: Instance) -> InstanceHealth:
        """Return whether ``instance`` runs and answers its health path now; never raises for a dead instance."""

    @abstractmethod
    async def log_tail(self, instance: Instance, lines: int = 20) -> list[str]:
        """Return the last ``lines`` non-blank lines of the instance's output (stdout + stderr), oldest first.

        Registered secrets are masked. An instance whose output is gone gives ``[]``.
        """


class RouteRuntime(ABC):
    """Create stable routes in front of instances and split their traffic by weight, by route name."""

    @abstractmethod
    async def create_route(
        self,
        name: str,
        backends: dict[str, Instance],
        weights: dict[str, int],
        port: int = 0,
        *,
        waker: Waker | None = None,
    ) -> Route:
        """Open route ``name`` (on ``port``, 0 = any) splitting requests between ``backends`` by ``weights``.

        Every request through the route is counted per version, and a backend that cannot be reached answers
        502 (a 5xx); the counters are served at :attr:`Route.metrics_url` and returned by :meth:`route_stats`.

        With ``backends`` and ``weights`` both ``{}`` the route is *cold* (so is one given ``{}`` by
        :meth:`set_weights`). A request to a cold route without ``waker`` gets 503 at once. With a ``waker``, the
        route holds the request, and every one arriving meanwhile (bounded by the runtime, 503 beyond), calls
        ``waker()`` once, and forwards them as soon as the route has a backend again (the waker is expected to start
        an instance and call :meth:`set_weights` with ``backends``); a request held longer than the runtime's wake
        timeout (60 s by default), or held when the waker raises, gets 503 with the reason. Each wake-up's
        duration is reported (:attr:`RouteStats.wakes`, :attr:`RouteStats.last_wake_s`).

        Raises:
            InputError: a route called ``name`` is open, or the weights are invalid (see :meth:`set_weights`).
            ConfigError: the port is in use.
        """

    @abstractmethod
    async def set_weights(
        self, name: str, weights: dict[str, int], backends: dict[str, Instance] | None = None
    ) -> None:
        """Change the split of route ``name``; the next request uses it.

        With ``backends`` (version → instance), the route's backend set is replaced by it together with the
        weights, atomically (a request sees either the old set and split or the new ones): a canary is added to a
        live route, or removed, this way. ``weights={}`` with ``backends={}`` makes the route cold.

        Routes returned earlier by :meth:`get_route` are snapshots and keep the old weights.

        Raises:
            InputError: no open route has that name, a weight is not an integer ≥ 0, the weights do not sum to
                100 (unless both are empty), or they name a version the route has (or would have) no backend for.
        """

    @abstractmethod
    async def get_route(self, name: str) -> Route | None:
        """Return a snapshot of the open route called ``name`` (current weights), or None."""

    @abstractmethod
    async def route_stats(self, name: str) -> RouteStats:
        """Return the per-version statistics of route ``name``.

        Raises:
            InputError: no open route has that name.
        """

    @abstractmethod
    async def close_route(self, name: str) -> None:
        """Close route ``name``: its entry point stops answering, its instances keep running. Idempotent."""


class Runtime(InstanceRuntime, RouteRuntime):
    """An execution runtime: instances and routes, closed together (also as ``async with``)."""

    url: str = ""

    @abstractmethod
    async def close(self) -> None:
        """Close every route, then stop every instance this runtime started. Idempotent."""

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


@contextlib.asynccontextmanager
async def scratch_workload(
    runtime: InstanceRuntime, workload: Workload, *, ready_timeout_s: float
) -> AsyncIterator[Instance]:
    """Start ``workload`` as a throw-away instance, yield it, and always stop it (any kind of service).

    The caller chooses every field of the workload: for a service with a descriptor (``pilotage.yaml``) its
    ``command``, ``prepared``, ``health_path`` and the descriptor's ``env``; :func:`scratch_instance` builds the
    workload of a generated service.

    Raises:
        ConfigError, BackendError, InputError: as :meth:`InstanceRuntime.start`.
    """
    instance = await runtime.start(workload, ready_timeout_s=ready_timeout_s)
    try:
        yield instance
    finally:
        await runtime.stop(instance)


@contextlib.asynccontextmanager
async def scratch_instance(
    runtime: InstanceRuntime, *, service: str, version: str, path: Path, data_dir: Path, ready_timeout_s: float
) -> AsyncIterator[Instance]:
    """Start a throw-away instance of a generated service for testing or load-testing, yield it, always stop it.

    The instance gets a fresh SQLite file ``data_dir/service.db`` (``PILOTAGE_DB_PATH``, the generated-service
    convention) and no injected faults. A service with a descriptor starts with :func:`scratch_workload`.

    Raises:
        ConfigError, BackendError: as :meth:`InstanceRuntime.start`.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    db_path = data_dir / "service.db"
    db_path.unlink(missing_ok=True)
    env = {"PILOTAGE_DB_PATH": str(db_path), "PILOTAGE_FAULT_ERROR_RATE": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    workload = Workload(service, version, path, env=env)
    async with scratch_workload(runtime, workload, ready_timeout_s=ready_timeout_s) as instance:
        yield instance
