"""A service's own tests, as its descriptor's ``test`` command says (issue #17), in the ``unit`` result shape.

A hand-written service brings its tests and how to run them: ``pilotage.yaml`` ``test``, a shell command line
(``{python} -m pytest -q``, ``make test``, ``npm test`` …). :func:`run_own_tests` renders it
(:func:`pilotage.fleet.descriptor.render_command`: ``{prepared}`` = the commit's prepared folder, ``{port}`` = the
running head instance's port, ``{python}`` = Pilotage's interpreter) and runs it with ``/bin/sh -c`` in the
service's checkout, as a bounded child process (:func:`pilotage.testing.process.run_process`: the sandbox
environment of :mod:`pilotage.runtime.sandbox` plus the descriptor's ``env`` and ``PILOTAGE_BASE_URL`` of the
head instance), output saved under the run's artefacts.

Counting: the command is not ours, so no JUnit XML can be asked for. When the output ends with pytest's summary
line (``3 passed, 1 failed in 0.12s``) the counts are read from it (``counts_from: "pytest summary"``); otherwise the
exit code is the only evidence (``counts_from: "exit code"``): 0 → one passed, non-zero → one failed. A run that
exits non-zero although its summary shows no failure (pytest's "no tests ran", a coverage threshold …) or that is
killed at its time budget counts one error, so it never looks clean. A descriptor without ``test`` gives a
result marked not run (``ran: false`` with a ``reason``): zero counts, which do not fail the gate.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pilotage.fleet.descriptor import render_command
from pilotage.runtime.local import tail_lines
from pilotage.testing.process import run_process

__all__ = [
    "OWN_TESTS_NODE",
    "not_run_schemathesis",
    "not_run_unit",
    "own_failure",
    "parse_pytest_summary",
    "run_own_tests",
]

#: The failure id of the descriptor's test command in ``tests.completed`` ``failures`` (it has no test ids).
OWN_TESTS_NODE = "pilotage.yaml test"
#: Output lines of the test command kept in the result.
TAIL_LINES = 15
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SUMMARY = re.compile(r"^=*\s*(?P<body>\d+ [a-z]+(?:, \d+ [a-z]+)*|no tests ran)\s+in\s+[\d.]+s\b.*$")
#: pytest's summary words → the ``unit`` counts (xfail counts as skipped, as pytest's JUnit writer does).
_WORDS = {
    "passed": "passed",
    "xpassed": "passed",
    "failed": "failed",
    "error": "errors",
    "errors": "errors",
    "skipped": "skipped",
    "xfailed": "skipped",
}


def parse_pytest_summary(text: str) -> dict[str, int] | None:
    """Return the counts of the last pytest summary line in ``text``, or None when there is none.

    Args:
        text: a command's output (ANSI colours are ignored).

    Returns:
        ``{"passed", "failed", "errors", "skipped"}`` (ints; warnings, deselected and reruns are not counted).
    """
    for line in reversed(text.splitlines()):
        match = _SUMMARY.match(_ANSI.sub("", line).strip())
        if match is None:
            continue
        counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
        for number, word in re.findall(r"(\d+) ([a-z]+)", match["body"]):
            if word in _WORDS:
                counts[_WORDS[word]] += int(number)
        return counts
    return None


def not_run_unit(reason: str) -> dict[str, Any]:
    """The ``unit`` result of tests that did not run: zero counts (nothing failed), ``ran: false`` and why."""
    return {
        "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "exit_code": None, "timed_out": False,
        "duration_s": 0.0, "junit_path": "", "ran": False, "counts_from": "not run", "reason": reason,
    }  # fmt: skip


def not_run_schemathesis(reason: str) -> dict[str, Any]:
    """The ``schemathesis`` result of a run that did not happen: its keys, zeros, ``ran: false`` and why."""
    return {
        "operations": [], "requests": 0, "failures": 0, "server_errors": 0, "checks_failed": [], "errors": 0,
        "exit_code": None, "timed_out": False, "complete": False, "seed": "", "duration_s": 0.0, "junit_path": "",
        "ndjson_path": "", "ran": False, "reason": reason,
    }  # fmt: skip


def _counts(summary: dict[str, int] | None, exit_code: int | None, timed_out: bool) -> tuple[dict[str, int], str]:
    """The counts of a run and where they come from (see the module docstring)."""
    if summary is not None:
        counts, source = dict(summary), "pytest summary"
        if exit_code != 0 and not counts["failed"] and not counts["errors"]:
            counts["errors"] = 1  # non-zero exit, clean summary: the run itself broke
    else:
        ok = exit_code == 0 and not timed_out
        counts, source = {"passed": int(ok), "failed": int(not ok), "errors": 0, "skipped": 0}, "exit code"
    if timed_out and not counts["failed"] and not counts["errors"]:
        counts["errors"] = 1
    return counts, source


async def run_own_tests(
    command: str,
    service_dir: Path,
    out_dir: Path,
    *,
    prepared: str = "",
    port: int | None = None,
    env: dict[str, str] | None = None,
    timeout_s: float = 300.0,
) -> dict[str, Any]:
    """Run a descriptor's ``test`` command in ``service_dir`` and return the ``unit`` result.

    Args:
        command: the descriptor's ``test`` (placeholders ``{prepared}``, ``{port}``, ``{python}``).
        service_dir: the checkout of the commit under test (working directory).
        out_dir: folder for the output, ``own-tests.log``.
        prepared: the commit's prepared folder ("" when the descriptor has no prepare step).
        port: the running head instance's port (``{port}``); None when no instance runs.
        env: the descriptor's ``env`` plus ``PILOTAGE_BASE_URL`` (added to the sandbox environment).
        timeout_s: time budget (``settings.testing_unit_timeout_s``); on expiry the process group is killed.

    Returns:
        ``{passed, failed, errors, skipped, exit_code, timed_out, duration_s, junit_path: "", ran: true,
        counts_from: "pytest summary"|"exit code", command, log_path, output_tail: [str], message}``;
        ``message`` is "" when nothing failed, else the exit status and the last output line (the shell's
        ``not found`` for a command that does not exist).

    Raises:
        ConfigError: the command names an unknown placeholder.
        BackendError: ``/bin/sh`` cannot be started in ``service_dir``.
    """
    line = render_command(command, port=port, prepared=prepared)
    log_path = Path(out_dir) / "own-tests.log"
    outcome = await run_process(
        ["/bin/sh", "-c", line], cwd=Path(service_dir), timeout_s=timeout_s, log_path=log_path, env=env
    )
    tail = tail_lines(log_path, TAIL_LINES)  # bounded: the last 64 KiB, lines cut to 500 characters
    counts, source = _counts(parse_pytest_summary("\n".join(tail)), outcome.exit_code, outcome.timed_out)
    message = ""
    if counts["failed"] or counts["errors"]:
        why = f"killed after {timeout_s} s" if outcome.timed_out else f"exited with {outcome.exit_code}"
        message = f"`{line}` {why}: {tail[-1] if tail else '(no output)'}"
    return {
        **counts,
        "exit_code": outcome.exit_code,
        "timed_out": outcome.timed_out,
        "duration_s": round(outcome.duration_s, 3),
        "junit_path": "",
        "ran": True,
        "counts_from": source,
        "command": line,
        "log_path": str(log_path),
        "output_tail": tail,
        "message": message,
    }


def own_failure(unit: dict[str, Any], service_dir: Path) -> dict[str, Any]:
    """The ``failures`` entry of a failing test command: ``{nodeid, kind: "unit", outcome, message, reproduce}``."""
    return {
        "nodeid": OWN_TESTS_NODE,
        "kind": "unit",
        "outcome": "failed" if unit["failed"] else "error",
        "message": "\n".join([unit["message"], *unit["output_tail"]])[:2000],
        "reproduce": f"cd {service_dir} && PILOTAGE_BASE_URL=<head instance> {unit['command']}",
    }
