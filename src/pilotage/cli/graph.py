"""``pilotage graph ingest|query|export`` and ``pilotage impact``: the knowledge graph of real code.

``graph ingest PATH`` reads a Python repository into the configured graph (``graph_url``), incrementally; files it
cannot read are listed with the reason and the command exits 1 only when nothing at all could be ingested.
``impact PATH_OR_SYMBOL`` lists the modules, endpoints, services and tests a change may affect, each with the chain
of edges that explains it; ``impact --service A --rev REV`` (issue #19) lists the breaking API changes of commit REV
of managed service A and the consumers that use them, as the deploy gate would name them, without delivering.
``graph query SQL`` runs read-only SQL on the store; ``graph export`` writes Cypher, GraphML or Mermaid.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pilotage.cli import JsonOpt, app, cli_settings, console, print_error

graph_app = typer.Typer(help="The knowledge graph: ingest a repository, query it, export it.", no_args_is_help=True)
app.add_typer(graph_app, name="graph")


class ExportFormat(StrEnum):
    """Formats of ``graph export``."""

    cypher = "cypher"
    graphml = "graphml"
    mermaid = "mermaid"


@graph_app.command("ingest")
def graph_ingest(
    path: Annotated[Path, typer.Argument(help="The repository folder (or one .py file) to ingest.")],
    service: Annotated[
        str | None, typer.Option("--service", help="Service node that contains the code (default: folder name).")
    ] = None,
    spec: Annotated[
        list[Path] | None, typer.Option("--spec", help="An OpenAPI file whose operations become Endpoint nodes.")
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Re-read every file, even unchanged ones.")] = False,
    coverage: Annotated[
        bool,
        typer.Option("--coverage", help="Run the repository's tests under coverage.py: TESTS edges per test context."),
    ] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Put a Python repository into the knowledge graph (only changed files are re-read)."""
    from pilotage.app import open_graph
    from pilotage.graph.ingest import ingest

    with open_graph(cli_settings()) as graph:
        report = ingest(graph, path, service=service, specs=spec or [], full=full, coverage=coverage)
    doc = report.to_dict()
    if json_mode:
        console.print_json(json.dumps(doc))
    else:
        console.print(
            f"[bold]graph ingest[/bold] {escape(doc['root'])} → service {escape(doc['service'])}: "
            f"{doc['files']} Python files, "
            f"{doc['parsed']} read, {doc['unchanged']} unchanged, {doc['removed']} removed, "
            f"{len(doc['skipped'])} skipped; {doc['nodes_written']} nodes, {doc['edges_written']} edges written; "
            f"{doc['endpoints']} endpoints in {doc['seconds']:.2f} s"
        )
        if doc["coverage"]:
            cov = doc["coverage"]
            console.print(f"  coverage: {escape(cov['status'])}; {cov['edges']} TESTS edges from per-test contexts")
        for package, source in sorted(doc["imports"].items()):
            console.print(f"  imports of {escape(package)}: {escape(source)}")
        for skipped in doc["skipped"]:
            console.print(f"  [yellow]skipped[/yellow] {escape(skipped['path'])}: {escape(skipped['reason'])}")
        for key in doc["endpoints_unmatched"]:
            console.print(f"  [dim]no handler found for {escape(key)}[/dim]")
    if report.ingested == 0:
        reason = f"{len(report.skipped)} skipped" if report.files else "no Python files"
        print_error(f"nothing ingested from {path}: {reason} (fix: point at a folder with readable Python files)")
        raise typer.Exit(1)


@graph_app.command("query")
def graph_query(
    sql: Annotated[
        str, typer.Argument(help="Read-only SQL over nodes(id, kind, key, props) and edges(src, type, dst, props).")
    ],
    json_mode: JsonOpt = False,
) -> None:
    """Run a query in the store's own language (SQL on the embedded SQLite store)."""
    from pilotage.app import open_graph

    with open_graph(cli_settings()) as graph:
        rows = graph.query(sql)
    if json_mode:
        console.print_json(json.dumps(rows, default=str))
        return
    if not rows:
        console.print("(no rows)")
        return
    columns = list(rows[0])
    console.print("\t".join(columns), markup=False)
    for row in rows:
        console.print("\t".join(str(row[c]) for c in columns), markup=False)


