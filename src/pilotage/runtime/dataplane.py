"""The data plane's event loop: route proxies and synthetic traffic on a thread of their own.

Every request a rollout's synthetic traffic sends crosses three HTTP hops of Python work in the process that sends
it: the generator's client, the route proxy's server, the proxy's client to the version. With a few rollouts at
once (40 requests/s each, and blue-green's preview) that work filled the control plane's asyncio loop: measured
under ``pilotage serve`` with 5 deliveries, the proxies and generators were 54 % of the loop thread's samples and
the loop was never idle for 45 s on end — so every deadline measured on it (a version's readiness, the production
route a rollout waits for, a preview's smoke check) expired while the services were fine, queued behind hundreds
of ready proxy callbacks. The flag server (:mod:`pilotage.runtime.flags`) already had a thread for the same reason.

:data:`DATA_PLANE` runs one asyncio loop on a daemon thread (started on first use, once per process); the local
runtime starts and stops its proxies there and the rollout controller's generators run there. The control plane
awaits that work through :meth:`DataPlane.run` (``run_coroutine_threadsafe`` + ``wrap_future``: cancelling the
awaiting task cancels the work), and a cold route's waker — control-plane code (the keeper, the bus) — runs back on
the loop it belongs to (:func:`on_loop`). The GIL still shares one core's worth of Python between the two loops,
but it switches every 5 ms: the control plane's callbacks no longer wait for every queued proxy callback first.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["DATA_PLANE", "DataPlane", "on_loop"]

T = TypeVar("T")


class DataPlane:
    """One asyncio loop on a daemon thread, started at the first :meth:`loop` call (see the module docstring)."""

    def __init__(self, name: str = "pilotage-dataplane") -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def loop(self) -> asyncio.AbstractEventLoop:
        """The data plane's running loop (its thread started now if it is not running)."""
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(target=self._serve, args=(loop, ready), name=self.name, daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make ``loop``, running on the calling thread, the data plane's: no thread is started.

        The data-plane child process's own loop (:mod:`pilotage.runtime.dataplane_child`).
        """
        with self._lock:
            self._loop, self._thread = loop, threading.current_thread()

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    def on_thread(self) -> bool:
        """True when called from the data plane's own thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run the coroutine ``work`` on the data plane's loop and return its result to the awaiting loop.

        Raises:
            whatever ``work`` raises; CancelledError when the awaiting task is cancelled (``work`` is cancelled too).
        """
        loop = self.loop()
        if self.on_thread():
            return await work
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, loop))

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Call the plain function ``fn(*args)`` on the data plane's thread (where the objects it changes live)."""

        async def call_there() -> T:
            return fn(*args)

        return await self.run(call_there())


def on_loop(work: Callable[[], Awaitable[None]], loop: asyncio.AbstractEventLoop) -> Callable[[], Awaitable[None]]:
    """``work`` (an async callable of ``loop``'s, e.g. a route's waker) made callable from any loop; runs on ``loop``.

    Raises:
        whatever ``work`` raises, in the calling loop.
    """

    async def there() -> None:
        if asyncio.get_running_loop() is loop:
            await work()
            return

        async def call() -> None:
            await work()

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call(), loop))

    return there


#: The process's data plane (route proxies, synthetic traffic).
DATA_PLANE = DataPlane()
