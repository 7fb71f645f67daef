"""The stable routes' bookkeeping of managed services' production (issue 17): what a rollout waits for and wakes.

A managed service's rollout runs on the stable route the fleet keeper (:mod:`pilotage.fleet.keeper`) opens for
its production version. :class:`ProductionRoutes` keeps what the keeper tells the rollout controller about those
routes — how to wake one scaled to zero (:meth:`~ProductionRoutes.register_waker`) and which production starts are
in progress (:meth:`~ProductionRoutes.production_starting`) — and uses it to wait for a route to serve its
production version (:meth:`~ProductionRoutes.production_instance`), waking it first when it is cold (the waker is
the keeper's). It only reads routes (``get_route``): starting, re-weighting and stopping stay with the one rollout
controller (:class:`pilotage.rollout.controller.RolloutController`, which owns one :class:`ProductionRoutes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator

from pilotage.errors import BackendError
from pilotage.runtime.base import Instance, Route, Runtime
from pilotage.settings import Settings

__all__ = ["ProductionRoutes"]


class ProductionRoutes:
    """The production side of stable routes, as the rollout controller sees it: wakers and start marks per route.

    Args:
        runtime: the runtime (only ``get_route`` is called).
        settings: ``service_ready_timeout_s``, how long a rollout waits for production to serve.
    """

    def __init__(self, runtime: Runtime, settings: Settings) -> None:
        self.runtime, self.settings = runtime, settings
        self._wakers: dict[str, Callable[[], Awaitable[None]]] = {}
        self._starting: dict[str, int] = {}  # stable route → production starts in progress (the fleet keeper's)
        self._started: dict[str, float] = {}  # stable route → monotonic time its last production start ended

    async def production_instance(self, name: str, version: str) -> Instance:
        """The instance of production ``version`` on the stable route ``name``.

        The fleet keeper opens the route when the service is added (a generated service is added by its run's
        codegen agent, moments before), so this waits up to ``service_ready_timeout_s`` for it to serve
        ``version`` — counted from the end of the keeper's last start of it (:meth:`production_starting`): a
        prepare (a venv install) or a start queued behind another is the keeper's work, bounded by its own
        timeouts, not the service's readiness.

        Raises:
            BackendError: the route does not serve ``version`` in time (names what it serves).
        """
        ready_s = float(self.settings.service_ready_timeout_s)
        deadline = time.monotonic() + ready_s
        while True:
            route = await self.runtime.get_route(name)
            if route is not None and not route.backends and name in self._wakers:
                route = await self._production_route(name)  # scaled to zero: wake it
            instance = route.backends.get(version) if route is not None else None
            if instance is not None:
                return instance
            if name in self._starting:  # the keeper is at it: time the service from the end of its start
                deadline = time.monotonic() + ready_s
            elif time.monotonic() >= (deadline := max(deadline, self._started.get(name, 0.0) + ready_s)):
                serving = ", ".join(sorted(route.backends)) if route is not None else "nothing (not open)"
                raise BackendError(
                    f"stable route {name} serves {serving or 'nothing'}, not the production version {version} the "
                    "plan starts from",
                    hint="run `pilotage up` (or restart `pilotage serve`) so production serves its recorded commit",
                )
            await asyncio.sleep(0.2)

    async def _production_route(self, name: str) -> Route:
        """The open stable route ``name``, woken first when it is scaled to zero (:meth:`register_waker`).

        Raises:
            BackendError: no such route is open.
        """
        route = await self.runtime.get_route(name)
        if route is not None and not route.backends and name in self._wakers:
            await self._wakers[name]()
            route = await self.runtime.get_route(name)
        if route is None or not route.backends:
            raise BackendError(
                f"the stable route {name} is not serving", hint="run `pilotage up` (or `pilotage serve`) first"
            )
        return route

    @contextlib.contextmanager
    def production_starting(self, route: str) -> Iterator[None]:
        """Mark the production version of the stable ``route`` as being prepared and started (the fleet keeper).

        While marked, a rollout waiting for that route to serve (:meth:`production_instance`) does not count the
        time against ``service_ready_timeout_s``. Nested and concurrent marks of one route are counted.
        """
        self._starting[route] = self._starting.get(route, 0) + 1
        try:
            yield
        finally:
            left = self._starting.pop(route) - 1
            if left > 0:
                self._starting[route] = left
            self._started[route] = time.monotonic()

    def register_waker(self, route: str, waker: Callable[[], Awaitable[None]]) -> None:
        """Remember how to wake the production version of a stable ``route`` scaled to zero (the fleet keeper)."""
        self._wakers[route] = waker

    def forget_waker(self, route: str) -> None:
        """Forget the waker of a stable ``route`` that was closed (`pilotage down`)."""
        self._wakers.pop(route, None)