@graph_app.command("export")
def graph_export(
    fmt: Annotated[ExportFormat, typer.Option("--format", help="cypher (Neo4j), graphml or mermaid.")],
    kind: Annotated[list[str] | None, typer.Option("--kind", help="Only nodes of this kind (repeatable).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Write the graph as Cypher statements, GraphML or a Mermaid flowchart."""
    from pilotage.app import open_graph
    from pilotage.graph.export import export

    with open_graph(cli_settings()) as graph:
        lines = list(export(graph, fmt.value, kind or None))
    text = "\n".join(lines) + "\n"
    if output is not None:
        output.write_text(text, encoding="utf-8")
    if json_mode:
        doc = {"format": fmt.value, "lines": len(lines), "output": str(output) if output else None}
        if output is None:
            doc["text"] = text
        console.print_json(json.dumps(doc))
    elif output is None:
        sys.stdout.write(text)
    else:
        console.print(f"wrote {len(lines)} lines of {fmt.value} to {output}", markup=False)


@app.command("impact")
def impact_command(
    target: Annotated[
        str | None, typer.Argument(help="A file or folder, a dotted symbol (pkg.mod.func) or a node id.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Start from every file `git diff --name-only REV` lists in TARGET's repository (union)."
        ),
    ] = None,
    service: Annotated[
        str | None, typer.Option("--service", help="A managed service: the cross-service impact of --rev.")
    ] = None,
    rev: Annotated[str, typer.Option("--rev", help="With --service: a revision of its repository.")] = "HEAD",
    json_mode: JsonOpt = False,
) -> None:
    """List what a change may affect: code (TARGET), or the consumers a service's commit breaks (--service, --rev)."""
    from pilotage.app import open_graph
    from pilotage.errors import InputError
    from pilotage.graph.impact import impact, impact_since

    if service is not None:
        if target is not None or since is not None:
            raise InputError("--service takes no TARGET or --since", hint="pilotage impact --service A --rev REV")
        _service_impact(service, rev, json_mode)
        return
    if target is None:
        raise InputError("name a TARGET, or --service", hint="pilotage impact PATH, or pilotage impact --service A")
    with open_graph(cli_settings()) as graph:
        report = impact(graph, target) if since is None else impact_since(graph, target, since)
    doc = report.to_dict()
    if json_mode:
        console.print_json(json.dumps(doc))
        return
    if since is not None:
        console.print(
            f"[bold]changed since {escape(since)}[/bold] in {escape(str(doc['repo']))}: {len(doc['files'])} files, "
            f"{len(doc['changed'])} in the graph"
            + (f"; not in the graph: {escape(', '.join(doc['not_in_graph']))}" if doc["not_in_graph"] else "")
        )
    console.print(
        f"[bold]impact[/bold] of {escape(target)}: changed {escape(', '.join(doc['changed'][:5]))}"
        + (f" (+{len(doc['changed']) - 5})" if len(doc["changed"]) > 5 else "")
    )
    for category in ("modules", "endpoints", "services", "tests"):
        items = doc[category]
        console.print(f"[bold]{category}[/bold] ({len(items)})")
        for item in items:
            console.print(f"  {escape(item['key'])}  [dim]{escape(item['path'])}[/dim]")


def _service_impact(service: str, rev: str, json_mode: bool) -> None:
    """``impact --service``: :func:`pilotage.fleet.impact.service_impact`, printed."""
    import asyncio

    from pilotage.fleet.impact import service_impact

    doc = asyncio.run(service_impact(cli_settings(), service, rev))
    if json_mode:
        console.print_json(json.dumps(doc))
        return
    console.print(
        f"[bold]impact[/bold] of {escape(service)} {escape(rev)} ({escape(doc['commit'][:12])}) over production "
        f"{escape(doc['production_commit'][:12])}: {escape(doc['summary'])}"
    )
    documents = doc["documents"]  # paths named by the descriptors: never markup
    console.print(f"documents: production {documents['production']}, commit {documents['commit']}", markup=False)
    console.print(f"[bold]breaking changes[/bold] ({len(doc['breaking'])})")
    for change in doc["breaking"]:
        console.print(
            f"  {escape(change['operation'])}: {escape(change['detail'])} [dim]{escape(change['rule'])}[/dim]"
        )
    console.print(f"[bold]consumers affected[/bold] ({len(doc['consumers'])})")
    for consumer in doc["consumers"]:
        for op in consumer["operations"]:
            details = "; ".join(c["detail"] for c in op["changes"])
            who = escape(f"{consumer['service']} ({consumer['env']})")
            console.print(f"  {who} · {escape(op['operation'])}: {escape(details)}")
    if doc["unaffected"]:
        console.print(f"not affected: {', '.join(doc['unaffected'])}", markup=False)
    for line in doc["gate"]:
        console.print(f"deploy gate: {escape(line)}")
