"""``pilotage events tail`` and ``pilotage explain``: read the event log."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from pilotage.cli import JsonOpt, app, cli_settings, console
from pilotage.errors import InputError
from pilotage.events import CloudEvent, EventType
from pilotage.settings import Settings

events_app = typer.Typer(help="The event log: tail it.", no_args_is_help=True)
app.add_typer(events_app, name="events")


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

    settings = cli_settings()
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
    settings = cli_settings()
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
