"""The control plane's flow supervisor and its single-instance lock (``pilotage serve``).

In ``pilotage run`` the flow runner (:func:`pilotage.flows.feature_delivery.run_feature_delivery`) lives in the
CLI process and keeps what it saw in memory. A long-running control plane must survive being killed, so its
:class:`FlowSupervisor` keeps nothing: each time an event that may close a run arrives (``model.updated``,
``env.scaled_down``, ``agent.failed``), and every ``check_every_s`` for time budgets, it re-derives the run's
state from the log with :func:`run_status` — the same closing rule as the feature-delivery flow — and publishes
``flow.completed`` or ``flow.failed``. The closing event of a run has a deterministic id (:func:`closing_id`), so
two supervisors, or one that restarts mid-publish, close a run exactly once.

:class:`ControlPlaneLock` makes sure one control plane serves a state folder at a time (``flock`` on
``<home>/serve.lock``, released by the kernel when the process dies, even by SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from pilotage.bus.base import Bus, Subscription
from pilotage.bus.query import EventLog
from pilotage.catalogue import checked_event
from pilotage.errors import ConfigError
from pilotage.events import CloudEvent, EventType
from pilotage.flows.admission import ADMISSION_TYPES, Admission
from pilotage.flows.feature_delivery import CLOSING_TYPES, SOURCE, _outcome, closing_types, notify

__all__ = [
    "ControlPlaneLock",
    "FlowSupervisor",
    "RunStatus",
    "closing_id",
    "ready_line",
    "run_status",
    "serving_pid",
    "spawn_control_plane",
]

#: Namespace of the deterministic closing-event ids.
CLOSING_NAMESPACE = uuid.UUID("0b7d2c1e-5f43-4a9b-8e6d-2c9f1a7b3e55")


def closing_id(run_id: str) -> str:
    """Return the id of the one closing event (``flow.completed`` or ``flow.failed``) of ``run_id``."""
    return str(uuid.uuid5(CLOSING_NAMESPACE, f"{run_id}/closed"))


@dataclass(frozen=True)
class RunStatus:
    """A run's state derived from its events.

    Attributes:
        status: ``open``, ``completed``, ``failed`` (closing rule met, not yet published) or ``closed``.
        outcome: ``promoted``, ``rolled_back`` or ``none``.
        error: the one-line cause of a failure.
        elapsed_s: seconds from ``flow.started`` to ``now``.
    """

    status: str
    outcome: str
    error: str | None
    elapsed_s: float


def _elapsed(start: CloudEvent | None, now: datetime) -> float:
    if start is None:
        return 0.0
    return max(0.0, (now - datetime.fromisoformat(start.time)).total_seconds())


def run_status(events: list[CloudEvent], *, budget_s: float, now: datetime | None = None) -> RunStatus:
    """Apply the feature-delivery closing rule to the events of one run (pure).

    Complete when every type of :func:`~pilotage.flows.feature_delivery.closing_types` of the run's kind arrived
    (or a rollout was
    paused, issue #3: outcome ``paused``, the environment left for a human); failed on the first
    ``agent.failed`` or when ``budget_s`` seconds passed since ``flow.started`` (wall clock of the event times).
    """
    now = now or datetime.now(UTC)
    start = next((e for e in events if e.type == EventType.FLOW_STARTED), None)
    elapsed = _elapsed(start, now)
    outcome = _outcome(events)
    if any(e.type in (EventType.FLOW_COMPLETED, EventType.FLOW_FAILED) for e in events):
        return RunStatus("closed", outcome, None, elapsed)
    failed = next((e for e in events if e.type == EventType.AGENT_FAILED), None)
    if failed is not None:
        data = failed.data if isinstance(failed.data, dict) else {}
        return RunStatus("failed", outcome, f"{data.get('agent', '?')}: {data.get('error', 'failed')}", elapsed)
    kind = str(start.data.get("kind", "generate")) if start is not None and isinstance(start.data, dict) else ""
    if {e.type for e in events} >= closing_types(kind) or outcome == "paused":
        return RunStatus("completed", outcome, None, elapsed)
    if elapsed > budget_s:
        last = events[-1].type if events else EventType.FLOW_STARTED
        return RunStatus("failed", outcome, f"flow: time budget of {budget_s:.0f} s ran out after {last}", elapsed)
    return RunStatus("open", outcome, None, elapsed)


class FlowSupervisor:
    """Closes the runs of a long-running control plane from the log alone (see module docstring).

    Args:
        bus: the event log.
        budget_s: time budget of a run in seconds, from its ``flow.started`` time.
        on_event: called with every event the supervisor consumes (the serve timeline).
        check_every_s: seconds between budget checks of the open runs.
        admission: starts the queued runs (issue 19, 5: :mod:`pilotage.flows.admission`), checked at start, when a
            run is queued or closed, and every ``check_every_s``; None when nothing is queued here.
    """

    group = "controlplane.flows"

    def __init__(
        self,
        bus: Bus,
        *,
        budget_s: float = 900.0,
        on_event: Callable[[CloudEvent], None] | None = None,
        check_every_s: float = 1.0,
        admission: Admission | None = None,
    ) -> None:
        self.bus = bus
        self.admission = admission
        self.budget_s = budget_s
        self.on_event = on_event
        self.check_every_s = check_every_s
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> Subscription:
        """Subscribe to every event (consumer group ``controlplane.flows``) and start the budget ticker."""
        sub = await self.bus.subscribe("*", self._handle, group=self.group, start_at_end_if_new=True)
        if self.admission is not None:  # after the agents subscribed: they must see every flow.started
            await self.admission.check()
        self._ticker = asyncio.create_task(self._tick(), name="flow-supervisor-budget")
        return sub

    async def stop(self) -> None:
        """Stop the budget ticker (the subscription is stopped by its owner)."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker

    async def _handle(self, event: CloudEvent) -> None:
        notify(self.on_event, event)
        if event.runid and event.type in (*CLOSING_TYPES, EventType.AGENT_FAILED, EventType.DEPLOY_PAUSED):
            await self.check(event.runid)
        if self.admission is not None and event.type in ADMISSION_TYPES:
            await self.admission.check()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.check_every_s)
            await self.sweep()
            if self.admission is not None:
                await self.admission.check()

    async def run_events(self, run_id: str) -> list[CloudEvent]:
        """Return every event of ``run_id`` in log order."""
        return await EventLog(self.bus).all(run=run_id)

    async def check(self, run_id: str) -> RunStatus:
        """Derive the state of ``run_id`` from the log and publish its closing event when the rule is met."""
        events = await self.run_events(run_id)
        state = run_status(events, budget_s=self.budget_s)
        if state.status in ("completed", "failed"):
            await self._close(run_id, events, state)
        return state

    async def sweep(self) -> list[str]:
        """Check every open run (a closing condition reached while no control plane ran, or a budget spent).

        Returns:
            The ids of the runs closed by this sweep.
        """
        started: list[str] = []
        closed: set[str] = set()
        for event in await EventLog(self.bus).all(EventType.PREFIX + "flow.*"):
            if event.type == EventType.FLOW_STARTED:
                started.append(event.runid)
            elif event.type in (EventType.FLOW_COMPLETED, EventType.FLOW_FAILED):
                closed.add(event.runid)
        done = []
        for run_id in started:
            if run_id not in closed and (await self.check(run_id)).status in ("completed", "failed"):
                done.append(run_id)
        return done

    async def _close(self, run_id: str, events: list[CloudEvent], state: RunStatus) -> None:
        subject = events[0].subject if events else None
        type = EventType.FLOW_FAILED if state.status == "failed" else EventType.FLOW_COMPLETED
        data = {
            "run_id": run_id,
            "status": state.status,
            "outcome": state.outcome,
            "error": state.error,
            "duration_s": round(state.elapsed_s, 3),
        }
        closing = checked_event(type, data, source=SOURCE, subject=subject, runid=run_id)
        await self.bus.publish(closing.model_copy(update={"id": closing_id(run_id)}))


