"""Services under management (issue #17): ``service add|list|show|graph``, ``deliver``, ``up``, ``down``.

``pilotage up`` starts ``pilotage serve`` in the background (the control plane keeps each production version
behind its stable address, re-creates it after a crash and wakes it after a scale-to-zero) and returns once every
managed service serves; ``pilotage down`` stops that control plane, which stops the services. ``pilotage deliver``
hands the delivery to the control plane when one serves the folder, else runs it in-process: production is
started behind its stable address for the delivery and stopped when the command ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.text import Text

from pilotage.agent import RunSpec
from pilotage.cli import JsonOpt, app, cli_settings, console, print_error
from pilotage.errors import ConfigError, InputError
from pilotage.settings import Settings

service_app = typer.Typer(help="Services under management: add, list, show.", no_args_is_help=True)
app.add_typer(service_app, name="service")

#: Seconds `pilotage up` waits for every service to serve (a first prepare installs a venv).
UP_TIMEOUT_S = 600.0


def _emit(json_mode: bool, data: Any) -> None:
    if json_mode:
        console.print_json(json.dumps(data))


async def _with_log(settings: Settings, work: Any) -> Any:
    from pilotage.app import open_bus, open_graph

    async with open_bus(settings) as bus:
        graph = open_graph(settings)
        try:
            return await work(bus, graph)
        finally:
            graph.close()


@service_app.command("add")
def service_add(
    paths: Annotated[list[Path], typer.Argument(help="Git repositories with a pilotage.yaml at their root.")],
    port: Annotated[int, typer.Option(help="Stable port (0 = the next free one from fleet_port_base).")] = 0,
    json_mode: JsonOpt = False,
) -> None:
    """Put services under management: their HEAD becomes the production commit, each gets a stable address.

    Several paths are added providers first; a ``consumes`` entry is checked against its provider's document.
    """
    from pilotage.app import open_runtime
    from pilotage.fleet.onboard import add_services
    from pilotage.secrets import private_dir

    settings = cli_settings()
    private_dir(settings.home)
    if port and len(paths) > 1:
        raise InputError("--port names one stable port, but several services were given", hint="add them one by one")

    async def work(bus: Any, graph: Any) -> list[dict[str, Any]]:
        runtime = open_runtime(settings)  # starts a provider whose served document nothing else gives
        try:
            return await add_services(bus, graph, settings, runtime, list(paths), port=port)
        finally:
            await runtime.close()

    added = asyncio.run(_with_log(settings, work))
    _emit(json_mode, added)
    if not json_mode:
        for data in added:
            consumes = [c["service"] for c in data["descriptor"].get("consumes") or []]
            console.print(
                f"added [bold]{escape(data['service'])}[/] · production {escape(data['commit'][:12])} · stable "
                f"address http://127.0.0.1:{data['stable_port']} · {escape(str(data['repo_path']))}"
                + (f" · consumes {escape(', '.join(consumes))}" if consumes else "")
            )
            if data["note"]:
                console.print(f"  [dim]operations not in the graph yet: {escape(str(data['note']))}[/]")
        console.print("next: `pilotage up` to serve production, `pilotage deliver SERVICE REV` to deliver a commit")


def _fleet(settings: Settings) -> dict[str, Any]:
    from pilotage.fleet.registry import load_fleet

    async def work(bus: Any, _graph: Any) -> Any:
        return await load_fleet(bus)

    result: dict[str, Any] = asyncio.run(_with_log(settings, work))
    return result


@service_app.command("list")
def service_list(json_mode: JsonOpt = False) -> None:
    """The whole fleet: per service its production commit, state, delivery in progress (stage), queue, last outcome."""
    from rich.table import Table

    from pilotage.fleet.status import fleet_status

    fleet, rows = asyncio.run(_with_log(cli_settings(), lambda bus, _graph: fleet_status(bus)))
    if json_mode:
        _emit(True, [{**fleet[row["name"]].to_dict(), **row} for row in rows])
        return
    table = Table("service", "production", "stable address", "state", "in progress", "queued", "last outcome")
    for row in rows:
        now, last = row["in_progress"], row["last_outcome"]
        doing = f"{now['rev'][:12]} {now.get('stage', '')}" if now else "-"
        ended = f"{last['rev'][:12]} {last['status']} {last['outcome']}".strip() if last else "-"
        queue = " ".join(q["rev"][:12] for q in row["queued"]) or "-"
        cells = (row["name"], row["production_commit"][:12], row["stable_url"], row["state"], doing, queue, ended)
        table.add_row(*(Text(str(cell)) for cell in cells))  # revisions and outcomes come from outside: no markup
    console.print(table if rows else "no managed service (add one: `pilotage service add PATH`)")


@service_app.command("show")
def service_show(name: Annotated[str, typer.Argument(help="The service's name.")], json_mode: JsonOpt = False) -> None:
    """One service: production commit, stable address, state, deliveries and outcomes, SLO status."""
    from pilotage.fleet.registry import require_managed

    settings = cli_settings()
    fleet = _fleet(settings)
    service = require_managed(fleet, name)
    data = service.to_dict() | {
        "slo": _slo_status(settings, service),
        "dependencies": _relations(settings, fleet, name),
    }
    if json_mode:
        _emit(True, data)
        return
    console.print(
        f"[bold]{escape(name)}[/] · owner {escape(str(data['owner'] or '-'))} · {escape(str(service.repo_path))}"
    )
    console.print(
        f"production {service.production_commit} · stable address {service.stable_url} · {service.state}", markup=False
    )
    if service.wake_s:
        console.print(f"wake-ups: {len(service.wake_s)}, last {service.wake_s[-1]:.2f} s")
    console.print(f"SLO: {data['slo']['summary']}", markup=False)
    _print_relations(data["dependencies"])
    for entry in service.deliveries[-10:]:
        commit = str(entry.get("commit", ""))[:12]
        error = f" · {entry['error']}" if entry.get("error") else ""
        console.print(
            f"  {(entry.get('started') or entry.get('queued') or '')[:19]} {commit or entry['rev'][:12]} "
            f"{entry['status']} {entry['outcome']}{error}",
            markup=False,
        )


def _relations(settings: Settings, fleet: dict[str, Any], name: str) -> dict[str, Any]:
    from pilotage.fleet.onboard import relations

    async def work(_bus: Any, graph: Any) -> dict[str, Any]:
        return relations(graph, fleet, name)

    result: dict[str, Any] = asyncio.run(_with_log(settings, work))
    return result


def _print_relations(rel: dict[str, Any]) -> None:
    """``service show``'s lines on APIs, providers, consumers and the code's calls (issue 19)."""
    for api in rel["provides"]:
        count = "operations unknown" if api["operations"] is None else f"{api['operations']} operations"
        console.print(f"provides API {api['api']} ({count})", markup=False)
    for c in rel["consumes"]:
        console.print(f"consumes {c['service']} via {c['env']}: {', '.join(c['operations'])}", markup=False)
    for c in rel["consumers"]:
        ops = ", ".join(op["operation"] for op in c["operations"]) + "".join(f", {u} (not in the document)"
                                                                             for u in c["unresolved"])  # fmt: skip
        console.print(f"consumed by {c['service']} ({c['env']}): {ops}", markup=False)
    _print_verifications(rel["verifications"])
    calls = rel["calls"]
    if not rel["consumes"] and not calls.get("ingested"):
        return
    if not calls.get("ingested"):
        console.print(f"code calls: not ingested ({calls['hint']})", markup=False)
        return
    console.print(f"code calls: {calls['calls']} HTTP calls found")
    for item in calls["declared_not_called"]:
        console.print(f"  declared, never called: {item['provider']} {item['operation']}", markup=False)
    for item in calls["called_not_declared"]:
        console.print(f"  called, not declared: {item['provider']} {item['operation']} at {item['at']}", markup=False)
    for item in calls["unmatched_calls"]:
        console.print(
            f"  [dim]call to no managed operation: {escape(str(item['call']))} at {escape(str(item['at']))}[/]"
        )


def _print_verifications(found: dict[str, Any]) -> None:
    """``service show``'s consumer verifications (issue 19): who verified which commit, newest first."""
    for v in found["as_provider"]:
        result = "passed" if v["passed"] else "FAILED " + ", ".join(v["failed_tests"])
        console.print(
            f"verified by {v['consumer']}@{v['consumer_commit'][:12]} against {v['provider_commit'][:12]}: "
            f"{result} · {v['time']}",
            markup=False,
        )
    for v in found["as_consumer"]:
        result = "passed" if v["passed"] else "FAILED " + ", ".join(v["failed_tests"])
        console.print(
            f"verified {v['provider']}@{v['provider_commit'][:12]} with {v['consumer_commit'][:12]}: "
            f"{result} · {v['time']}",
            markup=False,
        )


