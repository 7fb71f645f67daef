"""How late the control plane's asyncio loop runs, and what held it (``pilotage serve``).

Every deadline the control plane measures on its loop — a version's readiness (``service_ready_timeout_s``), the
route a rollout starts from, a smoke check's 5 s — is only as good as the loop's promptness: a callback that runs
for 2 s (synchronous work in a coroutine), or hundreds of ready callbacks queued ahead (a saturated loop), make
every waiter late by that much, and a service that was ready in time is reported not ready. :class:`LoopWatch`
measures that lateness and names its cause:

* a *heartbeat* task on the loop sleeps ``tick_s`` and records how late it woke up (the **lag**: what any waiter on
  the loop suffered at that moment); the longest lag and the count of lags ≥ ``warn_s`` are kept
  (:meth:`LoopWatch.summary`);
* a daemon *watchdog* thread checks the heartbeat every ``tick_s``: once it is ``warn_s`` overdue, it takes the
  loop thread's Python stack (``sys._current_frames``) and logs it once per stall (warning
  ``event loop held ≥ X s …``) — the code running when the loop stalled (synchronous work) or, on a saturated
  loop, a sample of what keeps it busy; when the heartbeat comes back the stall's whole length is logged.

Costs: one wake-up of the loop every ``tick_s`` (0.1 s) and one of a thread; nothing is written unless a stall
reaches ``warn_s``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field

__all__ = ["LoopWatch", "LoopSummary", "loop_stack"]

_log = logging.getLogger(__name__)
#: Stack frames of the loop thread quoted in a stall warning (innermost last).
STACK_FRAMES = 12


@dataclass
class LoopSummary:
    """What a :class:`LoopWatch` saw.

    Attributes:
        longest_lag_s: the longest lag of a heartbeat, seconds.
        stalls: heartbeats late by at least ``warn_s``.
        ticks: heartbeats in all.
        longest_where: ``file:line function``, the innermost frame of the loop thread when the longest stall was
            caught; ``""`` when it was not caught (shorter than ``warn_s`` plus one check).
        stacks: the stacks logged for the last 10 stalls, innermost frame last.
    """

    longest_lag_s: float = 0.0
    stalls: int = 0
    ticks: int = 0
    longest_where: str = ""
    stacks: list[str] = field(default_factory=list)


def loop_stack(thread_id: int, frames: int = STACK_FRAMES) -> list[str]:
    """The innermost ``frames`` frames of thread ``thread_id``'s Python stack, as ``file:line function`` lines."""
    frame = sys._current_frames().get(thread_id)  # noqa: SLF001 - the documented way to see another thread's stack
    if frame is None:
        return []
    summary = traceback.extract_stack(frame)[-frames:]
    return [f"{_short(entry.filename)}:{entry.lineno} {entry.name}" for entry in summary]


def _short(path: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


class LoopWatch:
    """Measures the running loop's lag and logs the stack of the loop thread during a stall (module docstring).

    Args:
        warn_s: a lag of at least this many seconds is a stall (counted, its stack logged); > 0.
        tick_s: seconds between two heartbeats (and two watchdog checks); > 0, below ``warn_s``.

    Raises:
        ValueError: ``tick_s`` or ``warn_s`` out of range.
    """

    def __init__(self, *, warn_s: float = 1.0, tick_s: float = 0.1) -> None:
        if not 0 < tick_s < warn_s:
            raise ValueError(f"LoopWatch needs 0 < tick_s < warn_s, got tick_s={tick_s}, warn_s={warn_s}")
        self.warn_s, self.tick_s = warn_s, tick_s
        self.summary = LoopSummary()
        self._beat = time.monotonic()  # the heartbeat's last wake-up
        self._loop_thread = 0
        self._reported: float | None = None  # the heartbeat time whose stall was already logged
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LoopWatch:
        """Start the heartbeat on the running loop and the watchdog thread (call from inside the loop)."""
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._heartbeat(), name="loop watch heartbeat")
        self._thread = threading.Thread(target=self._watchdog, name="pilotage-loopwatch", daemon=True)
        self._thread.start()
        return self

    async def stop(self) -> LoopSummary:
        """Stop both; log and return the summary."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        s = self.summary
        where = f" (longest at {s.longest_where})" if s.longest_where else ""
        _log.info(
            "event loop lag: longest %.3f s over %d ticks, %d stall(s) >= %g s%s",
            s.longest_lag_s, s.ticks, s.stalls, self.warn_s, where,
        )  # fmt: skip
        return s

    async def _heartbeat(self) -> None:
        while True:
            asleep = time.monotonic()
            await asyncio.sleep(self.tick_s)
            now = time.monotonic()
            self._record(now - asleep - self.tick_s, now)

    def _record(self, lag_s: float, now: float) -> None:
        """One heartbeat woke ``lag_s`` late at ``now``: count it; a stall the watchdog reported is logged whole."""
        s = self.summary
        s.ticks += 1
        reported = self._reported == self._beat  # the watchdog logged this stall's stack (s.stacks[-1])
        if lag_s >= self.warn_s:
            s.stalls += 1
            if reported:
                _log.warning("event loop stall ended: the loop was held %.3f s", lag_s)
        if lag_s > s.longest_lag_s:
            s.longest_lag_s = lag_s
            if lag_s >= self.warn_s:
                s.longest_where = s.stacks[-1].splitlines()[-1] if reported and s.stacks[-1] else ""
        self._beat = now

    def _watchdog(self) -> None:
        while not self._stop.wait(self.tick_s):
            beat = self._beat
            overdue_s = time.monotonic() - beat - self.tick_s
            if overdue_s >= self.warn_s and self._reported != beat:
                self._reported = beat
                stack = "\n".join(loop_stack(self._loop_thread))
                self.summary.stacks = [*self.summary.stacks[-9:], stack]  # the last 10 stalls' stacks
                _log.warning("event loop held >= %.1f s so far; the loop thread is in:\n%s", overdue_s, stack)
