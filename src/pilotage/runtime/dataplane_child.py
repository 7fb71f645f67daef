"""The data-plane child's side: route proxies and traffic generators served to the control plane over a pipe.

Started by :class:`pilotage.runtime.dataplane_process.DataPlaneProcess` (protocol in that module's docstring). The
operations, each ``args`` → result (JSON values):

* ``route.open`` ``{name, backends: {version: url}, weights, port, wake: bool, wake_timeout_s, max_held}`` →
  ``{url, port, metrics_url, weights}``: a :class:`~pilotage.runtime.proxy.TrafficProxy` started here; with
  ``wake`` its waker asks the parent (``wake`` event) and waits for ``wake.done``.
* ``route.weights`` ``{name, weights, backends | null}`` → the new weights; ``route.stats`` ``{name}`` →
  :meth:`~pilotage.runtime.base.RouteStats.to_dict`; ``route.close`` ``{name}`` → null (idempotent).
* ``traffic.start`` ``{name, base_url, traffic, rps, options}``, ``traffic.hold`` ``{names, held}`` → names found,
  ``traffic.restart`` ``{name, traffic, unwritten}`` → whether a generator now runs, ``traffic.stop`` ``{name}`` →
  :meth:`~pilotage.runtime.traffic.TrafficStats.to_dict` or null, ``traffic.unwritten`` ``{name}`` → operations:
  the functions of :mod:`pilotage.runtime.traffic`, whose registry lives in this process.
* ``wake.done`` ``{wake, error | null}``: the parent's waker returned (or raised ``error``).

Errors of :mod:`pilotage.errors` are answered as ``{type, message, hint}``; anything else as a ``BackendError``
naming the operation (the traceback goes to stderr, the child's log).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import threading
import traceback
from collections.abc import Callable
from typing import IO, Any

from pilotage.errors import BackendError, InputError, PilotageError
from pilotage.runtime.dataplane import DATA_PLANE
from pilotage.runtime.proxy import TrafficProxy
from pilotage.runtime.traffic_registry import (
    hold_traffic,
    restart_traffic,
    running_traffic,
    start_traffic,
    stop_traffic,
    traffic_unwritten,
)

__all__ = ["ChildDataPlane", "serve"]

#: Seconds the child gives its generators and proxies to stop once its stdin closed; then it exits regardless.
CLOSE_TIMEOUT_S = 3.0


class ChildDataPlane:
    """The child's routes and wake-ups; :meth:`handle` answers one request line (see the module docstring).

    Args:
        emit: writes one message (a dict) to the parent.
    """

    def __init__(self, emit: Callable[[dict[str, Any]], None]) -> None:
        self.emit = emit
        self.proxies: dict[str, TrafficProxy] = {}
        self._wakes: dict[int, asyncio.Future[str | None]] = {}
        self._wake_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self.ops: dict[str, Callable[..., Any]] = {
            "route.open": self.open_route,
            "route.weights": self.set_weights,
            "route.stats": lambda name: self._proxy(name).stats().to_dict(),
            "route.close": self.close_route,
            "traffic.start": self.start_traffic,
            "traffic.hold": hold_traffic,  # async, like every traffic operation: run in arrival order
            "traffic.restart": self.restart_traffic,
            "traffic.stop": self.stop_traffic,
            "traffic.unwritten": self.unwritten,
            "wake.done": self.wake_done,
        }

    # -- dispatch ------------------------------------------------------------------------------------------------

    def handle(self, line: bytes) -> None:
        """Run the request in ``line``: a synchronous operation now, one that awaits as a task."""
        try:
            message = json.loads(line)
            request_id, op, args = int(message.get("id", 0)), str(message["op"]), dict(message.get("args") or {})
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        function = self.ops.get(op)
        if function is None:
            self._answer(request_id, error=InputError(f"unknown data plane operation {op!r}"))
            return
        try:
            result = function(**args)
        except Exception as exc:  # noqa: BLE001 - answered to the parent, never raised here
            self._answer(request_id, error=exc, op=op)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(self._finish(request_id, op, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._answer(request_id, result=result)

    async def _finish(self, request_id: int, op: str, work: Any) -> None:
        try:
            result = await work
        except Exception as exc:  # noqa: BLE001 - answered to the parent
            self._answer(request_id, error=exc, op=op)
        else:
            self._answer(request_id, result=result)

    def _answer(self, request_id: int, *, result: Any = None, error: BaseException | None = None, op: str = "") -> None:
        if error is not None and not isinstance(error, PilotageError):
            traceback.print_exception(error)
            error = BackendError(f"data plane operation {op} failed: {error!r}")
        if request_id == 0:
            if error is not None:
                print(f"data plane: {op}: {error}", flush=True)  # noqa: T201 - stdout is the child's log
            return
        if error is None:
            self.emit({"id": request_id, "result": result})
        else:
            assert isinstance(error, PilotageError)
            kind = type(error).__name__
            self.emit({"id": request_id, "error": {"type": kind, "message": error.message, "hint": error.hint}})

    # -- routes --------------------------------------------------------------------------------------------------

    def _proxy(self, name: str) -> TrafficProxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise InputError(f"no open route {name!r}", hint=f"open routes: {sorted(self.proxies) or 'none'}")
        return proxy

    async def open_route(
        self, name: str, backends: dict[str, str], weights: dict[str, int], port: int = 0, wake: bool = False,
        wake_timeout_s: float = 30.0, max_held: int = 100,
    ) -> dict[str, Any]:  # fmt: skip
        """Start a proxy for route ``name``; return its addresses and weights.

        Raises:
            InputError: a route called ``name`` is open, or the weights are invalid. ConfigError: port in use.
        """
        if name in self.proxies:
            raise InputError(f"route {name!r} already exists", hint="close it first or choose another name")
        waker = self._remote_waker(name) if wake else None
        proxy = TrafficProxy(
            name, backends, weights, port=port, waker=waker, wake_timeout_s=wake_timeout_s, max_held=max_held
        )
        self.proxies[name] = proxy  # reserved while it starts: a second open of the name is refused
        try:
            await proxy.start()
        except BaseException:
            self.proxies.pop(name, None)
            raise
        return {"url": proxy.url, "port": proxy.port, "metrics_url": proxy.metrics_url, "weights": proxy.weights}

    def set_weights(self, name: str, weights: dict[str, int], backends: dict[str, str] | None = None) -> dict[str, int]:
        """Change route ``name``'s split (and backends); return the weights now in force."""
        proxy = self._proxy(name)
        proxy.set_weights(weights, backends)
        return proxy.weights

    async def close_route(self, name: str) -> None:
        """Stop route ``name``'s proxy. Idempotent."""
        proxy = self.proxies.pop(name, None)
        if proxy is not None:
            await proxy.stop()

    def _remote_waker(self, name: str) -> Callable[[], Any]:
        async def wake() -> None:
            key = next(self._wake_ids)
            future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
            self._wakes[key] = future
            try:
                self.emit({"event": "wake", "route": name, "wake": key})
                error = await future
            finally:
                self._wakes.pop(key, None)
            if error:
                raise BackendError(f"waking route {name!r} failed: {error}")

        return wake

    def wake_done(self, wake: int, error: str | None = None) -> None:
        """The parent's waker for wake-up ``wake`` returned (``error`` None) or raised."""
        future = self._wakes.get(int(wake))
        if future is not None and not future.done():
            future.set_result(error)

    # -- traffic -------------------------------------------------------------------------------------------------

    @staticmethod
    async def start_traffic(name: str, base_url: str, traffic: Any, rps: float, options: dict[str, Any]) -> None:
        """:func:`~pilotage.runtime.traffic_registry.start_traffic` here."""
        await start_traffic(name, base_url, traffic, rps, **options)

    @staticmethod
    async def restart_traffic(name: str, traffic: Any, unwritten: list[str]) -> bool:
        """:func:`~pilotage.runtime.traffic_registry.restart_traffic` here; True when a generator now runs."""
        return await restart_traffic(name, traffic, unwritten) is not None

    @staticmethod
    async def stop_traffic(name: str) -> dict[str, Any] | None:
        """:func:`~pilotage.runtime.traffic_registry.stop_traffic` here; its counts as a dict."""
        stats = await stop_traffic(name)
        return None if stats is None else stats.to_dict()

    @staticmethod
    async def unwritten(name: str) -> list[str]:
        """The operations generator ``name`` found unwritten (501), sorted; [] when there is none."""
        return sorted(await traffic_unwritten(name))

    async def close(self) -> None:
        """Stop every generator, then every proxy (all at once), and the tasks still running."""
        await asyncio.gather(*(stop_traffic(name) for name in running_traffic()))
        await asyncio.gather(*(self.close_route(name) for name in list(self.proxies)))
        for task in list(self._tasks):
            task.cancel()


async def serve(requests: IO[bytes], protocol: IO[bytes]) -> None:
    """Answer the request lines of ``requests`` on ``protocol`` until ``requests`` ends; then close everything."""
    loop = asyncio.get_running_loop()
    DATA_PLANE.adopt(loop)  # the generators run on this loop
    write_lock = threading.Lock()

    def emit(message: dict[str, Any]) -> None:
        with write_lock:
            protocol.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
            protocol.flush()

    child = ChildDataPlane(emit)
    ended = asyncio.Event()

    def read() -> None:
        for line in requests:
            loop.call_soon_threadsafe(child.handle, line)
        loop.call_soon_threadsafe(ended.set)

    threading.Thread(target=read, name="dataplane-requests", daemon=True).start()
    await ended.wait()
    with contextlib.suppress(TimeoutError):  # a control plane that died: its successor may want the ports now
        await asyncio.wait_for(child.close(), CLOSE_TIMEOUT_S)
