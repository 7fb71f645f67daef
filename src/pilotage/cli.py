"""The ``pilotage`` command line (typer). Thin: it parses options, calls the library and prints.

Every command takes ``--json`` (one JSON document on stdout) and otherwise prints rich output for people.
Errors print one line, ``error: <cause> (fix: <fix>)``, on stderr and exit non-zero:
2 bad input, 3 bad configuration, 4 policy denied, 5 backend failure, 1 a run that failed or rolled back.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from pilotage.agent import RunSpec
from pilotage.errors import BackendError, ConfigError, InputError, PilotageError, PolicyDenied
from pilotage.events import CloudEvent, EventType
from pilotage.settings import Settings, load_settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="pilotage",
    help="Agents that carry a service from request to a watched, costed rollout.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
events_app = typer.Typer(help="The event log: tail it.", no_args_is_help=True)
app.add_typer(events_app, name="events")

console = Console(highlight=False, soft_wrap=True)


def _print_error(line: str) -> None:
    """Write ``error: <line>`` as exactly one line on stderr (never wrapped, no markup)."""
    sys.stderr.write("error: " + " ".join(line.split()) + "\n")
    sys.stderr.flush()


EXIT_CODES: list[tuple[type[PilotageError], int]] = [
    (InputError, 2),
    (ConfigError, 3),
    (PolicyDenied, 4),
    (BackendError, 5),
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of rich output.")]

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
}


def _settings() -> Settings:
    return load_settings()


def _demo_dir() -> Path:
    """Folder of the bundled checkout-service example (packaged with pilotage)."""
    return Path(__file__).parent / "examples" / "checkout-service"


def _preflight(spec: Path, request: str) -> None:
    """Fail fast, before any process starts, on a bad spec or a request outside the grammar."""
    from pilotage.spec.grammar import parse_request
    from pilotage.spec.load import load_spec

    load_spec(spec)
    parse_request(request)


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
        stage = stage_of(event)
        if stage == "decision":
            return
        style = STAGE_STYLE.get(stage, "")
        elapsed = time.monotonic() - t0
        console.print(f"[dim]{elapsed:6.1f}s[/] [{style}]{stage:<8}[/] {summarize(event)}")

    return show


async def _execute(settings: Settings, run: RunSpec, json_mode: bool) -> dict[str, Any]:
    from pilotage.app import all_agents, backends
    from pilotage.flows.feature_delivery import run_feature_delivery
    from pilotage.report import write_report

    async with backends(settings) as ctx:
        result = await run_feature_delivery(ctx, run, all_agents(ctx), on_event=_timeline_printer(json_mode))
    report = write_report(run.artifacts_path / "report.md", result.events, title=f"Pilotage run {run.run_id}")
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
) -> dict[str, Any]:
    from pilotage.flows.feature_delivery import new_run_id

    settings = _settings()
    spec = spec.expanduser().resolve()
    _preflight(spec, request)
    _check_port_free(port)
    run_id = new_run_id()
    workdir = (workdir or settings.home / "runs" / run_id).expanduser().resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    name = service or (spec.parent.name if spec.stem == "openapi" else spec.stem)
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
        console.print(f"[bold]Pilotage[/] run [bold]{run_id}[/] · service [bold]{name}[/] · log {settings.bus_url}")
    summary = asyncio.run(_execute(settings, run, json_mode))
    return summary


def _finish(summary: dict[str, Any], json_mode: bool, expected_outcome: str | None) -> None:
    """Print the run summary; exit 1 (with one error line on stderr) unless the run ended as expected."""
    if json_mode:
        console.print_json(json.dumps(summary))
    else:
        colour = "green" if summary["status"] == "completed" else "red"
        console.print(
            f"\n[bold {colour}]{summary['status']}[/] · outcome [bold]{summary['outcome']}[/] · "
            f"{summary['duration_s']:.1f}s · {len(summary['decisions'])} decisions · report "
            f"{summary['report']}"
        )
    if summary["status"] != "completed":
        _print_error(summary["error"] or "the run failed")
        raise typer.Exit(1)
    if expected_outcome is not None and summary["outcome"] != expected_outcome:
        _print_error(
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
    workdir: Annotated[Path | None, typer.Option(help="Folder for the run's repository and artefacts.")] = None,
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
    )
    _finish(summary, json_mode, "rolled_back" if inject_fault else "promoted")


@app.command()
def run(
    spec: Annotated[Path, typer.Option(help="OpenAPI 3.0/3.1 document (YAML or JSON).")],
    request: Annotated[
        str,
        typer.Option(help="Change request, e.g. 'Add discount code support with fields code:string, percent:integer'."),
    ],
    workdir: Annotated[Path | None, typer.Option(help="Folder for the run's repository and artefacts.")] = None,
    service: Annotated[str | None, typer.Option(help="Service name (default: from the spec file name).")] = None,
    inject_fault: Annotated[float, typer.Option(help="Share of requests (0..1) the new version fails with 500.")] = 0.0,
    crash: Annotated[bool, typer.Option("--crash", help="Inject a crash-on-start fault into the new version.")] = False,
    idle_after: Annotated[
        float,
        typer.Option(help="Seconds without requests before the environment is scaled to zero; the command ends then."),
    ] = 10.0,
    port: Annotated[int, typer.Option(help="Port of the traffic-splitting proxy (0 = any free port).")] = 0,
    json_mode: JsonOpt = False,
) -> None:
    """Carry REQUEST through the lifecycle on any OpenAPI 3 document. Exit 1 unless the change is promoted."""
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
    )
    _finish(summary, json_mode, "promoted")


async def _read_events(settings: Settings, pattern: str, run_id: str | None) -> list[tuple[int, CloudEvent]]:
    from pilotage.app import open_bus

    bus = open_bus(settings)
    async with bus:
        out: list[tuple[int, CloudEvent]] = []
        offset = 1
        while True:
            batch = await bus.read(offset, 5000, pattern=pattern)
            if not batch:
                return out
            out.extend((r.offset, r.event) for r in batch if run_id is None or r.event.runid == run_id)
            offset = batch[-1].offset + 1


def _event_log_exists(settings: Settings) -> None:
    if settings.bus_url.startswith("sqlite:///"):
        path = Path(settings.bus_url[len("sqlite:///") :])
        if not path.exists():
            raise InputError(f"no event log at {path}", hint="run `pilotage demo` first, or set PILOTAGE_BUS_URL")


@events_app.command("tail")
def events_tail(
    n: Annotated[int, typer.Option("-n", help="How many of the newest events to show.")] = 20,
    type_pattern: Annotated[str, typer.Option("--type", help="Event-type glob, e.g. 'dev.pilotage.deploy.*'.")] = "*",
    run_id: Annotated[str | None, typer.Option("--run", help="Only events of this run id.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events (Ctrl-C stops).")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Print the newest events of the log (as JSON lines with --json)."""
    from pilotage.report import stage_of, summarize

    settings = _settings()
    _event_log_exists(settings)
    shown = 0

    def emit(offset: int, event: CloudEvent) -> None:
        if json_mode:
            sys.stdout.write(json.dumps({"offset": offset, **json.loads(event.to_json())}) + "\n")
        else:
            console.print(
                f"[dim]{offset:>6}[/] {event.time[11:23]} [bold]{stage_of(event):<8}[/] "
                f"{event.type.removeprefix(EventType.PREFIX):<22} {event.id}  {summarize(event)}"
            )

    records = asyncio.run(_read_events(settings, type_pattern, run_id))
    for offset, event in records[-n:] if n > 0 else []:
        emit(offset, event)
    shown = records[-1][0] if records else 0
    while follow:
        time.sleep(0.5)
        for offset, event in asyncio.run(_read_events(settings, type_pattern, run_id)):
            if offset > shown:
                emit(offset, event)
                shown = offset


