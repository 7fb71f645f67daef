"""Ctrl-C and SIGTERM stop ``pilotage run`` within 2 s, even while the process computes (issue 18, item 9).

asyncio's ``loop.add_signal_handler`` only runs its callback when the loop gets control back; an agent doing long
synchronous work inside the loop (validating a 12 MB document with openapi-spec-validator, generating its models)
kept it for over 100 s, and the run ignored both signals that long. :class:`RunStopper` installs plain
``signal.signal`` handlers instead: Python runs them in the main thread between two bytecodes, so also in the
middle of such work, and they

* before the event loop runs (the CLI's preflight reads and validates the document): print the one-line error and
  end the process at once (exit code 130); nothing was started or written yet, and unwinding a deep validation
  and the interpreter's shutdown took over 2 s on a loaded machine;
* while the run's loop runs: ask the loop, thread-safely, to cancel the run (the clean path: ``flow.failed``, the
  report, every process stopped — :func:`pilotage.cli.run._execute`) and start a watchdog thread: when the process
  has not finished within :data:`GRACE_S` seconds (the loop is still busy), the watchdog kills what the run started
  (every process carrying the run's control-plane mark, :func:`pilotage.flows.recovery.find_orphans`), prints the
  one-line error and ends the process with exit code 130. The run is then left open in the log; the next
  ``pilotage serve`` in the folder recovers it as it recovers a crashed control plane.

A second signal while the first is handled ends the process at once, the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["EXIT_INTERRUPTED", "GRACE_S", "RunStopper"]

#: Seconds the clean stop may take before the watchdog ends the process (the bound the issue sets is 2 s).
GRACE_S = 1.2
#: Exit status of an interrupted command (128 + SIGINT, the shell's convention).
EXIT_INTERRUPTED = 130
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunStopper:
    """Signal handling of one ``pilotage run`` (see the module docstring).

    Args:
        home: the state folder (the run's processes carry ``PILOTAGE_CONTROL_PLANE=<home>#<mark>``).
        mark: the instance part of that mark (the run id).
        grace_s: seconds the clean stop may take before the watchdog ends the process.
    """

    def __init__(self, home: Path, mark: str, *, grace_s: float = GRACE_S) -> None:
        self.home, self.mark, self.grace_s = home, mark, grace_s
        self.received: list[str] = []
        self._on_signal: Callable[[str], None] | None = None
        self._loop: Any = None
        self._finished = threading.Event()
        self._ending = threading.Lock()  # held by whichever path ends the process: the clean one or the watchdog
        self._previous: dict[int, Any] = {}

    @contextlib.contextmanager
    def installed(self) -> Iterator[RunStopper]:
        """Install the handlers for the block (the previous ones come back after it); mark the run's children."""
        from pilotage.flows.recovery import MARK_VAR

        os.environ[MARK_VAR] = f"{self.home.resolve()}#{self.mark}"  # inherited by every process the run starts
        for sig in _SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            self._ending.acquire()  # an emergency stop under way ends the process here (one error line, not two)
            self._finished.set()
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)

    def attach(self, loop: Any, on_signal: Callable[[str], None]) -> None:
        """From now on a signal calls ``on_signal(name)`` in ``loop`` (thread-safe) and arms the watchdog."""
        self._loop, self._on_signal = loop, on_signal

    def detach(self) -> None:
        """The loop is done: a signal interrupts directly again."""
        self._loop, self._on_signal = None, None

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        if len(self.received) > 1:
            self._emergency(name)
        loop, callback = self._loop, self._on_signal
        if loop is None or callback is None or loop.is_closed():
            from pilotage.cli import print_error

            print_error(f"interrupted by {name} before run {self.mark} started: nothing was started or recorded")
            os._exit(EXIT_INTERRUPTED)  # nothing to undo: no process, no event yet (unwinding takes seconds)
        with contextlib.suppress(RuntimeError):  # a loop closing meanwhile: the watchdog still ends the process
            loop.call_soon_threadsafe(callback, name)
        threading.Thread(target=self._watch, args=(name,), name="pilotage-stop-watchdog", daemon=True).start()

    def _watch(self, name: str) -> None:
        if not self._finished.wait(self.grace_s):
            self._emergency(name)

    def _emergency(self, name: str) -> None:
        """Kill the run's processes, print the one-line error, end the process now (exit 130).

        Does nothing when the clean path already finished (it prints its own error line).
        """
        from pilotage.cli import print_error
        from pilotage.flows.recovery import find_orphans

        if not self._ending.acquire(blocking=False):
            return

        with contextlib.suppress(OSError):
            for child in find_orphans(self.home, instance=""):
                if child.instance != self.mark:
                    continue
                with contextlib.suppress(OSError):
                    if child.group_leader and child.pid != os.getpgid(0):
                        os.killpg(child.pid, signal.SIGKILL)
                    else:
                        os.kill(child.pid, signal.SIGKILL)
        print_error(
            f"run {self.mark} interrupted by {name} while it was busy: stopped at once, its processes killed "
            f"(fix: start the run again; `pilotage serve` in this folder records it as failed)"
        )
        time.sleep(0.05)  # let stderr reach the terminal
        os._exit(EXIT_INTERRUPTED)