def _slo_status(settings: Settings, service: Any) -> dict[str, Any]:
    from pilotage.fleet.registry import slo_status

    async def work(bus: Any, _graph: Any) -> Any:
        return await slo_status(bus, service)

    result: dict[str, Any] = asyncio.run(_with_log(settings, work))
    return result


class GraphFormat(StrEnum):
    """Formats of ``service graph``."""

    mermaid = "mermaid"
    graphml = "graphml"
    json = "json"


@service_app.command("graph")
def service_graph(
    fmt: Annotated[
        GraphFormat, typer.Option("--format", help="mermaid (default), graphml or json.")
    ] = GraphFormat.mermaid,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Draw the fleet: services, the APIs they provide, their operations, who consumes what and depends on whom."""
    from pilotage.fleet.graph import fleet_subgraph
    from pilotage.fleet.onboard import fleet_graph_doc
    from pilotage.graph.export import to_graphml, to_mermaid

    settings = cli_settings()
    fleet = _fleet(settings)
    fmt = GraphFormat.json if json_mode else fmt

    async def work(_bus: Any, graph: Any) -> tuple[Any, Any, dict[str, Any]]:
        nodes, edges = fleet_subgraph(graph, set(fleet))
        return nodes, edges, fleet_graph_doc(graph, fleet)

    nodes, edges, doc = asyncio.run(_with_log(settings, work))
    if fmt == GraphFormat.json:
        text = json.dumps({k: v for k, v in doc.items() if k != "mermaid"}, indent=2)
    else:
        text = "\n".join((to_mermaid if fmt == GraphFormat.mermaid else to_graphml)(nodes, edges))
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
        console.print(
            f"wrote the fleet graph ({len(nodes)} nodes, {len(edges)} edges) as {fmt.value} to {output}", markup=False
        )
    else:
        sys.stdout.write(text + "\n")


# --- deliver -------------------------------------------------------------------------------------------------
#: Exit codes of a delivery whose run failed on a bad input (2) or a bad descriptor (3) of the delivered commit.
_FAILED_EXIT = {"InputError": 2, "ConfigError": 3}


def _failure_type(events: list[Any]) -> str:
    from pilotage.events import EventType

    failed = next((e for e in events if e.type == EventType.AGENT_FAILED), None)
    return str(failed.data.get("error_type", "")) if failed is not None and isinstance(failed.data, dict) else ""


def _logged_failure_type(settings: Settings, run_id: str) -> str:
    """The exception class of the run's ``agent.failed`` (a delivery handed to ``pilotage serve``), or ""."""
    from pilotage.bus.query import EventLog
    from pilotage.events import EventType

    async def work(bus: Any, _graph: Any) -> Any:
        return await EventLog(bus).all(EventType.AGENT_FAILED, run=run_id)

    return _failure_type(asyncio.run(_with_log(settings, work)))


@app.command()
def deliver(
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            help="SERVICE [REV] (a sha, branch, tag; default HEAD), or several SERVICE@REV delivered as one release."
        ),
    ] = None,
    release: Annotated[
        Path | None, typer.Option("--release", help="A release file: YAML `services: [A@REV, B@REV]`.")
    ] = None,
    budget: Annotated[float, typer.Option(help="Time budget of the delivery in seconds.")] = 900.0,
    commit_tests: Annotated[
        bool,
        typer.Option(
            "--commit-tests",
            help="Commit Pilotage's spec-derived tests to the service's repository on a branch pilotage/tests-<sha>.",
        ),
    ] = False,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach", help="Hand the delivery to the running `pilotage serve` and return its run id at once."
        ),
    ] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Run the lifecycle on commit REV of SERVICE's own repository; exit 0 when it is promoted to production.

    Several ``SERVICE@REV`` (or ``--release FILE``) are one release: delivered in dependency order, rolled back in
    reverse order when one fails (README "Releases of several services").
    """
    from pilotage.cli.run import _finish, _timeline_printer
    from pilotage.cli.serve import queue_run, submit_run
    from pilotage.fleet.submission import check_delivery, delivery_run
    from pilotage.flows.supervisor import serving_pid

    settings = cli_settings()
    single = _single_target(targets or [], release)
    if single is None:
        from pilotage.cli.release import deliver_release

        members = _release_members(targets or [], release)
        deliver_release(settings, members, budget_s=budget, commit_tests=commit_tests, json_mode=json_mode)
        return
    service, rev = single
    serving = serving_pid(settings.home) is not None
    managed, sha = check_delivery(_fleet(settings), service, rev, budget, queued=serving)
    run = delivery_run(settings, managed, rev, sha, commit_tests=commit_tests)
    run_id = run.run_id
    if not json_mode:
        console.print(
            f"[bold]Pilotage[/] delivery [bold]{escape(run_id)}[/] · {escape(f'{service} {rev}')} ({escape(sha[:12])}) "
            f"over production {escape(managed.production_commit[:12])} · stable address {escape(managed.stable_url)}"
        )
    if detach:  # issue 19, 5: queued in the control plane; `pilotage service list` follows it
        queue_run(settings, run)
        _emit(json_mode, {"run_id": run_id, "service": service, "rev": sha, "status": "queued"})
        if not json_mode:
            console.print(f"queued {run_id}: `pilotage service list` shows its progress", markup=False)
        return
    if serving:
        summary = submit_run(settings, run, _timeline_printer(json_mode))
        summary["error_type"] = _logged_failure_type(settings, run.run_id)
    else:
        summary = _deliver_here(settings, run, json_mode, budget)
    if summary["status"] != "completed":
        _report(summary, json_mode)
        print_error(f"{summary['error']} (production {managed.production_commit[:12]} keeps serving)")
        raise typer.Exit(_FAILED_EXIT.get(summary.get("error_type", ""), 1))
    _finish(summary, json_mode, None)
    if summary["outcome"] != "promoted":
        print_error(
            f"delivery of {service} {rev} ended {summary['outcome']}: production {managed.production_commit[:12]} "
            f"keeps serving (see {summary['report']})"
        )
        raise typer.Exit(1)


def _single_target(targets: list[str], release: Path | None) -> tuple[str, str] | None:
    """``(SERVICE, REV)`` of a single delivery, or None for a release (several ``@`` members or a release file).

    Raises:
        InputError: more than two words without ``@``.
    """
    if not targets and release is None:
        raise InputError("deliver needs a service", hint="deliver SERVICE [REV], or A@REV B@REV …, or --release FILE")
    if release is not None or len(targets) > 2 or any("@" in t for t in targets):
        if len(targets) == 1 and release is None:
            service, _, rev = targets[0].partition("@")
            return (service, rev) if service and rev else None
        if release is None and not all("@" in t for t in targets):
            raise InputError(
                f"cannot read {' '.join(targets)!r} as a delivery", hint="deliver SERVICE [REV], or A@REV B@REV …"
            )
        return None
    return targets[0], targets[1] if len(targets) > 1 else "HEAD"


def _release_members(targets: list[str], release: Path | None) -> list[Any]:
    """The members named on the command line and in the release file (a service named twice: InputError)."""
    from pilotage.fleet.release import load_release_file, parse_members, refuse_duplicates

    members = parse_members(targets) + (load_release_file(release) if release is not None else [])
    refuse_duplicates(members)
    return members


def _report(summary: dict[str, Any], json_mode: bool) -> None:
    if json_mode:
        console.print_json(json.dumps(summary))
    else:
        status, report = escape(str(summary["status"])), escape(str(summary["report"]))
        console.print(f"\n[bold red]{status}[/] · {summary['duration_s']:.1f}s · report {report}")


def _deliver_here(settings: Settings, run: RunSpec, json_mode: bool, budget_s: float) -> dict[str, Any]:
    from pilotage.flows.supervisor import ControlPlaneLock

    lock = ControlPlaneLock(settings.home, run.run_id)
    lock.acquire()
    try:
        return asyncio.run(_deliver_async(settings, run, json_mode, budget_s))
    finally:
        lock.release()


async def _deliver_async(settings: Settings, run: RunSpec, json_mode: bool, budget_s: float) -> dict[str, Any]:
    from pilotage.app import all_agents, backends
    from pilotage.cli.run import _timeline_printer, run_summary
    from pilotage.fleet.keeper import FleetKeeper
    from pilotage.flows.feature_delivery import run_feature_delivery

    async with backends(settings) as ctx:
        keeper = FleetKeeper(ctx)
        # ConfigError/BackendError: production does not start; nothing delivered. Issue 19: the providers it
        # consumes serve their stable addresses too (the addresses its instances are given)
        await keeper.up(await _with_providers(ctx.bus, run))
        watch = asyncio.create_task(keeper.watch())
        try:
            result = await run_feature_delivery(
                ctx, run, all_agents(ctx), budget_s=budget_s, on_event=_timeline_printer(json_mode)
            )
        finally:
            watch.cancel()
            await keeper.down()
    return run_summary(settings, run, result, title=f"Pilotage delivery {run.run_id}") | {
        "error_type": _failure_type(result.events)
    }


async def _with_providers(bus: Any, run: RunSpec) -> list[str]:
    """The delivered service and every managed service it depends on (its production's and REV's dependencies)."""
    from pilotage.fleet.checkout import descriptor_at
    from pilotage.fleet.deps import serving_order
    from pilotage.fleet.registry import live_descriptors, load_fleet

    live = live_descriptors(await load_fleet(bus))
    head = await asyncio.to_thread(descriptor_at, run.service_repo, run.rev)
    return serving_order(live, run.service, head)


# --- up / down -----------------------------------------------------------------------------------------------
@app.command()
def up(json_mode: JsonOpt = False) -> None:
    """Serve every managed service's production version behind its stable address (a background control plane)."""
    from pilotage.flows.supervisor import ready_line, serving_pid, spawn_control_plane
    from pilotage.secrets import private_dir

    settings = cli_settings()
    fleet = _fleet(settings)
    if not fleet:
        raise InputError("no managed service to start", hint="pilotage service add PATH")
    private_dir(settings.home)
    since = time.time()
    pid = serving_pid(settings.home)
    if pid is None:
        pid = spawn_control_plane(settings.home)
    if not json_mode:
        console.print(
            f"control plane pid {pid}: preparing and starting {len(fleet)} service(s) "
            "(a first prepare installs dependencies; its output is in .pilotage/services/NAME/prepared/*.log)"
        )
    states = _wait_up(settings, sorted(fleet), since, pid)
    failed = {n: s for n, s in states.items() if s["state"] != "up"}
    api = (ready_line(settings.home, pid, wait_s=10.0) or {}).get("api")  # not api_port when that was taken
    _emit(json_mode, {"pid": pid, "api": api, "services": states})
    if not json_mode:
        for name, state in states.items():
            line = f"{state['url']} → {name} {state['commit'][:12]}" if state["state"] == "up" else state["error"]
            colour = "green" if state["state"] == "up" else "red"
            word = escape(f"{state['state']:<6}")
            console.print(f"[{colour}]{word}[/] {escape(name)}: {escape(str(line))}")
        where = f" (dashboard and HTTP API: {escape(str(api).removesuffix('/api/v1'))})" if api else ""
        console.print(f"control plane pid {pid} keeps them up{where}; `pilotage down` stops them")
    if failed:
        name, state = next(iter(failed.items()))
        print_error(f"service {name} did not start: {state['error']}")
        raise typer.Exit(3)