def _lock_path(home: Path) -> Path:
    return home / "serve.lock"


class ControlPlaneLock:
    """An exclusive ``flock`` on ``<home>/serve.lock`` holding ``{"pid", "instance"}``.

    Args:
        home: the state folder the control plane serves.
        instance: the control plane's id (written into the file).

    Raises:
        ConfigError: from :meth:`acquire` when another live process holds the lock (names its pid).
    """

    def __init__(self, home: Path, instance: str) -> None:
        self.path = _lock_path(home)
        self.instance = instance
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise ConfigError naming the control plane that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise ConfigError(
                f"a control plane (pid {serving_pid(self.path.parent) or '?'}) already serves {self.path.parent}",
                hint="stop it first, or use another working directory",
                path=str(self.path),
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "instance": self.instance}))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        """Release the lock. Idempotent."""
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def serving_pid(home: Path) -> int | None:
    """Return the pid of the live control plane serving ``home``, or None when none holds the lock."""
    path = _lock_path(home)
    if not path.exists():
        return None
    with path.open("r", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            try:
                return int(json.loads(path.read_text(encoding="utf-8") or "{}").get("pid", 0)) or -1
            except (ValueError, AttributeError):
                return -1
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def spawn_control_plane(home: Path) -> int:
    """Start ``pilotage serve --json`` detached (own session, output to ``<home>/serve.log``); return its pid.

    Waits up to 30 s for it to hold ``<home>/serve.lock`` (:func:`serving_pid`).

    Raises:
        ConfigError: it exited at once (the message quotes the last line of its log).
    """
    log_path = home / "serve.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - this interpreter running Pilotage itself
            [sys.executable, "-m", "pilotage", "serve", "--json"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            raise ConfigError(
                f"the control plane exited at once: {tail[-1] if tail else proc.returncode}", hint=f"read {log_path}"
            )
        if serving_pid(home) == proc.pid:
            return proc.pid
        time.sleep(0.1)
    return proc.pid


def ready_line(home: Path, pid: int, wait_s: float = 0.0) -> dict[str, object] | None:
    """The ready line (``{"serving": true, "pid", "api", ...}``) control plane ``pid`` wrote to ``<home>/serve.log``.

    It is written once the fleet is up and the agents and the API started; waits up to ``wait_s`` seconds for it.
    Read from the log's last 256 KiB, newest first; None when it was not written in time.
    """
    deadline = time.monotonic() + wait_s
    found = _ready_line(home, pid)
    while found is None and time.monotonic() < deadline:
        time.sleep(0.1)
        found = _ready_line(home, pid)
    return found


def _ready_line(home: Path, pid: int) -> dict[str, object] | None:
    try:
        with (home / "serve.log").open("rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 256 * 1024))
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            found = json.loads(line)
            if isinstance(found, dict) and found.get("serving") is True and found.get("pid") == pid:
                return found
    return None
