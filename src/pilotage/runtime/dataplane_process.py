"""The data plane in a process of its own: route proxies and synthetic traffic beside the control plane, not in it.

Why: with the data plane on a thread of the control plane's process (:mod:`pilotage.runtime.dataplane`), both share
one GIL. Measured with 100 services under ``pilotage serve`` (README, *A fleet under one control plane*), the
control plane's loop logged 156 stalls of 1 s or more, most of them idle in ``select`` — waiting for the GIL — and
production, proxied by the same process, was timed at p50 0.9 s against the canary's 0.2 s: the latency the judge
measured included Pilotage's own queueing. Envoy and Linkerd keep their proxies out of the control plane for the
same reason. Here the proxies and generators run in a child process (a core of its own on a 2-core machine): the
control plane's work no longer delays a proxied request, and the proxy's work no longer delays a deadline.

**Parent side** (:class:`DataPlaneProcess`): ``python -m pilotage.runtime.dataplane_process`` started with pipes
and the allow-list environment of every process a run starts (:func:`pilotage.runtime.sandbox.sandbox_env`: none of
the operator's credentials); its stderr goes to a log file (``<home>/dataplane.log``). A generator's credentials
travel with the request that starts it (:func:`pilotage.runtime.traffic_registry.start_traffic`). Requests are
JSON lines on the child's stdin,
``{"id": n, "op": name, "args": {...}}`` (``id`` 0: no answer wanted); answers and events are JSON lines on its
stdout: ``{"id": n, "result": ...}`` or ``{"id": n, "error": {"type", "message", "hint"}}`` (re-raised in the
caller as the same :mod:`pilotage.errors` class), and ``{"event": "wake", "route": name, "wake": k}`` when a cold
route got a request: the route's waker runs on the loop that opened the route, then ``wake.done`` tells the
child whether it raised. A reader thread takes the answers, so the parent's loops never block on the pipe. If the
child exits, every outstanding and later request raises :class:`~pilotage.errors.BackendError` naming the log.

**Child side** (:func:`main`): one asyncio loop (adopted as the child's data plane, so the generator registry of
:mod:`pilotage.runtime.traffic` runs on it) holding the open :class:`~pilotage.runtime.proxy.TrafficProxy` objects by
route name. Synchronous operations run in the order they arrive; those that await (opening and closing a route,
stopping or restarting traffic) run as tasks. It exits, stopping every proxy and generator, when its stdin closes
(the control plane exited or was killed), and ignores the terminal's signals (its own session): ``Ctrl-C`` reaches
the control plane, which closes its rollouts first.

Which data plane a process uses: :func:`open_data_plane_process` (``pilotage.app.backends`` calls it when the
``data_plane`` setting is ``process``, the default) makes :func:`current` return the child's client; the local
runtime and the traffic registry then send their work there. Without it (library use, unit tests) they use the
in-process thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

from pilotage import errors
from pilotage.errors import BackendError, PilotageError
from pilotage.runtime.sandbox import sandbox_env

__all__ = ["DataPlaneProcess", "close_data_plane_process", "current", "main", "open_data_plane_process"]

#: Seconds :meth:`DataPlaneProcess.close` waits for the child to exit after closing its stdin, then kills it.
CLOSE_GRACE_S = 10.0


class DataPlaneProcess:
    """A client of the data-plane child process (see the module docstring).

    Args:
        log_path: file the child's stderr is appended to; None: discarded.

    Raises (every method):
        BackendError: the child exited (the log file is named).
        InputError, ConfigError, BackendError: what the operation raised in the child.
    """

    def __init__(self, log_path: Path | None = None) -> None:
        self.log_path = log_path
        self._ids = itertools.count(1)
        self._pending: dict[int, concurrent.futures.Future[Any]] = {}
        self._wakers: dict[str, tuple[Callable[[], Awaitable[None]], asyncio.AbstractEventLoop]] = {}
        self._lock = threading.Lock()
        self._dead = ""
        log: IO[bytes] | int = subprocess.DEVNULL
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "pilotage.runtime.dataplane_process"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, start_new_session=True, env=sandbox_env(),
            )  # fmt: skip
        finally:
            if not isinstance(log, int):
                log.close()
        self._reader = threading.Thread(target=self._read, name="pilotage-dataplane-reader", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._proc.pid

    @property
    def alive(self) -> bool:
        """True while the child runs."""
        return self._proc.poll() is None and not self._dead

    # -- requests ------------------------------------------------------------------------------------------------

    async def call(self, op: str, **args: Any) -> Any:
        """Run ``op`` in the child and return its result (JSON values).

        Raises:
            BackendError: the child is gone; otherwise what the operation raised there.
        """
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        request_id = next(self._ids)
        with self._lock:
            self._pending[request_id] = future
        try:
            self._write({"id": request_id, "op": op, "args": args})
        except BackendError:
            with self._lock:
                self._pending.pop(request_id, None)
            raise
        return await asyncio.wrap_future(future)

    def send(self, op: str, **args: Any) -> None:
        """Run ``op`` in the child without waiting for it (its errors go to the child's log)."""
        self._write({"id": 0, "op": op, "args": args})

    def on_wake(self, route: str, waker: Callable[[], Awaitable[None]] | None) -> None:
        """Run ``waker`` on the calling loop when the cold route ``route`` gets a request (None: forget it)."""
        if waker is None:
            self._wakers.pop(route, None)
        else:
            self._wakers[route] = (waker, asyncio.get_running_loop())

    def _write(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            if self._dead:
                raise BackendError(self._dead, hint=self._hint())
            stdin = self._proc.stdin
            try:
                assert stdin is not None
                stdin.write(line)
                stdin.flush()
            except (OSError, ValueError):
                self._dead = f"the data plane process (pid {self._proc.pid}) is gone"
                raise BackendError(self._dead, hint=self._hint()) from None

    def _hint(self) -> str:
        where = f"its log is {self.log_path}" if self.log_path else "it has no log"
        return f"{where}; restart the control plane"

    # -- answers and events --------------------------------------------------------------------------------------

    def _read(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None
        with stdout:
            for line in stdout:
                with contextlib.suppress(ValueError):
                    self._dispatch(json.loads(line))
        code = self._proc.wait()
        with self._lock:
            self._dead = self._dead or f"the data plane process (pid {self._proc.pid}) exited with code {code}"
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(BackendError(self._dead, hint=self._hint()))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("event") == "wake":
            self._wake(str(message.get("route")), int(message.get("wake", 0)))
            return
        with self._lock:
            future = self._pending.pop(int(message.get("id", 0)), None)
        if future is None or future.done():
            return
        error = message.get("error")
        if error is None:
            future.set_result(message.get("result"))
        else:
            future.set_exception(_rebuilt(error))

    def _wake(self, route: str, wake: int) -> None:
        """Run the route's waker on its loop; tell the child when it returned (or what it raised)."""
        entry = self._wakers.get(route)
        if entry is None:
            self._answer_wake(wake, f"route {route!r} has no waker in the control plane")
            return
        waker, loop = entry

        async def run() -> None:
            await waker()

        def done(future: concurrent.futures.Future[None]) -> None:
            failure = future.exception() if not future.cancelled() else "the waker was cancelled"
            self._answer_wake(wake, None if failure is None else str(failure))

        try:
            asyncio.run_coroutine_threadsafe(run(), loop).add_done_callback(done)
        except RuntimeError:  # the loop is closed
            self._answer_wake(wake, f"the control plane's loop of route {route!r} is closed")

    def _answer_wake(self, wake: int, error: str | None) -> None:
        with contextlib.suppress(BackendError):
            self.send("wake.done", wake=wake, error=error)

    # -- lifetime ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the child's stdin: it stops every proxy and generator and exits. Idempotent.

        Kills it if it has not exited within :data:`CLOSE_GRACE_S`.
        """
        with self._lock:
            stdin = self._proc.stdin
            if stdin is not None and not stdin.closed:
                with contextlib.suppress(OSError):
                    stdin.close()
        try:
            self._proc.wait(timeout=CLOSE_GRACE_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=CLOSE_GRACE_S)


def _rebuilt(error: dict[str, Any]) -> PilotageError:
    """The :mod:`pilotage.errors` exception the child sent (``BackendError`` for a type not found there)."""
    kind = getattr(errors, str(error.get("type")), None)
    if not (isinstance(kind, type) and issubclass(kind, PilotageError)) or kind is errors.PolicyDenied:
        kind = BackendError
    return kind(str(error.get("message", "the data plane failed")), hint=error.get("hint"))


_CURRENT: DataPlaneProcess | None = None


def current() -> DataPlaneProcess | None:
    """The data-plane process this process sends its routes and traffic to, or None (the in-process thread)."""
    return _CURRENT


def open_data_plane_process(log_path: Path | None = None) -> DataPlaneProcess:
    """Start the data-plane child (unless one runs) and make it :func:`current`; return it."""
    global _CURRENT
    if _CURRENT is None or not _CURRENT.alive:
        if _CURRENT is not None:
            _CURRENT.close()  # a dead child: its pipes
        _CURRENT = DataPlaneProcess(log_path)
    return _CURRENT


def close_data_plane_process() -> None:
    """Stop the current data-plane child (its routes and traffic end with it); the thread is used again."""
    global _CURRENT
    child, _CURRENT = _CURRENT, None
    if child is not None:
        child.close()


def main() -> None:
    """The child: serve the parent's requests until stdin closes (see the module docstring)."""
    from pilotage.runtime.dataplane_child import serve

    protocol = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever prints goes to the log, never into the protocol stream
    asyncio.run(serve(sys.stdin.buffer, protocol))


if __name__ == "__main__":
    main()
