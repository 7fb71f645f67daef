"""The execution-runtime contract: run versions of a service and split traffic between them.

A *workload* is one version of one service (a directory holding a generated service). The runtime starts
it as an :class:`Instance` reachable over HTTP, and a :class:`Route` (a traffic-splitting proxy) sends each
request to one instance chosen by integer weights that sum to 100.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

__all__ = ["Instance", "Route", "Runtime", "Workload", "scratch_instance"]


@dataclass(frozen=True)
class Workload:
    """What to run.

    Attributes:
        service: service name (``checkout``).
        version: version label, unique per service (``v1``, a commit sha ...).
        path: directory of the service (holds ``app/main.py`` for generated services).
        env: extra environment variables (e.g. ``PILOTAGE_FAULT_ERROR_RATE=0.3``).
        port: TCP port on 127.0.0.1; 0 lets the runtime choose a free one.
    """

    service: str
    version: str
    path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0


@dataclass
class Instance:
    """A running workload: ``url`` is ``http://127.0.0.1:PORT``; ``pid`` its OS process id (0 if none)."""

    workload: Workload
    url: str
    port: int
    pid: int = 0
    log_path: Path | None = None


@dataclass
class Route:
    """A traffic split: ``url`` of the proxy, ``weights`` version → percent (sum 100)."""

    name: str
    url: str
    port: int
    backends: dict[str, Instance] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)


class Runtime(ABC):
    """Contract of an execution runtime (async: starting processes and proxies is I/O)."""

    url: str = ""

    @abstractmethod
    async def start(self, workload: Workload, *, ready_timeout_s: float = 30.0) -> Instance:
        """Start ``workload`` and wait until it answers HTTP.

        Raises:
            ConfigError: the requested port is already in use (the message names the port).
            BackendError: the process exited or did not become ready; the message carries its log tail.
        """

    @abstractmethod
    async def stop(self, instance: Instance) -> None:
        """Stop the instance (SIGTERM, then SIGKILL after a grace period). Idempotent."""

    @abstractmethod
    async def route(self, name: str, backends: dict[str, Instance], weights: dict[str, int], port: int = 0) -> Route:
        """Start a traffic-splitting proxy in front of ``backends`` with ``weights`` (percent, sum 100)."""

    @abstractmethod
    async def set_weights(self, route: Route, weights: dict[str, int]) -> None:
        """Change the split of ``route``; takes effect for the next request. Raises InputError if sum ≠ 100."""

    @abstractmethod
    async def close(self) -> None:
        """Stop every proxy and instance this runtime started. Idempotent."""

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


@contextlib.asynccontextmanager
async def scratch_instance(
    runtime: Runtime, *, service: str, version: str, path: Path, data_dir: Path, ready_timeout_s: float
) -> AsyncIterator[Instance]:
    """Start a throw-away instance for testing or load-testing, yield it, and always stop it.

    The instance gets a fresh SQLite file ``data_dir/service.db`` (``PILOTAGE_DB_PATH``) and no injected faults.

    Raises:
        ConfigError, BackendError: as :meth:`Runtime.start`.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    db_path = data_dir / "service.db"
    db_path.unlink(missing_ok=True)
    env = {"PILOTAGE_DB_PATH": str(db_path), "PILOTAGE_FAULT_ERROR_RATE": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    instance = await runtime.start(Workload(service, version, path, env=env), ready_timeout_s=ready_timeout_s)
    try:
        yield instance
    finally:
        await runtime.stop(instance)
