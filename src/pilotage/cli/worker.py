"""``pilotage worker``: a worker process that bids on contract-net tasks it can do and runs them.

It hosts ``--members`` workers (default 1) behind one set of subscriptions (a group leader, see
:mod:`pilotage.coordination.worker`), announces itself with ``worker.heartbeat`` events, bids on calls for
proposals for its capabilities (cost = (queue length + 1) × estimated duration), runs the tasks it wins and
reports ``done``/``failure``. SIGTERM or Ctrl-C stops it cleanly (``worker.stopped``; running tasks are cancelled
and their managers re-announce them).

Errors: an unknown capability is an input error (exit 2, the known ones listed); an unknown bus URL scheme, or
``memory://`` (private to the worker), is a configuration error (exit 3); a ``sqlite:///`` log that does not exist
yet is created with a warning on stderr; a bus that cannot be reached or opened is a backend error (exit 5, the
URL named with its password hidden).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from pilotage.cli import JsonOpt, app, cli_settings, console
from pilotage.errors import ConfigError

__all__ = ["worker"]

_log = logging.getLogger(__name__)


def _reporter(json_mode: bool) -> Any:
    def report(what: str, data: dict[str, Any]) -> None:
        if json_mode:
            sys.stdout.write(json.dumps({"event": what, **data}) + "\n")
            sys.stdout.flush()
            return
        extra = f" in {data['duration_s']} s" if "duration_s" in data else ""
        error = f": {data['error']}" if data.get("error") else ""
        try:  # errors are a tool's output: never markup; a progress line never fails a task
            console.print(f"{what:<9} task {str(data.get('task_id'))[:12]} round {data.get('round')} "
                          f"by {data.get('worker')}{extra}{error}", markup=False)  # fmt: skip
        except Exception:
            _log.warning("could not print the %s line of task %s", what, data.get("task_id"), exc_info=True)

    return report


async def _work(url: str, capabilities: list[str], host_id: str, members: int, group: str, json_mode: bool) -> None:
    from pilotage.bus.base import redact_url
    from pilotage.coordination.tasks import resolve_capabilities
    from pilotage.coordination.worker import WorkerHost
    from pilotage.registry import backend_class
    from pilotage.testing.credentials import ensure_principal

    settings = cli_settings()
    ensure_principal()  # issue 18: the instances this worker starts and its test tools share one test principal
    resolved = resolve_capabilities(capabilities, headers=settings.testing_auth_headers)
    bus_class = backend_class("bus", url)
    if url.startswith("memory:"):
        raise ConfigError(
            f"--bus {url}: an in-process bus is private to this worker, no manager can reach it",
            hint="pass the control plane's bus, e.g. sqlite:///ABS/PATH/.pilotage/events.db or nats://host:4222",
        )
    if url.startswith("sqlite:///"):
        log = Path(url.removeprefix("sqlite:///"))
        if not log.exists():  # stderr: stdout stays the machine-readable stream of --json
            sys.stderr.write(f"warning: no event log at {log} yet, an empty one is created; is this the control "
                             "plane's log? (a mistyped path gives a worker that never receives work)\n")  # fmt: skip
    bus = bus_class(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bus.on_fatal(lambda _error: stop.set())  # issue #15: a log it cannot write or read stops the worker
    try:
        await bus.open()
        host = WorkerHost(
            bus,
            host_id,
            resolved,
            members=members,
            heartbeat_s=settings.cnet_heartbeat_s,
            group=group,
            on_report=_reporter(json_mode),
        )
        await host.start()
        ready = {"worker": host_id, "pid": os.getpid(), "capabilities": sorted(resolved), "members": members,
                 "group": group, "bus": redact_url(url)}  # fmt: skip
        if json_mode:
            sys.stdout.write(json.dumps({"event": "ready", **ready}) + "\n")
            sys.stdout.flush()
        else:
            console.print(
                f"[bold]Pilotage worker[/] {escape(host_id)} (pid {os.getpid()}) · "
                f"{escape(', '.join(sorted(resolved)))} · {members} member(s) · bus {escape(redact_url(url))} · "
                "Ctrl-C stops"
            )
        try:
            await stop.wait()
        finally:
            await host.stop()
        if bus.fatal is not None:
            raise bus.fatal
    finally:
        await bus.close()


@app.command()
def worker(
    capabilities: Annotated[
        str, typer.Option("--capabilities", help="Comma-separated capabilities: tests, loadtest, echo.")
    ],
    bus: Annotated[str | None, typer.Option("--bus", help="Bus URL (default: the bus_url setting).")] = None,
    worker_id: Annotated[str | None, typer.Option("--id", help="Worker id (default: HOSTNAME-PID).")] = None,
    members: Annotated[int, typer.Option(min=1, help="Workers hosted by this process (one group).")] = 1,
    group: Annotated[str, typer.Option(help="Group label reported in heartbeats (e.g. a service name).")] = "",
    json_mode: JsonOpt = False,
) -> None:
    """Bid on contract-net tasks for the given capabilities and run the ones won, until Ctrl-C."""
    from pilotage.coordination.tasks import resolve_capabilities

    names = capabilities.split(",")
    resolve_capabilities(names)  # an unknown capability fails before anything connects
    url = bus or cli_settings().bus_url
    host_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
    asyncio.run(_work(url, names, host_id, members, group, json_mode))
