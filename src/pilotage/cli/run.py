"""``pilotage demo`` and ``pilotage run``: one lifecycle run with a live timeline and a report."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from pilotage.agent import RunSpec
from pilotage.cli import JsonOpt, app, cli_settings, console, log_in, print_error
from pilotage.cli.interrupt import RunStopper
from pilotage.errors import ConfigError, InputError, PilotageError
from pilotage.events import CloudEvent
from pilotage.fleet.submission import make_workdir
from pilotage.names import check_name, name_from
from pilotage.settings import Settings

_log = logging.getLogger(__name__)

SubmitOpt = Annotated[
    bool,
    typer.Option("--submit", help="Hand the run to the `pilotage serve` of this folder and follow it until it closes."),
]

STAGE_STYLE = {
    "request": "bold",
    "design": "cyan",
    "code": "cyan",
    "policy": "magenta",
    "test": "green",
    "perf": "yellow",
    "rollout": "blue",
    "watch": "red",
    "cost": "green",
    "learn": "magenta",
    "decision": "dim",
    "error": "bold red",
    "done": "bold",
    "fleet": "bold blue",
}


def _demo_dir() -> Path:
    """Folder of the bundled checkout-service example (packaged with pilotage)."""
    return Path(__file__).resolve().parent.parent / "examples" / "checkout-service"


#: ``--workdir DIR`` of ``run`` and ``demo`` (issue 18): the state folder of the command.
WorkdirOpt = Annotated[
    Path | None,
    typer.Option(
        help="State folder for this run: the event log, graph, lock, log file and runs/<run id> (default "
        ".pilotage; PILOTAGE_HOME does the same for every command)."
    ),
]

#: Documents larger than this (bytes) get a progress line while they are read and validated.
LARGE_DOCUMENT_BYTES = 1_000_000


def _preflight(settings: Settings, spec: Path, request: str, *, json_mode: bool = False) -> None:
    """Fail fast, before any process starts or any event is written.

    Checks the backend URLs and the metric source (ConfigError), the spec and the ``slo.yaml`` beside it
    (InputError), the request grammar, and that the request applies to the spec (e.g. the resource does not exist
    yet) — the design agent repeats the last check.
    """
    from pilotage.registry import backend_class
    from pilotage.spec.evolve import evolve
    from pilotage.spec.grammar import parse_request
    from pilotage.spec.load import load_spec

    for kind, url in (
        ("bus", settings.bus_url),
        ("graph", settings.graph_url),
        ("policy", settings.policy_url),
        ("runtime", settings.runtime_url),
    ):
        backend_class(kind, url)
    size = spec.stat().st_size if spec.is_file() else 0
    if size > LARGE_DOCUMENT_BYTES and not json_mode:  # validation of a large document takes a while
        console.print(f"reading and validating {escape(spec.name)} ({size / 1e6:.1f} MB) … (Ctrl-C stops)")
    doc = load_spec(spec)
    evolve(doc, parse_request(request), path=str(spec))
    # issue 3: the SLO beside the spec and the metric source are read only when the rollout starts; check them now
    from pilotage.observe.prometheus import open_source
    from pilotage.observe.slo import load_slo

    if (spec.parent / "slo.yaml").is_file():
        load_slo(spec.parent / "slo.yaml")
    open_source(settings.metrics_source_url)


def _check_port_free(port: int) -> None:
    """Raise ConfigError when ``port`` on 127.0.0.1 is taken (checked before any process starts)."""
    import socket

    if port == 0:
        return
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ConfigError(
                f"port {port} on 127.0.0.1 is already in use ({exc.strerror})",
                hint="pass --port with a free port, or --port 0 for any free port",
                port=port,
            ) from exc


def _timeline_printer(json_mode: bool) -> Any:
    from pilotage.report import stage_of, summarize

    t0 = time.monotonic()

    def show(event: CloudEvent) -> None:
        if json_mode:
            return
        try:
            stage = stage_of(event)
            if stage == "decision":
                return
            style = STAGE_STYLE.get(stage, "default")
            elapsed = time.monotonic() - t0
            # event data comes from outside (test output, commit messages, HTTP answers): never markup
            console.print(f"[dim]{elapsed:6.1f}s[/] [{style}]{escape(f'{stage:<8}')}[/] {escape(summarize(event))}")
        except Exception:  # a progress line must never stop a run from closing (flow.failed, the summary)
            _log.warning("could not print the progress line of event %s", getattr(event, "id", "?"), exc_info=True)

    return show


class RunInterrupted(PilotageError):
    """The run was stopped by SIGINT/SIGTERM; ``flow.failed`` and the report were written, processes stopped."""

    exit_code = 130

    def __init__(self, run: RunSpec, signal_name: str) -> None:
        super().__init__(
            f"run {run.run_id} interrupted by {signal_name}: recorded as failed, its service processes stopped; "
            f"events accepted so far are in the log",
            hint=f"see {run.artifacts_path / 'report.md'} and start the run again",
            run_id=run.run_id,
        )


async def _record_interruption(bus: Any, run: RunSpec, signal_name: str) -> None:
    """Publish ``flow.failed`` for an interrupted run and write its report (both best effort, never raise)."""
    from pilotage.bus.query import EventLog
    from pilotage.catalogue import checked_event
    from pilotage.events import EventType
    from pilotage.report import write_report

    data = {"run_id": run.run_id, "status": "failed", "outcome": "none", "error": f"interrupted by {signal_name}"}
    try:
        await bus.publish(
            checked_event(EventType.FLOW_FAILED, data, source="/pilotage/cli", subject=run.service, runid=run.run_id)
        )
        events = await EventLog(bus).all(run=run.run_id)
        write_report(run.artifacts_path / "report.md", events, title=f"Pilotage run {run.run_id}")
    except (PilotageError, OSError):
        return


async def _execute(settings: Settings, run: RunSpec, json_mode: bool, stopper: RunStopper) -> dict[str, Any]:
    """Run the flow in this loop; SIGINT/SIGTERM stop it within 2 s even while an agent computes (issue 18).

    ``stopper`` (installed by the caller) cancels this task from the signal handler, thread-safely, and ends the
    process itself when the loop does not get control back in time (:mod:`pilotage.cli.interrupt`).
    """
    from pilotage.app import all_agents, backends
    from pilotage.fleet.keeper import keep_fleet
    from pilotage.flows.feature_delivery import run_feature_delivery

    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    received: list[str] = []

    def interrupt(name: str) -> None:
        received.append(name)
        if task is not None:
            task.cancel()

    stopper.attach(loop, interrupt)
    # Errors of background tasks go to the log file, not to stderr (which carries one error line).
    loop.set_exception_handler(
        lambda _loop, context: logging.getLogger("pilotage.cli").warning(
            "background task: %s", context.get("message"), exc_info=context.get("exception")
        )
    )
    async with backends(settings) as ctx:
        # issue 17: the generated service is a managed service; its production (the baseline its codegen agent adds)
        # is served on its stable address for the run, and the change is delivered against it
        keeper, subs, watch = await keep_fleet(ctx, idle_after_s=0.0, only=run.service)
        try:
            result = await run_feature_delivery(ctx, run, all_agents(ctx), on_event=_timeline_printer(json_mode))
        except asyncio.CancelledError:
            if not received:
                raise
            await _record_interruption(ctx.bus, run, received[0])
            raise RunInterrupted(run, received[0]) from None
        finally:
            watch.cancel()
            for sub in subs:
                await sub.stop()
            await keeper.down()
            stopper.detach()
    return run_summary(settings, run, result, title=f"Pilotage run {run.run_id}")


def run_summary(settings: Settings, run: RunSpec, result: Any, *, title: str) -> dict[str, Any]:
    """Write the run's Markdown report and return the command's summary (``--json``) of a finished flow."""
    from pilotage.report import write_report

    report = write_report(run.artifacts_path / "report.md", result.events, title=title)
    return {
        "run_id": run.run_id,
        "status": result.status,
        "outcome": result.outcome,
        "error": result.error,
        "duration_s": round(result.duration_s, 3),
        "events": len(result.events),
        "decisions": [
            {"id": d["id"], "agent": d["agent"], "kind": d["kind"], "action": d["action"]} for d in result.decisions()
        ],
        "report": str(report),
        "workdir": run.workdir,
        "event_log": settings.bus_url,
    }


def _start_run(
    *,
    spec: Path,
    request: str,
    workdir: Path | None,
    service: str | None,
    fault_rate: float,
    fault: str,
    idle_after_s: float,
    port: int,
    json_mode: bool,
    submit: bool = False,
) -> dict[str, Any]:
    from pilotage.cli.serve import require_no_control_plane
    from pilotage.flows.feature_delivery import new_run_id

    settings = cli_settings()
    if workdir is not None:  # issue 18: everything in DIR — the event log, graph, lock, log file and every run
        settings = settings.with_home(workdir.expanduser().resolve())
        log_in(settings.home)
    if service is not None:
        check_name(service, "--service")  # before any file is read or written
    if not submit:
        require_no_control_plane(settings)
    spec = spec.expanduser().resolve()
    run_id = new_run_id()
    with RunStopper(settings.home, run_id).installed() as stopper:  # issue 18: Ctrl-C/SIGTERM within 2 s
        return _checked_run(settings, run_id, spec, request, service, fault_rate, fault, idle_after_s, port,
                            json_mode, submit, stopper)  # fmt: skip


def _checked_run(
    settings: Settings, run_id: str, spec: Path, request: str, service: str | None, fault_rate: float, fault: str,
    idle_after_s: float, port: int, json_mode: bool, submit: bool, stopper: RunStopper,
) -> dict[str, Any]:  # fmt: skip
    """Preflight the run, make its folder and run it (in this process, or handed to ``pilotage serve``)."""
    from pilotage.cli.serve import submit_run

    _preflight(settings, spec, request, json_mode=json_mode)
    _check_port_free(port)
    if idle_after_s <= 0:
        raise InputError(f"--idle-after {idle_after_s} is not a positive number of seconds", hint="pass e.g. 10")
    make_workdir(settings.home)
    workdir = make_workdir((settings.home / "runs" / run_id).resolve())  # a run never overwrites another
    name = service if service is not None else name_from(spec.parent.name if spec.stem == "openapi" else spec.stem)
    run = RunSpec(
        run_id=run_id,
        service=name,
        spec_path=str(spec),
        request=request,
        workdir=str(workdir),
        inject_fault_rate=fault_rate,
        idle_after_s=idle_after_s,
        fault=fault,
        proxy_port=port,
    )
    if not json_mode:
        console.print(
            f"[bold]Pilotage[/] run [bold]{escape(run_id)}[/] · service [bold]{escape(name)}[/] · "
            f"log {escape(str(settings.bus_url))}"
        )
    if submit:
        return submit_run(settings, run, _timeline_printer(json_mode))
    from pilotage.flows.supervisor import ControlPlaneLock

    # A one-shot run is an in-process control plane: it holds the folder's lock so that a second run or a
    # `pilotage serve` in the same folder is refused instead of acting on this run's events.
    lock = ControlPlaneLock(settings.home, run_id)
    lock.acquire()
    try:
        summary = asyncio.run(_execute(settings, run, json_mode, stopper))
    finally:
        lock.release()
    return summary


def _finish(summary: dict[str, Any], json_mode: bool, expected_outcome: str | None) -> None:
    """Print the run summary; exit 1 (with one error line on stderr) unless the run ended as expected."""
    if json_mode:
        console.print_json(json.dumps(summary))
    else:
        colour = "green" if summary["status"] == "completed" else "red"
        console.print(
            f"\n[bold {colour}]{escape(str(summary['status']))}[/] · "
            f"outcome [bold]{escape(str(summary['outcome']))}[/] · "
            f"{summary['duration_s']:.1f}s · {len(summary['decisions'])} decisions · report "
            f"{escape(str(summary['report']))}"
        )
    if summary["status"] != "completed":
        print_error(summary["error"] or "the run failed")
        raise typer.Exit(1)
    if expected_outcome is not None and summary["outcome"] != expected_outcome:
        print_error(
            f"run {summary['run_id']} ended {summary['outcome']}, expected {expected_outcome} (see {summary['report']})"
        )
        raise typer.Exit(1)


@app.command()
def demo(
    inject_fault: Annotated[
        bool,
        typer.Option(
            "--inject-fault", help="The new version answers 500 on 30% of requests; the run must end rolled back."
        ),
    ] = False,
    workdir: WorkdirOpt = None,
    submit: SubmitOpt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Run the whole lifecycle on the bundled checkout service with the discount-code request.

    Exit 0 when the run ends as expected: promoted, or rolled back with --inject-fault.
    """
    example = _demo_dir()
    request = (example / "requests.txt").read_text(encoding="utf-8").strip().splitlines()[0]
    summary = _start_run(
        spec=example / "openapi.yaml",
        request=request,
        workdir=workdir,
        service="checkout",
        fault_rate=0.3 if inject_fault else 0.0,
        fault="errors",
        idle_after_s=3.0,
        port=0,
        json_mode=json_mode,
        submit=submit,
    )
    _finish(summary, json_mode, "rolled_back" if inject_fault else "promoted")


