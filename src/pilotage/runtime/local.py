"""``local:``: run service versions as local processes and split traffic with an in-process proxy (the default).

Each :class:`~pilotage.runtime.base.Workload` runs its descriptor's start command (``/bin/sh -c 'exec START'``,
placeholders rendered by :func:`pilotage.fleet.descriptor.render_command`), or for a generated service

    python -m uvicorn app.main:app --host 127.0.0.1 --port P

with the workload's directory as working directory (the generated-service conventions of
``docs/events-contract.md``), in its own process group, with the allow-list environment of
:mod:`pilotage.runtime.sandbox` plus ``workload.env`` (a generated service is untrusted code: it gets no Pilotage
setting and no credential of the operator), and stdout + stderr written to
``<log_dir>/<service>-<version>-<port>.log``. The runtime waits for ``GET <health_path>`` (default ``/healthz``) to
answer 200.

A route is a :class:`~pilotage.runtime.proxy.TrafficProxy` (smooth weighted round-robin) served on the data plane's
loop (:data:`~pilotage.runtime.dataplane.DATA_PLANE`, a thread of its own; its waker runs on the caller's loop), kept
by name so agents that did not create it can find, weigh, inspect and close it through the
:class:`~pilotage.runtime.base.Runtime` contract. Its per-version metrics are served on a second port of the proxy
(:attr:`~pilotage.runtime.base.Route.metrics_url`); a cold route holds requests while its waker runs (the proxy's
:data:`~pilotage.runtime.proxy.WAKE_TIMEOUT_S` and :data:`~pilotage.runtime.proxy.MAX_HELD` unless given).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import IO, NoReturn

import httpx

from pilotage.errors import BackendError, ConfigError, InputError
from pilotage.fleet.descriptor import render_command, render_env
from pilotage.httpclient import async_client
from pilotage.runtime.base import Instance, InstanceHealth, Route, RouteStats, Runtime, Waker, Workload
from pilotage.runtime.dataplane import DATA_PLANE, on_loop
from pilotage.runtime.dataplane_process import DataPlaneProcess
from pilotage.runtime.dataplane_process import current as data_plane_process
from pilotage.runtime.proxy import MAX_HELD, WAKE_TIMEOUT_S, TrafficProxy, bind_local, check_weights
from pilotage.runtime.sandbox import launch_options, sandbox_env
from pilotage.secrets import masker
from pilotage.testing.credentials import principal_env as test_principal_env

__all__ = ["LocalRuntime", "tail_lines"]

#: Seconds between SIGTERM and SIGKILL in :meth:`LocalRuntime.stop` (uvicorn finishes in-flight requests first).
STOP_GRACE_S = 5.0
#: Lines of the service log quoted in a start failure.
LOG_TAIL_LINES = 20
#: Timeout of the ``GET /healthz`` probe of :meth:`LocalRuntime.health`, seconds.
HEALTH_TIMEOUT_S = 1.0


#: Bytes read from the end of a log for its tail, and characters kept of each quoted line (a process's output can
#: be gigabytes, or one line of megabytes: a quote of it must stay small enough for an event).
TAIL_BYTES = 65536
TAIL_LINE_CHARS = 500


def tail_lines(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """Return the last ``lines`` non-blank lines of the file at ``path``; ``[]`` when it cannot be read.

    Only its last :data:`TAIL_BYTES` are read, and each line is cut to :data:`TAIL_LINE_CHARS` characters.
    """
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - TAIL_BYTES))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    kept = deque((line.rstrip() for line in text.splitlines() if line.strip()), maxlen=max(0, lines))
    return [line if len(line) <= TAIL_LINE_CHARS else line[:TAIL_LINE_CHARS] + " …" for line in kept]


_tail = tail_lines


class LocalRuntime(Runtime):
    """Runs workloads as child processes on 127.0.0.1 and routes traffic through in-process proxies.

    Args:
        url: ``local:`` (no options yet).
        log_dir: folder for the services' logs; default ``<tmp>/pilotage/logs`` (created on first start).
        wake_timeout_s: seconds a request waits for a cold route to wake (default
            :data:`~pilotage.runtime.proxy.WAKE_TIMEOUT_S`, 60).
        max_held: requests a cold route holds at most while it wakes (default :data:`~pilotage.runtime.proxy.MAX_HELD`).

    Raises:
        ConfigError: ``url`` is not a ``local:`` URL.
    """

    def __init__(
        self,
        url: str = "local:",
        *,
        log_dir: Path | None = None,
        wake_timeout_s: float = WAKE_TIMEOUT_S,
        max_held: int = MAX_HELD,
    ) -> None:
        if not url.startswith("local:"):
            raise ConfigError(f"runtime URL {url!r} is not local:", hint="use runtime_url = 'local:'", url=url)
        self.url = url
        self.log_dir = log_dir or Path(tempfile.gettempdir()) / "pilotage" / "logs"
        self.wake_timeout_s = wake_timeout_s
        self.max_held = max_held
        self._procs: dict[int, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}
        self._exit_codes: dict[int, int] = {}  # pid → exit status of the processes it stopped
        self._routes: dict[str, tuple[Route, TrafficProxy | None]] = {}

    # -- instances ---------------------------------------------------------------------------------------------

    async def start(self, workload: Workload, *, ready_timeout_s: float = 30.0) -> Instance:
        """Start ``workload`` and wait until ``GET /healthz`` answers 200.

        Raises:
            InputError: the workload directory has no ``app/main.py``.
            ConfigError: the requested port is already in use (the message names the port).
            ConfigError: a descriptor's start command exited, never opened its port or its health path never
                answered 200 (the message names the field: ``start``/``health``).
            BackendError: a generated service exited or was not ready within ``ready_timeout_s``; the message quotes the
                last line of its log and the error carries ``log_path`` and ``log_tail``.
        """
        path = Path(workload.path).resolve()
        if not workload.command and not (path / "app" / "main.py").is_file():
            raise InputError(
                f"{path} holds no app/main.py", hint="point the workload at a generated service folder", path=path
            )
        if not path.is_dir():
            raise InputError(f"{path} is not a folder", hint="check out the commit first", path=path)
        sock = bind_local(workload.port)  # ConfigError when in use; a free port when 0
        port = sock.getsockname()[1]
        sock.close()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{workload.service}-{workload.version}-{port}.log"
        log_file = log_path.open("wb")
        command = _command(workload, port)
        env = {**test_principal_env(), **workload.env}
        if workload.command:  # a descriptor's env values may name {data}, {prepared}, {python}
            if workload.data_dir:
                Path(workload.data_dir).mkdir(parents=True, exist_ok=True)
            env = render_env(env, prepared=workload.prepared, data=workload.data_dir)
        try:
            proc = subprocess.Popen(  # noqa: S603 - the operator's descriptor command, or a fixed one; no shell input
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # its own process group (stop() signals the group), the allow-list environment plus workload.env
                **launch_options(path, sandbox_env(env)),
            )
        except OSError as exc:
            log_file.close()
            raise BackendError(f"cannot start {command[0]} in {path}: {exc}", hint="check the Python install") from exc
        self._procs[proc.pid] = (proc, log_file)
        self._exit_codes.pop(proc.pid, None)  # a reused pid
        instance = Instance(
            workload=workload, url=f"http://127.0.0.1:{port}", port=port, pid=proc.pid, log_path=log_path
        )
        await self._wait_ready(instance, proc, ready_timeout_s)
        return instance

    async def _wait_ready(self, instance: Instance, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        health = instance.workload.health_path
        answered: int | None = None  # the last status the health path answered (None: the port never opened)
        async with async_client(timeout=1.0) as client:
            while True:
                if proc.poll() is not None:
                    await self.stop(instance)
                    self._fail(instance, f"crashed on start (exit code {proc.returncode})", "start")
                try:
                    answered = (await client.get(f"{instance.url}{health}")).status_code
                    if answered == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    await self.stop(instance)
                    if answered is None:
                        self._fail(
                            instance, f"was not ready within {timeout_s} s: port {instance.port} never opened", "start"
                        )
                    what = f"was not ready within {timeout_s} s: GET {health} answered {answered}, not 200"
                    self._fail(instance, what, "health")
                await asyncio.sleep(0.1)

    def _fail(self, instance: Instance, what: str, field: str) -> NoReturn:
        assert instance.log_path is not None
        tail = _tail(instance.log_path)
        last = tail[-1] if tail else "(empty log)"
        workload = instance.workload
        context = {"path": str(workload.path), "log_path": str(instance.log_path), "log_tail": tail}
        if workload.command:  # the operator's descriptor: a configuration problem, named by its field
            raise ConfigError(
                f"pilotage.yaml {field}: service {workload.service} ({workload.version}) {what}: {last}",
                hint=f"fix `{field}` in {workload.path}/pilotage.yaml; the service's output is in {instance.log_path}",
                field=field,
                **context,
            )
        raise BackendError(
            f"generated service in {workload.path} {what}: {last}",
            hint=f"read {instance.log_path} and fix the service; try `python -m uvicorn app.main:app` in that folder",
            **context,
        )

    async def health(self, instance: Instance) -> InstanceHealth:
        """Return whether the instance's process runs, its exit status once ended, and whether /healthz answers 200.

        An instance this runtime did not start (or no longer knows) is reported not running, exit code None.
        """
        entry = self._procs.get(instance.pid)
        code = entry[0].poll() if entry is not None else self._exit_codes.get(instance.pid)
        running = entry is not None and code is None
        ready = running and await self._answers_health(instance.url + instance.workload.health_path)
        return InstanceHealth(running=running, ready=ready, exit_code=code)

    @staticmethod
    async def _answers_health(url: str) -> bool:
        try:
            async with async_client(timeout=HEALTH_TIMEOUT_S) as client:
                return (await client.get(url)).status_code == 200
        except httpx.HTTPError:
            return False

    async def log_tail(self, instance: Instance, lines: int = LOG_TAIL_LINES) -> list[str]:
        """Return the last ``lines`` non-blank lines of the instance's log file, secrets masked (read off the loop)."""
        if instance.log_path is None:
            return []
        tail = await asyncio.to_thread(_tail, instance.log_path, lines)
        return [masker().mask_text(line) for line in tail]

    async def stop(self, instance: Instance) -> None:
        """Send SIGTERM to the instance's process group, then SIGKILL after :data:`STOP_GRACE_S`. Idempotent.

        Once it stopped, its log gets every registered secret masked (:meth:`pilotage.secrets.SecretMasker.mask_file`).
        """
        await self._stop_pid(instance.pid)

    async def _stop_pid(self, pid: int) -> None:
        entry = self._procs.pop(pid, None)
        if entry is None:
            return
        proc, log_file = entry
        try:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                deadline = time.monotonic() + STOP_GRACE_S
                while proc.poll() is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
            self._exit_codes[pid] = proc.wait(timeout=5.0)
        finally:
            log_file.close()
            with contextlib.suppress(OSError):  # the service saw the test headers: its log may hold them
                masker().mask_file(Path(log_file.name))

    def instances(self) -> list[int]:
        """Return the pids of the processes this runtime started and has not stopped."""
        return list(self._procs)

    # -- routes ------------------------------------------------------------------------------------------------

    async def create_route(
        self,
        name: str,
        backends: dict[str, Instance],
        weights: dict[str, int],
        port: int = 0,
        *,
        waker: Waker | None = None,
    ) -> Route:
        """Start a proxy on 127.0.0.1:``port`` splitting requests between ``backends`` by ``weights``.

        ``{}`` and ``{}`` open a cold route, woken by ``waker`` (see
        :meth:`pilotage.runtime.base.RouteRuntime.create_route`).

        Raises:
            InputError: a route called ``name`` exists, or the weights are invalid (sum ≠ 100, unknown version).
            ConfigError: the port is in use.
        """
        if name in self._routes:
            raise InputError(f"route {name!r} already exists", hint="close it first or choose another name")
        check_weights(weights, set(backends), cold_ok=True)
        urls = {v: i.url for v, i in backends.items()}
        remote = data_plane_process()
        if remote is not None:
            return await self._create_remote_route(remote, name, backends, urls, weights, port, waker)
        here = asyncio.get_running_loop()
        proxy = TrafficProxy(
            name, urls, weights, port=port, waker=None if waker is None else on_loop(waker, here),
            wake_timeout_s=self.wake_timeout_s, max_held=self.max_held,
        )  # fmt: skip
        await DATA_PLANE.run(proxy.start())  # served on the data plane's loop: its requests are not our loop's work
        route = Route(
            name=name,
            url=proxy.url,
            port=proxy.port,
            backends=dict(backends),
            weights=proxy.weights,
            metrics_url=proxy.metrics_url,
        )
        self._routes[name] = (route, proxy)
        return _copy(route)

    async def _create_remote_route(
        self, remote: DataPlaneProcess, name: str, backends: dict[str, Instance], urls: dict[str, str],
        weights: dict[str, int], port: int, waker: Waker | None,
    ) -> Route:  # fmt: skip
        """:meth:`create_route` with the proxy in the data-plane process (its waker still runs here)."""
        remote.on_wake(name, waker)
        try:
            opened = await remote.call(
                "route.open", name=name, backends=urls, weights=weights, port=port, wake=waker is not None,
                wake_timeout_s=self.wake_timeout_s, max_held=self.max_held,
            )  # fmt: skip
        except BaseException:
            remote.on_wake(name, None)
            raise
        route = Route(
            name=name, url=opened["url"], port=int(opened["port"]), backends=dict(backends),
            weights=dict(opened["weights"]), metrics_url=opened["metrics_url"],
        )  # fmt: skip
        self._routes[name] = (route, None)
        return _copy(route)

    async def set_weights(
        self, name: str, weights: dict[str, int], backends: dict[str, Instance] | None = None
    ) -> None:
        """Change the split of route ``name`` from the next request on, with ``backends`` its backend set too.

        The kept :class:`Route` gets the new weights (and backends). ``{}`` with ``{}`` makes the route cold.

        Raises:
            InputError: no open route has that name, or the weights are invalid (sum ≠ 100, unknown version);
                nothing changed then.
        """
        route, proxy = self._route(name)
        urls = None if backends is None else {v: i.url for v, i in backends.items()}
        if proxy is None:
            route.weights = dict(await self._remote().call("route.weights", name=name, weights=weights, backends=urls))
        else:
            await DATA_PLANE.call(proxy.set_weights, weights, urls)  # where its held requests wait
            route.weights = proxy.weights
        if backends is not None:
            route.backends = dict(backends)

    async def get_route(self, name: str) -> Route | None:
        """Return a snapshot of the open route called ``name``, or None."""
        return self._snapshot(name)

    async def route_stats(self, name: str) -> RouteStats:
        """Return the statistics of route ``name`` (:meth:`TrafficProxy.stats`).

        Raises:
            InputError: no open route has that name.
        """
        proxy = self._route(name)[1]
        if proxy is None:
            return RouteStats.from_dict(await self._remote().call("route.stats", name=name))
        return await DATA_PLANE.call(proxy.stats)

    def _snapshot(self, name: str) -> Route | None:
        entry = self._routes.get(name)
        return _copy(entry[0]) if entry else None

    def _route(self, name: str) -> tuple[Route, TrafficProxy | None]:
        """The open route ``name`` and its proxy (None: it runs in the data-plane process).

        Raises:
            InputError: no open route has that name.
        """
        entry = self._routes.get(name)
        if entry is None:
            raise InputError(f"no open route {name!r}", hint=f"open routes: {sorted(self._routes) or 'none'}")
        return entry

    @staticmethod
    def _remote() -> DataPlaneProcess:
        """The data-plane process the routes without a proxy here were opened in.

        Raises:
            BackendError: it was closed meanwhile.
        """
        remote = data_plane_process()
        if remote is None:
            raise BackendError("the data plane process was closed", hint="restart the control plane")
        return remote

    async def close_route(self, name: str) -> None:
        """Stop the proxy of route ``name`` (its instances keep running). Idempotent."""
        entry = self._routes.pop(name, None)
        if entry is None:
            return
        proxy = entry[1]
        if proxy is not None:
            await DATA_PLANE.run(proxy.stop())
            return
        remote = data_plane_process()
        if remote is not None and remote.alive:
            remote.on_wake(name, None)
            await remote.call("route.close", name=name)

    async def close(self) -> None:
        """Stop every proxy, then every process this runtime started. Idempotent."""
        for name in list(self._routes):
            await self.close_route(name)
        await asyncio.gather(*(self._stop_pid(pid) for pid in list(self._procs)))


