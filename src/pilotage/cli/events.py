"""``pilotage events tail``, ``pilotage events replay`` and ``pilotage explain``: read the event log."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pilotage.bus.base import Record
from pilotage.bus.query import EventLog
from pilotage.cli import JsonOpt, app, cli_settings, console, print_error
from pilotage.errors import InputError
from pilotage.events import CloudEvent, EventType
from pilotage.settings import Settings

events_app = typer.Typer(help="The event log: tail it, replay its decisions.", no_args_is_help=True)
app.add_typer(events_app, name="events")


async def _read_events(
    settings: Settings, pattern: str, run_id: str | None, after: int = 0
) -> list[tuple[int, CloudEvent]]:
    """Return ``(offset, event)`` of the events matching ``pattern`` (and run ``run_id``) after offset ``after``."""
    from pilotage.app import open_bus

    async with open_bus(settings) as bus:
        return [(r.offset, r.event) for r in await EventLog(bus).records(pattern, run=run_id, after=after)]


def _event_log_exists(settings: Settings) -> None:
    if settings.bus_url.startswith("sqlite:///"):
        path = Path(settings.bus_url[len("sqlite:///") :])
        if not path.exists():
            raise InputError(f"no event log at {path}", hint="run `pilotage demo` first, or set PILOTAGE_BUS_URL")


@events_app.command("tail")
def events_tail(
    n: Annotated[int, typer.Option("-n", min=1, help="How many of the newest events to show (≥ 1).")] = 20,
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
                f"[dim]{offset:>6}[/] {escape(event.time[11:23])} [bold]{escape(f'{stage_of(event):<8}')}[/] "
                + escape(f"{event.type.removeprefix(EventType.PREFIX):<22} {event.id}  {summarize(event)}")
            )

    records = asyncio.run(_read_events(settings, type_pattern, run_id))
    for offset, event in records[-n:] if n > 0 else []:
        emit(offset, event)
    shown = records[-1][0] if records else 0
    while follow:
        time.sleep(0.5)
        for offset, event in asyncio.run(_read_events(settings, type_pattern, run_id, after=shown)):
            emit(offset, event)
            shown = offset


@events_app.command("replay")
def events_replay(
    from_id: Annotated[
        str | None, typer.Option("--from", help="Start at this event id (default: the start of the log).")
    ] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Recompute every recorded decision from its inputs (no side effects); exit 1 if any comes out different."""
    from pilotage.replay import replay_decisions

    settings = cli_settings()
    _event_log_exists(settings)
    records = [Record(o, e) for o, e in asyncio.run(_read_events(settings, "*", None))]
    if from_id is not None:
        start = next((i for i, r in enumerate(records) if r.event.id == from_id), None)
        if start is None:
            raise InputError(f"no event with id {from_id!r} in {settings.bus_url}", hint="copy an id from events tail")
        records = records[start:]
    report = replay_decisions(records)
    if json_mode:
        console.print_json(json.dumps(report.to_dict()))
    else:
        for r in report.differing:
            console.print(
                "[bold red]differs[/] "
                + escape(
                    f"{r.decision_id} {r.agent} {r.kind}: recorded {json.dumps(r.recorded)} · "
                    f"recomputed {json.dumps(r.recomputed) if r.error is None else 'error: ' + r.error}"
                )
            )
        console.print(f"{len(report.results)} decisions replayed, {len(report.differing)} differ")
    if report.differing:
        print_error(
            f"{len(report.differing)} of {len(report.results)} decisions come out different on replay "
            f"(first: {report.differing[0].decision_id})"
        )
        raise typer.Exit(1)


@app.command()
def explain(
    decision_id: Annotated[str, typer.Argument(help="Id of a decision event (see the run report or events tail).")],
    json_mode: JsonOpt = False,
) -> None:
    """Show why an agent decided what it did: inputs, rule and score, chosen action, policy verdict, outcome."""
    from pilotage.explain import explain_decision

    settings = cli_settings()
    _event_log_exists(settings)
    events = [e for _, e in asyncio.run(_read_events(settings, "*", None))]
    doc = explain_decision(events, decision_id, where=settings.bus_url)
    d, verdict = doc, doc["policy_verdict"]
    by_id = {e.id: e for e in events}
    outcome = [by_id[o["id"]] for o in doc["outcome_events"]]
    if json_mode:
        console.print_json(json.dumps({k: v for k, v in doc.items() if k != "run_id"}, default=str))
        return
    from pilotage.report import summarize

    agent, kind, action, when = (escape(str(d[k])) for k in ("agent", "kind", "action", "time"))
    console.print(f"[bold]{agent}[/] decided [bold]{kind}[/] → [bold green]{action}[/] at {when}")
    console.print(f"[bold]rule[/]      {escape(str(d['rule']))}")
    console.print(f"[bold]score[/]     {escape(json.dumps(d['score']))}")
    console.print(f"[bold]rationale[/] {escape(str(d['rationale']))}")
    if verdict is None:
        console.print("[bold]verdict[/]   none: this decision gated no world-changing action")
    else:
        console.print(
            "[bold]verdict[/]   "
            + escape(
                f"{verdict.get('action')}: {'allow' if verdict.get('allow') else 'DENY'} "
                f"(engine {verdict.get('engine')}, policies {', '.join(verdict.get('policies') or []) or '-'})"
                + (f" ({verdict['override']})" if verdict.get("override") else "")
                + (f" reasons: {'; '.join(verdict.get('reasons') or [])}" if verdict.get("reasons") else "")
                + (f" · event {verdict['event_id']}" if verdict.get("event_id") else "")
            )
        )
    if d.get("kind") == "slo.assessment":  # issue 21: the sequential evidence of each metric of the step
        from pilotage.agents.reliability import evidence_lines, warmup_line

        if warmup_line(d["inputs"].get("warmup")):
            console.print(f"[bold]warm-up[/]   {escape(warmup_line(d['inputs'].get('warmup')))}")
        for line in evidence_lines((d.get("score") or {}).get("assessment") or {}):
            console.print(f"[bold]evidence[/]  {escape(line)}")
    for e in outcome:
        console.print(
            f"[bold]outcome[/]   {escape(f'{e.type.removeprefix(EventType.PREFIX)}: {summarize(e)} · event {e.id}')}"
        )
    if not outcome:
        console.print("[bold]outcome[/]   no event followed from this agent")
    console.print("[bold]inputs[/]")
    console.print_json(json.dumps(d["inputs"], default=str))