@app.command()
def run(
    spec: Annotated[Path, typer.Option(help="OpenAPI 3.0/3.1 document (YAML or JSON).")],
    request: Annotated[
        str,
        typer.Option(help="Change request, e.g. 'Add discount code support with fields code:string, percent:integer'."),
    ],
    workdir: WorkdirOpt = None,
    service: Annotated[
        str | None,
        typer.Option(help="Service name: letters, digits, '.', '_', '-' (default: from the spec file name)."),
    ] = None,
    inject_fault: Annotated[float, typer.Option(help="Share of requests (0..1) the new version fails with 500.")] = 0.0,
    crash: Annotated[bool, typer.Option("--crash", help="Inject a crash-on-start fault into the new version.")] = False,
    idle_after: Annotated[
        float,
        typer.Option(help="Seconds without requests before the environment is scaled to zero; the command ends then."),
    ] = 10.0,
    port: Annotated[int, typer.Option(help="Port of the traffic-splitting proxy (0 = any free port).")] = 0,
    submit: SubmitOpt = False,
    json_mode: JsonOpt = False,
) -> None:
    """Carry REQUEST through the lifecycle on any OpenAPI 3 document.

    Exit 0 when the run ends as expected: promoted, or rolled back when a fault was injected (--inject-fault,
    --crash); else 1.
    """
    if not 0.0 <= inject_fault <= 1.0:
        raise InputError(f"--inject-fault {inject_fault} is outside 0..1", hint="pass a share such as 0.3")
    if not 0 <= port <= 65535:
        raise InputError(f"--port {port} is not a TCP port", hint="pass 0..65535")
    summary = _start_run(
        spec=spec,
        request=request,
        workdir=workdir,
        service=service,
        fault_rate=inject_fault,
        fault="crash" if crash else "errors",
        idle_after_s=idle_after,
        port=port,
        json_mode=json_mode,
        submit=submit,
    )
    _finish(summary, json_mode, "rolled_back" if inject_fault > 0 or crash else "promoted")
