"""``pilotage init [PATH]``: write a commented ``pilotage.yaml`` for a service Pilotage did not write (issue #17).

It reads the repository (:func:`pilotage.fleet.init.discover`: the app through the graph ingester's parser, the
dependency files, the OpenAPI document, the tests, the health and metrics routes), writes ``PATH/pilotage.yaml``
with a comment on every value saying where it came from, and checks that the file validates. An existing
descriptor is never overwritten without ``--force``; ``--print`` shows the file instead of writing it and
``--schema`` prints the descriptor's JSON Schema.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from pilotage.cli import JsonOpt, app, console
from pilotage.errors import InputError


def _write(file: Path, text: str, force: bool) -> None:
    """Write ``text`` to ``file``; refuse an existing file unless ``force``.

    Raises:
        InputError: ``file`` exists and ``force`` is false, or it cannot be written.
    """
    try:
        with file.open("w" if force else "x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError as exc:
        raise InputError(
            f"{file} already exists; not overwritten",
            hint="review or remove it, pass --force to replace it, or --print to see what init would write",
            path=str(file),
        ) from exc
    except OSError as exc:
        raise InputError(f"{file} cannot be written: {exc.strerror or exc}", path=str(file)) from exc


def _print_found(found: dict[str, Any]) -> None:
    """Print each value found and where it came from."""
    for key, entry in found["fields"].items():
        value = entry["value"]
        shown = value if isinstance(value, str) else json.dumps(value)
        console.print(f"  [bold]{key}[/bold]: {escape(shown)}  [dim]({escape(entry['source'])})[/dim]")
    for skipped in found["skipped"]:
        console.print(f"  [yellow]skipped[/yellow] {escape(skipped['path'])}: {escape(skipped['reason'])}")


@app.command("init")
def init_command(
    path: Annotated[Path, typer.Argument(help="The service's repository folder.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing pilotage.yaml.")] = False,
    print_only: Annotated[
        bool, typer.Option("--print", help="Print the descriptor on stdout instead of writing it.")
    ] = False,
    schema: Annotated[bool, typer.Option("--schema", help="Print the descriptor's JSON Schema and exit.")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Write a commented pilotage.yaml for an existing service repository (review it, then commit it)."""
    from pilotage.fleet.descriptor import DESCRIPTOR_FILE, descriptor_schema, parse_descriptor_text
    from pilotage.fleet.init import discover, render_descriptor

    if schema:
        sys.stdout.write(json.dumps(descriptor_schema(), indent=2) + "\n")
        return
    if not path.is_dir():
        raise InputError(f"{path} is not a folder", hint="give the service repository's folder", path=str(path))
    found = discover(path)
    file = Path(found["root"]) / DESCRIPTOR_FILE
    text = render_descriptor(found)
    descriptor = parse_descriptor_text(text, path=str(file))  # the file written must load: a Pilotage bug otherwise
    if not print_only:
        _write(file, text, force)
    if json_mode:
        doc = {"path": str(file), "written": not print_only, "found": found, "descriptor": descriptor.to_dict()}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    elif print_only:
        sys.stdout.write(text)
    else:
        console.print(f"[bold]pilotage init[/bold] {escape(found['root'])}: found")
        _print_found(found)
        console.print(
            f"wrote {escape(str(file))}: review it, then `git add {DESCRIPTOR_FILE} && git commit` "
            f"and `pilotage service add {escape(str(path))}`"
        )