@app.command()
def explain(
    decision_id: Annotated[str, typer.Argument(help="Id of a decision event (see the run report or events tail).")],
    json_mode: JsonOpt = False,
) -> None:
    """Show why an agent decided what it did: inputs, rule and score, chosen action, policy verdict, outcome."""
    settings = _settings()
    _event_log_exists(settings)
    records = asyncio.run(_read_events(settings, "*", None))
    index = next((i for i, (_, e) in enumerate(records) if e.id == decision_id), None)
    if index is None:
        raise InputError(
            f"no event with id {decision_id!r} in {settings.bus_url}",
            hint="copy an id from `pilotage events tail --type dev.pilotage.decision.made`",
        )
    _, event = records[index]
    if event.type != EventType.DECISION:
        raise InputError(
            f"event {decision_id} is a {event.type}, not a decision",
            hint="pass the id of a dev.pilotage.decision.made event",
        )
    d = event.data
    outcome = [
        e
        for _, e in records[index + 1 :]
        if e.runid == event.runid and e.source == event.source and e.type not in (EventType.DECISION,)
    ][:3]
    doc = {**d, "time": event.time, "outcome_events": [{"type": e.type, "id": e.id, "data": e.data} for e in outcome]}
    if json_mode:
        console.print_json(json.dumps(doc, default=str))
        return
    console.print(f"[bold]{d['agent']}[/] decided [bold]{d['kind']}[/] → [bold green]{d['action']}[/] at {event.time}")
    console.print(f"[bold]rule[/]      {d['rule']}")
    console.print(f"[bold]score[/]     {json.dumps(d['score'])}")
    console.print(f"[bold]rationale[/] {d['rationale']}")
    verdict = d.get("verdict")
    console.print(
        f"[bold]verdict[/]   {'none required' if not verdict else ('allow' if verdict['allow'] else 'deny')}"
        + (f" {verdict.get('reasons')}" if verdict and verdict.get("reasons") else "")
    )
    console.print("[bold]inputs[/]")
    console.print_json(json.dumps(d["inputs"], default=str))
    from pilotage.report import summarize

    for e in outcome:
        console.print(f"[bold]outcome[/]   {e.type.removeprefix(EventType.PREFIX)}: {summarize(e)}")


@app.command()
def version() -> None:
    """Print the Pilotage version."""
    from pilotage import __version__

    console.print(__version__)


def main() -> None:
    """Console-script entry point: run the app and turn a PilotageError into one line and an exit code."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        app()
    except PilotageError as exc:
        code = next((c for cls, c in EXIT_CODES if isinstance(exc, cls)), 1)
        _print_error(exc.one_line())
        sys.exit(code)
    except KeyboardInterrupt:
        _print_error("interrupted; events accepted so far are in the log")
        sys.exit(130)
