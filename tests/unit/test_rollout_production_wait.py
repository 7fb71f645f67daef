"""A rollout waits for production on its stable route: the service is timed, not the fleet keeper's start queue."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from pilotage.errors import BackendError
from pilotage.rollout.controller import RolloutController
from pilotage.runtime.base import Instance, Route, Workload
from pilotage.settings import Settings

ROUTE, VERSION = "service:notes", "aaaaaaaaaaaa"
READY_S = 0.5


class _Routes:
    """The one runtime call the wait makes (``get_route``), answering from ``self.route``."""

    def __init__(self) -> None:
        self.route: Route | None = None

    async def get_route(self, name: str) -> Route | None:
        return self.route if name == ROUTE else None


def _serving() -> Route:
    workload = Workload(service="notes", version=VERSION, path="/nowhere")
    instance = Instance(workload=workload, url="http://127.0.0.1:1", port=1, pid=4242)
    return Route(name=ROUTE, url="http://127.0.0.1:2", port=2, backends={VERSION: instance}, weights={VERSION: 100})


def _controller() -> tuple[RolloutController, _Routes]:
    routes = _Routes()
    runtime: Any = routes  # only get_route is called on this path
    return RolloutController(runtime, Settings(service_ready_timeout_s=READY_S)), routes


async def _keeper_start(controller: RolloutController, routes: _Routes, *, for_s: float, opens: bool) -> None:
    """What the keeper does: mark the start, work ``for_s`` seconds (prepare, start), then open the route or not."""
    with controller.production.production_starting(ROUTE):
        await asyncio.sleep(for_s)
        if opens:
            routes.route = _serving()


def test_a_keeper_start_longer_than_the_readiness_timeout_is_waited_for() -> None:
    async def main() -> tuple[Instance, float]:
        controller, routes = _controller()
        began = time.monotonic()
        keeper = asyncio.create_task(_keeper_start(controller, routes, for_s=3 * READY_S, opens=True))
        await asyncio.sleep(0)  # the keeper marks its start first, as it does from the service.added event
        instance = await controller.production.production_instance(ROUTE, VERSION)
        await keeper
        return instance, time.monotonic() - began

    instance, waited_s = asyncio.run(main())
    assert instance.pid == 4242
    assert waited_s >= 3 * READY_S  # three times the timeout: the keeper's work, not counted


def test_without_a_keeper_start_the_wait_ends_at_the_readiness_timeout() -> None:
    async def main() -> float:
        controller, _ = _controller()
        began = time.monotonic()
        with pytest.raises(BackendError, match=r"serves nothing \(not open\), not the production version"):
            await controller.production.production_instance(ROUTE, VERSION)
        return time.monotonic() - began

    waited_s = asyncio.run(main())
    assert READY_S <= waited_s < READY_S + 5.0


def test_after_a_keeper_start_that_opened_nothing_the_service_gets_the_whole_timeout_then_fails() -> None:
    async def main() -> float:
        controller, routes = _controller()
        began = time.monotonic()
        keeper = asyncio.create_task(_keeper_start(controller, routes, for_s=2 * READY_S, opens=False))
        await asyncio.sleep(0)
        with pytest.raises(BackendError, match="not open"):
            await controller.production.production_instance(ROUTE, VERSION)
        await keeper
        return time.monotonic() - began

    waited_s = asyncio.run(main())
    assert waited_s >= 3 * READY_S  # 2 × for the keeper, then the service's own timeout


def test_nested_and_concurrent_marks_are_counted() -> None:
    controller, _ = _controller()
    with controller.production.production_starting(ROUTE):
        with controller.production.production_starting(ROUTE):
            assert controller.production._starting == {ROUTE: 2}
        assert controller.production._starting == {ROUTE: 1}
    assert controller.production._starting == {}
    with pytest.raises(RuntimeError), controller.production.production_starting(ROUTE):
        raise RuntimeError("prepare failed")
    assert controller.production._starting == {}  # a failed start unmarks too
