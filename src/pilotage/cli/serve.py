"""``pilotage serve``: the long-running control plane; and the client side of ``run --submit``.

``serve`` takes the control-plane lock of the state folder, kills the orphans of a control plane that died,
closes runs whose closing rule was met (or whose budget ran out) while nothing ran, re-creates the environments
the log says are up (:mod:`pilotage.flows.recovery`), then subscribes every agent and the flow supervisor on the
configured bus and serves until SIGTERM or Ctrl-C. Every unfinished run resumes from where its agents stopped.
Submitted runs are queued and admitted by :mod:`pilotage.flows.admission`: up to ``max_concurrent_deliveries`` at
once, one per service; each agent then handles that many runs' events at once (one bus member per run slot).
When the event log becomes unusable (a publish that cannot be written, a corrupt row a consumer fetched) ``serve``
stops with that error, naming the log's path (and the row's offset): exit 5, never a control plane that hangs.

``pilotage run --submit`` / ``pilotage demo --submit`` / ``pilotage deliver`` publish ``flow.queued`` to the log a
running ``serve`` consumes and follow the run's events until it closes (a control plane restarted meanwhile changes
nothing for the client).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from pilotage.agent import RunSpec
from pilotage.bus.query import EventLog
from pilotage.cli import JsonOpt, app, cli_settings, console
from pilotage.errors import ConfigError
from pilotage.events import CloudEvent, EventType
from pilotage.settings import Settings

__all__ = ["queue_run", "serve", "submit_run"]

_log = logging.getLogger(__name__)

#: Seconds between reads of the log while a submitting client waits for its run to close.
FOLLOW_POLL_S = 0.2


def _printer(json_mode: bool) -> Any:
    from pilotage.report import stage_of, summarize

    def show(event: CloudEvent) -> None:
        if json_mode:
            sys.stdout.write(event.to_json() + "\n")
            sys.stdout.flush()
            return
        try:
            stage = stage_of(event)
            if stage == "decision":
                return
            # event data comes from outside (test output, commit messages, HTTP answers): never markup
            line = f"{event.runid[:16]:<16} {stage:<8} {summarize(event)}"
            console.print(f"[dim]{escape(event.time[11:23])}[/] {escape(line)}")
        except Exception:  # a timeline line must never stop the control plane handling an event
            _log.warning("could not print the timeline line of event %s", getattr(event, "id", "?"), exc_info=True)

    return show


def _install_ack_journal(bus: Any, path: Path) -> None:
    """Append ``{"id", "offset"}`` to ``path`` after every publish the bus acknowledged (crash-safety tests)."""
    journal = path.open("a", encoding="utf-8")
    publish = bus.publish

    async def journaled(event: CloudEvent) -> int:
        offset: int = await publish(event)
        journal.write(json.dumps({"id": event.id, "type": event.type, "offset": offset}) + "\n")
        journal.flush()  # in the OS page cache: survives the death of this process
        return offset

    setattr(bus, "publish", journaled)  # noqa: B010 - instance-level wrap of a bound method


async def _serve(  # noqa: C901 - the start and stop sequence of every part, in order
    settings: Settings, instance: str, budget_s: float, json_mode: bool, ack_journal: Path | None, api: Any
) -> None:
    from pilotage.agents.cost import CostAgent
    from pilotage.app import all_agents, backends
    from pilotage.fleet.keeper import keep_fleet
    from pilotage.flows.admission import Admission
    from pilotage.flows.recovery import recover
    from pilotage.flows.supervisor import FlowSupervisor
    from pilotage.loopwatch import LoopWatch
    from pilotage.web.server import ApiServer

    show = _printer(json_mode)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stall_s = settings.loop_stall_warn_s  # what holds the loop, logged (deadlines on the loop are only as good)
    watch_loop = LoopWatch(warn_s=stall_s, tick_s=min(0.1, stall_s / 2)).start() if stall_s > 0 else None
    async with backends(settings) as ctx:
        if ack_journal is not None:
            _install_ack_journal(ctx.bus, ack_journal)
        admission = Admission(ctx.bus, limit=settings.max_concurrent_deliveries)  # issue 19, 5: the queue
        supervisor = FlowSupervisor(ctx.bus, budget_s=budget_s, on_event=show, admission=admission)
        closed = await supervisor.sweep()
        fleet: list[Any] = []

        async def fleet_up() -> None:  # issue 17: production of every managed service, before runs resume
            fleet.extend(await keep_fleet(ctx, idle_after_s=settings.fleet_idle_after_s))

        report = await recover(ctx, home=settings.home, instance=instance, keep_fleet=fleet_up)
        keeper, fleet_subs, watch = fleet
        agents = all_agents(ctx)
        members = settings.max_concurrent_deliveries  # issue 19, 5: runs of different services handled at once
        subs = [sub for agent in agents for sub in await agent.start(members=members)]
        subs.append(await supervisor.start())
        subs.extend(fleet_subs)
        api_server = ApiServer(settings, ctx.bus, ctx.graph, api) if api is not None else None
        api_url = await api_server.start() if api_server is not None else None
        ready = {
            "serving": True,
            "pid": os.getpid(),
            "instance": instance,
            "event_log": settings.bus_url,
            "runs_closed_at_start": closed,
            "api": f"{api_url}/api/v1" if api_url else None,
            **report.to_dict(),
        }
        if json_mode:
            sys.stdout.write(json.dumps(ready) + "\n")
            sys.stdout.flush()
        else:
            console.print(
                f"[bold]Pilotage control plane[/] pid {os.getpid()} · log {escape(str(settings.bus_url))} · "
                f"{len(report.runs_open)} open run(s) resumed, {len(report.environments)} environment(s) re-created, "
                f"{len(report.orphans_killed)} orphan process(es) stopped"
                + (f" · dashboard {escape(api_url)} · HTTP API {escape(api_url)}/api/v1" if api_url else "")
                + " · Ctrl-C stops"
            )
        ctx.bus.on_fatal(lambda _error: stop.set())  # issue #15: a log it cannot write or read stops the plane
        try:
            await stop.wait()
        finally:
            if api_server is not None:
                await api_server.stop()
            await supervisor.stop()
            for sub in subs:
                await sub.stop()
            for agent in agents:
                if isinstance(agent, CostAgent):
                    await agent.cancel()
            watch.cancel()
            await keeper.down()
            if watch_loop is not None:
                await watch_loop.stop()
        if ctx.bus.fatal is not None:
            raise ctx.bus.fatal


@app.command()
def serve(
    budget: Annotated[float, typer.Option(help="Time budget of a run in seconds, from its flow.started.")] = 900.0,
    ack_journal: Annotated[
        Path | None, typer.Option(hidden=True, help="Append every acknowledged publish to this file (tests).")
    ] = None,
    api_port: Annotated[
        int | None, typer.Option("--api-port", min=0, max=65535, help="Port of the HTTP API (default: api_port, 8700).")
    ] = None,
    no_api: Annotated[bool, typer.Option("--no-api", help="Serve no HTTP API.")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Run the control plane: every agent on the configured bus, resuming unfinished runs, until Ctrl-C.

    The HTTP API (README "HTTP API") answers on http://127.0.0.1:8700/api/v1 unless --no-api.
    """
    from pilotage.flows.recovery import MARK_VAR
    from pilotage.flows.supervisor import ControlPlaneLock
    from pilotage.web.server import bind_api

    settings = cli_settings()
    api = None if no_api else bind_api(settings, api_port)
    instance = uuid.uuid4().hex[:12]
    lock = ControlPlaneLock(settings.home, instance)
    lock.acquire()
    os.environ[MARK_VAR] = f"{settings.home.resolve()}#{instance}"  # inherited by every process it starts
    try:
        asyncio.run(_serve(settings, instance, budget, json_mode, ack_journal, api))
    finally:
        lock.release()
        if api is not None:
            api.close()


