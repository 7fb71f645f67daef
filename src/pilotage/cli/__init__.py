"""The ``pilotage`` command line (typer). Thin: it parses options, calls the library and prints.

Every command takes ``--json`` (one JSON document on stdout) and otherwise prints rich output for people.
Errors print one line, ``error: <cause> (fix: <fix>)``, on stderr and exit non-zero:
2 bad input, 3 bad configuration, 4 policy denied, 5 backend failure, 1 a run that failed or rolled back.

Commands live in one module per area (``run.py``: demo and run; ``events.py``: events tail and explain), each
registering on :data:`app`; this module imports them at the bottom.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pilotage.errors import BackendError, ConfigError, InputError, PilotageError, PolicyDenied
from pilotage.secrets import MaskingFormatter, private_dir, private_umask
from pilotage.settings import Settings, load_settings

__all__ = ["JsonOpt", "app", "console", "main", "cli_settings", "print_error"]

app = typer.Typer(
    name="pilotage",
    help="Agents that carry a service from request to a watched, costed rollout.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

console = Console(highlight=False, soft_wrap=True)


def _print_version(value: bool) -> None:
    if value:
        from pilotage import __version__

        console.print(__version__)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Agents that carry a service from request to a watched, costed rollout."""


def print_error(line: str) -> None:
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


def cli_settings() -> Settings:
    """Load the settings for a command (pilotage.toml and PILOTAGE_* in the working directory).

    An existing state folder (``settings.home``) is tightened to 0700 (folders made before issue 15 were 0755).
    """
    settings = load_settings()
    if settings.home.is_dir():
        with contextlib.suppress(OSError):
            private_dir(settings.home)
    return settings


@app.command()
def version(json_mode: JsonOpt = False) -> None:
    """Print the Pilotage version."""
    from pilotage import __version__

    if json_mode:
        console.print_json(json.dumps({"version": __version__}))
    else:
        console.print(__version__)


def _usage_errors() -> tuple[type[Exception], ...]:
    """Return the exception classes typer/click raise for bad command-line usage (typer ≥ 0.20 vendors click)."""
    classes: list[type[Exception]] = []
    for module_name in ("typer._click.exceptions", "click.exceptions"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        classes.append(module.ClickException)
    return tuple(classes)


class _LazyFileHandler(logging.FileHandler):
    """A FileHandler that creates its folder on the first record, and drops records it cannot write."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            return
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        """Never print logging failures on stderr: the CLI's stderr is one error line."""


def _log_to_file() -> None:
    """Send library log records to ``<home>/pilotage.log`` (stderr stays one error line), secrets masked.

    ``home`` is ``PILOTAGE_HOME`` or ``.pilotage``; :func:`log_in` moves the file to another state folder.
    """
    home = Path(os.environ.get("PILOTAGE_HOME") or ".pilotage")
    handler = _LazyFileHandler(home / "pilotage.log", encoding="utf-8", delay=True)
    handler.setFormatter(MaskingFormatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("pilotage")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if os.environ.get("PILOTAGE_DEBUG") else logging.INFO)
    root.propagate = False


def log_in(home: Path) -> None:
    """Write the CLI's log file in the state folder ``home`` from now on (``--workdir``)."""
    for handler in logging.getLogger("pilotage").handlers:
        if isinstance(handler, _LazyFileHandler):
            handler.close()  # reopened lazily at the new path by the next record
            handler.baseFilename = str((home / "pilotage.log").resolve())


def _json_requested() -> bool:
    """The command line asks for JSON output: an error is then also a JSON document on stdout."""
    return "--json" in sys.argv[1:]


def _fail(line: str, code: int, error_type: str, hint: str | None = None) -> None:
    """Report a failed command: one line on stderr, and with ``--json`` a document on stdout; exit ``code``."""
    print_error(line)
    if _json_requested():
        doc = {"status": "error", "error": line, "error_type": error_type, "exit_code": code, "hint": hint}
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()
    sys.exit(code)


def main() -> None:
    """Console-script entry point: run the app and turn any error into one line and an exit code.

    Exit codes: 2 InputError, 3 ConfigError, 4 PolicyDenied, 5 BackendError, 1 other PilotageError or a failed
    run, 130 interrupted, 70 an internal error (EX_SOFTWARE; ``PILOTAGE_DEBUG=1`` shows the traceback).
    The process umask is 077: the state folder, its databases, logs, run folders and reports are owner-only.
    """
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    private_umask()  # issue 15: every file and folder the CLI and its children create is owner-only
    _log_to_file()
    try:
        result = app(standalone_mode=False)
        if isinstance(result, int) and result != 0:
            sys.exit(result)
    except _usage_errors() as exc:
        ctx = getattr(exc, "ctx", None)
        names: list[str] = []  # the sub-command path without the program's own name: "events tail"
        while ctx is not None and ctx.parent is not None:
            names.insert(0, ctx.info_name)
            ctx = ctx.parent
        command = "".join(f" {name}" for name in names)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if not message.strip():  # empty for "no arguments: help was shown"
            sys.exit(2)
        _fail(f"{message} (fix: see `pilotage{command} --help`)", 2, "UsageError")
    except PilotageError as exc:
        code = getattr(exc, "exit_code", None) or next((c for cls, c in EXIT_CODES if isinstance(exc, cls)), 1)
        _fail(exc.one_line(), code, type(exc).__name__, getattr(exc, "hint", None))
    except KeyboardInterrupt:
        _fail("interrupted; events accepted so far are in the log", 130, "Interrupted")
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if os.environ.get("PILOTAGE_DEBUG"):
            raise
        _fail(
            f"internal error: {type(exc).__name__}: {exc} "
            "(fix: this is a Pilotage bug; rerun with PILOTAGE_DEBUG=1 for the traceback and report it)",
            70,
            "InternalError",
        )


from pilotage.cli import events as _events  # noqa: E402,F401 - registers its commands on app
from pilotage.cli import fleet as _fleet  # noqa: E402,F401 - registers its commands on app (issue 17: service, deliver, up, down)
from pilotage.cli import graph as _graph  # noqa: E402,F401 - registers its commands on app (issue 4: graph, impact)
from pilotage.cli import init as _init  # noqa: E402,F401 - registers its commands on app (issue 17: init)
from pilotage.cli import market as _market  # noqa: E402,F401 - registers its commands on app (issue 8: market)
from pilotage.cli import policy as _policy  # noqa: E402,F401 - registers its commands on app (issue 6: policy, approve, deny)
from pilotage.cli import run as _run  # noqa: E402,F401 - registers its commands on app
from pilotage.cli import serve as _serve  # noqa: E402,F401 - registers its commands on app
from pilotage.cli import worker as _worker  # noqa: E402,F401 - registers its commands on app (issue 8: worker)
