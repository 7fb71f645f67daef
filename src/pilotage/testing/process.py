"""Run a tool (schemathesis, pytest, locust) as a bounded child process without blocking the asyncio loop.

Every test and load tool Pilotage drives runs in its own process, for three reasons that hold for all of them:

* **the control plane's asyncio loop stays free** — the tools are synchronous (requests, hypothesis) or bring
  their own event loop (locust's gevent monkey-patches ``socket``, ``ssl``, ``threading`` … process-wide,
  which would break asyncio in the same interpreter);
* **a hard time bound** — on timeout the whole process group (the tool and anything it spawned) gets SIGTERM,
  then SIGKILL after :data:`KILL_GRACE_S`; an in-process run could only be asked to stop;
* **no shared global state** — hypothesis settings, logging configuration, ``sys.modules`` of the service under
  test stay out of the control plane.

The tools run the code of a run's repository (the service's tests import it, schemathesis and Locust drive it), so
they start as :mod:`pilotage.runtime.sandbox` says (issue #15): an allow-list environment without Pilotage's
settings or the operator's credentials, plus the variables the caller passes, in their own process group.
Output (stdout + stderr) goes to a log file (cut to :data:`MAX_LOG_BYTES` once the tool ended); the last lines
are kept for errors. After the tool ends, its log and the reports it wrote (``mask_files``) are rewritten with
every registered secret masked (:meth:`pilotage.secrets.SecretMasker.mask_file`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pilotage.errors import BackendError
from pilotage.runtime.local import tail_lines
from pilotage.runtime.sandbox import launch_options, sandbox_env
from pilotage.secrets import masker

__all__ = ["KILL_GRACE_S", "MAX_LOG_BYTES", "ProcessOutcome", "run_process"]

#: Seconds between SIGTERM and SIGKILL when a tool overruns its time budget.
KILL_GRACE_S = 3.0
#: Bytes of a tool's output kept in its log (the first :data:`_HEAD_BYTES` and the last ones): a test that floods
#: its output (300 MB on one line, found by a hostile-input review) no longer makes the masking and the tail read it
#: all into the control plane's memory.
MAX_LOG_BYTES = 16 * 1024 * 1024
_HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class ProcessOutcome:
    """How a tool process ended.

    Attributes:
        argv: the command line that ran.
        exit_code: the process exit status (negative: killed by that signal); None only if it could not be reaped.
        timed_out: True when the time budget ran out and the process group was killed.
        duration_s: wall-clock seconds from start to exit.
        log_path: file holding the tool's stdout and stderr.
        output_tail: the last (up to 30) non-empty lines of that output.
    """

    argv: list[str]
    exit_code: int | None
    timed_out: bool
    duration_s: float
    log_path: Path
    output_tail: list[str] = field(default_factory=list)


def _cap_log(path: Path) -> None:
    """Cut a log over :data:`MAX_LOG_BYTES` to its first and last bytes, with a line saying how much was cut."""
    with contextlib.suppress(OSError):
        size = path.stat().st_size
        if size <= MAX_LOG_BYTES:
            return
        keep = MAX_LOG_BYTES - _HEAD_BYTES
        with path.open("rb") as handle:
            head = handle.read(_HEAD_BYTES)
            handle.seek(size - keep)
            tail = handle.read(keep)
        cut = f"\n[pilotage: {size - len(head) - len(tail)} bytes of output cut here (over {MAX_LOG_BYTES})]\n"
        path.write_bytes(head + cut.encode() + tail)


def _mask(log_path: Path, reports: Sequence[Path]) -> None:
    _cap_log(log_path)
    for path in (log_path, *reports):
        with contextlib.suppress(OSError):
            masker().mask_file(path)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, SIGKILL it after :data:`KILL_GRACE_S`, and reap the process."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), KILL_GRACE_S)
    except TimeoutError:
        _signal_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), KILL_GRACE_S)


async def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    timeout_s: float,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    mask_files: Sequence[Path] = (),
) -> ProcessOutcome:
    """Run ``argv`` in ``cwd`` with at most ``timeout_s`` seconds of wall-clock time.

    The process runs in its own session (process group) with :func:`~pilotage.runtime.sandbox.sandbox_env`; on
    timeout, or when the awaiting task is cancelled, the whole group is terminated. A non-zero exit is *not* an
    error here: callers read the tool's reports.

    Args:
        argv: program and arguments (no shell).
        cwd: working directory of the tool.
        timeout_s: time budget in seconds (> 0).
        log_path: file for stdout + stderr (parent folders are created; an existing file is overwritten).
        env: variables the tool needs besides the allow-list (test URL, headers, database path …).
        mask_files: reports the tool writes; they and ``log_path`` get secrets masked once it ended.

    Returns:
        The :class:`ProcessOutcome`.

    Raises:
        BackendError: the program cannot be started (missing executable, bad ``cwd``).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("wb") as log_file:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=log_file, stderr=asyncio.subprocess.STDOUT, **launch_options(cwd, sandbox_env(env))
            )
        except OSError as exc:
            raise BackendError(
                f"cannot start {argv[0]} in {cwd}: {exc}", hint="check the Python install and the folder", path=cwd
            ) from exc
        timed_out = False
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            timed_out = True
            await _terminate(proc)
        except asyncio.CancelledError:
            await _terminate(proc)
            _mask(log_path, mask_files)
            raise
    _mask(log_path, mask_files)
    return ProcessOutcome(
        argv=list(argv),
        exit_code=proc.returncode,
        timed_out=timed_out,
        duration_s=time.monotonic() - started,
        log_path=log_path,
        output_tail=tail_lines(log_path, 30),
    )