def _wait_up(settings: Settings, names: list[str], since: float, pid: int) -> dict[str, dict[str, Any]]:
    """Wait until each service serves (``service.up``) or failed (``service.down`` reason ``failed``).

    Only a ``service.up``/``service.down`` stamped at or after ``since`` (epoch seconds, taken before the control
    plane was spawned; the same host's clock stamps both) counts: an older one is the previous control plane's, whose
    address may be gone — with a second of slack here, ``up`` right after a killed plane's start took the dead
    plane's event and returned before the new plane had opened the route.
    """
    from datetime import datetime

    from pilotage.flows.recovery import process_alive

    deadline = time.monotonic() + UP_TIMEOUT_S
    states: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        fleet = _fleet(settings)  # one read of the log per poll
        for name, service in fleet.items():
            up = service.up
            if name in names and up and datetime.fromisoformat(up["at"]).timestamp() >= since:
                if up["state"] == "up" or up.get("reason") == "failed":
                    states[name] = {**up, "error": up.get("error")}
        already = [n for n in names if n not in states and _answers(fleet[n].stable_url)]
        for name in already:
            service = fleet[name]
            states[name] = {
                "state": "up",
                "url": service.stable_url,
                "commit": service.production_commit,
                "error": None,
            }
        if len(states) == len(names):
            return states
        if not process_alive(pid):
            break
        time.sleep(0.3)
    for name in names:
        states.setdefault(name, {"state": "down", "url": "", "commit": "", "error": f"not up (see {settings.home})"})
    return states


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


@app.command()
def down(json_mode: JsonOpt = False) -> None:
    """Stop the control plane `pilotage up` started (and with it every production version it serves)."""
    from pilotage.flows.recovery import process_alive
    from pilotage.flows.supervisor import serving_pid

    settings = cli_settings()
    pid = serving_pid(settings.home)
    if pid is None or pid < 0:
        _emit(json_mode, {"stopped": False, "pid": None})
        if not json_mode:
            console.print("nothing serves this folder")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30.0
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if process_alive(pid):
        raise ConfigError(f"the control plane (pid {pid}) did not stop within 30 s", hint=f"kill {pid}")
    _emit(json_mode, {"stopped": True, "pid": pid})
    if not json_mode:
        console.print(f"control plane pid {pid} stopped; production versions stopped")