def require_no_control_plane(settings: Settings) -> None:
    """Raise ConfigError when ``pilotage serve`` serves this state folder (its agents would act twice)."""
    from pilotage.flows.supervisor import serving_pid

    pid = serving_pid(settings.home)
    if pid is not None:
        raise ConfigError(
            f"a control plane (pid {pid}: `pilotage serve`, or another `pilotage run`/`demo`) is using "
            f"{settings.home}; running the agents here too would act twice",
            hint="wait for that run, use another working directory, or add --submit to hand the run to pilotage serve",
        )


def _require_control_plane(settings: Settings, flag: str = "--submit") -> None:
    from pilotage.flows.supervisor import serving_pid

    if serving_pid(settings.home) is None:
        raise ConfigError(
            f"no control plane serves {settings.home}",
            hint=f"start `pilotage serve` (or `pilotage up`) in this folder, or drop {flag}",
        )


def queue_run(settings: Settings, run: RunSpec) -> int:
    """Publish ``flow.queued`` for ``run`` to the log ``pilotage serve`` consumes and return at once (its offset).

    Raises:
        ConfigError: no control plane serves ``settings.home``.
    """
    from pilotage.app import open_bus
    from pilotage.flows.feature_delivery import queued_event

    _require_control_plane(settings, "--detach")

    async def publish() -> int:
        async with open_bus(settings) as bus:
            return await bus.publish(queued_event(run))

    return asyncio.run(publish())


async def _follow(settings: Settings, run: RunSpec, on_event: Any) -> list[CloudEvent]:
    from pilotage.app import open_bus
    from pilotage.flows.feature_delivery import notify, queued_event

    async with open_bus(settings) as bus:
        offset = await bus.publish(queued_event(run)) - 1
        seen: list[CloudEvent] = []
        while True:
            batch = await EventLog(bus).records(run=run.run_id, after=offset)
            if not batch:
                await asyncio.sleep(FOLLOW_POLL_S)
                continue
            offset = batch[-1].offset
            for record in batch:
                seen.append(record.event)
                notify(on_event, record.event)
                if record.event.type in (EventType.FLOW_COMPLETED, EventType.FLOW_FAILED):
                    return seen


def submit_run(settings: Settings, run: RunSpec, on_event: Any) -> dict[str, Any]:
    """Publish ``flow.started`` for ``run`` to the log ``pilotage serve`` consumes; follow it until it closes.

    Returns:
        The run summary (the same keys as an in-process run's).

    Raises:
        ConfigError: no control plane serves ``settings.home``.
    """
    from pilotage.report import write_report

    _require_control_plane(settings)
    events = asyncio.run(_follow(settings, run, on_event))
    closing = events[-1].data
    report = write_report(run.artifacts_path / "report.md", events, title=f"Pilotage run {run.run_id}")
    decisions = [e.data for e in events if e.type == EventType.DECISION]
    return {
        "run_id": run.run_id,
        "status": closing["status"],
        "outcome": closing["outcome"],
        "error": closing["error"],
        "duration_s": closing["duration_s"],
        "events": len(events),
        "decisions": [{k: d[k] for k in ("id", "agent", "kind", "action")} for d in decisions],
        "report": str(report),
        "workdir": run.workdir,
        "event_log": settings.bus_url,
    }