#: A start line that is more than one simple command (a list, a pipeline, an assignment before the command, a
#: compound command or a builtin first) runs as written: ``exec`` before it would run only its first part
#: (``env > f; exec app``) or fail (``exec FOO=1 app``: not found). ``/bin/sh`` stays the group leader then; stop()
#: signals the whole process group either way.
_SHELL_LINE = re.compile(
    r"[;&|\n]|^\s*(?:[A-Za-z_][A-Za-z0-9_]*=|(?:exec|cd|export|set|umask|ulimit|if|for|while|until|case|!)\s|[({])"
)


def _command(workload: Workload, port: int) -> list[str]:
    """The argv of ``workload``: its descriptor's start command through ``/bin/sh``, else a generated service's.

    A simple command line is ``exec``'d (the service itself is the process group leader stop() signals and the pid
    the runtime watches); any other shell line (:data:`_SHELL_LINE`) runs as written under ``/bin/sh -c``.
    """
    if workload.command:
        line = render_command(workload.command, port=port, prepared=workload.prepared, data=workload.data_dir)
        return ["/bin/sh", "-c", line if _SHELL_LINE.search(line) else f"exec {line}"]
    return [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]


def _copy(route: Route) -> Route:
    """A snapshot of ``route`` the caller may change without changing the runtime's."""
    return dataclasses.replace(route, backends=dict(route.backends), weights=dict(route.weights))
